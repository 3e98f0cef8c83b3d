"""data.extract.database on PostgreSQL: the binary COPY path, against the real server on loopback.

Hostile parameter values, every setting of the Airflow connection (password, database, login,
options, application_name, sslmode), the PostgreSQL -> Parquet types, and failures half-way.
The password test starts a private PostgreSQL with password authentication (the shared server
trusts every local connection, so it would accept any password).
"""

from __future__ import annotations

import datetime
import decimal
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlpipe.components.data.extract import _postgres, database

pytestmark = pytest.mark.postgres

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
# Quotes, a backslash, a space and a non-ASCII letter: the connection string must quote them.
PASSWORD = "right pw'\\é"
PG_BIN = Path("/usr/lib/postgresql")


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must provide it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pg() -> str:
    """The shared PostgreSQL server (database ``test``), or a skip (a failure when CI=true)."""
    import psycopg

    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError as exc:
        _skip_or_fail(f"the postgres extra (adbc-driver-postgresql) is not installed: {exc}")
    try:
        psycopg.connect(DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        _skip_or_fail(f"PostgreSQL on 127.0.0.1:5432 (database 'test') is unreachable: {exc}")
    return DSN


@pytest.fixture
def scratch(pg):
    """A fresh schema on the shared server; yields (run_sql, schema) and drops it afterwards."""
    import psycopg

    schema = f"mlpipe_extract_{uuid.uuid4().hex[:10]}"
    connection = psycopg.connect(pg, autocommit=True)
    connection.execute(f"CREATE SCHEMA {schema}")

    def run_sql(sql: str, params=None):
        return connection.execute(sql, params)

    try:
        yield run_sql, schema
    finally:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")
        connection.close()


def _uri(**query: str) -> str:
    base = "postgresql://postgres@127.0.0.1:5432/test"
    return f"{base}?{urllib.parse.urlencode(query)}" if query else base


def _read(uri: str) -> pa.Table:
    from airflow.sdk import ObjectStoragePath

    return pq.read_table(ObjectStoragePath(uri).open("rb"))


def _extract(make_context, monkeypatch, query: str, uri: str | None = None, **fields):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", uri or _uri())
    config = database.Config(query=query, conn_id="warehouse", **fields)
    return database.run(config, make_context("extract", run_id=uuid.uuid4().hex))


def test_rows_stream_through_binary_copy_into_row_groups_of_batch_size(
    scratch, make_context, monkeypatch, caplog
):
    run_sql, schema = scratch
    run_sql(
        f"CREATE TABLE {schema}.events AS SELECT i AS user_id, i % 50 AS item_id, "
        "CASE WHEN i % 3 = 0 THEN 'view' ELSE 'click' END AS event_type, i * 0.5::float8 AS value, "
        "date '2024-01-01' + (i % 120) AS date FROM generate_series(0, 24999) AS i"
    )
    caplog.set_level("INFO", logger="tests.components.extract")

    result = _extract(
        make_context,
        monkeypatch,
        f"SELECT * FROM {schema}.events WHERE date > :cutoff AND event_type = :kind ORDER BY user_id",
        parameters={"cutoff": datetime.date(2024, 3, 1), "kind": "click"},
        batch_size=3_000,
        log_every_batches=2,
    )

    expected = [
        (i, i % 50, "click", i * 0.5, datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 120))
        for i in range(25_000)
        if i % 3 and datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 120) > datetime.date(2024, 3, 1)
    ]
    parquet = pq.ParquetFile(result["artifacts"]["data"].removeprefix("file://"))
    assert result["metrics"] == {"rows": len(expected), "batches": math.ceil(len(expected) / 3_000)}
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    assert sizes == [3_000] * (len(expected) // 3_000) + [len(expected) % 3_000]
    assert [tuple(row.values()) for row in parquet.read().to_pylist()] == expected
    assert "binary COPY through ADBC" in caplog.text
    assert "Extracted 6000 rows in 2 batches" in caplog.text  # progress lines stay



def test_the_driver_decodes_batches_of_about_batch_bytes(scratch, monkeypatch):
    # Small batches reach the writer early and keep memory low; the driver's default (16 MiB) held
    # 300k rows of the benchmark's table per batch.
    run_sql, schema = scratch
    run_sql(
        f"CREATE TABLE {schema}.wide AS SELECT i AS n, repeat('x', 100) AS pad "
        "FROM generate_series(1, 20000) AS i"
    )
    monkeypatch.setattr(_postgres, "BATCH_BYTES", 256 * 1024)

    table_schema, batches, close = _postgres.read_batches(DSN, f"SELECT n, pad FROM {schema}.wide", {})
    try:
        sizes = [batch.num_rows for batch in batches]
    finally:
        close()

    assert sum(sizes) == 20_000
    assert len(sizes) >= 5  # about 2.3 MB of COPY data in batches of about 256 kB
    assert table_schema.names == ["n", "pad"]

HOSTILE = [
    "x' OR '1'='1",
    "'; DROP TABLE victims; --",
    "back\\slash \\' and \\\\ two",
    "\\",
    "'",
    "''",
    '"double" quotes',
    "E'\\x41'",
    "$1 $$ $tag$ dollar $tag$",
    "%s %(kind)s %% percent",
    ":kind :: colons",
    "naïve café 日本語 🚀",
    "line\nbreak\ttab\rreturn",
    "",
    " ",
]


@pytest.mark.parametrize("standard_conforming_strings", ["on", "off"])
def test_hostile_parameter_values_round_trip_exactly(
    scratch, make_context, monkeypatch, standard_conforming_strings
):
    run_sql, schema = scratch
    run_sql(f"CREATE TABLE {schema}.victims (id integer, name text)")
    with_ids = [(i, value) for i, value in enumerate(HOSTILE)]
    for row in with_ids:
        run_sql(f"INSERT INTO {schema}.victims VALUES (%s, %s)", row)
    # With standard_conforming_strings off a backslash escapes in '...': the quoting has to follow
    # the session's setting, which the connection's options set for both connections.
    uri = _uri(options=f"-c standard_conforming_strings={standard_conforming_strings}")

    for i, value in with_ids:
        result = _extract(
            make_context,
            monkeypatch,
            f"SELECT :value AS echoed, id FROM {schema}.victims WHERE name = :value",
            uri=uri,
            parameters={"value": value},
        )
        assert _read(result["artifacts"]["data"]).to_pylist() == [{"echoed": value, "id": i}], value
    count = run_sql(f"SELECT count(*) FROM {schema}.victims").fetchone()
    assert count == (len(HOSTILE),)  # nothing was dropped


def test_parameters_of_every_type_are_compared_as_values(pg, make_context, monkeypatch):
    parameters = {
        "an_int": 2**40,
        "a_float": 0.1,
        "a_decimal": decimal.Decimal("12345678901234567890.123456789"),
        "a_bool": True,
        "a_date": datetime.date(2024, 2, 29),
        "a_time": datetime.time(23, 59, 58, 123456),
        "a_naive": datetime.datetime(2024, 2, 29, 12, 0, 1, 5),
        "an_aware": datetime.datetime(2024, 2, 29, 12, 0, tzinfo=datetime.timezone.utc),
        "nothing": None,
    }
    query = (
        "SELECT :an_int = 1099511627776 AS an_int, :a_float = 0.1::float8 AS a_float, "
        ":a_decimal = 12345678901234567890.123456789 AS a_decimal, :a_bool AS a_bool, "
        ":a_date = date '2024-02-29' AS a_date, :a_time = time '23:59:58.123456' AS a_time, "
        ":a_naive = timestamp '2024-02-29 12:00:01.000005' AS a_naive, "
        ":an_aware = timestamptz '2024-02-29 12:00:00+00' AS an_aware, "
        "CAST(:nothing AS text) IS NULL AS nothing"
    )
    result = _extract(make_context, monkeypatch, query, parameters=parameters)
    assert _read(result["artifacts"]["data"]).to_pylist() == [dict.fromkeys(parameters, True)]


def test_a_nul_character_in_a_parameter_is_a_clear_error(pg, make_context, monkeypatch):
    with pytest.raises(ValueError, match=r"parameter 'kind' contains a NUL character .* remove it"):
        _extract(make_context, monkeypatch, "SELECT :kind AS kind", parameters={"kind": "a\x00b"})


def test_the_connection_settings_reach_the_driver_that_runs_the_query(scratch, make_context, monkeypatch):
    run_sql, schema = scratch
    role = f"mlpipe_reader_{uuid.uuid4().hex[:8]}"
    run_sql(f"CREATE ROLE {role} LOGIN")
    run_sql(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    run_sql(f"CREATE TABLE {schema}.marker AS SELECT 'found through search_path' AS what")
    run_sql(f"GRANT SELECT ON {schema}.marker TO {role}")
    application = f"mlpipe-extract-test-{uuid.uuid4().hex[:6]}"
    extras = {"application_name": application, "options": f"-c search_path={schema} -c TimeZone=Asia/Tokyo"}
    uri = f"postgresql://{role}@127.0.0.1:5432/postgres?{urllib.parse.urlencode(extras)}"
    try:
        result = _extract(
            make_context,
            monkeypatch,
            "SELECT current_user AS login, current_database() AS db, inet_server_port() AS port, "
            "current_setting('application_name') AS app, current_setting('TimeZone') AS tz, "
            "(SELECT what FROM marker) AS what",
            uri=uri.replace("/postgres?", "/test?"),
        )
    finally:
        run_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
        run_sql(f"REVOKE USAGE ON SCHEMA {schema} FROM {role}")
        run_sql(f"DROP ROLE {role}")
    # The query ran on the connection that read the rows: the values are that session's own.
    assert _read(result["artifacts"]["data"]).to_pylist() == [
        {
            "login": role,
            "db": "test",
            "port": 5432,
            "app": application,
            "tz": "Asia/Tokyo",
            "what": "found through search_path",
        }
    ]


def test_the_database_named_by_the_connection_is_the_one_queried(pg, make_context, monkeypatch):
    result = _extract(
        make_context,
        monkeypatch,
        "SELECT current_database() AS db",
        uri="postgresql://postgres@127.0.0.1:5432/postgres",
    )
    assert _read(result["artifacts"]["data"]).column("db").to_pylist() == ["postgres"]


def test_sslmode_reaches_the_driver(pg, make_context, monkeypatch):
    import psycopg

    with psycopg.connect(pg) as connection:
        ssl = connection.execute("SHOW ssl").fetchone()[0]
    if ssl == "on":
        pytest.skip("the local server has SSL on, so sslmode=require cannot be told from prefer")
    with pytest.raises(database.DatabaseUnavailableError, match=r"'warehouse'.*does not support SSL"):
        _extract(make_context, monkeypatch, "SELECT 1 AS one", uri=_uri(sslmode="require"))
    # and it is in what the binary COPY connection gets too
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection("warehouse").get_hook()
    assert "sslmode=require" in _postgres.conninfo(hook)


@pytest.fixture(scope="module")
def password_server():
    """A private PostgreSQL on a free loopback port that requires the password ``PASSWORD``."""
    versions = sorted(PG_BIN.glob("*/bin/initdb")) if PG_BIN.exists() else []
    if not versions or shutil.which("runuser") is None or os.geteuid() != 0:
        _skip_or_fail("initdb, runuser and root are needed to start a private PostgreSQL server")
    bin_dir = versions[-1].parent
    # Not under pytest's temp root: the postgres user must be able to reach the folder.
    home = Path(tempfile.mkdtemp(prefix="mlpipe-pg-password-"))
    (home / "pw").write_text(PASSWORD + "\n")
    shutil.chown(home, "postgres")
    shutil.chown(home / "pw", "postgres")
    port = _free_port()

    def as_postgres(*command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)

    as_postgres(
        str(bin_dir / "initdb"), "-D", str(home / "data"), "-U", "postgres", "-A", "scram-sha-256",
        f"--pwfile={home / 'pw'}", "--no-sync", "--no-instructions",
    )  # fmt: skip
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    as_postgres(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(home / "data"),
        "-o",
        options,
        "-l",
        str(home / "log"),
        "-w",
        "start",
    )
    try:
        yield port
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(home / "data"), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_password_reaches_the_driver_and_a_wrong_one_is_a_clear_error(
    pg, password_server, make_context, monkeypatch
):
    base = f"127.0.0.1:{password_server}/postgres"
    result = _extract(
        make_context,
        monkeypatch,
        "SELECT current_user AS who",
        uri=f"postgresql://postgres:{urllib.parse.quote(PASSWORD, safe='')}@{base}",
    )
    assert _read(result["artifacts"]["data"]).to_pylist() == [{"who": "postgres"}]

    context = make_context("extract", run_id="wrong-password")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", f"postgresql://postgres:wrong-pw-42@{base}")
    with pytest.raises(database.DatabaseUnavailableError) as failure:
        database.run(database.Config(query="SELECT 1 AS one", conn_id="warehouse"), context)
    message = str(failure.value)
    assert "Airflow connection 'warehouse' (postgresql)" in message
    assert "password authentication failed" in message
    assert "wrong-pw-42" not in message
    assert list(context.artifact_dir.iterdir()) == []


# -- types ---------------------------------------------------------------------------------------


def test_postgres_types_become_the_documented_parquet_types(scratch, make_context, monkeypatch):
    run_sql, schema = scratch
    run_sql(
        f"CREATE TABLE {schema}.typed (small int2, whole int4, big int8, single float4, double float8, "
        "exact numeric(30, 9), name text, short varchar(5), padded char(4), raw bytea, day date, "
        "clock time, naive timestamp, instant timestamptz, document jsonb, plain_json json, id uuid, "
        "flag boolean, ints int4[], labels text[])"
    )
    run_sql(
        f"INSERT INTO {schema}.typed VALUES (1, 2, 3, 1.5, 2.25, 12345678901234567890.123456789, 'x', "
        "'', 'ab', '\\x00ff'::bytea, '2024-02-29', '12:34:56.789', '2024-02-29 12:00:00.000001', "
        "'2024-02-29 12:00:00+09', '{\"b\": [1, 2], \"a\": null}', '{\"a\":1}', "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, '{1,NULL,3}', '{\"\",NULL}')"
    )
    run_sql(f"INSERT INTO {schema}.typed DEFAULT VALUES")  # a row of NULLs
    uri = _uri(options="-c TimeZone=America/New_York")  # timestamptz must not depend on it

    result = _extract(make_context, monkeypatch, f"SELECT * FROM {schema}.typed ORDER BY small", uri=uri)
    table = _read(result["artifacts"]["data"])

    types = {field.name: str(field.type) for field in table.schema}
    assert types == {
        "small": "int16",
        "whole": "int32",
        "big": "int64",
        "single": "float",
        "double": "double",
        "exact": "string",
        "name": "string",
        "short": "string",
        "padded": "string",
        "raw": "binary",
        "day": "date32[day]",
        "clock": "time64[us]",
        "naive": "timestamp[us]",
        "instant": "timestamp[us, tz=UTC]",
        "document": "extension<arrow.json>",
        "plain_json": "extension<arrow.json>",
        "id": "extension<arrow.uuid>",
        "flag": "bool",
        "ints": "list<element: int32>",
        "labels": "list<element: string>",
    }
    first, nulls = table.to_pylist()
    assert first["exact"] == "12345678901234567890.123456789"
    assert first["name"] == "x" and first["short"] == "" and first["padded"] == "ab  "
    assert first["raw"] == b"\x00\xff"
    assert first["clock"] == datetime.time(12, 34, 56, 789000)
    assert first["naive"] == datetime.datetime(2024, 2, 29, 12, 0, 0, 1)
    assert first["instant"] == datetime.datetime(2024, 2, 29, 3, 0, tzinfo=datetime.timezone.utc)
    assert first["document"] == '{"a": null, "b": [1, 2]}'  # jsonb as the server prints it
    assert first["plain_json"] == '{"a":1}'
    assert first["id"] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert first["ints"] == [1, None, 3] and first["labels"] == ["", None]
    assert set(nulls.values()) == {None}
    # NULL and the empty string stay distinct
    assert table.column("short").to_pylist() == ["", None]
    assert table.column("short").null_count == 1


@pytest.mark.parametrize(
    ("expression", "pg_type", "hint"),
    [
        ("interval '1 day 2 hours'", "interval", 'EXTRACT(EPOCH FROM "Odd Name")'),
        ("inet '10.0.0.1'", "inet", '"Odd Name"::text'),
        ("point(1, 2)", "point", '"Odd Name"::text'),
    ],
)
def test_a_type_parquet_cannot_hold_is_an_error_naming_the_column_and_the_cast(
    pg, make_context, monkeypatch, expression, pg_type, hint
):
    context = make_context("extract")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", _uri())
    config = database.Config(query=f'SELECT 1 AS fine, {expression} AS "Odd Name"', conn_id="warehouse")
    with pytest.raises(_postgres.UnsupportedColumnTypeError) as failure:
        database.run(config, context)
    message = str(failure.value)
    assert f"column 'Odd Name' has PostgreSQL type {pg_type}" in message
    assert hint in message
    assert list(context.artifact_dir.iterdir()) == []
    # ...and the cast it suggests works
    cast = hint.replace('"Odd Name"', f"({expression})")
    fixed = config.model_copy(update={"query": f"SELECT 1 AS fine, {cast} AS x"})
    assert database.run(fixed, make_context("extract", run_id="fixed"))["metrics"]["rows"] == 1


def test_column_types_convert_a_postgres_column(pg, make_context, monkeypatch):
    result = _extract(
        make_context,
        monkeypatch,
        "SELECT i AS n, i::numeric / 4 AS q FROM generate_series(1, 3) AS i",
        column_types={"n": "int64", "q": "float64"},
    )
    table = _read(result["artifacts"]["data"])
    assert str(table.schema.field("n").type) == "int64"
    assert table.column("q").to_pylist() == [0.25, 0.5, 0.75]


def test_an_empty_result_keeps_the_server_types(pg, make_context, monkeypatch):
    result = _extract(make_context, monkeypatch, "SELECT 1::int4 AS a, 'x'::text AS b WHERE false")
    table = _read(result["artifacts"]["data"])
    assert result["metrics"] == {"rows": 0, "batches": 0}
    assert table.num_rows == 0 and [str(f.type) for f in table.schema] == ["int32", "string"]


def test_a_trailing_semicolon_or_comment_is_fine(pg, make_context, monkeypatch):
    for query in ("SELECT 1 AS one;", "SELECT 1 AS one -- the answer", "SELECT 1 AS one; \n"):
        assert _read(_extract(make_context, monkeypatch, query)["artifacts"]["data"]).num_rows == 1


# -- failures ------------------------------------------------------------------------------------


def test_a_query_failing_half_way_leaves_no_data_artifact(pg, make_context, monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", _uri())
    context = make_context("extract")
    # Division by zero at row 300,000 (about 30 MB in): after the first batches reached the writer.
    config = database.Config(
        query="SELECT i, repeat('x', 100) AS pad, 1 / (i - 300000) AS boom "
        "FROM generate_series(1, 400000) AS i",
        conn_id="warehouse",
        batch_size=10_000,
        log_every_batches=1,
    )
    caplog.set_level("INFO", logger="tests.components.extract")
    with pytest.raises(
        database.QueryFailedError, match=r"'warehouse' \(postgresql\) failed.*division by zero"
    ):
        database.run(config, context)
    assert re.search(r"Extracted [1-9]\d+ rows in \d+ batches", caplog.text)  # it failed after writing began
    assert list(context.artifact_dir.iterdir()) == []


def test_a_query_error_names_the_connection(pg, make_context, monkeypatch):
    with pytest.raises(database.QueryFailedError, match=r"'warehouse' \(postgresql\) failed.*no_such_table"):
        _extract(make_context, monkeypatch, "SELECT * FROM no_such_table")


def test_without_the_postgres_extra_the_error_says_what_to_install(pg, make_context, monkeypatch):
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql", None)  # as if not installed
    with pytest.raises(
        database.MissingDriverError, match=r"'warehouse'.*postgres.*airflow-mlpipe\[postgres\]"
    ):
        _extract(make_context, monkeypatch, "SELECT 1 AS one")


def test_conninfo_carries_every_libpq_setting_of_the_connection(monkeypatch):
    from airflow.sdk import BaseHook
    from psycopg.conninfo import conninfo_to_dict

    extras = {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/ca.pem",
        "application_name": "nightly extract",
        "options": "-c search_path=marts,public",
        "connect_timeout": 7,
        "cursor": "dictcursor",  # the hook's own setting, not libpq's
        "prepare_threshold": 5,  # psycopg's, not libpq's
    }
    password = urllib.parse.quote(PASSWORD, safe="")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE",
        f"postgresql://etl:{password}@db.internal:6543/analytics?{urllib.parse.urlencode(extras)}",
    )
    hook = BaseHook.get_connection("warehouse").get_hook()
    assert conninfo_to_dict(_postgres.conninfo(hook)) == {
        "host": "db.internal",
        "port": "6543",
        "dbname": "analytics",
        "user": "etl",
        "password": PASSWORD,
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/ca.pem",
        "application_name": "nightly extract",
        "options": "-c search_path=marts,public",
        "connect_timeout": "7",
    }
