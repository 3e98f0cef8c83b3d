"""The DB-API path: any common.sql database, fetched ``batch_size`` rows at a time into Arrow columns.

The connection is the hook's own (``hook.get_conn()``), so every setting of the Airflow connection
(extras included) reaches the driver as Airflow passes it. The query's ``:name`` parameters are
rewritten to the driver's ``paramstyle`` by SQLAlchemy's compiler and bound by the driver.

Per batch the work is columnar: ``fetchmany`` returns tuples, ``zip(*rows)`` turns them into one
tuple per column (in C), and ``pyarrow.array`` converts each column in one call. Where the driver
has a streaming cursor (psycopg's named cursor, MySQLdb's ``SSCursor``) it is used, so the server
sends rows as they are fetched instead of the whole result at once.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import pyarrow as pa


def bind(query: str, parameters: Mapping[str, Any], paramstyle: str) -> tuple[str, Any]:
    """``query`` with ``:name`` placeholders in the driver's ``paramstyle``, and the values to send."""
    from sqlalchemy import text
    from sqlalchemy.engine.default import DefaultDialect

    compiled = text(query).compile(dialect=DefaultDialect(paramstyle=cast("Any", paramstyle)))
    if compiled.positional:
        return compiled.string, tuple(parameters[name] for name in compiled.positiontup or ())
    return compiled.string, dict(parameters)


def driver_paramstyle(connection: Any) -> str:
    """The DB-API ``paramstyle`` of the module that made ``connection`` (sqlite3, psycopg, MySQLdb...)."""
    module = importlib.import_module(type(connection).__module__.split(".")[0])
    paramstyle = getattr(module, "paramstyle", None)
    if not isinstance(paramstyle, str):
        raise TypeError(f"the database driver {module.__name__} does not declare a DB-API paramstyle")
    return paramstyle


def streaming_cursor(connection: Any) -> Any:
    """A cursor that fetches from the server as it goes, where the driver has one."""
    module = type(connection).__module__
    if module.startswith("psycopg"):  # psycopg 3 and psycopg2: a server-side (named) cursor
        return connection.cursor(name="mlpipe_extract")
    if module.startswith("MySQLdb"):
        from MySQLdb.cursors import SSCursor

        return connection.cursor(SSCursor)
    # sqlite3 steps through the result lazily; mysql.connector's default cursor is unbuffered.
    return connection.cursor()


def read_batches(
    cursor: Any, batch_size: int, column_types: Mapping[str, str]
) -> tuple[pa.Schema, Iterator[pa.Table]]:
    """The result's schema (from the first batch) and its batches as Arrow tables of that schema."""
    cursor.arraysize = batch_size
    first_rows = cursor.fetchmany(batch_size)
    # After the first fetch: psycopg2's named cursors describe the result only then.
    columns = [description[0] for description in cursor.description]
    first = to_table(first_rows, columns, column_types, None)
    schema = first.schema

    def rest() -> Iterator[pa.Table]:
        while rows := cursor.fetchmany(batch_size):
            yield to_table(rows, columns, column_types, schema)

    batches = itertools.chain([first] if first.num_rows else [], rest() if first.num_rows else [])
    return schema, batches


def to_table(
    rows: Sequence[Any], columns: list[str], column_types: Mapping[str, str], schema: pa.Schema | None
) -> pa.Table:
    """One batch of rows as an Arrow table with the file's schema (inferred from the first batch)."""
    import pyarrow as pa

    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = []
    for position, name in enumerate(columns):
        if schema is not None:
            wanted = schema.field(position).type
        elif name in column_types:
            wanted = pa.type_for_alias(column_types[name])
        else:
            wanted = None
        try:
            arrays.append(pa.array(values[position], type=wanted, from_pandas=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise ValueError(
                f"column '{name}' has values that do not fit type {wanted} (inferred from the first batch "
                f"unless set): {exc}; declare its type in column_types, e.g. {{{name}: float64}}"
            ) from exc
    table = pa.Table.from_arrays(arrays, names=columns)
    if schema is None:
        untyped = [field.name for field in table.schema if pa.types.is_null(field.type)]
        if untyped and rows:
            raise ValueError(
                f"columns {untyped} are NULL in the whole first batch, so their type cannot be inferred; "
                "declare them in column_types"
            )
    return table
