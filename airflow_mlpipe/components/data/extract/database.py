"""Run a SQL query through an Airflow connection and stream its rows into one Parquet file.

The connection may be any database the ``common.sql`` provider supports (its hook must be a
``DbApiHook`` with a SQLAlchemy URI: SQLite, PostgreSQL, MySQL...). Values in ``parameters`` are
sent as bind parameters (``:name`` in the query), never formatted into the SQL text, so a value
like ``x' OR '1'='1`` is compared as data.

Rows are fetched ``batch_size`` at a time (a server-side cursor where the driver has one, such as
PostgreSQL) and each batch becomes one Parquet row group, so memory stays bounded by the batch
whatever the size of the result.

The file is written as ``.data.parquet.partial`` and renamed to ``data.parquet`` only once every
row is in it. If the database cannot be reached the stage fails with an error naming the Airflow
connection before anything is written; if the query fails half-way the partial file is deleted
(and would keep its ``.partial`` name if even that failed), so a truncated extract is never
reported as the stage's output.

``conn_id`` used to be called ``connection``; that spelling still works and warns.

Artifacts: ``data`` (the Parquet file). Metrics: ``rows``, ``batches``. Reads no upstream
artifacts. Overridable at trigger time: ``batch_size`` only (never the query, its parameters or
the connection).
"""

from __future__ import annotations

import datetime
import decimal
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_mlpipe.contract import OVERRIDABLE, ConfigDeprecationWarning, Produces, Requires

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlpipe.contract import ComponentContext

ParameterValue = (
    str | int | float | bool | decimal.Decimal | datetime.date | datetime.datetime | datetime.time | None
)

#: Arrow type names accepted in ``column_types``.
ARROW_TYPE_NAMES = (
    "bool",
    "int32",
    "int64",
    "float32",
    "float64",
    "string",
    "large_string",
    "binary",
    "date32",
    "timestamp[s]",
    "timestamp[ms]",
    "timestamp[us]",
    "timestamp[ns]",
)

ARTIFACT_NAME = "data"
FILE_NAME = "data.parquet"
PARTIAL_NAME = f".{FILE_NAME}.partial"


class DatabaseUnavailableError(ConnectionError):
    """The database behind an Airflow connection could not be reached (or refused us)."""


class QueryFailedError(RuntimeError):
    """The database accepted the connection but the query failed (possibly after some batches)."""


#: The field's old name, still accepted (with a ConfigDeprecationWarning) and mapped to ``conn_id``.
DEPRECATED_CONNECTION = "connection"

# The same query can return other rows tomorrow: cached only where a spec says so.
cache = "off"
produces = Produces(artifacts=(ARTIFACT_NAME,), metrics=("rows", "batches"))
requires = Requires()


def _schema_accepts_deprecated_connection(schema: dict[str, Any]) -> None:
    # Editors should accept (and strike through) the old spelling, and require exactly one of the two.
    properties = schema.setdefault("properties", {})
    properties[DEPRECATED_CONNECTION] = {
        "type": "string",
        "minLength": 1,
        "deprecated": True,
        "description": "Deprecated name of conn_id",
    }
    schema["required"] = [name for name in schema.get("required", []) if name != "conn_id"]
    schema["oneOf"] = [{"required": ["conn_id"]}, {"required": [DEPRECATED_CONNECTION]}]


class Config(BaseModel):
    """Configuration of ``data.extract.database``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_schema_accepts_deprecated_connection)

    query: str = Field(
        description="SQL query to run; refer to parameters as :name (bind parameters, never formatted in)",
        min_length=1,
    )
    conn_id: str = Field(description="Airflow connection id of the database to query", min_length=1)
    parameters: dict[str, ParameterValue] = Field(
        default_factory=dict,
        description="Bind parameter values by name; every :name in the query needs one, and each one is used",
    )
    batch_size: int = Field(
        default=10_000,
        gt=0,
        description="Rows fetched per round trip and written per Parquet row group",
        json_schema_extra={OVERRIDABLE: True},
    )
    column_types: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Arrow type per column name (e.g. {value: float64}) when inference from the first batch "
            f"is not enough, for example a column that is NULL there; one of {', '.join(ARROW_TYPE_NAMES)}"
        ),
    )
    compression: str = Field(
        default="zstd", description="Parquet compression codec (zstd, snappy, gzip, none)"
    )
    log_every_batches: int = Field(default=10, gt=0, description="Log progress after this many batches")

    @model_validator(mode="before")
    @classmethod
    def _renamed_connection(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or DEPRECATED_CONNECTION not in data:
            return data
        if "conn_id" in data:
            raise ValueError(
                "both 'conn_id' and 'connection' are given; 'connection' is the deprecated name of "
                "'conn_id': remove 'connection'"
            )
        warnings.warn(
            ConfigDeprecationWarning(
                "'connection' is deprecated; use 'conn_id'", field=DEPRECATED_CONNECTION
            ),
            stacklevel=2,
        )
        return {("conn_id" if key == DEPRECATED_CONNECTION else key): value for key, value in data.items()}

    @field_validator("column_types")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = {column: name for column, name in value.items() if name not in ARROW_TYPE_NAMES}
        if unknown:
            raise ValueError(f"unknown Arrow types {unknown}; use one of {', '.join(ARROW_TYPE_NAMES)}")
        return value


def run(config: Config, context: ComponentContext) -> Mapping[str, Any]:
    """Stream the query result into ``<artifact_dir>/data.parquet``."""
    from sqlalchemy import text

    statement = text(config.query)
    _check_parameters(set(statement.compile().params), set(config.parameters))

    engine = _engine(config.conn_id)
    target = context.artifact_dir / FILE_NAME
    partial = context.artifact_dir / PARTIAL_NAME
    log = context.log
    log.info(
        "Extracting from connection '%s' (%s) in batches of %d rows into %s",
        config.conn_id,
        engine.dialect.name,
        config.batch_size,
        target,
    )
    started = time.monotonic()
    try:
        with _connect(engine, config.conn_id) as connection:
            try:
                # stream_results asks for a server-side cursor (PostgreSQL, MySQL); drivers without
                # one, such as SQLite's, already fetch lazily.
                result = connection.execution_options(
                    stream_results=True, yield_per=config.batch_size
                ).execute(statement, config.parameters)
                columns = list(result.keys())
                with partial.open("wb") as sink:
                    rows, batches = _write_batches(result, columns, sink, config, log, started)
            except BaseException:
                _remove_quietly(partial, log)
                raise
        _publish(partial, target)
    except Exception as exc:
        _raise_with_connection(exc, config.conn_id, engine.dialect.name)
        raise
    finally:
        engine.dispose()

    elapsed = time.monotonic() - started
    if rows == 0:
        log.warning("The query returned no rows; wrote an empty Parquet file with columns %s", columns)
    log.info(
        "Extracted %d rows, %d columns, in %d batches in %.1fs to %s",
        rows,
        len(columns),
        batches,
        elapsed,
        target,
    )
    return {"artifacts": {ARTIFACT_NAME: str(target)}, "metrics": {"rows": rows, "batches": batches}}


def _connect(engine: Any, conn_id: str) -> Any:
    """Open a connection; a database that cannot be reached is an error naming the Airflow connection."""
    from sqlalchemy.exc import DBAPIError

    try:
        return engine.connect()
    except DBAPIError as exc:
        reason = str(exc.orig).strip() if exc.orig is not None else str(exc)
        raise DatabaseUnavailableError(
            f"cannot connect to the database of Airflow connection '{conn_id}' ({engine.dialect.name}): "
            f"{reason}"
        ) from exc


def _raise_with_connection(exc: Exception, conn_id: str, dialect: str) -> None:
    """Re-raise a driver error from the query as one that names the connection (others pass)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        reason = str(exc.orig).strip() if exc.orig is not None else str(exc)
        raise QueryFailedError(
            f"the query on Airflow connection '{conn_id}' ({dialect}) failed: {reason}; "
            "no data artifact was written"
        ) from exc


def _publish(partial: Any, target: Any) -> None:
    """Give the finished file its final name: a rename locally, a server-side move on object stores."""
    from airflow_mlpipe.artifacts import publish

    publish(partial, target)


def _remove_quietly(path: Any, log: Any) -> None:
    try:
        path.unlink(missing_ok=True)
    except Exception as exc:  # the original error matters more; the name still says "partial"
        log.warning("Could not delete the partial extract %s: %s", path, exc)


def _write_batches(
    result: Any, columns: list[str], sink: Any, config: Config, log: Any, started: float
) -> tuple[int, int]:
    """Write each fetched batch as one row group; return (rows, batches)."""
    import pyarrow.parquet as pq

    rows = batches = 0
    writer: pq.ParquetWriter | None = None
    try:
        for partition in result.partitions(config.batch_size):
            table = _to_table(partition, columns, config.column_types, writer.schema if writer else None)
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema, compression=config.compression)
            writer.write_table(table, row_group_size=config.batch_size)
            rows += table.num_rows
            batches += 1
            if batches % config.log_every_batches == 0:
                elapsed = time.monotonic() - started
                log.info(
                    "Extracted %d rows in %d batches (%.0f rows/s)",
                    rows,
                    batches,
                    rows / elapsed if elapsed else 0,
                )
        if writer is None:
            # No rows: still write a valid, empty file with the result's columns.
            empty = _to_table([], columns, config.column_types, None)
            writer = pq.ParquetWriter(sink, empty.schema, compression=config.compression)
            writer.write_table(empty)
    finally:
        if writer is not None:
            writer.close()
    return rows, batches


def _check_parameters(in_query: set[str], given: set[str]) -> None:
    missing = sorted(in_query - given)
    unused = sorted(given - in_query)
    if missing or unused:
        problems = []
        if missing:
            problems.append(f"the query uses :{', :'.join(missing)} but parameters has no value for it")
        if unused:
            problems.append(f"parameters {', '.join(unused)} do not appear in the query as :name")
        raise ValueError("; ".join(problems))


def _engine(conn_id: str) -> Any:
    """The SQLAlchemy engine of an Airflow connection, obtained the common.sql way."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()
    if not isinstance(hook, DbApiHook):
        raise TypeError(
            f"connection '{conn_id}' gives a {type(hook).__name__}, not a SQL (DbApiHook) hook; "
            "use a connection type of the common.sql family (sqlite, postgres, mysql...)"
        )
    return hook.get_sqlalchemy_engine()


def _to_table(
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
