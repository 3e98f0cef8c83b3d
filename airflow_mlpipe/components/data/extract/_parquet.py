"""Write a stream of Arrow tables into one Parquet file on a second thread.

Reading rows (driver work) and encoding Parquet (compression) both release the GIL, so the reader
keeps fetching while the writer compresses. The two meet in a bounded queue: when the writer falls
behind, the reader waits, so memory holds at most ``QUEUE_DEPTH`` tables plus the two in hand,
whatever the size of the result.

Every row group holds ``batch_size`` rows (the last one fewer): the reader hands over tables whose
length is a multiple of ``batch_size`` (``RowGroupChunker``), except the final one.

How the file is encoded (``writer_options``): only string and binary columns are dictionary
encoded. Numbers, dates and timestamps are written plain: for ids, amounts and instants a
dictionary per row group costs the writer about three times the CPU of the plain column (its hash
table) and, under zstd, made the benchmark's file larger, not smaller (BENCHMARKS.md, section
3.2). The writer reaches the sink through a buffer, so a Python file (an ``ObjectStoragePath``
file) is called once per ``WRITE_BUFFER_BYTES``, not once per page, each call taking the GIL.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

#: Tables waiting for the writer; with the reader's table and the writer's, three in memory at most.
QUEUE_DEPTH = 2

#: Bytes of encoded Parquet gathered before each write to the sink.
WRITE_BUFFER_BYTES = 1 << 20

# How long a blocked put waits before looking again whether the writer died.
_POLL_SECONDS = 0.5

_END = object()


class RowGroupChunker:
    """Regroup batches of any length into tables of whole ``batch_size`` row groups."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._pending: list[pa.RecordBatch | pa.Table] = []
        self._pending_rows = 0

    def add(self, batch: pa.RecordBatch | pa.Table) -> pa.Table | None:
        """Take a batch; return a table of whole row groups once there is at least one."""
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows < self.batch_size:
            return None
        table = _as_table(self._pending)
        whole = self._pending_rows - self._pending_rows % self.batch_size
        rest = table.slice(whole)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        return table.slice(0, whole) if rest.num_rows else table

    def flush(self) -> pa.Table | None:
        """The rows left over at the end (fewer than ``batch_size``), if any."""
        if not self._pending_rows:
            return None
        table = _as_table(self._pending)
        self._pending, self._pending_rows = [], 0
        return table


def _as_table(parts: list[Any]) -> pa.Table:
    import pyarrow as pa

    tables = [part if isinstance(part, pa.Table) else pa.Table.from_batches([part]) for part in parts]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


class ParquetSink:
    """A ParquetWriter on its own thread, fed through a bounded queue.

    Use as a context manager; ``put`` tables with the file's schema, then leave the block. On an
    error inside the block the writer is stopped and the file is left incomplete (the caller
    deletes it). An error in the writer is raised from the next ``put`` or from the exit.
    """

    def __init__(self, sink: Any, schema: pa.Schema, compression: str, row_group_size: int) -> None:
        self._sink = sink
        self._schema = schema
        self._compression = compression
        self._row_group_size = row_group_size
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._stream: Any = None
        self._thread = threading.Thread(target=self._write_all, name="mlpipe-parquet-writer", daemon=True)

    def __enter__(self) -> ParquetSink:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._stream = pa.BufferedOutputStream(pa.PythonFile(self._sink, mode="w"), WRITE_BUFFER_BYTES)
        try:
            # Opened here, not in the thread, so a schema Parquet cannot hold fails before any fetch.
            self._writer = pq.ParquetWriter(
                self._stream, self._schema, compression=self._compression, **writer_options(self._schema)
            )
        except BaseException:
            self._release_sink()
            raise
        self._thread.start()
        return self

    def put(self, table: pa.Table) -> None:
        while True:
            self._raise_writer_error()
            try:
                self._queue.put(table, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._abort()
            return
        self._queue.put(_END)
        self._thread.join()
        if self._error is not None:
            self._release_sink_quietly()
            raise self._error

    def _write_all(self) -> None:
        try:
            while (table := self._queue.get()) is not _END:
                self._writer.write_table(table, row_group_size=self._row_group_size)
            self._writer.close()
            self._release_sink()
        except BaseException as exc:  # handed to the reader's thread
            self._error = exc
            self._drain()

    def _drain(self) -> None:
        # Unblock a reader waiting on a full queue; the items are dropped.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _abort(self) -> None:
        # The error being raised matters more than anything the writer may also have hit.
        self._drain()
        self._queue.put(_END)
        self._thread.join()
        self._release_sink_quietly()

    def _release_sink(self) -> None:
        """Flush the buffer into the sink and let go of it unclosed: the sink belongs to the caller.

        (Dropped without this, the buffered stream would close the caller's file.)
        """
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.detach()

    def _release_sink_quietly(self) -> None:
        # After a failure the file is deleted anyway; the error already raised is the one that matters.
        with contextlib.suppress(Exception):
            self._release_sink()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise self._error


def writer_options(schema: pa.Schema) -> dict[str, Any]:
    """``ParquetWriter`` options for a file of ``schema``: a dictionary for string and binary columns only."""
    import pyarrow as pa

    kinds = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    dictionary = [
        field.name
        for field in schema
        if pa.types.is_dictionary(field.type) or any(is_kind(field.type) for is_kind in kinds)
    ]
    return {"use_dictionary": dictionary}


def write_stream(
    batches: Iterable[pa.RecordBatch | pa.Table],
    schema: pa.Schema,
    sink: Any,
    *,
    compression: str,
    batch_size: int,
    log: Any,
    log_every_batches: int,
    started: float,
) -> tuple[int, int]:
    """Write ``batches`` (already of ``schema``) as row groups of ``batch_size``; return (rows, row groups).

    Logs ``Extracted N rows in M batches (R rows/s)`` every ``log_every_batches`` row groups.
    """
    chunker = RowGroupChunker(batch_size)
    rows = 0
    logged = 0
    with ParquetSink(sink, schema, compression, batch_size) as writer:
        for table in _chunks(batches, chunker):
            writer.put(table)
            rows += table.num_rows
            groups = -(-rows // batch_size)
            if groups // log_every_batches > logged // log_every_batches:
                elapsed = time.monotonic() - started
                log.info(
                    "Extracted %d rows in %d batches (%.0f rows/s)",
                    rows,
                    groups,
                    rows / elapsed if elapsed else 0,
                )
            logged = groups
    return rows, -(-rows // batch_size)


def _chunks(batches: Iterable[Any], chunker: RowGroupChunker) -> Iterator[pa.Table]:
    for batch in batches:
        table = chunker.add(batch)
        if table is not None:
            yield table
    rest = chunker.flush()
    if rest is not None:
        yield rest
