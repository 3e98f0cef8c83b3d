"""The seed's recommender pipeline, exactly as shipped in dags/, run twice on demo data (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mlpipe.components.registry.register_model import read_alias
from airflow_mlpipe.demo_data import generate_user_events

pytestmark = pytest.mark.airflow

REPO_SPECS = Path(__file__).resolve().parents[1] / "dags" / "pipelines"
STAGES = ["extract", "transform_features", "train", "evaluate", "register"]


@pytest.fixture(scope="module")
def analytics_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("analytics") / "analytics.db"
    generate_user_events(database)
    return database


def test_reference_pipeline_passes_its_thresholds_and_registers_versions(
    mlpipe_sandbox, analytics_db, tmp_path, specs_with_overlays
):
    registry = f"file://{tmp_path / 'registry'}"
    register = f"{{registry: '{registry}'}}"
    # The test's registry, and for the second run thresholds out of reach, as overlays: a
    # trigger may not change a registry or thresholds.
    specs = specs_with_overlays(
        REPO_SPECS,
        tmp_path / "pipelines",
        {
            "recommender_training.test.yaml": f"stages: [{{name: register, config: {register}}}]",
            "recommender_training.strict.yaml": f"""\
                stages:
                  - {{name: register, config: {register}}}
                  - {{name: evaluate, config: {{thresholds: {{recall@10: 0.99}}}}}}
                """,
        },
    )
    env = {"AIRFLOW_CONN_ANALYTICS_DB": f"sqlite:///{analytics_db}", "AIRFLOW__MLPIPE__ENVIRONMENT": "test"}

    first = mlpipe_sandbox.run(specs, "recommender_training", env=env)

    assert first.state == "success", first.output[-4000:]
    assert first.record["stages_completed"] == STAGES
    metrics = first.record["outputs"]["evaluate"]["metrics"]
    assert metrics["recall@10"] >= 0.15 and metrics["ndcg@10"] >= 0.12
    assert metrics["all_metrics_passed"] == 1.0
    assert metrics["recall@10"] >= 1.5 * metrics["baseline.recall@10"]
    assert first.record["outputs"]["register"]["metrics"]["version"] == 1.0
    assert read_alias(registry, "recommender_training")["version"] == 1
    # The reference spec picks its hyperparameters with a sweep, on validation recall@10 only.
    sweep = first.record["sweeps"]["train"]
    assert (sweep["metric"], sweep["mode"]) == ("val_recall@10", "max")
    grid = {
        (v["config"]["factors"], v["config"]["regularization"], v["config"]["alpha"])
        for v in sweep["variants"]
    }
    assert grid == {(f, r, a) for f in (64, 128) for r in (20, 30) for a in (3, 5)}
    scores = [v["metrics"]["val_recall@10"] for v in sweep["variants"]]
    assert sweep["selected"] == scores.index(max(scores))
    winner = sweep["variants"][sweep["selected"]]
    assert first.record["configs"]["train"] == winner["config"]
    assert first.record["outputs"]["train"]["metrics"] == winner["metrics"]
    # Progress lines of the components reach the task logs.
    assert "rows" in first.output and "epoch" in first.output.lower()

    # Second run: thresholds out of reach, so version 2 is registered but not promoted.
    second = mlpipe_sandbox.run(
        specs, "recommender_training", env={**env, "AIRFLOW__MLPIPE__ENVIRONMENT": "strict"}
    )

    assert second.state == "success", second.output[-4000:]
    assert second.record["outputs"]["evaluate"]["metrics"]["all_metrics_passed"] == 0.0
    assert second.record["outputs"]["register"]["metrics"]["version"] == 2.0
    assert second.record["outputs"]["register"]["metrics"]["promoted"] == 0.0
    assert read_alias(registry, "recommender_training")["version"] == 1


def test_small_example_pipeline_runs(mlpipe_sandbox, analytics_db):
    run = mlpipe_sandbox.run(
        REPO_SPECS, "user_engagement_features", env={"AIRFLOW_CONN_ANALYTICS_DB": f"sqlite:///{analytics_db}"}
    )

    assert run.state == "success", run.output[-4000:]
    assert run.record["stages_completed"] == ["extract", "engagement"]
    assert run.record["outputs"]["extract"]["metrics"]["rows"] > 0
