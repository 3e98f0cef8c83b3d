"""The extract's Parquet writer thread: row groups of batch_size, bounded memory, errors surface."""

from __future__ import annotations

import io
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlpipe.components.data.extract import _parquet


def _batches(sizes: list[int]) -> list[pa.RecordBatch]:
    start = 0
    batches = []
    for size in sizes:
        batches.append(pa.record_batch({"n": pa.array(range(start, start + size), pa.int64())}))
        start += size
    return batches


def test_batches_of_any_length_become_row_groups_of_batch_size(caplog):
    import logging

    sink = io.BytesIO()
    log = logging.getLogger("tests.extract.parquet")
    caplog.set_level("INFO", logger=log.name)
    batches = _batches([7, 30, 1, 0, 45, 2])  # 85 rows
    schema = batches[0].schema

    rows, groups = _parquet.write_stream(
        batches, schema, sink, compression="zstd", batch_size=20, log=log, log_every_batches=2, started=0.0
    )

    parquet = pq.ParquetFile(io.BytesIO(sink.getvalue()))
    assert (rows, groups) == (85, 5)
    assert [parquet.metadata.row_group(i).num_rows for i in range(5)] == [20, 20, 20, 20, 5]
    assert parquet.read().column("n").to_pylist() == list(range(85))
    # One line each time the count of row groups passes a multiple of log_every_batches.
    assert caplog.messages == ["Extracted 80 rows in 4 batches (0 rows/s)"]


def test_a_writer_error_stops_the_reader_instead_of_hanging():
    class BrokenSink(io.BytesIO):
        def write(self, data):  # the disk fills up after the header
            if self.tell() > 4:
                raise OSError("No space left on device")
            return super().write(data)

    def endless():
        while True:  # a reader that would never stop by itself
            yield _batches([1000])[0]

    schema = _batches([1])[0].schema
    with pytest.raises(OSError, match="No space left"):
        _parquet.write_stream(
            endless(), schema, BrokenSink(), compression="none", batch_size=1000, log=None,
            log_every_batches=10**9, started=0.0,
        )  # fmt: skip
    assert not any(t.name == "mlpipe-parquet-writer" for t in threading.enumerate())


def test_the_reader_waits_when_the_writer_falls_behind(monkeypatch):
    # With a writer that blocks, the reader can hand over at most QUEUE_DEPTH tables (plus the one
    # the writer holds) before it waits: memory stays bounded whatever the result's size.
    monkeypatch.setattr(_parquet, "WRITE_BUFFER_BYTES", 1)  # every page reaches the sink (and blocks)
    release = threading.Event()
    handed = []

    class SlowSink(io.BytesIO):
        def write(self, data):
            release.wait()
            return super().write(data)

    def counted():
        for batch in _batches([10] * 50):
            handed.append(batch)
            yield batch

    schema = _batches([1])[0].schema
    done = threading.Thread(
        target=_parquet.write_stream,
        args=(counted(), schema, SlowSink()),
        kwargs={
            "compression": "none",
            "batch_size": 10,
            "log": None,
            "log_every_batches": 10**9,
            "started": 0.0,
        },
    )
    done.start()
    done.join(timeout=1.0)
    in_flight = len(handed)
    release.set()
    done.join(timeout=30)
    assert in_flight <= _parquet.QUEUE_DEPTH + 3
    assert len(handed) == 50


def test_only_string_and_binary_columns_are_dictionary_encoded():
    # A dictionary of ids, amounts or instants costs the writer more than the column and, under
    # zstd, makes the file larger; for strings (categories, event types) it is what readers want.
    table = pa.table(
        {
            "user_id": pa.array([i % 7 for i in range(1000)], pa.int32()),
            "value": pa.array([i / 4 for i in range(1000)], pa.float64()),
            "event_type": pa.array(["view", "click"] * 500),
            "payload": pa.array([b"x", b"y"] * 500),
        }
    )
    sink = io.BytesIO()
    _parquet.write_stream(
        table.to_batches(), table.schema, sink, compression="zstd", batch_size=500, log=None,
        log_every_batches=10**9, started=0.0,
    )  # fmt: skip

    parquet = pq.ParquetFile(io.BytesIO(sink.getvalue()))
    dictionary = {
        name: any("DICTIONARY" in encoding for encoding in parquet.metadata.row_group(0).column(i).encodings)
        for i, name in enumerate(table.column_names)
    }
    assert dictionary == {"user_id": False, "value": False, "event_type": True, "payload": True}
    assert parquet.read().equals(table)


def test_the_sink_is_written_in_large_chunks_and_left_open():
    # A Python file (an object-store file) costs a GIL hand-off per write: a page each would mean
    # hundreds of calls for these 40 row groups.
    class CountingSink(io.BytesIO):
        calls = 0

        def write(self, data):
            CountingSink.calls += 1
            return super().write(data)

    sink = CountingSink()
    rows, groups = _parquet.write_stream(
        _batches([1000] * 40), _batches([1])[0].schema, sink, compression="zstd", batch_size=1000,
        log=None, log_every_batches=10**9, started=0.0,
    )  # fmt: skip

    assert (rows, groups) == (40_000, 40)
    assert CountingSink.calls <= 2
    assert not sink.closed  # the caller's file: it closes it (and renames it) itself
    assert pq.read_table(io.BytesIO(sink.getvalue())).num_rows == 40_000
