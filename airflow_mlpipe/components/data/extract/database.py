"""Run a SQL query through an Airflow connection and stream its rows into one Parquet file.

Three paths, behind the same ``Config``:

* **PostgreSQL** (connection type ``postgres``): the server's binary ``COPY`` read by the ADBC
  driver straight into Arrow batches (``_postgres``), about the speed of ``psql \\copy``. The
  ``:name`` parameters are inlined as literals by psycopg's client-side binding
  (``ClientCursor.mogrify``, the driver's own quoting for this server), never by string
  formatting. Every setting of the Airflow connection (host, port, database, login, password,
  ``sslmode``, ``options``, ``application_name`` and the other extras) reaches the driver. What
  each PostgreSQL type becomes in Parquet is ``_postgres.POSTGRES_TYPES``; a type Parquet cannot
  hold (``interval``, ``inet``...) is an error naming the column and the SQL cast that fixes it.
  Needs the ``postgres`` extra.
* **SQLite** (connection type ``sqlite``, the embedded default): the ADBC SQLite driver steps
  through the result in C straight into Arrow batches (``_sqlite``), in about a third of the
  DB-API path's CPU time. Parameters are bound by the driver. A column whose values SQLite stored with
  different types (numbers and text, say) is an error naming the column and the CAST that fixes
  it, and leaves no data artifact. A config with ``column_types``, or a parameter that is a date
  or a decimal, takes the DB-API path instead, and the log says why.
* **Every other database** of the ``common.sql`` family (MySQL/MariaDB with the ``mysql``
  extra, ...), and SQLite where the driver cannot take the query: the hook's DB-API connection,
  ``fetchmany(batch_size)`` into Arrow columns (``_dbapi``), through a streaming cursor where the
  driver has one. Parameters are bound by the driver in its own ``paramstyle``.

On every path a value like ``x' OR '1'='1`` is compared as data, NULL and the empty string stay
distinct, and the rows go to a ``pyarrow`` ParquetWriter on a second thread through a bounded
queue (``_parquet``), so memory stays flat whatever the size of the result. Each row group holds
``batch_size`` rows; a progress line (rows, row groups, rows/s) is logged every
``log_every_batches`` row groups.

The file is written as ``.data.parquet.partial`` and renamed to ``data.parquet`` only once every
row is in it. If the database cannot be reached the stage fails with an error naming the Airflow
connection before anything is written; if the query fails half-way the partial file is deleted
(and would keep its ``.partial`` name if even that failed), so a truncated extract is never
reported as the stage's output. A connection type whose provider or driver is not installed is
an error naming the extra to install.

``conn_id`` used to be called ``connection``; that spelling still works and warns.

Artifacts: ``data`` (the Parquet file). Metrics: ``rows``, ``batches`` (row groups). Reads no
upstream artifacts. Overridable at trigger time: ``batch_size`` only (never the query, its
parameters or the connection).
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_mlpipe.contract import OVERRIDABLE, ConfigDeprecationWarning, Produces, Requires

if TYPE_CHECKING:
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
        description=(
            "Rows per Parquet row group (and per fetch on the DB-API path; PostgreSQL streams COPY)"
        ),
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

    from airflow_mlpipe.artifacts import open_for_writing
    from airflow_mlpipe.components.data.extract._parquet import write_stream

    _check_parameters(set(text(config.query).compile().params), set(config.parameters))

    connection, hook = _hook(config.conn_id)
    dialect = _dialect_name(connection, hook)
    open_result, path = _reader(connection, hook, config)
    target = context.artifact_dir / FILE_NAME
    partial = context.artifact_dir / PARTIAL_NAME
    log = context.log
    log.info(
        "Extracting from connection '%s' (%s, %s) in row groups of %d rows into %s",
        config.conn_id,
        dialect,
        path,
        config.batch_size,
        target,
    )
    started = time.monotonic()
    driver_errors: tuple[type[BaseException], ...] = ()
    try:
        with open_result(connection, hook, config) as (schema, batches, driver_errors):
            try:
                with open_for_writing(partial) as sink:
                    rows, batches_written = write_stream(
                        batches,
                        schema,
                        sink,
                        compression=config.compression,
                        batch_size=config.batch_size,
                        log=log,
                        log_every_batches=config.log_every_batches,
                        started=started,
                    )
            except BaseException:
                _remove_quietly(partial, log)
                raise
        _publish(partial, target)
    except driver_errors as exc:
        raise _query_failed(connection, dialect, exc) from exc

    elapsed = time.monotonic() - started
    columns = schema.names
    if rows == 0:
        log.warning("The query returned no rows; wrote an empty Parquet file with columns %s", columns)
    log.info(
        "Extracted %d rows, %d columns, in %d batches in %.1fs (%.0f rows/s) to %s",
        rows,
        len(columns),
        batches_written,
        elapsed,
        rows / elapsed if elapsed else 0,
        target,
    )
    return {"artifacts": {ARTIFACT_NAME: str(target)}, "metrics": {"rows": rows, "batches": batches_written}}


#: The Airflow connection type read through the binary COPY path.
POSTGRES_CONN_TYPE = "postgres"
#: The Airflow connection type read through the ADBC SQLite driver (unless ``_sqlite.dbapi_reason``).
SQLITE_CONN_TYPE = "sqlite"

#: The airflow-mlpipe extra that installs what a connection type needs.
EXTRA_FOR_CONN_TYPE = {"postgres": "postgres", "mysql": "mysql"}


class MissingDriverError(ImportError):
    """What a connection type needs (its Airflow provider or driver) is not installed."""


def _hook(conn_id: str) -> tuple[Any, Any]:
    """The Airflow connection and its SQL hook; a missing provider is an error naming the extra to install."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    try:
        hook = connection.get_hook()
    except ImportError as exc:
        raise _missing_driver(conn_id, str(connection.conn_type), exc) from exc
    except Exception as exc:
        if "Unknown hook type" not in str(exc):
            raise
        raise _missing_driver(conn_id, str(connection.conn_type), exc) from exc
    if not isinstance(hook, DbApiHook):
        raise TypeError(
            f"connection '{conn_id}' gives a {type(hook).__name__}, not a SQL (DbApiHook) hook; "
            "use a connection type of the common.sql family (sqlite, postgres, mysql...)"
        )
    return connection, hook


def _missing_driver(conn_id: str, conn_type: str, exc: BaseException) -> MissingDriverError:
    extra = EXTRA_FOR_CONN_TYPE.get(conn_type)
    fix = (
        f"pip install 'airflow-mlpipe[{extra}]'"
        if extra
        else f"install the Airflow provider for connection type '{conn_type}'"
    )
    return MissingDriverError(
        f"connection '{conn_id}' is of type '{conn_type}', but what it needs is not installed ({exc}); {fix}"
    )


def _reader(connection: Any, hook: Any, config: Config) -> tuple[Any, str]:
    """How this extract reads its rows (the ``_open_*`` context manager) and how to say so in the log."""
    if connection.conn_type == POSTGRES_CONN_TYPE:
        return _open_postgres, "binary COPY through ADBC"
    if connection.conn_type != SQLITE_CONN_TYPE:
        return _open_dbapi, "DB-API"
    import importlib.util

    from airflow_mlpipe.components.data.extract import _sqlite

    if importlib.util.find_spec("adbc_driver_sqlite") is None:
        return _open_dbapi, "DB-API: adbc-driver-sqlite is not installed"
    reason = _sqlite.dbapi_reason(_sqlite_connect_args(hook)[1], config)
    if reason is not None:
        return _open_dbapi, f"DB-API, because {reason}"
    return _open_sqlite, "columnar through the ADBC SQLite driver"


def _sqlite_connect_args(hook: Any) -> tuple[list[Any], dict[str, Any]]:
    """What SQLAlchemy's SQLite dialect passes to ``sqlite3.connect`` for the hook's URI."""
    # SqliteHook.get_conn turns sqlite:////abs/path into the invalid file://abs/path; its
    # SQLAlchemy URL is right, and a SQLite connection has no other setting to lose.
    from sqlalchemy.engine import make_url

    url = make_url(hook.get_uri())
    args, kwargs = url.get_dialect()().create_connect_args(url)
    return list(args), dict(kwargs)


def _dialect_name(connection: Any, hook: Any) -> str:
    try:
        return str(hook.dialect_name)
    except Exception:  # a hook without a SQLAlchemy URI: the connection type says enough
        return str(connection.conn_type)


def _connect(hook: Any, connection: Any, dialect: str) -> Any:
    """The hook's DB-API connection; a database that cannot be reached is an error naming the connection."""
    try:
        if connection.conn_type == SQLITE_CONN_TYPE:
            import sqlite3

            args, kwargs = _sqlite_connect_args(hook)
            connect: Any = sqlite3.connect  # the dialect's arguments are sqlite3.connect's
            return connect(*args, **kwargs)
        return hook.get_conn()
    except ImportError as exc:
        raise _missing_driver(connection.conn_id, connection.conn_type, exc) from exc
    except Exception as exc:
        raise _unavailable(connection, dialect, exc) from exc


def _unavailable(connection: Any, dialect: str, exc: BaseException) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(
        f"cannot connect to the database of Airflow connection '{connection.conn_id}' ({dialect}): "
        f"{_reason(exc, connection)}"
    )


def _query_failed(connection: Any, dialect: str, exc: BaseException) -> QueryFailedError:
    return QueryFailedError(
        f"the query on Airflow connection '{connection.conn_id}' ({dialect}) failed: "
        f"{_reason(exc, connection)}; no data artifact was written"
    )


def _reason(exc: BaseException, connection: Any) -> str:
    """The driver's message, one line per line it has, with the connection's password masked."""
    reason = str(exc).strip()
    if connection.password:
        reason = reason.replace(connection.password, "***")
    return reason


@contextlib.contextmanager
def _open_dbapi(connection: Any, hook: Any, config: Config) -> Iterator[tuple[Any, Any, Any]]:
    """Schema, batches and the driver's error classes of the query on the DB-API path."""
    from airflow_mlpipe.components.data.extract import _dbapi

    db = _connect(hook, connection, _dialect_name(connection, hook))
    errors = _driver_errors(db)
    try:
        try:
            sql, values = _dbapi.bind(config.query, config.parameters, _dbapi.driver_paramstyle(db))
            cursor = _dbapi.streaming_cursor(db)
            cursor.execute(sql, values)
            schema, batches = _dbapi.read_batches(cursor, config.batch_size, config.column_types)
        except errors as exc:
            raise _query_failed(connection, _dialect_name(connection, hook), exc) from exc
        yield schema, batches, errors
        cursor.close()
    finally:
        db.close()


@contextlib.contextmanager
def _open_sqlite(connection: Any, hook: Any, config: Config) -> Iterator[tuple[Any, Any, Any]]:
    """Schema, batches and the driver's error classes of the query through the ADBC SQLite driver."""
    import adbc_driver_manager

    from airflow_mlpipe.components.data.extract import _adbc, _sqlite

    args, _ = _sqlite_connect_args(hook)
    errors = (adbc_driver_manager.Error, _adbc.ResultStreamError)
    try:
        schema, batches, close = _sqlite.read_batches(
            str(args[0]), config.query, config.parameters, config.batch_size
        )
    except _sqlite.CannotOpenError as exc:
        raise _unavailable(connection, "sqlite", exc) from exc
    except errors as exc:
        raise _query_failed(connection, "sqlite", exc) from exc
    try:
        yield schema, batches, errors
    finally:
        close()


@contextlib.contextmanager
def _open_postgres(connection: Any, hook: Any, config: Config) -> Iterator[tuple[Any, Any, Any]]:
    """Schema, batches and the drivers' error classes of the query on the binary COPY path."""
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql  # noqa: F401  (checked here: its absence is a setup error)
        import psycopg

        from airflow_mlpipe.components.data.extract import _adbc, _postgres
    except ImportError as exc:
        raise _missing_driver(connection.conn_id, connection.conn_type, exc) from exc

    db = _connect(hook, connection, "postgresql")
    try:
        query = _postgres.literal_query(db, config.query, config.parameters)
    finally:
        db.close()
    errors = (adbc_driver_manager.Error, psycopg.Error, _adbc.ResultStreamError)
    try:
        schema, batches, close = _postgres.read_batches(_postgres.conninfo(hook), query, config.column_types)
    except adbc_driver_manager.OperationalError as exc:
        raise _unavailable(connection, "postgresql", exc) from exc
    except errors as exc:
        raise _query_failed(connection, "postgresql", exc) from exc
    try:
        yield schema, batches, errors
    finally:
        close()


def _driver_errors(db: Any) -> tuple[type[BaseException], ...]:
    """The DB-API ``Error`` class of the driver module that made ``db``."""
    import importlib

    module = importlib.import_module(type(db).__module__.split(".")[0])
    error = getattr(module, "Error", None)
    return (error,) if isinstance(error, type) and issubclass(error, BaseException) else ()


def _publish(partial: Any, target: Any) -> None:
    """Give the finished file its final name: a rename locally, a server-side move on object stores."""
    from airflow_mlpipe.artifacts import publish

    publish(partial, target)


def _remove_quietly(path: Any, log: Any) -> None:
    try:
        path.unlink(missing_ok=True)
    except Exception as exc:  # the original error matters more; the name still says "partial"
        log.warning("Could not delete the partial extract %s: %s", path, exc)


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
