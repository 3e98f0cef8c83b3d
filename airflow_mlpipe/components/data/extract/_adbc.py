"""What the ADBC paths (``_postgres``, ``_sqlite``) share: a query's result as a stream of batches.

Both use the driver manager's low-level API (its DB-API module would also import
``pyarrow.dataset``, a few hundred milliseconds of every task's start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


class ResultStreamError(RuntimeError):
    """The database failed while the driver streamed the result (after rows may have been written)."""


def result_reader(statement: Any) -> pa.RecordBatchReader:
    """Execute ``statement`` (an ``AdbcStatement`` with its query set) and read its result."""
    import pyarrow as pa

    stream, _ = statement.execute_query()
    return pa.RecordBatchReader._import_from_c(stream.address)


def stream_batches(
    reader: pa.RecordBatchReader, stream_error: Callable[[OSError], Exception] | None = None
) -> Iterator[pa.RecordBatch]:
    """``reader``'s batches; a failure mid-stream raises ``stream_error(exc)`` (default
    :class:`ResultStreamError`) instead of pyarrow's bare ``OSError``."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except OSError as exc:  # how pyarrow's stream reader reports the driver's error
            raise (stream_error(exc) if stream_error else ResultStreamError(str(exc).strip())) from exc
        yield batch
