"""registry.register_model: version numbering, idempotent retries, concurrency, promotion, visibility."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from airflow_mlpipe.components.registry import register_model as registry


@pytest.fixture
def evaluated(tmp_path: Path):
    """Upstream outputs like evaluation.recommender's: model artifacts, a report and metrics."""

    def make(passed: float = 1.0) -> dict:
        source = tmp_path / "evaluate-outputs"
        source.mkdir(exist_ok=True)
        (source / "model.npz").write_bytes(b"factors" * 1000)
        (source / "user_index.parquet").write_bytes(b"users")
        (source / "report.json").write_text(json.dumps({"recall@10": 0.3}))
        return {
            "evaluate": {
                "artifacts": {
                    "model": f"file://{source}/model.npz",
                    "user_index": f"file://{source}/user_index.parquet",
                    "report": f"file://{source}/report.json",
                },
                "metrics": {
                    "recall@10": 0.3,
                    "threshold.recall@10": 0.15,
                    "passed.recall@10": passed,
                    "all_metrics_passed": passed,
                },
            }
        }

    return make


def _config(tmp_path: Path, **overrides) -> registry.Config:
    return registry.Config(registry=f"file://{tmp_path}/registry", model_name="recommender", **overrides)


def test_versions_increase_and_hold_copies_and_metadata(tmp_path, make_context, evaluated):
    config = _config(tmp_path)
    first = registry.run(config, make_context("register", evaluated(), run_id="run-1"))
    second = registry.run(config, make_context("register", evaluated(), run_id="run-2"))

    assert (first["metrics"]["version"], second["metrics"]["version"]) == (1, 2)
    assert registry.list_versions(config.registry, "recommender") == [1, 2]
    metadata = registry.read_metadata(config.registry, "recommender", 2)
    assert metadata["run_id"] == "run-2"
    assert metadata["pipeline"] == "demo"
    assert metadata["git_commit"] == "0123abcd"
    assert metadata["config_version"] == "cfg-test"
    assert metadata["metrics"]["recall@10"] == 0.3
    assert metadata["thresholds"] == {"recall@10": 0.15}
    version_dir = tmp_path / "registry" / "recommender" / "versions" / "2"
    assert (version_dir / metadata["artifacts"]["model"]).read_bytes() == b"factors" * 1000
    assert set(metadata["artifacts"]) == {"model", "user_index", "report"}
    assert second["artifacts"]["version"] == f"file://{version_dir}"


def test_a_retried_run_does_not_register_a_second_version(tmp_path, make_context, evaluated):
    config = _config(tmp_path)
    first = registry.run(config, make_context("register", evaluated(), run_id="run-1"))
    retry = registry.run(config, make_context("register", evaluated(), run_id="run-1"))

    assert retry["metrics"]["version"] == first["metrics"]["version"] == 1
    assert retry["metrics"]["reused"] == 1.0
    assert registry.list_versions(config.registry, "recommender") == [1]
    # the same run id from another pipeline is another registration
    other = registry.run(config, make_context("register", evaluated(), run_id="run-1", pipeline="other"))
    assert other["metrics"]["version"] == 2


def test_concurrent_registrations_get_unique_versions(tmp_path, make_context, evaluated):
    config = _config(tmp_path)
    upstream = evaluated()
    contexts = [make_context("register", upstream, run_id=f"run-{i}") for i in range(12)]
    versions: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(contexts))

    def register(context) -> None:
        try:
            start.wait()
            versions.append(registry.run(config, context)["metrics"]["version"])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(context,)) for context in contexts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert len(versions) == len(set(versions)) == 12
    complete = registry.list_versions(config.registry, "recommender")
    assert sorted(versions) == complete
    owners = {registry.read_metadata(config.registry, "recommender", v)["run_id"] for v in complete}
    assert owners == {f"run-{i}" for i in range(12)}


def test_exclusive_claims_alone_keep_versions_unique(tmp_path, make_context, evaluated, monkeypatch, caplog):
    # Every registration sees an empty registry, as racers that all list before anyone claims
    # would: only the exclusive creation of _claim can keep them apart.
    monkeypatch.setattr(registry, "_version_numbers", lambda model_root: [])
    config = _config(tmp_path)
    versions = [
        registry.run(config, make_context("register", evaluated(), run_id=f"run-{i}"))["metrics"]["version"]
        for i in range(4)
    ]
    assert versions == [1, 2, 3, 4]
    assert caplog.text.count("claimed concurrently") == 0 + 1 + 2 + 3


def test_a_half_written_version_is_invisible_and_a_retry_finishes_it(
    tmp_path, make_context, evaluated, monkeypatch
):
    config = _config(tmp_path)
    registry.run(config, make_context("register", evaluated(), run_id="run-1"))

    copy = registry._copy
    copies = []

    def crash_on_second_copy(source, target):
        copies.append(source)
        if len(copies) == 2:
            raise OSError("worker lost")
        copy(source, target)

    monkeypatch.setattr(registry, "_copy", crash_on_second_copy)
    with pytest.raises(OSError, match="worker lost"):
        registry.run(config, make_context("register", evaluated(), run_id="run-2"))
    monkeypatch.setattr(registry, "_copy", copy)

    assert (tmp_path / "registry" / "recommender" / "versions" / "2" / "_claim").exists()
    assert registry.list_versions(config.registry, "recommender") == [1]
    with pytest.raises(FileNotFoundError):
        registry.read_metadata(config.registry, "recommender", 2)
    assert registry.read_alias(config.registry, "recommender")["version"] == 1

    # A different run skips the claimed number; the retry of run-2 finishes version 2.
    third = registry.run(config, make_context("register", evaluated(), run_id="run-3"))
    retry = registry.run(config, make_context("register", evaluated(), run_id="run-2"))
    assert (third["metrics"]["version"], retry["metrics"]["version"]) == (3, 2)
    assert registry.list_versions(config.registry, "recommender") == [1, 2, 3]
    assert registry.read_metadata(config.registry, "recommender", 2)["run_id"] == "run-2"


@pytest.mark.parametrize(
    ("promote_if", "passed", "promoted"),
    [
        ("all_metrics_passed", 1.0, True),
        ("all_metrics_passed", 0.0, False),
        ("always", 0.0, True),
        ("never", 1.0, False),
    ],
)
def test_the_alias_moves_only_when_promote_if_holds(
    tmp_path, make_context, evaluated, promote_if, passed, promoted
):
    baseline = registry.run(
        _config(tmp_path, promote_if="always"), make_context("register", evaluated(), run_id="r1")
    )
    assert registry.read_alias(f"file://{tmp_path}/registry", "recommender")["version"] == 1

    result = registry.run(
        _config(tmp_path, promote_if=promote_if), make_context("register", evaluated(passed), run_id="r2")
    )
    alias = registry.read_alias(f"file://{tmp_path}/registry", "recommender")
    assert result["metrics"]["promoted"] == float(promoted)
    assert alias["version"] == (2 if promoted else baseline["metrics"]["version"])
    # no temporary alias files are left behind
    assert [p.name for p in (tmp_path / "registry" / "recommender" / "aliases").iterdir()] == [
        "production.json"
    ]


def test_a_late_retry_does_not_take_the_alias_back(tmp_path, make_context, evaluated):
    config = _config(tmp_path, promote_if="always")
    registry.run(config, make_context("register", evaluated(), run_id="old"))
    registry.run(config, make_context("register", evaluated(), run_id="new"))
    retry = registry.run(config, make_context("register", evaluated(), run_id="old"))
    assert (retry["metrics"]["version"], retry["metrics"]["promoted"]) == (1, 0.0)
    assert registry.read_alias(config.registry, "recommender")["version"] == 2


def test_all_metrics_passed_needs_the_evaluation_metric(tmp_path, make_context, evaluated):
    upstream = evaluated()
    del upstream["evaluate"]["metrics"]["all_metrics_passed"]
    with pytest.raises(ValueError, match="no 'all_metrics_passed' metric"):
        registry.run(_config(tmp_path), make_context("register", upstream))
    assert not (tmp_path / "registry").exists()  # refused before claiming anything


def test_asset_event_carries_version_metrics_and_promotion(tmp_path, make_context, evaluated):
    config = registry.Config(registry=f"file://{tmp_path}/registry/")
    (asset,) = registry.assets(config, "demo")
    assert asset.uri == f"file://{tmp_path}/registry/demo"

    events: defaultdict = defaultdict(SimpleNamespace)
    result = registry.run(config, make_context("register", evaluated(), outlet_events=events))
    assert list(events) == [asset]
    assert events[asset].extra == {
        "version": 1,
        "metrics": evaluated()["evaluate"]["metrics"],
        "promoted": True,
    }
    assert result["artifacts"]["version"].startswith(asset.uri)


def test_config_validation():
    assert registry.Config(registry="/srv/models").registry == "file:///srv/models"
    with pytest.raises(ValidationError, match="is not a URI"):
        registry.Config(registry="models/acme")
    with pytest.raises(ValidationError, match="must be letters"):
        registry.Config(registry="s3://models/acme/", model_name="../escape")
    with pytest.raises(ValidationError):
        registry.Config(registry="s3://models/acme/", promote_if="sometimes")
