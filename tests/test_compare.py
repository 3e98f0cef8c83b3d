"""Comparing two execution records: configs, cache use, digests and metrics, per stage."""

from __future__ import annotations

from airflow_mlpipe.compare import compare_records, output_differences


def record(run_id: str, **changes) -> dict:
    base = {
        "execution_id": run_id,
        "config_version": "cfg1",
        "stages_completed": ["extract", "train"],
        "stages_failed": [],
        "stages_skipped": [],
        "stages_cached": [],
        "configs": {
            "extract": {"query": "SELECT 1", "batch_size": 10},
            "train": {"factors": 64, "early_stopping": {"patience": 3}, "metric": "recall@10"},
        },
        "outputs": {
            "extract": {
                "artifacts": {"table": "file:///a/t"},
                "metrics": {"rows": 100.0},
                "digests": {"table": "sha256:aa"},
            },
            "train": {
                "artifacts": {"model": "file:///a/m"},
                "metrics": {"val_recall@10": 0.25},
                "digests": {"model": "sha256:mm"},
            },
        },
    }
    base.update(changes)
    return base


def test_identical_runs_are_the_same_even_at_other_uris() -> None:
    a = record("run_a")
    b = record("run_b")
    b["outputs"]["train"]["artifacts"]["model"] = "file:///elsewhere/m"

    comparison = compare_records(a, b)

    assert comparison["same"] is True
    assert comparison["runs"] == ["run_a", "run_b"]
    assert output_differences(a, b) == {}


def test_a_changed_nested_key_cache_use_digest_and_metric_delta_are_named() -> None:
    a = record("run_a")
    b = record("run_b", stages_cached=["extract"])
    b["configs"] = {**a["configs"], "train": {**a["configs"]["train"], "early_stopping": {"patience": 5}}}
    b["outputs"] = {
        **a["outputs"],
        "train": {
            "artifacts": {"model": "file:///b/m"},
            "metrics": {"val_recall@10": 0.30},
            "digests": {"model": "sha256:nn"},
        },
    }

    comparison = compare_records(a, b)
    extract, train = comparison["stages"]

    assert comparison["same"] is False
    assert extract["status"] == ["computed", "cached"] and extract["same"] is True
    assert train["config"] == [{"key": "early_stopping.patience", "a": 3, "b": 5}]
    assert train["artifacts"] == [{"name": "model", "a": "sha256:mm", "b": "sha256:nn", "same": False}]
    [metric] = train["metrics"]
    assert metric["name"] == "val_recall@10" and abs(metric["delta"] - 0.05) < 1e-12
    assert set(output_differences(a, b)) == {"train"}


def test_a_stage_that_failed_in_one_run_is_shown_with_both_statuses() -> None:
    a = record("run_a")
    b = record("run_b", stages_completed=["extract"], stages_failed=["train"])
    del b["outputs"]["train"]

    [_, train] = compare_records(a, b)["stages"]

    assert train["status"] == ["computed", "failed"]
    assert train["same"] is False
