"""features.user_engagement: windowing, per-user aggregations and the interaction table."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlpipe.components.features import user_engagement

END = datetime.datetime(2024, 6, 1)


def _upstream(tmp_path: Path, table: pa.Table) -> dict:
    path = tmp_path / f"upstream-{table.num_rows}-{id(table)}.parquet"
    pq.write_table(table, path)
    return {"extract": {"artifacts": {"data": f"file://{path}"}}}


def _read(uri: str) -> pa.Table:
    from airflow.sdk import ObjectStoragePath

    with ObjectStoragePath(uri).open("rb") as handle:
        return pq.read_table(handle)


def _random_events(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, 60 * 86_400, size=n)  # 60 days before END, so half fall in a 30-day window
    return {
        "user_id": rng.integers(0, 40, size=n),
        "item_id": rng.integers(0, 25, size=n),
        "event_type": rng.choice(["view", "click", "purchase", "share"], size=n),
        "value": np.round(rng.lognormal(2.0, 1.0, size=n), 3),
        "when": np.datetime64(END - datetime.timedelta(days=60), "s") + seconds.astype("timedelta64[s]"),
    }


def _as_table(events: dict[str, np.ndarray]) -> pa.Table:
    strings = np.char.replace(np.datetime_as_string(events["when"], unit="s"), "T", " ")
    return pa.table({**{k: v for k, v in events.items() if k != "when"}, "date": strings})


def test_aggregations_match_a_direct_numpy_computation(tmp_path, make_context):
    events = _random_events(5_000)
    config = user_engagement.Config(
        window_days=30, aggregation=["mean", "std", "count", "sum", "min", "max"], window_end=END
    )
    result = user_engagement.run(config, make_context("features", _upstream(tmp_path, _as_table(events))))
    features = _read(result["artifacts"]["features"])

    start = np.datetime64(END - datetime.timedelta(days=30), "s")
    in_window = (events["when"] >= start) & (events["when"] < np.datetime64(END, "s"))
    users = np.unique(events["user_id"][in_window])
    assert features.column("user_id").to_pylist() == users.tolist()
    for column, function in {
        "value_mean": np.mean,
        "value_std": np.std,  # population standard deviation, ddof=0
        "value_count": len,
        "value_sum": np.sum,
        "value_min": np.min,
        "value_max": np.max,
    }.items():
        expected = [function(events["value"][in_window & (events["user_id"] == user)]) for user in users]
        np.testing.assert_allclose(features.column(column).to_numpy(), expected, rtol=1e-12, err_msg=column)
    assert result["metrics"]["events"] == int(in_window.sum())
    assert result["metrics"]["users"] == len(users)


def test_interactions_sum_event_weights_per_pair(tmp_path, make_context):
    events = _random_events(3_000, seed=1)
    weights = {"view": 1.0, "click": 2.5, "purchase": 8.0}
    config = user_engagement.Config(
        window_days=30, window_end=END, event_weights=weights, default_event_weight=0.5
    )
    result = user_engagement.run(config, make_context("features", _upstream(tmp_path, _as_table(events))))
    interactions = _read(result["artifacts"]["interactions"])

    in_window = events["when"] >= np.datetime64(END - datetime.timedelta(days=30), "s")
    event_weight = np.array([weights.get(kind, 0.5) for kind in events["event_type"]])
    expected: dict[tuple[int, int], list] = {}
    for user, item, weight, when in zip(
        events["user_id"][in_window],
        events["item_id"][in_window],
        event_weight[in_window],
        events["when"][in_window],
        strict=True,
    ):
        entry = expected.setdefault((int(user), int(item)), [0.0, 0, when])
        entry[0] += weight
        entry[1] += 1
        entry[2] = max(entry[2], when)
    got = {(row["user_id"], row["item_id"]): row for row in interactions.to_pylist()}
    assert set(got) == set(expected)
    for pair, (weight, count, last) in expected.items():
        assert got[pair]["weight"] == pytest.approx(weight)
        assert got[pair]["events"] == count
        assert np.datetime64(got[pair]["last_event"], "s") == last
    assert interactions.column_names == ["user_id", "item_id", "weight", "events", "last_event"]
    assert result["metrics"]["interactions"] == len(expected)


def test_window_is_start_inclusive_end_exclusive(tmp_path, make_context):
    start = END - datetime.timedelta(days=7)
    table = pa.table(
        {
            "user_id": [1, 2, 3, 4],
            "item_id": [1, 1, 1, 1],
            "event_type": ["view"] * 4,
            "value": [1.0, 2.0, 3.0, 4.0],
            "date": [
                start - datetime.timedelta(seconds=1),  # before the window
                start,  # first instant of the window
                END - datetime.timedelta(seconds=1),  # last second of the window
                END,  # belongs to the next interval
            ],
        }
    )
    config = user_engagement.Config(window_days=7, window_end=END)
    result = user_engagement.run(config, make_context("features", _upstream(tmp_path, table)))
    assert _read(result["artifacts"]["features"]).column("user_id").to_pylist() == [2, 3]


def test_window_end_defaults_to_the_data_interval_end_then_the_latest_event(tmp_path, make_context):
    table = pa.table(
        {
            "user_id": [1, 2, 3],
            "item_id": [1, 1, 1],
            "event_type": ["view"] * 3,
            "value": [1.0, 2.0, 3.0],
            "date": pa.array(
                [datetime.date(2024, 5, 1), datetime.date(2024, 5, 20), datetime.date(2024, 5, 30)]
            ),
        }
    )
    upstream = _upstream(tmp_path, table)
    config = user_engagement.Config(window_days=5)

    interval_end = datetime.datetime(2024, 5, 22, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    scheduled = make_context("features", upstream, airflow_context={"data_interval_end": interval_end})
    in_interval = user_engagement.run(config, scheduled)
    # [2024-05-16 22:00, 2024-05-21 22:00) UTC holds only the event of 2024-05-20
    assert _read(in_interval["artifacts"]["features"]).column("user_id").to_pylist() == [2]

    manual = make_context("features", upstream, run_id="manual")
    latest = user_engagement.run(config, manual)
    # no interval: the window ends just after the latest event (2024-05-30) and includes it
    assert _read(latest["artifacts"]["features"]).column("user_id").to_pylist() == [3]


def test_zoned_timestamps_and_custom_column_names(tmp_path, make_context):
    table = pa.table(
        {
            "customer": ["a", "b", "a"],
            "product": ["x", "x", "y"],
            "action": ["click", "view", "purchase"],
            "amount": [1, 2, 3],
            "ts": ["2024-05-31T23:30:00Z", "2024-06-01T01:30:00+02:00", "2024-06-01T00:00:00Z"],
        }
    )
    config = user_engagement.Config(
        window_days=1,
        window_end=datetime.datetime(2024, 6, 1, tzinfo=datetime.timezone.utc),
        aggregation=["sum"],
        user_column="customer",
        item_column="product",
        event_type_column="action",
        value_column="amount",
        timestamp_column="ts",
    )
    result = user_engagement.run(config, make_context("features", _upstream(tmp_path, table)))
    features = _read(result["artifacts"]["features"])
    # 01:30+02:00 is 23:30 UTC the day before: in the window; 00:00Z on June 1 is not.
    assert features.to_pylist() == [{"user_id": "a", "amount_sum": 1.0}, {"user_id": "b", "amount_sum": 2.0}]


def test_an_empty_window_is_an_error_not_an_empty_model(tmp_path, make_context):
    table = _as_table(_random_events(100))
    config = user_engagement.Config(window_days=3, window_end=datetime.datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="no events between"):
        user_engagement.run(config, make_context("features", _upstream(tmp_path, table)))


def test_missing_columns_are_named(tmp_path, make_context):
    table = _as_table(_random_events(10)).drop_columns(["value"])
    with pytest.raises(ValueError, match=r"no column\(s\) \['value'\]"):
        user_engagement.run(
            user_engagement.Config(window_end=END), make_context("features", _upstream(tmp_path, table))
        )


def _in_memory_reference(events: pa.Table, config: user_engagement.Config) -> tuple[pa.Table, pa.Table]:
    """The stage's previous implementation (whole window in memory, one hash group-by per table),
    kept here to prove the streaming one gives the same tables."""
    import pyarrow.compute as pc

    functions = {"mean": "mean", "std": "stddev", "count": "count", "sum": "sum", "min": "min", "max": "max"}
    unique = list(dict.fromkeys(config.aggregation))
    values = pa.table({"user_id": events["user_id"], "value": events["value"].cast(pa.float64())})
    grouped = values.group_by("user_id", use_threads=False).aggregate(
        [("value", functions[name]) for name in unique]
    )
    names = {f"value_{functions[name]}": f"value_{name}" for name in unique}
    grouped = grouped.rename_columns([names.get(column, column) for column in grouped.column_names])
    features = grouped.select(["user_id", *names.values()]).sort_by("user_id")

    known = pa.array(list(config.event_weights), type=pa.string())
    weights = pa.array([*config.event_weights.values(), config.default_event_weight], type=pa.float64())
    position = pc.fill_null(pc.index_in(events["event_type"].cast(pa.string()), value_set=known), len(known))
    weighted = events.select(["user_id", "item_id", "timestamp"]).append_column(
        "weight", weights.take(position)
    )
    pairs = weighted.group_by(["user_id", "item_id"], use_threads=False).aggregate(
        [("weight", "sum"), ("weight", "count"), ("timestamp", "max")]
    )
    interactions = (
        pairs.rename_columns(
            {"weight_sum": "weight", "weight_count": "events", "timestamp_max": "last_event"}
        )
        .select(["user_id", "item_id", "weight", "events", "last_event"])
        .sort_by([("user_id", "ascending"), ("item_id", "ascending")])
    )
    return features, interactions


@pytest.mark.parametrize("ids", ["integers", "strings"])
def test_streaming_gives_the_tables_of_the_in_memory_implementation(tmp_path, make_context, monkeypatch, ids):
    # Small batches, group-by slices and merge floors, so every streaming path runs many times.
    monkeypatch.setattr(user_engagement, "_BATCH_ROWS", 1_000)
    monkeypatch.setattr(user_engagement, "_EVENTS_PER_GROUP_BY", 997)
    monkeypatch.setattr(user_engagement._Distinct.__init__, "__defaults__", (50,))
    rng = np.random.default_rng(3)
    n = 12_000
    events = _random_events(n, seed=3)
    # Skewed ids (a few users and items dominate, so pairs repeat and runs cross slice ends).
    events["user_id"] = (rng.zipf(1.3, size=n) % 900).astype(np.int64)
    events["item_id"] = (rng.zipf(1.5, size=n) % 300).astype(np.int64)
    table = _as_table(events)
    if ids == "strings":
        table = table.set_column(0, "user_id", pa.array([f"u{v}" for v in events["user_id"]]))
        table = table.set_column(1, "item_id", pa.array([f"i{v}" for v in events["item_id"]]))
    # Some values are missing: the aggregations skip them, as before.
    table = table.set_column(3, "value", pa.array(events["value"], mask=rng.random(n) < 0.05))
    config = user_engagement.Config(
        window_days=30,
        window_end=END,
        aggregation=["mean", "std", "count", "sum", "min", "max"],
        event_weights={"view": 1.0, "click": 2.5, "purchase": 0.1},  # inexact in binary: order matters
        default_event_weight=0.7,
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path, row_group_size=700)
    result = user_engagement.run(
        config, make_context("features", {"extract": {"artifacts": {"data": f"file://{path}"}}})
    )

    when = user_engagement._as_timestamps(table["date"])
    start = pa.scalar(END - datetime.timedelta(days=30), type=pa.timestamp("us"))
    in_window = pa.compute.and_(pa.compute.greater_equal(when, start), pa.compute.less(when, pa.scalar(END)))
    window = table.append_column("timestamp", when).filter(in_window)
    expected_features, expected_interactions = _in_memory_reference(window, config)

    features = _read(result["artifacts"]["features"])
    interactions = _read(result["artifacts"]["interactions"])
    for column in expected_features.column_names:
        if column == "value_std":
            # Arrow merges per-batch moments for stddev, so batch boundaries move the last digits.
            np.testing.assert_allclose(
                features[column].to_numpy(), expected_features[column].to_numpy(), rtol=1e-12
            )
        else:
            assert features[column].equals(expected_features[column]), column
    # Sums of inexact weights are bit-identical: each pair's weights are added in event order.
    assert interactions.equals(expected_interactions)
    assert interactions.num_rows > 2_000  # many slices of 997 events were grouped
    assert result["metrics"] == {
        "events": window.num_rows,
        "users": expected_features.num_rows,
        "items": len(pa.compute.unique(window["item_id"])),
        "interactions": expected_interactions.num_rows,
    }


def test_pair_slices_end_where_a_pair_ends():
    pairs = pa.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 3, 4, 4, 5], type=pa.int64())
    slices = user_engagement._pair_slices(pairs, 3)
    assert slices == [(0, 3), (3, 4), (4, 11), (11, 14)]
    assert user_engagement._pair_slices(pairs, 100) == [(0, 14)]
    # One pair longer than the slice size stays whole.
    assert user_engagement._pair_slices(pa.array([7] * 10, type=pa.int64()), 3) == [(0, 10)]


def test_distinct_ids_merge_as_they_come_and_stay_complete():
    distinct = user_engagement._Distinct(merge_floor=4)
    rng = np.random.default_rng(0)
    batches = [pa.array(rng.integers(0, 50, size=30)) for _ in range(40)]
    for batch in batches:
        distinct.add(batch)
        assert len(distinct.parts) <= 1 + 5  # merged well before holding every batch
    expected = np.unique(np.concatenate([batch.to_numpy() for batch in batches]))
    assert distinct.sorted().to_pylist() == expected.tolist()


def test_distinct_ids_merge_in_time_linear_in_the_values_added(monkeypatch):
    # Many more distinct ids than the merge floor, few new ones per batch: as at 20M events.
    distinct = user_engagement._Distinct(merge_floor=4)
    merged_lengths = []
    original = pa.concat_arrays

    def counting(arrays, *args, **kwargs):
        merged = original(arrays, *args, **kwargs)
        merged_lengths.append(len(merged))
        return merged

    monkeypatch.setattr(pa, "concat_arrays", counting)
    rng = np.random.default_rng(1)
    added = 0
    for _ in range(300):
        batch = pa.array(rng.integers(0, 5_000, size=30))
        distinct.add(batch)
        added += len(batch)
    assert len(distinct.sorted()) > 2_500
    assert sum(merged_lengths) <= 4 * added  # each value is merged a bounded number of times


def test_the_second_pass_hashes_the_id_sets_in_time_linear_in_the_events(tmp_path, make_context, monkeypatch):
    # index_in hashes its whole value set on every call: with batches shorter than the id sets,
    # the work would grow with events x users. The second pass reads batches as long as the sets.
    monkeypatch.setattr(user_engagement, "_BATCH_ROWS", 100)
    value_set_sizes = []
    original = pa.compute.index_in

    def counting(values, value_set=None, **kwargs):
        value_set_sizes.append(len(value_set))
        return original(values, value_set=value_set, **kwargs)

    monkeypatch.setattr(pa.compute, "index_in", counting)
    n = 20_000
    events = _random_events(n, seed=5)
    events["user_id"] = np.arange(n, dtype=np.int64) % 4_000  # 4000 users, 5 events each
    path = tmp_path / "events.parquet"
    pq.write_table(_as_table(events), path, row_group_size=1_000)
    config = user_engagement.Config(window_days=30, window_end=END)
    result = user_engagement.run(
        config, make_context("features", {"extract": {"artifacts": {"data": f"file://{path}"}}})
    )

    users = result["metrics"]["users"]
    hashed = sum(size for size in value_set_sizes if size >= users)  # the user and item sets' hashing
    assert 0 < hashed <= 4 * (result["metrics"]["events"] + users + result["metrics"]["items"])
