"""data.extract.database on MariaDB (the DB-API path through the MySQL provider), on the real server.

Needs MariaDB on 127.0.0.1:3306 (root, no password, database ``test``) and the ``mysql`` extra;
without either the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import datetime
import decimal
import math
import os
import uuid

import pyarrow.parquet as pq
import pytest

from airflow_mlpipe.components.data.extract import database

URI = "mysql://root@127.0.0.1:3306/test"


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must provide it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def mariadb():
    """A DB-API connection to the local MariaDB's ``test`` database, or a skip."""
    try:
        import MySQLdb
        from airflow.providers.mysql.hooks.mysql import MySqlHook  # noqa: F401
    except ImportError as exc:
        _skip_or_fail(
            f"the mysql extra (apache-airflow-providers-mysql, mysqlclient) is not installed: {exc}"
        )
    try:
        connection = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", db="test", charset="utf8mb4")
    except MySQLdb.Error as exc:
        _skip_or_fail(f"MariaDB on 127.0.0.1:3306 (database 'test') is unreachable: {exc}")
    connection.autocommit(True)
    yield connection
    connection.close()


@pytest.fixture
def table(mariadb):
    """A fresh table name in ``test``, dropped afterwards."""
    name = f"mlpipe_extract_{uuid.uuid4().hex[:10]}"
    yield name
    with mariadb.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")


def _sql(connection, statement: str, rows=None) -> None:
    with connection.cursor() as cursor:
        if rows is None:
            cursor.execute(statement)
        else:
            cursor.executemany(statement, rows)


def _extract(make_context, monkeypatch, query: str, uri: str = URI, **fields):
    monkeypatch.setenv("AIRFLOW_CONN_MARTS", uri)
    config = database.Config(query=query, conn_id="marts", **fields)
    return database.run(config, make_context("extract", run_id=uuid.uuid4().hex))


def _read(result) -> pq.ParquetFile:
    return pq.ParquetFile(result["artifacts"]["data"].removeprefix("file://"))


def test_mariadb_rows_stream_in_batches_with_bind_parameters(
    mariadb, table, make_context, monkeypatch, caplog
):
    _sql(mariadb, f"CREATE TABLE {table} (user_id INT, event_type VARCHAR(20), value DOUBLE, day DATE)")
    rows = [
        (
            i,
            "click" if i % 3 else "view",
            i * 0.5,
            datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 90),
        )
        for i in range(2_345)
    ]
    _sql(mariadb, f"INSERT INTO {table} VALUES (%s, %s, %s, %s)", rows)
    caplog.set_level("INFO", logger="tests.components.extract")

    result = _extract(
        make_context,
        monkeypatch,
        f"SELECT * FROM {table} WHERE day > :cutoff AND event_type = :kind ORDER BY user_id",
        parameters={"cutoff": "2024-02-01", "kind": "click"},
        batch_size=400,
    )

    expected = [row for row in rows if row[3] > datetime.date(2024, 2, 1) and row[1] == "click"]
    parquet = _read(result)
    assert result["metrics"] == {"rows": len(expected), "batches": math.ceil(len(expected) / 400)}
    assert parquet.metadata.num_row_groups == math.ceil(len(expected) / 400)
    assert [tuple(row.values()) for row in parquet.read().to_pylist()] == expected
    assert "(mysql, DB-API)" in caplog.text


HOSTILE = [
    "x' OR '1'='1",
    "'; DROP TABLE victims; --",
    "back\\slash \\' and \\\\ two",
    "\\",
    "'",
    '"double" quotes',
    "%s %(kind)s %% percent",
    ":kind :: colons",
    "naïve café 日本語 🚀",
    "line\nbreak\ttab",
    "nul\x00inside",
    "",
]


def test_hostile_parameter_values_round_trip_exactly(mariadb, table, make_context, monkeypatch):
    _sql(mariadb, f"CREATE TABLE {table} (id INT, name VARCHAR(100)) CHARACTER SET utf8mb4")
    _sql(mariadb, f"INSERT INTO {table} VALUES (%s, %s)", list(enumerate(HOSTILE)))
    uri = f"{URI}?charset=utf8mb4"
    for i, value in enumerate(HOSTILE):
        result = _extract(
            make_context,
            monkeypatch,
            f"SELECT :value AS echoed, id FROM {table} WHERE name = BINARY :value",
            uri=uri,
            parameters={"value": value},
        )
        assert _read(result).read().to_pylist() == [{"echoed": value, "id": i}], value
    with mariadb.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone() == (len(HOSTILE),)


def test_mariadb_types_null_and_empty_string(mariadb, table, make_context, monkeypatch):
    _sql(
        mariadb,
        f"CREATE TABLE {table} (id INT, big BIGINT, price DECIMAL(12, 3), ratio DOUBLE, label VARCHAR(10), "
        "note TEXT, raw VARBINARY(8), day DATE, moment DATETIME(6), flag BOOLEAN)",
    )
    _sql(
        mariadb,
        f"INSERT INTO {table} VALUES (1, 9007199254740993, 1234.567, 0.25, '', 'ünï', x'00ff', "
        "'2024-02-29', '2024-02-29 12:00:00.000001', TRUE), "
        "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    result = _extract(
        make_context, monkeypatch, f"SELECT * FROM {table} ORDER BY id", uri=f"{URI}?charset=utf8mb4"
    )
    data = _read(result).read()
    first, nulls = data.to_pylist()
    assert first == {
        "id": 1,
        "big": 9007199254740993,
        "price": decimal.Decimal("1234.567"),
        "ratio": 0.25,
        "label": "",
        "note": "ünï",
        "raw": b"\x00\xff",
        "day": datetime.date(2024, 2, 29),
        "moment": datetime.datetime(2024, 2, 29, 12, 0, 0, 1),
        "flag": 1,
    }
    assert str(data.schema.field("price").type) == "decimal128(7, 3)"
    assert set(list(nulls.values())[1:]) == {None}
    assert data.column("label").to_pylist() == ["", None]  # NULL and '' stay distinct


def test_a_connection_extra_reaches_the_mariadb_driver(mariadb, make_context, monkeypatch):
    # The hook passes the charset extra to mysqlclient: the session reports it.
    result = _extract(
        make_context, monkeypatch, "SELECT @@character_set_client AS cs", uri=f"{URI}?charset=latin1"
    )
    assert _read(result).read().column("cs").to_pylist() == ["latin1"]


def test_a_wrong_mariadb_password_fails_naming_the_connection(mariadb, make_context, monkeypatch):
    user = f"mlpipe_{uuid.uuid4().hex[:8]}"
    _sql(mariadb, f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pw'")
    try:
        good = _extract(
            make_context,
            monkeypatch,
            "SELECT CURRENT_USER() AS who",
            uri=f"mysql://{user}:right-pw@127.0.0.1:3306/",
        )
        assert _read(good).read().column("who").to_pylist()[0].startswith(user)
        context = make_context("extract", run_id="wrong")
        monkeypatch.setenv("AIRFLOW_CONN_MARTS", f"mysql://{user}:wrong-pw-42@127.0.0.1:3306/")
        with pytest.raises(database.DatabaseUnavailableError) as failure:
            database.run(database.Config(query="SELECT 1 AS one", conn_id="marts"), context)
    finally:
        _sql(mariadb, f"DROP USER '{user}'@'%'")
    message = str(failure.value)
    assert "Airflow connection 'marts' (mysql)" in message and "Access denied" in message
    assert "wrong-pw-42" not in message
    assert list(context.artifact_dir.iterdir()) == []


def test_a_mariadb_query_error_names_the_connection(mariadb, make_context, monkeypatch):
    with pytest.raises(database.QueryFailedError, match=r"'marts' \(mysql\) failed.*no_such_table"):
        _extract(make_context, monkeypatch, "SELECT * FROM no_such_table")
