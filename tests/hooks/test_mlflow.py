"""The MLflow hooks against a real ``mlflow server`` on loopback, read back through its REST API."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_mlpipe.hooks import registry_hook
from airflow_mlpipe.hooks.mlflow import MlflowHook, MlflowRegistryHook, _batches
from airflow_mlpipe.record import ExecutionRecord
from airflow_mlpipe.tracking import track_run


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def model_name() -> str:
    return f"model_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def model_file(tmp_path: Path) -> str:
    path = tmp_path / "model.npz"
    path.write_bytes(b"not really a model")
    return f"file://{path}"


def provenance(run_id: str, recall: float) -> dict[str, object]:
    """What registry.register_model passes as a version's metadata."""
    return {
        "pipeline": "hook_tests",
        "pipeline_version": "1.0.0",
        "config_version": "abcdefabcdef",
        "environment": "dev",
        "git_commit": "unknown",
        "run_id": run_id,
        "stage": "register",
        "metrics": {"recall@10": recall, "threshold.recall@10": 0.2},
        "thresholds": {"recall@10": 0.2},
    }


def register(hook: MlflowRegistryHook, model_name: str, run_id: str, artifact: str, recall: float):
    claim = hook.claim_version(model_name, {"pipeline": "hook_tests", "run_id": run_id})
    if claim.complete:
        return claim, hook.read_metadata(model_name, claim.version)
    return claim, hook.write_version(model_name, claim, {"model": artifact}, provenance(run_id, recall))


def test_registrations_are_new_versions_and_the_alias_moves_only_when_promoted(
    mlflow_server, mlflow_api, model_name, model_file, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI", mlflow_server)
    hook = registry_hook(f"mlflow://{model_name}")  # chosen by the scheme, the server from the setting
    assert isinstance(hook, MlflowRegistryHook)

    _, first = register(hook, model_name, "run_1", model_file, recall=0.3)
    assert hook.promote(model_name, "production", first["version"]) is True
    _, second = register(hook, model_name, "run_2", model_file, recall=0.1)  # failed its thresholds

    assert (first["version"], second["version"]) == (1, 2)
    assert hook.list_versions(model_name) == [1, 2]
    alias = mlflow_api("GET", "registered-models/alias", name=model_name, alias="production")
    assert alias["model_version"]["version"] == "1"
    assert hook.read_alias(model_name, "production") == {
        "alias": "production",
        "version": 1,
        "uri": f"models:/{model_name}/1",
    }
    assert hook.read_alias(model_name, "staging") is None


def test_the_alias_never_moves_back_to_an_older_version(mlflow_server, model_name, model_file):
    hook = MlflowRegistryHook("mlflow://", tracking_uri=mlflow_server)
    _, first = register(hook, model_name, "run_a", model_file, recall=0.3)
    _, second = register(hook, model_name, "run_b", model_file, recall=0.3)
    assert hook.promote(model_name, "production", second["version"]) is True

    assert hook.promote(model_name, "production", first["version"]) is False  # a late retry of run_a
    assert hook.read_alias(model_name)["version"] == second["version"]


def test_a_retry_of_the_same_run_finds_its_version_instead_of_creating_another(
    mlflow_server, mlflow_api, model_name, model_file
):
    hook = MlflowRegistryHook(f"mlflow://{model_name}", tracking_uri=mlflow_server)
    claim, created = register(hook, model_name, "run_retried", model_file, recall=0.3)
    assert claim.complete is False

    retry, found = register(hook, model_name, "run_retried", model_file, recall=0.3)

    assert retry.complete is True and retry.version == created["version"] == 1
    versions = mlflow_api("GET", "model-versions/search", filter=f"name='{model_name}'")["model_versions"]
    assert len(versions) == 1
    # The version reads back with the file registry's metadata fields.
    for field in ("pipeline", "pipeline_version", "config_version", "environment", "git_commit", "run_id"):
        assert found[field] == provenance("run_retried", 0.3)[field], field
    assert found["metrics"] == {"recall@10": 0.3, "threshold.recall@10": 0.2}
    assert found["thresholds"] == {"recall@10": 0.2}
    assert found["artifacts"] == {"model": "model.npz"}
    assert found["uri"] == f"models:/{model_name}/1" and found["created_at"]


def test_everything_is_logged_in_as_few_batches_as_mlflows_limits_allow(mlflow_server, mlflow_api):
    hook = MlflowHook(mlflow_server)
    experiment_id = hook.experiment_id(f"batches_{uuid.uuid4().hex[:8]}")
    run_id = hook.pipeline_run(experiment_id, "manual__batches", {"mlpipe.run_id": "manual__batches"})
    params = {f"stage.p{i}": str(i) for i in range(250)}
    metrics = {f"stage.m{i}": float(i) for i in range(1200)}
    tags = {f"mlpipe.t{i}": str(i) for i in range(150)}

    calls = hook.log_batch(run_id, params=params, metrics=metrics, tags=tags)
    hook.end_run(run_id, "FINISHED")

    assert calls == 3  # at most 1,000 entities, 100 params and 100 tags per request
    run = mlflow_api("GET", "runs/get", run_id=run_id)["run"]
    assert len(run["data"]["params"]) == 250 and len(run["data"]["metrics"]) == 1200
    assert {tag["key"] for tag in run["data"]["tags"]} >= set(tags)
    assert run["info"]["status"] == "FINISHED"
    # The same key tags find the run again only while it is running.
    assert hook.pipeline_run(experiment_id, "manual__batches", {"mlpipe.run_id": "manual__batches"}) != run_id


def test_batches_respect_each_limit():
    batches = _batches(
        list(range(250)), list(range(1200)), list(range(150)), per_kind=(100, 1000, 100), total=1000
    )

    assert [(len(p), len(m), len(t)) for p, m, t in batches] == [(100, 900, 0), (100, 300, 100), (50, 0, 50)]
    assert _batches([], [], [], per_kind=(100, 1000, 100), total=1000) == [([], [], [])]


def test_an_unreachable_server_skips_tracking_within_seconds(mlflow_installed):
    record = ExecutionRecord.model_validate(
        {
            "pipeline": "p",
            "pipeline_version": "1.0.0",
            "config_version": "abcdefabcdef",
            "environment": "dev",
            "execution_id": "manual__x",
            "timestamp": datetime(2026, 12, 1, tzinfo=timezone.utc),
            "git_commit": "unknown",
            "triggered_by": "manual",
            "stages_completed": [],
            "stages_failed": [],
            "stages_skipped": [],
            "outputs": {},
            "stage_durations": {},
            "airflow_version": "3.3.2",
            "mlpipe_version": "0.0.0",
        }
    )
    uri = f"http://user:s3cret-pw@127.0.0.1:{closed_port()}"
    started = time.monotonic()

    import logging

    outcome = track_run(record, uri, "FINISHED", logging.getLogger("test"))

    assert time.monotonic() - started < 30
    assert outcome.status == "skipped" and outcome.run_id is None
    assert outcome.tracking_uri == uri.replace("user:s3cret-pw@", "")
    assert "s3cret-pw" not in (outcome.reason or "") and "127.0.0.1" in (outcome.reason or "")


def test_the_mlflow_registry_needs_a_tracking_server(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI", "")

    with pytest.raises(ValueError, match="mlflow_tracking_uri"):
        registry_hook("mlflow://recommender")


def test_the_ml_pipelines_page_reads_an_mlflow_registry_like_a_file_one(
    mlflow_server, model_name, model_file, monkeypatch
):
    from airflow_mlpipe.plugin.registry import read_registry
    from airflow_mlpipe.plugin.summaries import registry_locations

    monkeypatch.setenv("AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI", mlflow_server)
    hook = MlflowRegistryHook(f"mlflow://{model_name}")
    _, first = register(hook, model_name, "run_page_1", model_file, recall=0.3)
    hook.promote(model_name, "production", first["version"])
    register(hook, model_name, "run_page_2", model_file, recall=0.1)
    (location,) = registry_locations("hook_tests", [("register", {"registry": f"mlflow://{model_name}"})])

    shown = read_registry(location)

    assert shown["error"] is None, shown["error"]
    assert (shown["model_name"], shown["uri"]) == (model_name, f"mlflow://{model_name}")
    assert shown["alias_version"] == 1 and shown["total_versions"] == 2
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    assert shown["versions"][1]["run_id"] == "run_page_1"
    assert shown["versions"][1]["metrics"] == {"recall@10": 0.3, "threshold.recall@10": 0.2}
