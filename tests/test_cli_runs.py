"""``mlpipe cache``, ``diff`` and ``replay`` against real runs in a throw-away Airflow home.

Runs are made with the real ``airflow dags test`` (``AirflowSandbox``); the CLI runs as a
subprocess with the sandbox's environment and reads Airflow's metadata database itself.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from airflow_mlpipe.demo_data import generate_user_events
from airflow_mlpipe.testing import AirflowSandbox

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[1]
FIXTURE_PACKAGES = REPO / "tests" / "factory" / "fixture_pkg"
STEPS_ENV = {
    "AIRFLOW__MLPIPE__COMPONENT_MODULES": "mlpipe_test_steps",
    "PYTHONPATH": os.pathsep.join([str(FIXTURE_PACKAGES), str(REPO), os.environ.get("PYTHONPATH", "")]),
}
PIPELINE = "cli_steps"
SPEC = """\
name: cli_steps
version: 1.0.0
metadata:
  owner: ml-team
  schedule: null
stages:
  - name: first
    component: mlpipe_test_steps.steps
    config: {value: 1, label: start}
    dependencies: []
    cache: true
  - name: second
    component: mlpipe_test_steps.steps
    config: {value: 2}
    dependencies: [first]
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AirflowSandbox:
    return AirflowSandbox(tmp_path_factory.mktemp("cli-runs")).setup()


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-specs")
    (folder / f"{PIPELINE}.yaml").write_text(SPEC)
    return folder


@pytest.fixture(scope="module")
def runs(sandbox: AirflowSandbox, specs: Path) -> dict[str, Any]:
    """Two runs of the small pipeline: defaults, then ``second.value`` overridden to 5."""
    plain = sandbox.run(specs, PIPELINE, env=STEPS_ENV)
    assert plain.state == "success", plain.output[-4000:]
    overridden = sandbox.run(specs, PIPELINE, conf={"overrides": {"second": {"value": 5}}}, env=STEPS_ENV)
    assert overridden.state == "success", overridden.output[-4000:]
    return {"plain": plain, "overridden": overridden, "dags": sandbox.dags_folder(specs)}


def mlpipe(
    sandbox: AirflowSandbox, dags_folder: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = sandbox.environment(dags_folder, **{**STEPS_ENV, **dict(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "airflow_mlpipe.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("mlpipe: ")]


def test_diff_names_the_changed_config_key_and_the_metric_delta(sandbox, runs):
    a, b = runs["plain"].run_id, runs["overridden"].run_id

    text = mlpipe(sandbox, runs["dags"], "diff", PIPELINE, a, b)

    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "stage second: differs" in out
    assert "config value: 2 -> 5" in out
    assert "metric value: 2.0 -> 5.0 (+3)" in out
    assert "artifact out: digests differ" in out
    # The first stage is cached in the second run (cache: true and the same fingerprint).
    assert f"stage first: same  (A: recomputed; B: cached from {a})" in out

    as_json = mlpipe(sandbox, runs["dags"], "diff", PIPELINE, a, b, "--format", "json")

    assert as_json.returncode == 0, as_json.stderr
    comparison = json.loads(as_json.stdout)
    assert comparison["runs"] == [a, b]
    second = next(entry for entry in comparison["stages"] if entry["stage"] == "second")
    assert second["config"] == [{"key": "value", "a": 2, "b": 5}]
    assert [(m["name"], m["delta"]) for m in second["metrics"]] == [("value", 3.0)]
    assert comparison["same"] is False


def test_unknown_run_or_pipeline_is_a_one_line_error_with_exit_two(sandbox, runs):
    a = runs["plain"].run_id
    typo = a[:-1] + ("x" if a[-1] != "x" else "y")

    result = mlpipe(sandbox, runs["dags"], "diff", PIPELINE, a, typo)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert error_lines(result) == [
        f"mlpipe: pipeline '{PIPELINE}' has no run '{typo}'; did you mean '{a}'?",
    ]

    result = mlpipe(sandbox, runs["dags"], "replay", "cli_stepz", a)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert error_lines(result) == [
        "mlpipe: unknown pipeline 'cli_stepz': Airflow's metadata database has no DAG of that id; "
        f"did you mean '{PIPELINE}'?"
    ]


def test_a_missing_metadata_database_is_a_one_line_error_with_exit_two(sandbox, runs, tmp_path):
    missing = tmp_path / "no-such-folder" / "airflow.db"

    result = mlpipe(
        sandbox,
        runs["dags"],
        "diff",
        PIPELINE,
        "a",
        "b",
        env={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{missing}"},
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert line.startswith(f"mlpipe: cannot read Airflow's metadata database (sqlite:///{missing})")


def test_cache_list_shows_the_cached_stage_and_clear_removes_it(sandbox, runs):
    listed = mlpipe(sandbox, runs["dags"], "cache", "list", PIPELINE, "--format", "json")

    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [(e["stage"], e["run_id"]) for e in entries] == [("first", runs["plain"].run_id)]
    assert entries[0]["fingerprint"] == runs["plain"].record["fingerprints"]["first"]
    assert entries[0]["outputs"]["artifacts"] == runs["plain"].record["outputs"]["first"]["artifacts"]

    text = mlpipe(sandbox, runs["dags"], "cache", "list", PIPELINE)

    assert text.returncode == 0, text.stderr
    header, row = text.stdout.splitlines()
    assert header.split()[:3] == ["stage", "fingerprint", "run"]
    assert row.split()[:3] == ["first", entries[0]["fingerprint"][:12], runs["plain"].run_id]
    assert f"out={entries[0]['outputs']['artifacts']['out']}" in row

    cleared = mlpipe(sandbox, runs["dags"], "cache", "clear", PIPELINE, "--stage", "first")

    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.strip() == f"removed 1 cache entry of stage 'first' of pipeline '{PIPELINE}'"
    after = mlpipe(sandbox, runs["dags"], "cache", "list", PIPELINE, "--format", "json")
    assert json.loads(after.stdout) == []
    # The artifacts stay where the run wrote them.
    assert Path(entries[0]["outputs"]["artifacts"]["out"].removeprefix("file://")).is_file()


def test_replay_local_reproduces_the_run_with_its_overrides(sandbox, runs):
    original = runs["overridden"]

    result = mlpipe(sandbox, runs["dags"], "replay", PIPELINE, original.run_id, "--local")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "replay_matches: true" in result.stdout
    new_run_id = next(
        line.split()[2] for line in result.stdout.splitlines() if line.startswith("replay run: ")
    )
    assert new_run_id != original.run_id
    record = sandbox.xcom(PIPELINE, new_run_id, "execution_record")
    assert record["replay_of"] == original.run_id
    assert record["replay_matches"] is True
    assert record["replay_differences"] == {}
    assert record["overrides"] == {"second": {"value": 5}}
    assert record["outputs"]["second"]["metrics"]["value"] == 5.0
    assert record["stages_cached"] == []  # a replay recomputes every stage


def test_replay_refuses_a_changed_spec_unless_allowed(sandbox, runs, tmp_path):
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / f"{PIPELINE}.yaml").write_text(SPEC.replace("label: start", "label: changed"))
    dags = sandbox.dags_folder(changed)
    original = runs["plain"]

    refused = mlpipe(sandbox, dags, "replay", PIPELINE, original.run_id, "--local")

    assert refused.returncode == 1, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert f"config_version {original.record['config_version']} (recorded)" in refused.stdout
    assert 'stage first: label: "start" (recorded) -> "changed" (current)' in refused.stdout
    assert "Traceback" not in refused.stderr
    (line,) = error_lines(refused)
    assert line.startswith(f"mlpipe: not replaying '{original.run_id}': the spec changed")

    allowed = mlpipe(sandbox, dags, "replay", PIPELINE, original.run_id, "--allow-changed")

    assert allowed.returncode == 0, allowed.stdout[-3000:] + allowed.stderr[-3000:]
    new_run_id = allowed.stdout.strip().splitlines()[-1]
    with sqlite3.connect(sandbox.database) as db:
        row = db.execute(
            "SELECT conf, triggered_by, state FROM dag_run WHERE dag_id = ? AND run_id = ?",
            (PIPELINE, new_run_id),
        ).fetchone()
    assert row is not None, allowed.stdout
    conf = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    assert conf == {"overrides": {}, "cache": False, "replay_of": original.run_id}
    assert str(row[1]).lower() == "cli"  # triggered as 'airflow dags trigger' does


def test_replaying_the_reference_pipeline_gives_identical_metrics_and_model(sandbox, tmp_path):
    analytics = tmp_path / "analytics.db"
    generate_user_events(analytics)
    specs = tmp_path / "pipelines"
    shutil.copytree(REPO / "dags" / "pipelines", specs)
    registry = f"file://{tmp_path / 'registry'}"
    (specs / "recommender_training.clitest.yaml").write_text(
        textwrap.dedent(f"stages: [{{name: register, config: {{registry: '{registry}'}}}}]")
    )
    env = {"AIRFLOW_CONN_ANALYTICS_DB": f"sqlite:///{analytics}", "AIRFLOW__MLPIPE__ENVIRONMENT": "clitest"}
    original = sandbox.run(specs, "recommender_training", env=env)
    assert original.state == "success", original.output[-4000:]

    result = mlpipe(
        sandbox,
        sandbox.dags_folder(specs),
        "replay",
        "recommender_training",
        original.run_id,
        "--local",
        env=env,
    )

    new_run_id = next(
        line.split()[2] for line in result.stdout.splitlines() if line.startswith("replay run: ")
    )
    record = sandbox.xcom("recommender_training", new_run_id, "execution_record")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert record["replay_of"] == original.run_id
    assert "replay_matches: true" in result.stdout
    # The replay read the same rows (it is due at the original's run_after) and every output is
    # the same: metrics, and every artifact's content, the model included. Only the registry
    # stage (a side effect) registers a new version.
    assert record["replay_matches"] is True and record["replay_differences"] == {}
    for stage in ("extract", "transform_features", "train", "evaluate"):
        assert record["outputs"][stage]["metrics"] == original.record["outputs"][stage]["metrics"], stage
        assert record["outputs"][stage]["digests"] == original.record["outputs"][stage]["digests"], stage
    assert record["outputs"]["register"]["metrics"]["version"] == 2.0
    assert record["stages_cached"] == []  # a replay recomputes (cache off)
