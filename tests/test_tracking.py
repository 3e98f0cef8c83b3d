"""What a run's execution record becomes in an experiment tracker: params, metrics, tags."""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

import pytest

from airflow_mlpipe.record import ExecutionRecord
from airflow_mlpipe.tracking import flatten, metric_key, metrics, params, public_uri, tags, track_run


def record(**changes: object) -> ExecutionRecord:
    fields: dict[str, object] = {
        "pipeline": "recommender_training",
        "pipeline_version": "3.2.1",
        "config_version": "a1b2c3d4e5f6",
        "environment": "production",
        "execution_id": "manual__2026-12-01T03:00:00+00:00",
        "timestamp": datetime(2026, 12, 1, 3, 5, tzinfo=timezone.utc),
        "git_commit": "0123456789abcdef",
        "triggered_by": "schedule",
        "stages_completed": ["train", "evaluate"],
        "stages_failed": [],
        "stages_skipped": [],
        "outputs": {
            "train": {"artifacts": {"model": "file:///a/model.npz"}, "metrics": {"best_epoch": 7}},
            "evaluate": {"artifacts": {}, "metrics": {"recall@10": 0.41, "threshold.recall@10": 0.15}},
        },
        "stage_durations": {},
        "configs": {
            "train": {"factors": 64, "solver": {"alpha": 3.0, "options": {"seed": 1}}, "tags": ["a", "b"]},
            "db": {
                "conn_id": "analytics",
                "login": {"password": "hunter2", "user": "ml"},
                "api_token": "t0k",
            },
            "token_counts": {"window": 5},
        },
        "airflow_version": "3.3.2",
        "mlpipe_version": "0.0.0",
    }
    fields.update(changes)
    return ExecutionRecord.model_validate(fields)


def test_configs_are_flattened_with_dots_and_lists_stay_one_value():
    assert dict(flatten({"a": 1, "b": {"c": {"d": 2}}, "e": [1, 2], "f": {}}, "s")) == {
        "s.a": 1,
        "s.b.c.d": 2,
        "s.e": [1, 2],
        "s.f": {},
    }


def test_params_are_stage_dot_key_with_secrets_masked_by_their_names():
    logged = params(record())

    assert logged["train.factors"] == "64"
    assert logged["train.solver.alpha"] == "3.0"
    assert logged["train.solver.options.seed"] == "1"
    assert logged["train.tags"] == '["a", "b"]'
    assert logged["db.conn_id"] == "analytics"
    assert logged["db.login.user"] == "ml"
    assert logged["db.login.password"] == "***"
    assert logged["db.api_token"] == "***"
    # A stage whose name looks sensitive does not hide its settings.
    assert logged["token_counts.window"] == "5"
    assert "hunter2" not in str(logged) and "t0k" not in str(logged)


def test_metrics_are_stage_dot_metric_in_names_mlflow_accepts():
    assert metrics(record()) == {
        "train.best_epoch": 7.0,
        "evaluate.recall_at_10": 0.41,
        "evaluate.threshold.recall_at_10": 0.15,
    }
    assert metric_key("eval.ndcg@10 (test)") == "eval.ndcg_at_10 _test_"


def test_tags_carry_provenance_and_every_artifact_uri():
    logged = tags(record(triggered_by_user="maria"))

    assert logged["mlpipe.pipeline_version"] == "3.2.1"
    assert logged["mlpipe.config_version"] == "a1b2c3d4e5f6"
    assert logged["mlpipe.git_commit"] == "0123456789abcdef"
    assert logged["mlpipe.run_id"] == "manual__2026-12-01T03:00:00+00:00"
    assert logged["mlpipe.environment"] == "production"
    assert logged["mlpipe.triggered_by"] == "schedule"
    assert logged["mlpipe.triggered_by_user"] == "maria"
    assert logged["mlpipe.artifact.train.model"] == "file:///a/model.npz"


def test_the_record_shows_the_tracking_uri_without_credentials():
    assert public_uri("https://ml:s3cret@mlflow.example.com:8443/") == "https://mlflow.example.com:8443/"
    assert public_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert public_uri("databricks") == "databricks"


def test_records_without_tracking_still_validate():
    value = record().model_dump(mode="json")
    del value["tracking"]  # a record written before tracking existed

    assert ExecutionRecord.model_validate(value).tracking == {}


def test_tracking_without_the_mlflow_extra_is_skipped_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
):
    for module in ("mlflow", "mlflow.tracking", "mlflow.exceptions", "mlflow.entities"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it fails

    outcome = track_run(record(), "http://mlflow:5000", "FINISHED", logging.getLogger("test"))

    assert outcome.status == "skipped"
    assert 'pip install "airflow-mlpipe[mlflow]"' in (outcome.reason or "")
