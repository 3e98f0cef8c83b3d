"""The registry view: versions read through ModelRegistryHook, only where the spec says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlpipe.hooks.model_registry import ModelRegistryHook
from airflow_mlpipe.plugin import registry as view
from airflow_mlpipe.plugin.summaries import registry_locations


def _register(hook: ModelRegistryHook, source: Path, run_id: str, recall: float, promote: bool) -> int:
    claim = hook.claim_version("ranking", {"pipeline": "ranking", "run_id": run_id})
    metadata = {
        "run_id": run_id,
        "pipeline_version": "1.4.0",
        "config_version": "abc123def456",
        "git_commit": "0123abcd",
        "metrics": {"recall@10": recall},
        "thresholds": {"recall@10": 0.2},
    }
    hook.write_version("ranking", claim, {"model": f"file://{source}"}, metadata)
    if promote:
        hook.promote("ranking", "live", claim.version)
    return claim.version


@pytest.fixture
def location(tmp_path: Path) -> dict:
    source = tmp_path / "model.npz"
    source.write_bytes(b"model")
    hook = ModelRegistryHook(str(tmp_path / "models"))
    _register(hook, source, "run-1", 0.25, promote=True)
    _register(hook, source, "run-2", 0.15, promote=False)
    _register(hook, source, "run-3", 0.30, promote=True)
    [found] = registry_locations(
        "ranking", [("register", {"registry": str(tmp_path / "models"), "alias": "live"})]
    )
    return found


def test_versions_newest_first_with_their_provenance_and_the_alias(location):
    found = view.read_registry(location)
    assert found["error"] is None
    assert (found["uri"], found["model_name"], found["alias"]) == (location["uri"], "ranking", "live")
    assert [v["version"] for v in found["versions"]] == [3, 2, 1] and found["total_versions"] == 3
    assert found["alias_version"] == 3
    newest = found["versions"][0]
    assert newest["run_id"] == "run-3" and newest["metrics"] == {"recall@10": 0.30}
    assert newest["thresholds"] == {"recall@10": 0.2}
    assert (newest["pipeline_version"], newest["config_version"], newest["git_commit"]) == (
        "1.4.0",
        "abc123def456",
        "0123abcd",
    )
    assert newest["uri"] == f"{location['uri']}/versions/3"
    assert set(newest) == {"version", "metrics", "thresholds", *view.VERSION_FIELDS}


def test_only_the_newest_versions_are_listed(location, monkeypatch):
    monkeypatch.setattr(view, "MAX_VERSIONS", 2)
    found = view.read_registry(location)
    assert [v["version"] for v in found["versions"]] == [3, 2] and found["total_versions"] == 3


def test_an_unreadable_registry_is_an_error_on_that_model_only(location, tmp_path):
    (tmp_path / "models" / "ranking" / "versions" / "2" / "metadata.json").write_text("{not json")
    found = view.read_registry(location)
    assert found["versions"] == [] and found["error"].startswith("JSONDecodeError")
    # a store that cannot be reached at all
    unreachable = {**location, "registry": "nosuchscheme://bucket/models"}
    assert view.read_registry(unreachable)["error"]


def test_a_templated_location_is_not_read(location):
    calls = []

    def hook_factory(*args, **kwargs):
        calls.append(args)
        raise AssertionError("must not be called")

    found = view.read_registry({**location, "templated": True}, hook_factory=hook_factory)
    assert calls == [] and "templates" in found["error"] and found["versions"] == []


def test_version_entry_keeps_only_what_the_page_shows():
    metadata = {
        "run_id": "r",
        "metrics": {"a": 1.0},
        "source_artifacts": {"model": "file:///x"},
        "stage": "s",
    }
    entry = view.version_entry(7, json.loads(json.dumps(metadata)))
    assert entry["version"] == 7 and entry["run_id"] == "r" and entry["metrics"] == {"a": 1.0}
    assert "source_artifacts" not in entry and "stage" not in entry
    assert entry["created_at"] is None and entry["thresholds"] == {}
