"""Per-user engagement features and the user-item interaction table, over a recent time window.

Reads the Parquet ``data`` artifact of the upstream stage (for example ``data.extract.database``)
batch by batch, keeps the events of the last ``window_days`` days, and writes two Parquet files:

* ``features``: one row per user, ``user_id`` and ``<value>_<aggregation>`` for each requested
  aggregation of the value column (``std`` is the population standard deviation);
* ``interactions``: one row per (user, item) pair with ``weight`` (the sum of the pair's event
  weights, from ``event_weights``), ``events`` (their number) and ``last_event``; this is what
  ``model.matrix_factorization`` trains on.

The window is ``[end - window_days, end)``. ``end`` is ``window_end`` when set, else the run's data
interval end, else (outside a scheduled run) just after the latest event. Naive timestamps are
taken as UTC; timestamp columns may be timestamps, dates or ISO 8601 strings.

Artifacts: ``features``, ``interactions``. Metrics: ``events`` (in the window), ``users``,
``items``, ``interactions``. Reads the upstream artifact named ``input_artifact``. Needs pyarrow
only (no numpy). Overridable at trigger time: ``window_days``.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from airflow_mlpipe.contract import OVERRIDABLE, Produces, Requires

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlpipe.contract import ComponentContext

Aggregation = Literal["mean", "std", "count", "sum", "min", "max"]

#: Rows read from the input file at a time.
_BATCH_ROWS = 65_536

#: Our aggregation names -> pyarrow's hash aggregation functions.
_ARROW_AGGREGATIONS = {
    "mean": "mean",
    "std": "stddev",
    "count": "count",
    "sum": "sum",
    "min": "min",
    "max": "max",
}


class Config(BaseModel):
    """Configuration of ``features.user_engagement``."""

    model_config = ConfigDict(extra="forbid")

    # The window length is the one tuning knob a trigger may change: the output schema, the
    # columns read and the upstream artifact stay the spec author's.
    window_days: int = Field(
        default=30,
        gt=0,
        description="Length of the time window in days",
        json_schema_extra={OVERRIDABLE: True},
    )
    aggregation: list[Aggregation] = Field(
        default_factory=lambda: list[Aggregation](["mean", "std", "count"]),
        min_length=1,
        description="Aggregations of the value column per user: mean, std, count, sum, min, max",
    )
    window_end: datetime.datetime | None = Field(
        default=None,
        description="Exclusive end of the window; default the data interval end, else the latest event",
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 3.0, "purchase": 10.0},
        description="Interaction weight of one event of each type; the pair's weight is the sum",
    )
    default_event_weight: float = Field(
        default=1.0, ge=0, description="Weight of an event whose type is not in event_weights"
    )
    user_column: str = Field(default="user_id", description="Column holding the user id")
    item_column: str = Field(default="item_id", description="Column holding the item id")
    event_type_column: str = Field(default="event_type", description="Column holding the event type")
    value_column: str = Field(default="value", description="Numeric column the aggregations apply to")
    timestamp_column: str = Field(default="date", description="Column holding the event time")
    input_artifact: str = Field(default="data", description="Name of the upstream artifact to read")


# Deterministic given its config and input table (see the README on the window end).
cache = "on"
produces = Produces(
    artifacts=("features", "interactions"), metrics=("events", "users", "items", "interactions")
)


def requires(config: Config) -> Requires:
    return Requires(artifacts=(config.input_artifact,))


def run(config: Config, context: ComponentContext) -> Mapping[str, Any]:
    """Filter the window, aggregate per user and per (user, item), write both tables."""
    import pyarrow.parquet as pq
    from airflow.sdk import ObjectStoragePath

    log = context.log
    source = ObjectStoragePath(context.input().artifacts[config.input_artifact])
    columns = [
        config.user_column,
        config.item_column,
        config.event_type_column,
        config.value_column,
        config.timestamp_column,
    ]
    features_path = context.artifact_dir / "user_features.parquet"
    interactions_path = context.artifact_dir / "interactions.parquet"

    with source.open("rb") as handle:
        parquet = pq.ParquetFile(handle)
        missing = [name for name in columns if name not in parquet.schema_arrow.names]
        if missing:
            raise ValueError(
                f"{source} has no column(s) {missing} (it has {parquet.schema_arrow.names}); "
                "set the *_column options to the names your data uses"
            )
        end = _window_end(config, context, parquet)
        start = end - datetime.timedelta(days=config.window_days)
        log.info(
            "Window [%s, %s) (%d days) over %d rows of %s",
            start,
            end,
            config.window_days,
            parquet.metadata.num_rows,
            source,
        )
        window = _Window(config.timestamp_column, start, end)
        # Two passes over the file rather than one copy of it in memory: the first finds the
        # distinct ids, so the second can keep compact int32 codes instead of the ids themselves.
        users, items, event_count = _distinct_ids(parquet, config, window)
        if event_count == 0:
            raise ValueError(
                f"no events between {start} and {end}: check the extract query, window_days and window_end"
            )
        log.info("%d events in the window: %d users, %d items", event_count, len(users), len(items))
        events = _window_events(parquet, config, columns, window, users, items)

    features = user_features(users, events.user_codes, events.values, config.aggregation, config.value_column)
    with features_path.open("wb") as sink:
        pq.write_table(features, sink, compression="zstd")
    # Free the per-user columns before the pairs are sorted: that sort is this stage's peak of memory.
    events.user_codes, events.values = [], []
    with interactions_path.open("wb") as sink:
        pair_count = write_interactions(sink, users, items, events)

    metrics = {
        "events": event_count,
        "users": features.num_rows,
        "items": len(items),
        "interactions": pair_count,
    }
    log.info(
        "Wrote features of %(users)d users and %(interactions)d interactions over %(items)d items", metrics
    )
    return {
        "artifacts": {"features": str(features_path), "interactions": str(interactions_path)},
        "metrics": metrics,
    }


class _Window:
    """The events of ``[start, end)``, batch by batch (timestamps read as naive UTC)."""

    def __init__(self, column: str, start: datetime.datetime, end: datetime.datetime) -> None:
        import pyarrow as pa

        self.column = column
        self.start = pa.scalar(start, type=pa.timestamp("us"))
        self.end = pa.scalar(end, type=pa.timestamp("us"))

    def select(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.Array]:
        """The batch's rows in the window, and their timestamps."""
        import pyarrow.compute as pc

        when = _as_timestamps(batch.column(self.column))
        in_window = pc.fill_null(pc.and_(pc.greater_equal(when, self.start), pc.less(when, self.end)), False)
        return batch.filter(in_window), when.filter(in_window)


class _WindowEvents:
    """The window's events as compact columns, one Arrow array per batch read.

    ``user_codes`` and ``pairs`` index the sorted distinct ``users`` and ``items``: a pair is
    ``user_code * len(items) + item_code``, so sorting pairs sorts by (user id, item id).
    """

    def __init__(self) -> None:
        self.user_codes: list[pa.Array] = []
        self.values: list[pa.Array] = []
        self.pairs: list[pa.Array] = []
        self.weights: list[pa.Array] = []
        self.times: list[pa.Array] = []


def _distinct_ids(parquet: Any, config: Config, window: _Window) -> tuple[pa.Array, pa.Array, int]:
    """The sorted distinct user and item ids of the window's events, and the number of those events."""
    users, items = _Distinct(), _Distinct()
    count = 0
    id_columns = [config.user_column, config.item_column, window.column]
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=id_columns):
        kept, _ = window.select(batch)
        users.add(kept.column(config.user_column))
        items.add(kept.column(config.item_column))
        count += kept.num_rows
    return users.sorted(), items.sorted(), count


class _Distinct:
    """Distinct values of a stream of arrays, in memory proportional to their number."""

    def __init__(self, merge_floor: int = 1 << 20) -> None:
        self.parts: list[pa.Array] = []
        self.pending = 0
        self.merged = 0
        self.merge_floor = merge_floor

    def add(self, values: pa.Array) -> None:
        import pyarrow.compute as pc

        part = pc.unique(values)
        self.parts.append(part)
        self.pending += len(part)
        # Merge once the parts hold as many values as the last merge kept: linear time overall.
        if self.pending > max(self.merged, self.merge_floor):
            self._merge()

    def sorted(self) -> pa.Array:
        self._merge()
        return self.parts[0].sort()

    def _merge(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.parts = [pc.unique(pa.concat_arrays(self.parts))]
        # Only values added after this merge count towards the next one: counting the merged ones
        # too merged again at every batch once the ids outnumbered the floor (178 merges of 1M ids
        # at 20M events, a second of CPU per 1M events) where doubling gives a handful.
        self.merged, self.pending = len(self.parts[0]), 0


def _window_events(
    parquet: Any, config: Config, columns: list[str], window: _Window, users: pa.Array, items: pa.Array
) -> _WindowEvents:
    """Read the window's events as compact codes, values, pair keys, weights and timestamps."""
    import pyarrow as pa
    import pyarrow.compute as pc

    known = pa.array(list(config.event_weights), type=pa.string())
    table_weights = pa.array([*config.event_weights.values(), config.default_event_weight], type=pa.float64())
    item_count = pa.scalar(len(items), type=pa.int64())
    events = _WindowEvents()
    # index_in hashes its value set again on every call: with fixed batches that is (events /
    # batch) x (users + items) of work, quadratic in the data (a 64k batch costs 99 ms against 1M
    # users, 2 ms against 50k). Batches at least as long as the id sets keep it linear.
    batch_rows = max(_BATCH_ROWS, len(users) + len(items))
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        kept, when = window.select(batch)
        user_codes = pc.index_in(kept.column(config.user_column), value_set=users)
        item_codes = pc.index_in(kept.column(config.item_column), value_set=items)
        # index_in gives null for a type not in event_weights: point those at the default weight.
        # (Arrow's take rather than numpy indexing, so features need no numpy.)
        types = kept.column(config.event_type_column).cast(pa.string())
        position = pc.fill_null(pc.index_in(types, value_set=known), len(known))
        events.user_codes.append(user_codes)
        events.values.append(kept.column(config.value_column).cast(pa.float64()))
        events.pairs.append(pc.add(pc.multiply(user_codes.cast(pa.int64()), item_count), item_codes))
        events.weights.append(table_weights.take(position))
        events.times.append(when)
    return events


def user_features(
    users: pa.Array,
    user_codes: Sequence[pa.Array],
    values: Sequence[pa.Array],
    aggregations: Sequence[str],
    value_name: str = "value",
) -> pa.Table:
    """One row per user: ``<value_name>_<aggregation>`` of the values, sorted by user id.

    ``user_codes`` index ``users`` (sorted distinct ids); ``values`` are the matching values.
    """
    import pyarrow as pa

    unique = list(dict.fromkeys(aggregations))
    codes = pa.chunked_array(user_codes, type=pa.int32())
    table = pa.table({"user": codes, "value": pa.chunked_array(values, type=pa.float64())})
    grouped = table.group_by("user", use_threads=False).aggregate(
        [("value", _ARROW_AGGREGATIONS[name]) for name in unique]
    )
    # pyarrow names each aggregate "value_<function>"; name it after the source column instead.
    names = {f"value_{_ARROW_AGGREGATIONS[name]}": f"{value_name}_{name}" for name in unique}
    grouped = grouped.sort_by("user")
    columns = {"user_id": users.take(grouped.column("user"))}
    columns.update({names[name]: grouped.column(name) for name in names})
    return pa.table(columns)


#: Sorted events grouped at a time: bounds the hash table of one group-by, whatever the data size.
_EVENTS_PER_GROUP_BY = 1 << 20


def write_interactions(sink: Any, users: pa.Array, items: pa.Array, events: _WindowEvents) -> int:
    """Write one row per (user, item), sorted: summed event ``weight``, ``events`` count and
    ``last_event``. Returns the number of rows.

    The events are sorted by pair (stably, so each pair's weights add up in event order), then
    grouped a slice at a time, each slice ending where a pair ends, and written as it goes: memory
    is the sorted events, not a hash table of every pair nor a second copy of the result.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pairs = pa.chunked_array(events.pairs, type=pa.int64())
    events.pairs = []
    order = pc.sort_indices(pairs)
    sorted_pairs = pairs.take(order).combine_chunks()
    del pairs
    weights = pa.chunked_array(events.weights, type=pa.float64()).take(order)
    events.weights = []
    times = pa.chunked_array(events.times, type=pa.timestamp("us")).take(order)
    events.times = []
    del order
    table = pa.table({"pair": sorted_pairs, "weight": weights, "timestamp": times})

    schema = pa.schema(
        [
            ("user_id", users.type),
            ("item_id", items.type),
            ("weight", pa.float64()),
            ("events", pa.int64()),
            ("last_event", pa.timestamp("us")),
        ]
    )
    item_count = pa.scalar(len(items), type=pa.int64())
    rows = 0
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for first, stop in _pair_slices(sorted_pairs, _EVENTS_PER_GROUP_BY):
            grouped = (
                table.slice(first, stop - first)
                .group_by("pair", use_threads=False)
                .aggregate([("weight", "sum"), ("weight", "count"), ("timestamp", "max")])
                .sort_by("pair")
            )
            pair = grouped.column("pair")
            user_codes = pc.divide(pair, item_count)
            item_codes = pc.subtract(pair, pc.multiply(user_codes, item_count))
            chunk = pa.table(
                [
                    users.take(user_codes),
                    items.take(item_codes),
                    grouped.column("weight_sum"),
                    grouped.column("weight_count"),
                    grouped.column("timestamp_max"),
                ],
                schema=schema,
            )
            writer.write_table(chunk)
            rows += chunk.num_rows
    return rows


def _pair_slices(sorted_pairs: pa.Array, size: int) -> list[tuple[int, int]]:
    """``[first, stop)`` slices of about ``size`` sorted pairs, each cut where a new pair starts."""
    import pyarrow.compute as pc

    cuts = [0]
    for target in range(size, len(sorted_pairs), size):
        if target <= cuts[-1]:
            continue
        # The first row of target's pair: its run of equal values starts at or after the last cut.
        run = sorted_pairs.slice(cuts[-1], target - cuts[-1] + 1)
        first = cuts[-1] + pc.index(run, sorted_pairs[target]).as_py()
        if first > cuts[-1]:
            cuts.append(first)
    cuts.append(len(sorted_pairs))
    return list(itertools.pairwise(cuts))


def _window_end(config: Config, context: ComponentContext, parquet: Any) -> datetime.datetime:
    """The exclusive window end as a naive UTC datetime."""
    if config.window_end is not None:
        return _naive_utc(config.window_end)
    interval_end = context.airflow_context.get("data_interval_end") if context.airflow_context else None
    if interval_end is not None:
        return _naive_utc(interval_end)
    import pyarrow.compute as pc

    latest = None
    for batch in parquet.iter_batches(columns=[config.timestamp_column]):
        batch_max = pc.max(_as_timestamps(batch.column(0))).as_py()
        if batch_max is not None and (latest is None or batch_max > latest):
            latest = batch_max
    if latest is None:
        raise ValueError(f"column '{config.timestamp_column}' has no timestamps to anchor the window on")
    context.log.info("No data interval end: the window ends just after the latest event, %s", latest)
    return _naive_utc(latest) + datetime.timedelta(microseconds=1)


def _naive_utc(value: datetime.datetime | datetime.date) -> datetime.datetime:
    if not isinstance(value, datetime.datetime):
        return datetime.datetime.combine(value, datetime.time())
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    # Go through isoformat so pendulum subclasses become plain datetimes.
    return datetime.datetime.fromisoformat(value.isoformat())


def _as_timestamps(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Naive UTC ``timestamp[us]`` values from timestamps, dates or ISO 8601 strings."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return _drop_timezone(array)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return array.cast(pa.timestamp("us"))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return array.cast(pa.timestamp("us"))
        except pa.ArrowInvalid:
            # Strings with a zone offset ("...Z", "+02:00") only parse into a zoned timestamp.
            return _drop_timezone(array.cast(pa.timestamp("us", tz="UTC")))
    raise TypeError(f"cannot read event times from a column of type {kind}; use timestamps, dates or strings")


def _drop_timezone(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    import pyarrow as pa

    return array.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).cast(pa.timestamp("us"))
