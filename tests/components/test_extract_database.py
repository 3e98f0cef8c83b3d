"""data.extract.database: bind parameters, row groups, failures, on SQLite.

PostgreSQL and MariaDB have test files of their own (test_extract_postgres.py, test_extract_mariadb.py).
"""

from __future__ import annotations

import math
import os
import sqlite3
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from airflow_mlpipe.components.data.extract import database
from airflow_mlpipe.contract import ConfigDeprecationWarning
from airflow_mlpipe.testing import run_component


def _read(uri: str) -> pq.ParquetFile:
    from airflow.sdk import ObjectStoragePath

    return pq.ParquetFile(ObjectStoragePath(uri).open("rb"))


def _events_db(path: Path, rows: list[tuple]) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE user_events "
            "(user_id INTEGER, item_id INTEGER, event_type TEXT, value REAL, date TEXT)"
        )
        connection.executemany("INSERT INTO user_events VALUES (?, ?, ?, ?, ?)", rows)
    connection.close()
    return path


def test_sqlite_query_uses_named_bind_parameters(tmp_path, make_context, sqlite_connection, small_demo_db):
    sqlite_connection("analytics_db", small_demo_db)
    config = database.Config(
        query="SELECT * FROM user_events WHERE date > :cutoff AND event_type = :kind ORDER BY rowid",
        conn_id="analytics_db",
        parameters={"cutoff": "2024-05-15", "kind": "purchase"},
        batch_size=500,
    )
    result = database.run(config, make_context("extract"))

    with sqlite3.connect(small_demo_db) as direct:
        expected = direct.execute(
            "SELECT * FROM user_events WHERE date > ? AND event_type = ? ORDER BY rowid",
            ("2024-05-15", "purchase"),
        ).fetchall()
    table = _read(result["artifacts"]["data"]).read()
    assert 0 < len(expected) < 20_000  # the filter really filters
    assert result["metrics"]["rows"] == len(expected) == table.num_rows
    assert table.column_names == ["user_id", "item_id", "event_type", "value", "date"]
    assert [tuple(row.values()) for row in table.to_pylist()] == expected


def test_a_malicious_parameter_value_is_compared_as_data(tmp_path, make_context, sqlite_connection):
    injection = "x' OR '1'='1"
    db = _events_db(
        tmp_path / "events.db",
        [
            (1, 10, "view", 1.0, "2024-05-01"),
            (2, 20, injection, 2.0, "2024-05-02"),
            (3, 30, "click", 3.0, "2024-05-03"),
        ],
    )
    sqlite_connection("analytics_db", db)
    config = database.Config(
        query="SELECT user_id FROM user_events WHERE event_type = :kind",
        conn_id="analytics_db",
        parameters={"kind": injection},
    )
    result = database.run(config, make_context("extract"))

    # Formatted into the SQL, the value would match every row; bound, it matches only its equal.
    assert _read(result["artifacts"]["data"]).read().column("user_id").to_pylist() == [2]
    with sqlite3.connect(db) as direct:
        assert direct.execute("SELECT count(*) FROM user_events").fetchone() == (3,)


def test_rows_are_streamed_in_batches_one_row_group_each(tmp_path, make_context, sqlite_connection):
    rows = [(i, i % 17, "view", i / 10, f"2024-05-{1 + i % 28:02d}") for i in range(1_234)]
    sqlite_connection("analytics_db", _events_db(tmp_path / "events.db", rows))
    config = database.Config(
        query="SELECT * FROM user_events ORDER BY user_id", conn_id="analytics_db", batch_size=100
    )
    result = database.run(config, make_context("extract"))

    parquet = _read(result["artifacts"]["data"])
    assert parquet.metadata.num_row_groups == math.ceil(1_234 / 100) == result["metrics"]["batches"]
    assert [parquet.metadata.row_group(i).num_rows for i in range(13)] == [100] * 12 + [34]
    assert result["metrics"]["rows"] == 1_234
    assert [tuple(row.values()) for row in parquet.read().to_pylist()] == rows


def test_parameters_must_match_the_query_before_anything_runs(make_context):
    # The connection does not exist: the check has to fail before any connection is made.
    missing = database.Config(query="SELECT 1 WHERE 1 > :cutoff", conn_id="nowhere", parameters={})
    with pytest.raises(ValueError, match="no value for it"):
        database.run(missing, make_context("extract"))
    unused = database.Config(query="SELECT 1", conn_id="nowhere", parameters={"cutoff": "2024-01-01"})
    with pytest.raises(ValueError, match="do not appear in the query"):
        database.run(unused, make_context("extract"))


def test_an_empty_result_still_writes_a_readable_file(tmp_path, make_context, sqlite_connection):
    sqlite_connection("analytics_db", _events_db(tmp_path / "events.db", [(1, 1, "view", 1.0, "2024-05-01")]))
    config = database.Config(
        query="SELECT user_id, date FROM user_events WHERE date > :cutoff",
        conn_id="analytics_db",
        parameters={"cutoff": "2030-01-01"},
    )
    result = database.run(config, make_context("extract"))
    table = _read(result["artifacts"]["data"]).read()
    assert result["metrics"]["rows"] == 0
    assert table.num_rows == 0
    assert table.column_names == ["user_id", "date"]


def test_column_types_fix_what_the_first_batch_cannot_tell(tmp_path, make_context, sqlite_connection):
    rows = [(1, 1, "view", None, "2024-05-01"), (2, 2, "view", 2.5, "2024-05-02")]
    sqlite_connection("analytics_db", _events_db(tmp_path / "events.db", rows))
    query = "SELECT user_id, value FROM user_events ORDER BY user_id"

    untyped = database.Config(query=query, conn_id="analytics_db", batch_size=1)
    with pytest.raises(ValueError, match="column_types"):
        database.run(untyped, make_context("extract"))

    typed = database.Config(
        query=query, conn_id="analytics_db", batch_size=1, column_types={"value": "float64"}
    )
    table = _read(database.run(typed, make_context("extract"))["artifacts"]["data"]).read()
    assert str(table.schema.field("value").type) == "double"
    assert table.column("value").to_pylist() == [None, 2.5]


def test_config_rejects_unknown_fields_and_types():
    with pytest.raises(ValidationError, match="extra"):
        database.Config(query="SELECT 1", conn_id="db", batchsize=10)
    with pytest.raises(ValidationError, match="unknown Arrow types"):
        database.Config(query="SELECT 1", conn_id="db", column_types={"a": "float"})


def test_the_old_connection_field_still_works_and_warns(tmp_path, sqlite_connection):
    sqlite_connection("analytics_db", _events_db(tmp_path / "events.db", [(1, 1, "view", 1.0, "2024-05-01")]))

    with pytest.warns(ConfigDeprecationWarning) as caught:
        config = database.Config(query="SELECT * FROM user_events", connection="analytics_db")

    [warning] = caught
    assert str(warning.message) == "'connection' is deprecated; use 'conn_id'"
    assert warning.message.field == "connection"  # mlpipe validate points at this key's line
    assert config.conn_id == "analytics_db"
    assert "connection" not in config.model_dump()
    # ...and the stage runs as before (the runner validates the old spelling the same way).
    with pytest.warns(ConfigDeprecationWarning):
        outputs = run_component(
            "data.extract.database",
            {"query": "SELECT * FROM user_events", "connection": "analytics_db"},
            artifact_dir=tmp_path / "out",
        )
    assert outputs.metrics["rows"] == 1


def test_conn_id_and_the_old_connection_field_together_are_refused():
    with pytest.raises(ValidationError, match=r"both 'conn_id' and 'connection'.*remove 'connection'"):
        database.Config(query="SELECT 1", conn_id="a", connection="b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name alone warns about nothing
        assert database.Config(query="SELECT 1", conn_id="a").conn_id == "a"


def test_the_json_schema_accepts_either_name_and_marks_the_old_one_deprecated():
    import jsonschema

    schema = database.Config.model_json_schema()
    assert schema["properties"]["connection"]["deprecated"] is True
    jsonschema.validate({"query": "SELECT 1", "conn_id": "db"}, schema)
    jsonschema.validate({"query": "SELECT 1", "connection": "db"}, schema)
    for wrong in ({"query": "SELECT 1"}, {"query": "SELECT 1", "conn_id": "db", "connection": "db"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)


# -- fault injection: the database goes away or fails half-way ---------------------------------


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _leftovers(context) -> list[str]:
    return sorted(path.name for path in context.artifact_dir.iterdir())


def test_a_postgres_server_refusing_connections_fails_naming_the_connection(make_context, monkeypatch):
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the postgres extra is required on CI: {exc}")
        pytest.skip(f"the postgres extra (adbc-driver-postgresql) is not installed: {exc}")
    # A closed port: the driver gets "connection refused" straight away.
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DOWN", f"postgresql://etl:s3cret-pw@127.0.0.1:{_free_port()}/test"
    )
    context = make_context("extract")
    config = database.Config(query="SELECT * FROM user_events", conn_id="warehouse_down")

    with pytest.raises(database.DatabaseUnavailableError) as failure:
        database.run(config, context)

    message = str(failure.value)
    assert "Airflow connection 'warehouse_down'" in message
    assert "postgresql" in message and "refused" in message.lower()
    assert "s3cret-pw" not in message  # the password stays out of the task log
    assert _leftovers(context) == []  # nothing written, not even a partial file


def test_a_sqlite_file_in_a_missing_folder_fails_naming_the_connection(
    tmp_path, make_context, sqlite_connection
):
    missing = tmp_path / "no" / "such" / "folder" / "analytics.db"
    sqlite_connection("analytics_db", missing)
    context = make_context("extract")
    config = database.Config(query="SELECT * FROM user_events", conn_id="analytics_db")

    with pytest.raises(
        database.DatabaseUnavailableError, match="Airflow connection 'analytics_db' \\(sqlite\\)"
    ):
        database.run(config, context)

    assert _leftovers(context) == []
    assert not missing.parent.exists()  # and the extract did not create the database somewhere


def test_a_query_failing_half_way_leaves_no_data_artifact(tmp_path, make_context, sqlite_connection, caplog):
    rows = [(i, i, "view", 1.0, "2024-05-01") for i in range(1_000)]
    sqlite_connection("analytics_db", _events_db(tmp_path / "events.db", rows))
    # SQLite evaluates lazily (no ORDER BY, so nothing is sorted up front): abs() of the smallest
    # integer overflows only when row 700 is reached (the driver steps one row ahead, so while the
    # seventh batch is fetched), after six 100-row batches were written.
    config = database.Config(
        query=(
            "SELECT user_id, CASE WHEN user_id >= 700 THEN abs(-9223372036854775807 - 1) ELSE item_id END "
            "AS item_id FROM user_events"
        ),
        conn_id="analytics_db",
        batch_size=100,
        log_every_batches=1,
    )
    context = make_context("extract")
    caplog.set_level("INFO", logger="tests.components.extract")

    with pytest.raises(
        database.QueryFailedError, match=r"connection 'analytics_db' \(sqlite\) failed.*overflow"
    ):
        database.run(config, context)

    assert "Extracted 600 rows in 6 batches" in caplog.text  # it really failed half-way
    assert _leftovers(context) == []  # neither data.parquet nor the partial file


def test_a_failure_while_publishing_leaves_only_a_file_marked_partial(
    tmp_path, make_context, sqlite_connection, monkeypatch
):
    sqlite_connection("analytics_db", _events_db(tmp_path / "events.db", [(1, 1, "view", 1.0, "2024-05-01")]))

    def storage_gone(partial, target):
        raise OSError("storage unavailable")

    monkeypatch.setattr(database, "_publish", storage_gone)
    context = make_context("extract")
    with pytest.raises(OSError, match="storage unavailable"):
        database.run(database.Config(query="SELECT * FROM user_events", conn_id="analytics_db"), context)
    # Publishing failed after the file was complete: there is no data.parquet, nothing was
    # reported, and what is left says it is partial.
    assert _leftovers(context) == [database.PARTIAL_NAME]


def test_extract_into_an_object_store_publishes_only_the_finished_file(
    tmp_path, make_context, sqlite_connection, s3_bucket, s3_conn_id
):
    from airflow.sdk import ObjectStoragePath

    rows = [(i, i, "view", 1.0, "2024-05-01") for i in range(1_000)]
    sqlite_connection("analytics_db", _events_db(tmp_path / "events.db", rows))
    good = make_context("extract")
    good.artifact_dir = ObjectStoragePath(f"s3://{s3_bucket}/artifacts/good/extract", conn_id=s3_conn_id)
    config = database.Config(query="SELECT * FROM user_events", conn_id="analytics_db", batch_size=250)

    result = database.run(config, good)

    assert result["artifacts"]["data"] == f"s3://{s3_conn_id}@{s3_bucket}/artifacts/good/extract/data.parquet"
    assert _read(result["artifacts"]["data"]).metadata.num_rows == 1_000
    assert _leftovers(good) == [database.FILE_NAME]  # the partial object was moved, not copied

    failing = make_context("extract", run_id="failing")
    failing.artifact_dir = ObjectStoragePath(
        f"s3://{s3_bucket}/artifacts/failing/extract", conn_id=s3_conn_id
    )
    overflow = "CASE WHEN user_id >= 700 THEN abs(-9223372036854775807 - 1) ELSE item_id END"
    broken = config.model_copy(update={"query": f"SELECT user_id, {overflow} AS item_id FROM user_events"})
    with pytest.raises(database.QueryFailedError, match="overflow"):
        database.run(broken, failing)
    failing.artifact_dir.fs.invalidate_cache()
    assert not failing.artifact_dir.fs.exists(failing.artifact_dir.path + "/" + database.FILE_NAME)
    assert not failing.artifact_dir.fs.exists(failing.artifact_dir.path + "/" + database.PARTIAL_NAME)


def test_a_connection_type_without_its_provider_is_an_error_saying_what_to_install(make_context, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LEGACY_DB", "mlpipe-nowhere://user@db.example/legacy")
    config = database.Config(query="SELECT 1", conn_id="legacy_db")
    with pytest.raises(
        database.MissingDriverError,
        match=r"connection 'legacy_db' is of type 'mlpipe_nowhere'.*install the Airflow provider",
    ):
        database.run(config, make_context("extract"))


def test_the_missing_extra_for_mysql_is_named(monkeypatch):
    error = database._missing_driver("marts", "mysql", ImportError("No module named 'MySQLdb'"))
    assert "pip install 'airflow-mlpipe[mysql]'" in str(error)
