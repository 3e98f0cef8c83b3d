"""data.extract.database on SQLite through the ADBC driver: the same rows as the DB-API path, bound
parameters, and SQLite's per-value types either kept or refused with the CAST that fixes them.

Real SQLite files throughout; the DB-API path is the reference the columnar path is compared to.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from airflow_mlpipe.components.data.extract import database

if importlib.util.find_spec("adbc_driver_sqlite") is None and os.environ.get("CI") != "true":
    # A default-install dependency: only a venv from before it was added lacks it.
    pytest.skip("adbc-driver-sqlite is not installed (make install adds it)", allow_module_level=True)

ADBC = "columnar through the ADBC SQLite driver"
LOGGER = "tests.components.extract"


def _read(uri: str):
    from airflow.sdk import ObjectStoragePath

    return pq.ParquetFile(ObjectStoragePath(uri).open("rb")).read()


def _database(path: Path, ddl: str, rows: list[tuple]) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute(ddl)
        placeholders = ", ".join("?" * len(rows[0])) if rows else ""
        if rows:
            connection.executemany(f"INSERT INTO t VALUES ({placeholders})", rows)
    connection.close()
    return path


def _extract(make_context, caplog, **config):
    caplog.set_level("INFO", logger=LOGGER)
    context = make_context("extract")
    result = database.run(database.Config(conn_id="db", **config), context)
    return result, _read(result["artifacts"]["data"])


def _leftovers(context) -> list[str]:
    return sorted(path.name for path in context.artifact_dir.iterdir())


def test_the_columnar_path_writes_what_the_dbapi_path_writes(
    make_context, sqlite_connection, small_demo_db, caplog, monkeypatch
):
    sqlite_connection("db", small_demo_db)
    query = "SELECT * FROM user_events WHERE date > :cutoff ORDER BY rowid"
    config = {
        "query": query,
        "parameters": {"cutoff": "2024-05-01"},
        "batch_size": 700,
        "log_every_batches": 5,
    }
    result, columnar = _extract(make_context, caplog, **config)
    assert ADBC in caplog.text
    assert "Extracted 3500 rows in 5 batches" in caplog.text  # the progress line, per 5 row groups
    caplog.clear()

    # The same extract forced onto the DB-API path.
    monkeypatch.setattr(database, "_reader", lambda connection, hook, cfg: (database._open_dbapi, "DB-API"))
    dbapi_result, dbapi = _extract(make_context, caplog, **config)

    assert 0 < columnar.num_rows < 20_000
    assert columnar.schema.equals(dbapi.schema)
    assert columnar.equals(dbapi)
    assert result["metrics"] == dbapi_result["metrics"]


@pytest.mark.parametrize(
    "hostile",
    [
        "x' OR '1'='1",
        "'; DROP TABLE t; --",
        'quote " and \\ backslash',
        "nul\x00inside",
        "ünïcødé ✓ 𝄞",
        "",
    ],
)
def test_hostile_parameter_values_are_bound_as_data(
    tmp_path, make_context, sqlite_connection, caplog, hostile
):
    db = _database(
        tmp_path / "t.db",
        "CREATE TABLE t (id INTEGER, label TEXT)",
        [(1, "plain"), (2, hostile), (3, "other")],
    )
    sqlite_connection("db", db)
    _, table = _extract(
        make_context,
        caplog,
        query="SELECT id, label FROM t WHERE label = :label",
        parameters={"label": hostile},
    )
    assert ADBC in caplog.text
    assert table.to_pylist() == [{"id": 2, "label": hostile}]
    with sqlite3.connect(db) as direct:  # nothing was executed but the query
        assert direct.execute("SELECT count(*) FROM t").fetchone() == (3,)


def test_null_and_the_empty_string_stay_distinct(tmp_path, make_context, sqlite_connection, caplog):
    rows = [(1, "", 0.0, b""), (2, None, None, None), (3, "a", 1.5, b"\x00\xff")]
    sqlite_connection(
        "db", _database(tmp_path / "t.db", "CREATE TABLE t (id INTEGER, s TEXT, f REAL, b BLOB)", rows)
    )
    _, table = _extract(make_context, caplog, query="SELECT * FROM t ORDER BY id")
    assert ADBC in caplog.text
    assert [tuple(row.values()) for row in table.to_pylist()] == rows
    assert table.column("s").null_count == 1


def test_integers_and_reals_together_become_floats_as_on_the_dbapi_path(
    tmp_path, make_context, sqlite_connection, caplog
):
    sqlite_connection("db", _database(tmp_path / "t.db", "CREATE TABLE t (v)", [(1,), (2.5,), (None,)]))
    _, table = _extract(make_context, caplog, query="SELECT v FROM t ORDER BY rowid")
    assert str(table.schema.field("v").type) == "double"
    assert table.column("v").to_pylist() == [1.0, 2.5, None]


@pytest.mark.parametrize(
    ("rows", "batch_size", "found", "cast"),
    [
        # numbers and text in the first batch: the driver would have made them all text
        ([(1,), ("n/a",), (3.25,)], 10, "both text and", "TEXT"),
        # text first, a number in a later batch: the driver would have turned it into text
        ([("a",), ("b",), (7,)], 2, "both text and integer", "TEXT"),
        # integers first, a real later: the driver stops
        ([(1,), (2,), (2.5,)], 2, "int64 values in its first rows", "REAL"),
        # integers first, text later
        ([(1,), (2,), ("x",)], 2, "a text or blob value later", "INTEGER"),
        # a blob among text: the driver would have made the text bytes
        ([("a",), (b"\x01",)], 10, "both blob and text", "BLOB"),
    ],
)
def test_a_column_of_mixed_types_is_an_error_naming_it_and_the_cast(
    tmp_path, make_context, sqlite_connection, caplog, rows, batch_size, found, cast
):
    sqlite_connection("db", _database(tmp_path / "t.db", "CREATE TABLE t (mixed)", rows))
    caplog.set_level("INFO", logger=LOGGER)
    context = make_context("extract")
    config = database.Config(query="SELECT mixed FROM t ORDER BY rowid", conn_id="db", batch_size=batch_size)

    with pytest.raises(ValueError, match="column 'mixed' has") as raised:
        database.run(config, context)

    message = str(raised.value)
    assert found in message
    assert f'CAST("mixed" AS {cast})' in message
    assert _leftovers(context) == []  # no data artifact, not even a partial file


def test_the_cast_the_error_suggests_makes_the_extract_work(
    tmp_path, make_context, sqlite_connection, caplog
):
    sqlite_connection("db", _database(tmp_path / "t.db", "CREATE TABLE t (mixed)", [(1,), ("n/a",), (3.25,)]))
    _, table = _extract(
        make_context, caplog, query='SELECT CAST("mixed" AS TEXT) AS "mixed" FROM t ORDER BY rowid'
    )
    assert table.column("mixed").to_pylist() == ["1", "n/a", "3.25"]


def test_an_empty_result_writes_a_file_with_the_columns(tmp_path, make_context, sqlite_connection, caplog):
    sqlite_connection("db", _database(tmp_path / "t.db", "CREATE TABLE t (id INTEGER, s TEXT)", [(1, "a")]))
    result, table = _extract(
        make_context, caplog, query="SELECT id, s FROM t WHERE id > :n", parameters={"n": 5}
    )
    assert ADBC in caplog.text
    assert result["metrics"] == {"rows": 0, "batches": 0}
    assert table.num_rows == 0 and table.column_names == ["id", "s"]


def test_what_the_driver_cannot_take_goes_the_dbapi_way_and_says_why(
    tmp_path, make_context, sqlite_connection, caplog
):
    rows = [(1, "2024-05-01"), (2, "2024-06-01")]
    sqlite_connection("db", _database(tmp_path / "t.db", "CREATE TABLE t (id INTEGER, day TEXT)", rows))

    _, typed = _extract(make_context, caplog, query="SELECT id FROM t", column_types={"id": "float64"})
    assert "DB-API, because column_types is set" in caplog.text
    assert str(typed.schema.field("id").type) == "double"

    caplog.clear()
    _, dated = _extract(
        make_context,
        caplog,
        query="SELECT id FROM t WHERE day > :since",
        parameters={"since": datetime.date(2024, 5, 15)},
    )
    assert "DB-API, because parameter 'since' is a date" in caplog.text
    assert dated.column("id").to_pylist() == [2]


def test_a_failing_query_names_the_connection(tmp_path, make_context, sqlite_connection, caplog):
    sqlite_connection("db", _database(tmp_path / "t.db", "CREATE TABLE t (id INTEGER)", [(1,)]))
    context = make_context("extract")
    with pytest.raises(database.QueryFailedError, match=r"connection 'db' \(sqlite\) failed.*no such table"):
        database.run(database.Config(query="SELECT * FROM missing_table", conn_id="db"), context)
    assert _leftovers(context) == []
