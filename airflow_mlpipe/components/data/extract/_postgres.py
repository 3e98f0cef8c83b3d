"""The PostgreSQL path: the server's binary COPY read by the ADBC driver straight into Arrow.

ADBC streams a query's result without holding it in memory only when the query has no bind
parameters (with ``$1`` it materialises the whole result first). So the ``:name`` values are
inlined first by psycopg's own client-side binding (``ClientCursor.mogrify``, which quotes and
escapes each value as a literal for this server's settings), never by string formatting, and
the resulting text runs as ``COPY (query) TO STDOUT (FORMAT binary)`` inside the driver.

Every setting of the Airflow connection reaches both connections (psycopg's, for the binding and
the connection check, and ADBC's): ``PostgresHook.get_conn()`` opens the first, and the second
gets a libpq connection string built from the same host, port, database (the connection's
schema), login, password and extras the hook passes to psycopg (``sslmode``, ``options``,
``application_name``, ``connect_timeout``...). IAM authentication (the ``iam`` extra) gets its
token from the hook, as ``get_conn`` does.

Types: what each PostgreSQL type becomes is in ``POSTGRES_TYPES`` (and the README). A column
Parquet cannot hold (``interval``) or that has no Arrow type (``inet``, geometric types, ...) is an
error naming the column and the cast that fixes it, raised before any row is fetched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.components.data.extract._adbc import result_reader, stream_batches

if TYPE_CHECKING:
    import pyarrow as pa

#: PostgreSQL type -> Parquet column, as documented (README, "data.extract.database types").
POSTGRES_TYPES = {
    "boolean": "boolean",
    "smallint / integer / bigint": "int16 / int32 / int64 (integer stays int32)",
    "real / double precision": "float32 / float64",
    "numeric": "string: the exact decimal text ('NaN' kept); cast to double precision for a float",
    "text / varchar / char(n) / name": "string (char(n) keeps its padding)",
    "bytea": "binary",
    "date": "date32",
    "time": "time64[us]",
    "timestamp": "timestamp[us] (no time zone)",
    "timestamptz": "timestamp[us, tz=UTC]: the instant, in UTC, whatever the session's TimeZone",
    "json / jsonb": "string annotated as JSON (the canonical arrow.json type; jsonb as the server prints it)",
    "uuid": "16-byte UUID (Parquet's UUID logical type; arrow.uuid)",
    "arrays of the above": "lists of the above",
    "interval": "not held by Parquet: an error naming the column; cast it, e.g. EXTRACT(EPOCH FROM col)",
    "other types (inet, cidr, money, point, ...)": "an error naming the column; cast it, e.g. col::text",
}

#: Bytes of COPY data the driver decodes into each Arrow batch. Its default, 16 MiB, is 300k rows
#: of a narrow table: the writer waits that long for its first batch, and the driver's buffers
#: grow by copying (realloc) to that size. 4 MiB: about the same CPU, 30 MB less peak RSS on the
#: benchmark's 3M rows (BENCHMARKS.md, section 3.2).
BATCH_BYTES = 4 << 20

#: Arrow metadata key in which the ADBC driver names each column's PostgreSQL type.
_PG_TYPE_KEY = b"POSTGRESQL:type"


class UnsupportedColumnTypeError(TypeError):
    """A result column whose PostgreSQL type has no Parquet equivalent; the message says how to cast it."""


def conninfo(hook: Any) -> str:
    """The libpq connection string of ``hook``'s connection, with what ``PostgresHook.get_conn`` passes."""
    from psycopg import pq
    from psycopg.conninfo import make_conninfo

    connection = hook.connection
    login, password, port = connection.login, connection.password, connection.port
    if connection.extra_dejson.get("iam", False):
        login, password, port = hook.get_iam_token(connection)
    settings: dict[str, Any] = {
        "host": connection.host,
        "port": port,
        "dbname": getattr(hook, "database", None) or connection.schema,
        "user": login,
        "password": password,
    }
    if getattr(hook, "options", None):
        settings["options"] = hook.options
    ignored = set(getattr(hook, "ignored_extra_options", ()))
    settings.update({key: value for key, value in connection.extra_dejson.items() if key not in ignored})
    # Only libpq's own keywords: psycopg.connect also takes Python-side arguments (prepare_threshold...).
    libpq = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    return make_conninfo(
        "",
        **{key: str(value) for key, value in settings.items() if key in libpq and value not in (None, "")},
    )


def literal_query(pg_connection: Any, query: str, parameters: Mapping[str, Any]) -> str:
    """``query`` with each ``:name`` replaced by its value as a literal quoted by psycopg for this server."""
    import psycopg

    from airflow_mlpipe.components.data.extract._dbapi import bind

    for name, value in parameters.items():
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(
                f"parameter '{name}' contains a NUL character (\\x00), which PostgreSQL text cannot hold; "
                "remove it from the value"
            )
    sql, values = bind(query, parameters, "pyformat")
    literal = psycopg.ClientCursor(pg_connection).mogrify(sql, values)
    # COPY (...) wraps the query: a trailing ';' would end it early and a trailing '-- comment'
    # would swallow the closing parenthesis.
    return literal.rstrip().rstrip(";").rstrip() + "\n"


def read_batches(
    conninfo_string: str, query: str, column_types: Mapping[str, str]
) -> tuple[pa.Schema, Iterator[pa.RecordBatch], Callable[[], None]]:
    """Run ``query``; return the Parquet schema, its batches, and a function that closes everything."""
    # The driver manager's low-level API: its DB-API module would also import pyarrow.dataset,
    # a few hundred milliseconds of every task's start.
    import adbc_driver_manager
    import adbc_driver_postgresql

    handles: list[Any] = [adbc_driver_postgresql.connect(conninfo_string)]  # closed in reverse

    def close() -> None:
        while handles:
            handles.pop().close()

    try:
        # A new connection is in autocommit mode: COPY runs in a transaction (one snapshot) of its own.
        handles.append(adbc_driver_manager.AdbcConnection(handles[0]))
        statement = adbc_driver_manager.AdbcStatement(handles[1])
        handles.append(statement)
        batch_hint = adbc_driver_postgresql.StatementOptions.BATCH_SIZE_HINT_BYTES.value
        statement.set_options(**{batch_hint: str(BATCH_BYTES)})
        statement.set_sql_query(query)
        reader = result_reader(statement)
        handles.append(reader)
        schema, convert = parquet_schema(reader.schema, column_types)
    except BaseException:
        close()
        raise

    return schema, (convert(batch) for batch in stream_batches(reader)), close


def parquet_schema(
    schema: pa.Schema, column_types: Mapping[str, str]
) -> tuple[pa.Schema, Callable[[pa.RecordBatch], pa.RecordBatch]]:
    """The schema the file gets for a result of ``schema``, and the per-batch conversion to it."""
    import pyarrow as pa

    fields = []
    for field in schema:
        pg_type = (field.metadata or {}).get(_PG_TYPE_KEY, b"?").decode()
        if field.name in column_types:
            wanted = pa.type_for_alias(column_types[field.name])
        elif isinstance(field.type, pa.OpaqueType):
            if not pa.types.is_string(field.type.storage_type):  # the driver's raw binary wire format
                raise _unsupported(field.name, field.type.type_name, f"{_quoted(field.name)}::text")
            wanted = field.type.storage_type  # numeric: its exact text
        elif pa.types.is_interval(field.type):
            raise _unsupported(
                field.name, pg_type, f"EXTRACT(EPOCH FROM {_quoted(field.name)}) (seconds, a float)"
            )
        else:
            wanted = field.type
        fields.append(pa.field(field.name, wanted, field.nullable, field.metadata))
    target = pa.schema(fields, metadata=schema.metadata)
    _check_parquet_holds(target, schema)
    if target.equals(schema, check_metadata=False):
        return target, lambda batch: batch

    def convert(batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = []
        for column, field in zip(batch.columns, target, strict=True):
            if isinstance(column.type, pa.OpaqueType) and column.type.storage_type == field.type:
                columns.append(column.storage)
            elif column.type != field.type:
                columns.append(_cast(column, field))
            else:
                columns.append(column)
        return pa.RecordBatch.from_arrays(columns, schema=target)

    return target, convert


def _cast(column: pa.Array, field: pa.Field) -> pa.Array:
    import pyarrow as pa

    try:
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(
            f"column '{field.name}' cannot be converted to {field.type} as column_types asks: {exc}; "
            "cast it in the query instead"
        ) from exc


def _check_parquet_holds(target: pa.Schema, source: pa.Schema) -> None:
    """Fail on a column Parquet cannot store, naming it (pyarrow's own error names only the type)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    def holds(schema: pa.Schema) -> bool:
        try:
            pq.ParquetWriter(io.BytesIO(), schema).close()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            return False
        return True

    if holds(target):
        return
    for field, original in zip(target, source, strict=True):
        if not holds(pa.schema([field])):
            pg_type = (original.metadata or {}).get(_PG_TYPE_KEY, b"?").decode()
            raise _unsupported(field.name, pg_type, f"{_quoted(field.name)}::text")


def _unsupported(column: str, pg_type: str, cast: str) -> UnsupportedColumnTypeError:
    return UnsupportedColumnTypeError(
        f"column '{column}' has PostgreSQL type {pg_type}, which Parquet cannot hold; cast it in the "
        f"query, e.g. SELECT {cast} AS {_quoted(column)}"
    )


def _quoted(name: str) -> str:
    """``name`` as an SQL identifier: bare when it is a plain lower-case name, else double-quoted."""
    if name.isidentifier() and name == name.lower():
        return name
    return '"' + name.replace('"', '""') + '"'
