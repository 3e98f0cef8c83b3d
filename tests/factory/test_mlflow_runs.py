"""MLflow tracking and the MLflow Model Registry in real runs (``airflow dags test``) against a
real ``mlflow server`` on loopback, read back through MLflow's REST API.

Two pipeline runs (module fixture) serve most tests: a passing one and a failing one, each of
which registers a model version. A third run points at a server that is not there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.airflow

SPEC = """\
name: tracked
version: 1.2.0
metadata:
  owner: ml-team
  schedule: null
stages:
  - name: prepare
    component: mlpipe_test_steps.steps
    config: {value: 3, label: "{{ ds }}"}
  - name: train
    component: mlpipe_test_steps.gated
    config:
      recall: 0.3
      threshold: 0.2
      hyperparameters: {factors: 16, regularization: {l2: 0.25}}
      api_token: tok-not-for-mlflow-123
      credentials: {password: hunter2-not-for-mlflow}
    dependencies: [prepare]
  - name: register
    component: registry.register_model
    config: {registry: "mlflow://tracked_model"}
    dependencies: [train]
"""
# The second run: below the threshold (registered, not promoted) and a stage that fails.
BROKEN = """\
stages:
  - name: train
    config: {recall: 0.1}
  - name: flaky
    component: mlpipe_test_steps.steps
    config: {fail: true}
    dependencies: [prepare]
"""
UNTRACKED_SECRETS = ("tok-not-for-mlflow-123", "hunter2-not-for-mlflow")
FIXTURE_PACKAGES = Path(__file__).parent / "fixture_pkg"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spec_folder(root: Path) -> Path:
    folder = root / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tracked.yaml").write_text(SPEC)
    (folder / "tracked.broken.yaml").write_text(BROKEN)
    return folder


@pytest.fixture(scope="module")
def tracked_runs(mlpipe_sandbox, mlflow_server, tmp_path_factory) -> dict[str, Any]:
    """The passing run (environment ``dev``) and the failing one (``broken``), tracked to MLflow."""
    specs = spec_folder(tmp_path_factory.mktemp("tracked"))
    env = {
        "AIRFLOW__MLPIPE__COMPONENT_MODULES": "mlpipe_test_steps",
        "PYTHONPATH": os.pathsep.join([str(FIXTURE_PACKAGES), os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI": mlflow_server,
    }
    passing = mlpipe_sandbox.run(specs, "tracked", env=env)
    failing = mlpipe_sandbox.run(specs, "tracked", env={**env, "AIRFLOW__MLPIPE__ENVIRONMENT": "broken"})
    return {"passing": passing, "failing": failing}


def mlflow_run(mlflow_api, run_id: str) -> dict[str, Any]:
    """The one MLflow run named after the Airflow run id, in the pipeline's experiment."""
    experiment = mlflow_api("GET", "experiments/get-by-name", experiment_name="tracked")
    assert experiment is not None, "no experiment named after the pipeline"
    found = mlflow_api(
        "POST",
        "runs/search",
        json={
            "experiment_ids": [experiment["experiment"]["experiment_id"]],
            "filter": f"attributes.run_name = '{run_id}'",
        },
    )
    runs = found.get("runs", [])
    assert len(runs) == 1, runs
    return runs[0]


def as_dict(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {entry["key"]: entry["value"] for entry in entries}


def test_a_pipeline_run_is_one_mlflow_run_with_params_metrics_and_tags(tracked_runs, mlflow_api):
    run = tracked_runs["passing"]
    assert run.state == "success", run.output[-4000:]
    record = run.record

    logged = mlflow_run(mlflow_api, run.run_id)
    info, data = logged["info"], logged["data"]
    assert info["run_name"] == run.run_id
    assert info["status"] == "FINISHED"
    assert record["tracking"]["mlflow"]["status"] == "logged"
    assert record["tracking"]["mlflow"]["run_id"] == info["run_id"]
    assert record["tracking"]["mlflow"]["experiment_id"] == info["experiment_id"]
    assert record["tracking"]["mlflow"]["run_url"].endswith(f"/runs/{info['run_id']}")

    params = as_dict(data["params"])
    assert params["prepare.value"] == "3"
    assert len(params["prepare.label"]) == 10  # the rendered {{ ds }}
    assert params["train.hyperparameters.factors"] == "16"
    assert params["train.hyperparameters.regularization.l2"] == "0.25"  # nested keys joined with dots
    assert params["train.metrics"] == '["recall@10"]'
    assert params["register.registry"] == "mlflow://tracked_model"
    assert params["train.api_token"] == "***" and params["train.credentials.password"] == "***"
    everything = json.dumps(logged)
    assert not any(secret in everything for secret in UNTRACKED_SECRETS)

    metrics = as_dict(data["metrics"])
    assert metrics["train.recall_at_10"] == pytest.approx(0.3)  # '@' is not allowed in MLflow names
    assert metrics["train.all_metrics_passed"] == 1.0
    assert metrics["prepare.value"] == 3.0
    assert metrics["register.version"] == 1.0

    tags = as_dict(data["tags"])
    assert tags["mlpipe.pipeline_version"] == "1.2.0"
    assert tags["mlpipe.config_version"] == record["config_version"]
    assert tags["mlpipe.git_commit"] == record["git_commit"]
    assert tags["mlpipe.run_id"] == run.run_id
    assert tags["mlpipe.environment"] == "dev"
    assert tags["mlpipe.triggered_by"] == "manual"
    # Artifact URIs are recorded on the run.
    assert tags["mlpipe.artifact.train.model"] == record["outputs"]["train"]["artifacts"]["model"]
    assert tags["mlpipe.artifact.register.version"] == "models:/tracked_model/1"


def test_a_failed_pipeline_run_is_a_failed_mlflow_run(tracked_runs, mlflow_api):
    run = tracked_runs["failing"]
    assert run.state == "failed", run.output[-4000:]
    assert run.record["stages_failed"] == ["flaky"]

    logged = mlflow_run(mlflow_api, run.run_id)
    assert logged["info"]["status"] == "FAILED"
    assert as_dict(logged["data"]["tags"])["mlpipe.environment"] == "broken"
    assert run.record["tracking"]["mlflow"]["status"] == "logged"


def test_registrations_are_model_versions_and_only_a_passing_one_gets_the_alias(tracked_runs, mlflow_api):
    passing, failing = tracked_runs["passing"], tracked_runs["failing"]
    first_registration = passing.record["outputs"]["register"]["metrics"]
    second_registration = failing.record["outputs"]["register"]["metrics"]
    assert first_registration == {"version": 1.0, "promoted": 1.0, "reused": 0.0}
    assert second_registration == {"version": 2.0, "promoted": 0.0, "reused": 0.0}

    versions = mlflow_api("GET", "model-versions/search", filter="name='tracked_model'")["model_versions"]
    assert sorted(int(v["version"]) for v in versions) == [1, 2]
    alias = mlflow_api("GET", "registered-models/alias", name="tracked_model", alias="production")
    assert alias["model_version"]["version"] == "1"

    first = next(v for v in versions if v["version"] == "1")
    # The version belongs to the pipeline run's MLflow run, and carries the file registry's metadata.
    assert first["run_id"] == passing.record["tracking"]["mlflow"]["run_id"]
    tags = as_dict(first["tags"])
    assert tags["pipeline"] == "tracked" and tags["run_id"] == passing.run_id
    assert tags["pipeline_version"] == "1.2.0" and tags["environment"] == "dev"
    assert tags["config_version"] == passing.record["config_version"]
    assert json.loads(tags["metrics"])["recall@10"] == pytest.approx(0.3)
    assert json.loads(tags["thresholds"]) == {"recall@10": 0.2}
    # The model files are the version's artifacts (served by the tracking server).
    listed = mlflow_api("GET", "artifacts/list", run_id=first["run_id"], path="registry/tracked_model")
    assert {entry["path"].rsplit("/", 1)[-1] for entry in listed["files"]} == {"model.txt", "metadata.json"}


def test_an_unreachable_tracking_server_is_a_warning_and_the_run_succeeds_quickly(
    mlflow_installed, mlpipe_sandbox, tmp_path, subprocess_env
):
    specs = tmp_path / "specs"
    specs.mkdir()
    # No mlflow:// registry here: a registry that cannot be reached does fail its stage.
    (specs / "tracked.yaml").write_text(SPEC.split("  - name: register")[0])
    unreachable = f"http://127.0.0.1:{closed_port()}"

    run = mlpipe_sandbox.run(
        specs, "tracked", env={**subprocess_env, "AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI": unreachable}
    )

    assert run.state == "success", run.output[-4000:]
    outcome = run.record["tracking"]["mlflow"]
    assert outcome["status"] == "skipped"
    assert outcome["tracking_uri"] == unreachable
    assert "Connection refused" in outcome["reason"] or "Max retries" in outcome["reason"], outcome
    assert "MLflow tracking skipped" in run.output
    with mlpipe_sandbox._connect() as db:
        (duration,) = db.execute(
            "SELECT duration FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            ("tracked", run.run_id, "execution_record"),
        ).fetchone()
    # MLflow's own defaults (7 retries, exponential back-off) would take minutes.
    assert duration < 45, duration


OFF_CHECK = textwrap.dedent(
    """
    import json, sys
    from airflow_mlpipe.factory import build_dags

    dag = build_dags(sys.argv[1])["tracked"]
    task = dag.get_task("execution_record")

    class TaskInstance:
        dag_id, run_id, task_id, try_number = "tracked", "manual__off", "execution_record", 1
        def xcom_pull(self, task_ids, key="return_value", run_id=None):
            return None
        def xcom_push(self, key, value):
            pass
        def get_task_breadcrumbs(self, dag_id, run_id):
            stages = ("prepare", "train", "register")
            return [{"task_id": t, "state": "success", "duration": 1.0} for t in stages]

    class DagRun:
        conf, run_type, triggering_user_name, start_date = {}, "manual", None, None

    record = task.execute({"ti": TaskInstance(), "dag_run": DagRun(), "run_id": "manual__off"})
    loaded = sorted(name for name in sys.modules if name == "mlflow" or name.startswith("mlflow."))
    print(json.dumps({"tracking": record["tracking"], "loaded": loaded}))
    """
)


def test_with_tracking_off_nothing_of_mlflow_is_imported_by_parsing_or_the_record(tmp_path, subprocess_env):
    specs = spec_folder(tmp_path)  # names an mlflow:// registry, too
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(subprocess_env)
    env["AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI"] = ""

    result = subprocess.run(
        [sys.executable, "-c", OFF_CHECK, str(specs)], env=env, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr[-4000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"tracking": {}, "loaded": []}
