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

Metrics: ``events`` (in the window), ``users``, ``items``, ``interactions``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlpipe.contract import ComponentContext

Aggregation = Literal["mean", "std", "count", "sum", "min", "max"]

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

    window_days: int = Field(default=30, gt=0, description="Length of the time window in days")
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


def run(config: Config, context: ComponentContext) -> Mapping[str, Any]:
    """Filter the window, aggregate per user and per (user, item), write both tables."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from airflow.sdk import ObjectStoragePath

    log = context.log
    uris = context.input_artifacts(config.input_artifact, hint="set input_artifact")
    source = ObjectStoragePath(uris[config.input_artifact])
    columns = [
        config.user_column,
        config.item_column,
        config.event_type_column,
        config.value_column,
        config.timestamp_column,
    ]

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
        start_scalar = pa.scalar(start, type=pa.timestamp("us"))
        end_scalar = pa.scalar(end, type=pa.timestamp("us"))
        kept = []
        for batch in parquet.iter_batches(columns=columns):
            when = _as_timestamps(batch.column(config.timestamp_column))
            in_window = pc.and_(pc.greater_equal(when, start_scalar), pc.less(when, end_scalar))
            table = pa.table(
                {
                    "user_id": batch.column(config.user_column),
                    "item_id": batch.column(config.item_column),
                    "event_type": batch.column(config.event_type_column),
                    "value": batch.column(config.value_column),
                    "timestamp": when,
                }
            )
            kept.append(table.filter(pc.fill_null(in_window, False)))

    events = pa.concat_tables(kept) if kept else None
    if events is None or events.num_rows == 0:
        raise ValueError(
            f"no events between {start} and {end}: check the extract query, window_days and window_end"
        )
    log.info("%d events in the window", events.num_rows)

    features = user_features(events, config.aggregation, value_name=config.value_column)
    interactions = interaction_table(events, config.event_weights, config.default_event_weight)

    features_path = context.artifact_dir / "user_features.parquet"
    interactions_path = context.artifact_dir / "interactions.parquet"
    for table, path in ((features, features_path), (interactions, interactions_path)):
        with path.open("wb") as sink:
            pq.write_table(table, sink, compression="zstd")
    metrics = {
        "events": events.num_rows,
        "users": features.num_rows,
        "items": len(pc.unique(interactions.column("item_id"))),
        "interactions": interactions.num_rows,
    }
    log.info(
        "Wrote features of %(users)d users and %(interactions)d interactions over %(items)d items", metrics
    )
    return {
        "artifacts": {"features": str(features_path), "interactions": str(interactions_path)},
        "metrics": metrics,
    }


def user_features(events: pa.Table, aggregations: Sequence[str], value_name: str = "value") -> pa.Table:
    """One row per user: ``<value_name>_<aggregation>`` of the ``value`` column, sorted by user."""
    import pyarrow as pa

    unique = list(dict.fromkeys(aggregations))
    values = pa.table(
        {"user_id": events.column("user_id"), "value": events.column("value").cast(pa.float64())}
    )
    grouped = values.group_by("user_id", use_threads=False).aggregate(
        [("value", _ARROW_AGGREGATIONS[name]) for name in unique]
    )
    # pyarrow names each aggregate "value_<function>"; name it after the source column instead.
    names = {f"value_{_ARROW_AGGREGATIONS[name]}": f"{value_name}_{name}" for name in unique}
    grouped = grouped.rename_columns([names.get(column, column) for column in grouped.column_names])
    return grouped.select(["user_id", *names.values()]).sort_by("user_id")


def interaction_table(
    events: pa.Table, event_weights: Mapping[str, float], default_weight: float
) -> pa.Table:
    """One row per (user, item): summed event ``weight``, ``events`` count and ``last_event``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    types = events.column("event_type").cast(pa.string())
    known = pa.array(list(event_weights), type=pa.string())
    table_weights = np.append(np.asarray(list(event_weights.values()), dtype=np.float64), default_weight)
    # index_in gives null for a type not in event_weights: point those at the default weight.
    position = pc.fill_null(pc.index_in(types, value_set=known), len(known)).to_numpy()
    weighted = events.select(["user_id", "item_id", "timestamp"]).append_column(
        "weight", pa.array(table_weights[position])
    )
    grouped = weighted.group_by(["user_id", "item_id"], use_threads=False).aggregate(
        [("weight", "sum"), ("weight", "count"), ("timestamp", "max")]
    )
    return (
        grouped.rename_columns(
            {"weight_sum": "weight", "weight_count": "events", "timestamp_max": "last_event"}
        )
        .select(["user_id", "item_id", "weight", "events", "last_event"])
        .sort_by([("user_id", "ascending"), ("item_id", "ascending")])
    )


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
