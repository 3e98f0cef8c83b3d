"""The SQLite path: the ADBC SQLite driver steps through the result in C and builds Arrow columns.

The DB-API path makes one Python tuple per row (and one object per value) before Arrow sees
them; the driver appends each value straight into an Arrow buffer, in about a third of the CPU
time on the demo table (BENCHMARKS.md, section 5.1). The ``:name`` parameters become ``?``
placeholders (SQLAlchemy's compiler, as on the DB-API path) and their values are bound by the
driver, as one row of an Arrow batch, never formatted into the SQL.

Types. SQLite stores a type per value, not per column, and the driver infers each column's Arrow
type from the first ``batch_size`` rows (integers and reals together become float64, as
``pyarrow.array`` makes them on the DB-API path). Two things the driver would otherwise do
silently are refused here, because the DB-API path refuses them too and a Parquet column has
one type:

* a value later in the result that does not fit the inferred type (a real or a text in an
  integer column): the driver stops, and the error names the column and the CAST that fixes it;
* numbers (or blobs) in a column typed as text, or text in a blob column: the driver would turn
  them into text (reals in ``%e`` notation, six digits) or bytes. When the result has text or
  blob columns, one more query on the same connection, inside the same read transaction, looks
  for such a value (``typeof``) before any row is written; finding one is an error naming the
  column and the CAST. This runs the query a second time (about a fifth of the extract's CPU
  time on the demo table, BENCHMARKS.md section 5.1): the price of never writing a column whose
  values changed type.

NULL stays NULL and the empty string stays empty, as SQLite returns them.

Not taken (the DB-API path is, with a log line saying why): a config with ``column_types`` (the
driver infers types itself and cannot be told them), and parameter values other than text,
integers, floats, booleans and NULL (dates, decimals: the sqlite3 module's adapters decide how
those are stored, so the same adapters must bind them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.components.data.extract._adbc import ResultStreamError, result_reader, stream_batches

if TYPE_CHECKING:
    import pyarrow as pa

#: Parameter value types the driver binds exactly as the sqlite3 module does.
BINDABLE = (str, int, float, bool, type(None))

_INT64_RANGE = (-(2**63), 2**63 - 1)
_MISMATCH = re.compile(r"Type mismatch in column (\d+): expected (\w+) but got ([\w/]+)")


class CannotOpenError(ConnectionError):
    """The driver could not open the database file."""


class MixedColumnTypesError(ValueError):
    """A result column holds values of types one Parquet column cannot; the message says how to CAST."""


def dbapi_reason(connect_kwargs: Mapping[str, Any], config: Any) -> str | None:
    """Why this extract must take the DB-API path instead, or ``None`` when the driver can run it."""
    if config.column_types:
        return "column_types is set, and the ADBC driver infers column types itself"
    for name, value in config.parameters.items():
        if not isinstance(value, BINDABLE):
            return (
                f"parameter '{name}' is a {type(value).__name__}, which the sqlite3 module's adapters "
                "bind (the driver would store it differently)"
            )
        if isinstance(value, int) and not _INT64_RANGE[0] <= value <= _INT64_RANGE[1]:
            return f"parameter '{name}' does not fit a 64-bit integer"
    # What SQLAlchemy's dialect passes to sqlite3.connect besides the file: only what the driver
    # does itself (sqlite3's thread check; a file: URI, which the driver opens as one).
    unknown = set(connect_kwargs) - {"check_same_thread", "uri"}
    if unknown:
        return f"the connection sets {', '.join(sorted(unknown))}, which the ADBC driver has no option for"
    return None


def read_batches(
    database: str, query: str, parameters: Mapping[str, Any], batch_size: int
) -> tuple[pa.Schema, Iterator[pa.RecordBatch], Callable[[], None]]:
    """Run ``query`` on the SQLite file (or ``file:`` URI) ``database``.

    Returns the result's schema, its batches and a function that closes everything. Raises
    ``MixedColumnTypesError`` before returning when a text or blob column holds other types.
    """
    # The driver manager's low-level API: its DB-API module would also import pyarrow.dataset.
    import adbc_driver_manager
    import adbc_driver_sqlite

    from airflow_mlpipe.components.data.extract._dbapi import bind

    sql, values = bind(_unterminated(query), parameters, "qmark")
    handles: list[Any] = []  # closed in reverse

    def close() -> None:
        while handles:
            handles.pop().close()

    try:
        handles.append(adbc_driver_sqlite.connect(database))
        handles.append(adbc_driver_manager.AdbcConnection(handles[0]))
    except adbc_driver_manager.Error as exc:
        close()
        raise CannotOpenError(str(exc).strip()) from exc
    try:
        statement = _statement(handles[1], sql, values, batch_size)
        handles.append(statement)
        reader = result_reader(statement)
        handles.append(reader)
        schema = reader.schema
        # A reader in the middle of the result holds its read transaction open, so the check
        # runs on the same snapshot (a result that fitted in the first batch is already read).
        _check_uniform_types(handles[1], sql, values, schema)
    except BaseException:
        close()
        raise

    return schema, stream_batches(reader, lambda exc: _stream_error(exc, schema)), close


def _statement(connection: Any, sql: str, values: Any, batch_size: int) -> Any:
    import adbc_driver_manager
    import pyarrow as pa

    statement = adbc_driver_manager.AdbcStatement(connection)
    try:
        # The rows per batch are also the rows the driver infers each column's type from.
        statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_size)})
        statement.set_sql_query(sql)
        if values:
            statement.prepare()
            row = pa.record_batch(
                [pa.array([value]) for value in values], names=[f"p{i}" for i in range(len(values))]
            )
            statement.bind(row)
    except BaseException:
        statement.close()
        raise
    return statement


def _check_uniform_types(connection: Any, sql: str, values: Any, schema: pa.Schema) -> None:
    """Fail, naming the column, when a text column holds numbers or blobs, or a blob column text."""
    import pyarrow as pa

    others = {"string": ("integer", "real", "blob"), "binary": ("integer", "real", "text")}
    checked = []
    for position, field in enumerate(schema):
        kind = (
            "string"
            if pa.types.is_string(field.type)
            else "binary"
            if pa.types.is_binary(field.type)
            else None
        )
        if kind is not None:
            checked.append((position, field.name, others[kind]))
    if not checked:
        return
    duplicated = sorted({name for _, name, _ in checked if schema.names.count(name) > 1})
    if duplicated:
        raise ValueError(
            f"the result has more than one column named {', '.join(repr(n) for n in duplicated)}; "
            "give each column its own name in the query (SELECT a.x AS a_x, b.x AS b_x ...)"
        )
    conditions = [f"typeof(q.{_quoted(name)}) IN ({_sql_list(types)})" for _, name, types in checked]
    which = " ".join(
        f"WHEN {condition} THEN {position}"
        for (position, _, _), condition in zip(checked, conditions, strict=True)
    )
    found = " ".join(
        f"WHEN {condition} THEN typeof(q.{_quoted(name)})"
        for (_, name, _), condition in zip(checked, conditions, strict=True)
    )
    check = (
        f"SELECT CASE {which} END, CASE {found} END FROM (\n{sql}\n) AS q "
        f"WHERE {' OR '.join(conditions)} LIMIT 1"
    )
    statement = _statement(connection, check, values, 1)
    try:
        stream, _ = statement.execute_query()
        reader = pa.RecordBatchReader._import_from_c(stream.address)
        try:
            rows = reader.read_all().to_pylist()
        finally:
            reader.close()
    finally:
        statement.close()
    if rows:
        position, value_type = rows[0].values()
        field = schema.field(int(position))
        stored = "text" if pa.types.is_string(field.type) else "blob"
        raise _mixed(
            field.name, f"both {stored} and {value_type} values", "TEXT" if stored == "text" else "BLOB"
        )


def _stream_error(exc: OSError, schema: pa.Schema) -> Exception:
    match = _MISMATCH.search(str(exc))
    if match is None:
        return ResultStreamError(str(exc).strip())
    field = schema.field(int(match.group(1)))
    expected, got = match.group(2).lower(), match.group(3).lower().replace("string/binary", "text or blob")
    cast = {"int64": "INTEGER", "double": "REAL"}.get(expected, "TEXT")
    if got == "double":
        cast = "REAL"
    return _mixed(
        field.name,
        f"{expected} values in its first rows (the driver's type for the column) and a {got} value later",
        cast,
    )


def _mixed(column: str, what: str, cast: str) -> MixedColumnTypesError:
    return MixedColumnTypesError(
        f"column '{column}' has {what}: SQLite stores a type per value, a Parquet column has one type; "
        f"CAST it in the query, e.g. SELECT CAST({_quoted(column)} AS {cast}) AS {_quoted(column)}, "
        f"or declare its type in column_types (e.g. {{{column}: {_arrow_name(cast)}}})"
    )


def _arrow_name(cast: str) -> str:
    return {"INTEGER": "int64", "REAL": "float64", "TEXT": "string", "BLOB": "binary"}[cast]


def _unterminated(query: str) -> str:
    # The check wraps the query in FROM ( ... ): a trailing ';' would end it early.
    return query.rstrip().rstrip(";").rstrip()


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
