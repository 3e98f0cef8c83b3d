"""OpenLineage datasets and facets of a stage, built from what its operator kept (no Airflow run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlpipe.contract import StageOutputs
from airflow_mlpipe.pipeline_run import PipelineRef, StageResult


@pytest.fixture(autouse=True)
def _openlineage(openlineage_provider: None) -> None:
    """Every test here needs the provider."""


PIPELINE = PipelineRef(
    name="recommender_training", version="3.2.1", config_version="cfg-1a2b", environment="test", sources=()
)


def as_json(value) -> dict:
    from openlineage.client.serde import Serde

    return json.loads(Serde.to_json(value))


@pytest.mark.parametrize(
    ("uri", "namespace", "name"),
    [
        ("s3://models/acme/recommender/1/model.npz", "s3://models", "acme/recommender/1/model.npz"),
        # ObjectStoragePath's form naming an Airflow connection: the connection is no part of the name
        (
            "s3://aws_default@mlpipe-artifacts/runs/x/data.parquet",
            "s3://mlpipe-artifacts",
            "runs/x/data.parquet",
        ),
        ("gs://bucket/a/b", "gs://bucket", "a/b"),
        ("file:///tmp/mlpipe/run/extract/1/data.parquet", "file", "/tmp/mlpipe/run/extract/1/data.parquet"),
        ("/tmp/mlpipe/out.txt", "file", "/tmp/mlpipe/out.txt"),
        ("file://worker-3/srv/data/x.parquet", "file://worker-3", "/srv/data/x.parquet"),
    ],
)
def test_artifact_uris_are_named_by_openlineage_conventions(uri, namespace, name):
    from airflow_mlpipe.lineage import artifact_dataset_name

    assert artifact_dataset_name(uri) == (namespace, name)


def test_artifacts_are_named_as_airflow_names_the_same_file_asset():
    # A lineage backend joins our artifacts with other tasks' Assets only if both get one name.
    from airflow.providers.common.io.assets.file import convert_asset_to_openlineage
    from airflow.sdk import Asset

    from airflow_mlpipe.lineage import artifact_dataset_name

    uri = "file:///tmp/mlpipe/run/extract/1/data.parquet"
    theirs = convert_asset_to_openlineage(Asset(uri), None)
    assert artifact_dataset_name(uri) == (theirs.namespace, theirs.name)


def test_postgres_query_tables_are_named_db_schema_table_in_the_servers_namespace():
    from airflow.providers.openlineage.sqlparser import DatabaseInfo

    from airflow_mlpipe.lineage import query_tables

    info = DatabaseInfo(scheme="postgres", authority="db.example.com:5432", database="analytics")
    lineage = query_tables(
        "SELECT e.*, u.country FROM user_events e JOIN crm.users u ON u.id = e.user_id "
        "WHERE e.date > :cutoff",
        info,
        dialect="postgres",
        default_schema="public",
    )

    assert sorted((d.namespace, d.name) for d in lineage.inputs) == [
        ("postgres://db.example.com:5432", "analytics.crm.users"),
        ("postgres://db.example.com:5432", "analytics.public.user_events"),
    ]
    assert lineage.outputs == []  # a SELECT writes no table
    assert "date > :cutoff" in lineage.job_facets["sql"].query


def test_unparseable_query_has_no_tables_and_says_why():
    from airflow.providers.openlineage.sqlparser import DatabaseInfo

    from airflow_mlpipe.lineage import query_tables

    lineage = query_tables("SELEC * FROM nowhere", DatabaseInfo(scheme="postgres", authority="h:5432"))

    assert lineage.inputs == []
    assert lineage.run_facets["extractionError"].failedTasks == 1


def test_a_sqlite_connection_is_a_namespace_of_its_file():
    from airflow_mlpipe.lineage import connection_database_info, query_tables

    info = connection_database_info("sqlite", "/data/analytics.db", None, None)
    lineage = query_tables("SELECT * FROM user_events", info, default_schema="main")

    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("sqlite:///data/analytics.db", "main.user_events")
    ]
    # Airflow reads sqlite:////data/analytics.db as the schema '/data/analytics.db'
    assert (
        connection_database_info("sqlite", "", None, "/data/analytics.db").authority == "/data/analytics.db"
    )
    assert connection_database_info("mysql", "db", 3306, "shop").authority == "db:3306"


def test_database_sources_fall_back_to_the_connection_when_the_query_cannot_be_parsed(monkeypatch, tmp_path):
    from airflow_mlpipe.lineage import database_sources

    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_DB", f"sqlite:///{tmp_path}/a.db")

    parsed = database_sources({"conn_id": "lineage_db", "query": "SELECT id FROM items"})
    unparsed = database_sources({"conn_id": "lineage_db", "query": "PRAGMA table_info(items)"})

    assert [(d.namespace, d.name) for d in parsed.inputs] == [(f"sqlite://{tmp_path}/a.db", "main.items")]
    assert [(d.namespace, d.name) for d in unparsed.inputs] == [(f"sqlite://{tmp_path}/a.db", "lineage_db")]


@pytest.mark.postgres
def test_a_postgres_extract_reads_tables_named_by_the_servers_address_and_database(monkeypatch):
    # The hook's own OpenLineage support names them; its default schema comes from the server.
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is unreachable ({exc}); CI must provide it")
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is unreachable ({exc})")
    from airflow_mlpipe.lineage import database_sources

    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_PG", "postgresql://postgres@127.0.0.1:5432/test")

    lineage = database_sources(
        {
            "conn_id": "lineage_pg",
            "query": "SELECT e.* FROM user_events e JOIN crm.users u ON u.id = e.user_id WHERE e.d > :cutoff",
        }
    )

    assert sorted((d.namespace, d.name) for d in lineage.inputs) == [
        ("postgres://127.0.0.1:5432", "test.crm.users"),
        ("postgres://127.0.0.1:5432", "test.public.user_events"),
    ]


def test_stage_lineage_carries_upstream_artifacts_outputs_with_digests_and_the_pipeline():
    from airflow_mlpipe.lineage import stage_lineage

    inputs = {
        "extract": StageOutputs(
            {"data": "file:///r/extract/1/data.parquet"}, {"rows": 3}, {"data": "sha256:aaa"}
        ),
        "split": StageOutputs({"test": "s3://b/split/test.parquet"}),  # no digest: no version
    }
    result = StageResult(
        artifacts={"features": "file:///r/features/1/features.parquet"},
        metrics={"users": 2},
        digests={"features": "sha256:fff"},
        fingerprint="fp-1",
        cached_from="manual__earlier",
    )

    event = as_json(stage_lineage(PIPELINE, "features", "features.user_engagement", inputs, result))

    by_name = {d["name"]: d for d in event["inputs"]}
    assert set(by_name) == {"/r/extract/1/data.parquet", "split/test.parquet"}
    assert by_name["/r/extract/1/data.parquet"]["facets"]["version"]["datasetVersion"] == "sha256:aaa"
    assert by_name["/r/extract/1/data.parquet"]["facets"]["mlpipe_artifact"]["stage"] == "extract"
    assert "version" not in by_name["split/test.parquet"]["facets"]
    [output] = event["outputs"]
    assert (output["namespace"], output["name"]) == ("file", "/r/features/1/features.parquet")
    assert output["facets"]["version"]["datasetVersion"] == "sha256:fff"
    artifact_facet = output["facets"]["mlpipe_artifact"]
    assert {key: artifact_facet[key] for key in artifact_facet if not key.startswith("_")} == {
        "stage": "features",
        "artifact": "features",
        "uri": "file:///r/features/1/features.parquet",
        "digest": "sha256:fff",
    }
    facet = event["run_facets"]["mlpipe"]
    assert {key: facet[key] for key in facet if not key.startswith("_")} == {
        "pipeline": "recommender_training",
        "pipelineVersion": "3.2.1",
        "configVersion": "cfg-1a2b",
        "environment": "test",
        "stage": "features",
        "component": "features.user_engagement",
        "fingerprint": "fp-1",
        "cacheHit": True,
        "cachedFrom": "manual__earlier",
    }


def test_before_the_stage_ran_only_the_pipeline_is_known():
    from airflow_mlpipe.lineage import stage_lineage

    lineage = stage_lineage(PIPELINE, "extract", "data.extract.database")

    assert lineage.inputs == [] and lineage.outputs == []
    assert lineage.run_facets["mlpipe"].fingerprint is None


def test_a_source_that_cannot_be_looked_up_still_gives_the_stages_artifacts(caplog):
    import logging

    from airflow_mlpipe.lineage import stage_lineage

    result = StageResult(
        artifacts={"data": "/r/data.parquet"}, config={"conn_id": "nope", "query": "SELECT 1"}
    )
    lineage = stage_lineage(PIPELINE, "extract", "data.extract.database", {}, result, logging.getLogger("t"))

    assert [d.name for d in lineage.outputs] == ["/r/data.parquet"]
    assert "no source datasets for stage 'extract'" in caplog.text


def test_nothing_of_openlineage_is_imported_when_dags_are_built(tmp_path: Path):
    # The listener imports our lineage module when OpenLineage is on; parsing never does.
    spec = tmp_path / "specs"
    spec.mkdir()
    (spec / "tiny.yaml").write_text(
        "name: tiny\nversion: 1.0.0\nmetadata: {owner: t, schedule: null}\n"
        "stages:\n  - name: extract\n    component: data.extract.database\n"
        "    config: {query: 'SELECT 1', conn_id: db}\n"
    )
    code = (
        "import sys\n"
        "from airflow_mlpipe.factory import build_dags\n"
        f"dags = build_dags({str(spec)!r})\n"
        "assert 'tiny' in dags, dags\n"
        # Airflow's providers manager reads every provider's get_provider_info; that is all.
        "metadata = {'airflow.providers.openlineage', 'airflow.providers.openlineage.get_provider_info'}\n"
        "loaded = sorted(m for m in sys.modules\n"
        "    if ('openlineage' in m and m not in metadata) or m == 'airflow_mlpipe.lineage')\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
