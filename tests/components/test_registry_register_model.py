"""registry.register_model: what a pipeline stage registers, when it promotes, what it declares.

The registry's storage protocol (numbering, concurrency, half-written versions, the alias write)
is ModelRegistryHook's and is tested in ``tests/hooks/test_model_registry.py``. Tests here run
the component the way a stage does, on a ``file://`` registry and, where the object store
matters, on an ``s3://`` one served by moto on loopback (see conftest.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from airflow_mlpipe.components.registry import register_model as registry
from airflow_mlpipe.contract import ContractError, overridable_fields
from airflow_mlpipe.hooks.model_registry import ModelRegistryHook
from airflow_mlpipe.resolver import resolve_component
from airflow_mlpipe.runner import run_stage

MODEL = "recommender"


@dataclass
class Store:
    """A registry root on one kind of storage."""

    kind: str
    registry: str
    conn_id: str | None

    def config(self, **overrides: Any) -> registry.Config:
        return registry.Config(registry=self.registry, model_name=MODEL, conn_id=self.conn_id, **overrides)

    @property
    def hook(self) -> ModelRegistryHook:
        return ModelRegistryHook(self.registry, conn_id=self.conn_id)

    def alias(self) -> dict | None:
        return self.hook.read_alias(MODEL)


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path) -> Store:
    if request.param == "file":
        return Store("file", f"file://{tmp_path}/registry", None)
    bucket = request.getfixturevalue("s3_bucket")
    return Store("s3", f"s3://{bucket}/registry", request.getfixturevalue("s3_conn_id"))


@pytest.fixture
def local(tmp_path) -> Store:
    return Store("file", f"file://{tmp_path}/registry", None)


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


def test_a_registration_stores_the_runs_provenance_and_metrics(store, make_context, evaluated):
    first = registry.run(store.config(), make_context("register", evaluated(), run_id="run-1"))
    second = registry.run(store.config(), make_context("register", evaluated(), run_id="run-2"))

    assert (first["metrics"]["version"], second["metrics"]["version"]) == (1, 2)
    assert store.hook.list_versions(MODEL) == [1, 2]
    metadata = store.hook.read_metadata(MODEL, 2)
    assert (metadata["run_id"], metadata["pipeline"], metadata["stage"]) == ("run-2", "demo", "register")
    assert (metadata["git_commit"], metadata["config_version"]) == ("0123abcd", "cfg-test")
    assert (metadata["pipeline_version"], metadata["environment"]) == ("1.0.0", "test")
    assert metadata["metrics"] == evaluated()["evaluate"]["metrics"]
    assert metadata["thresholds"] == {"recall@10": 0.15}
    assert set(metadata["artifacts"]) == {"model", "user_index", "report"}
    assert second["artifacts"]["version"] == metadata["uri"]
    if store.kind == "s3":  # the URI carries the connection, so downstream readers can open it
        from airflow.sdk import ObjectStoragePath

        assert second["artifacts"]["version"].startswith(f"s3://{store.conn_id}@")
        downstream = ObjectStoragePath(second["artifacts"]["version"]) / metadata["artifacts"]["model"]
        assert downstream.read_bytes() == b"factors" * 1000


def test_a_retried_stage_reuses_its_version(local, make_context, evaluated):
    config = local.config()
    first = registry.run(config, make_context("register", evaluated(), run_id="run-1"))
    retry = registry.run(config, make_context("register", evaluated(), run_id="run-1"))

    assert retry["metrics"]["version"] == first["metrics"]["version"] == 1
    assert (first["metrics"]["reused"], retry["metrics"]["reused"]) == (0.0, 1.0)
    assert retry["artifacts"] == first["artifacts"]
    assert local.hook.list_versions(MODEL) == [1]
    # the same run id from another pipeline is another registration
    other = registry.run(config, make_context("register", evaluated(), run_id="run-1", pipeline="other"))
    assert other["metrics"]["version"] == 2


def test_only_the_selected_artifacts_are_copied(local, make_context, evaluated):
    result = registry.run(local.config(artifacts=["model"]), make_context("register", evaluated()))
    metadata = local.hook.read_metadata(MODEL, result["metrics"]["version"])
    assert metadata["artifacts"] == {"model": "artifacts/model.npz"}
    with pytest.raises(ValueError, match=r"no artifact\(s\) \['weights'\]"):
        registry.run(local.config(artifacts=["weights"]), make_context("register", evaluated(), run_id="r2"))


# -- promotion ---------------------------------------------------------------------------------


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
    store, make_context, evaluated, promote_if, passed, promoted
):
    baseline = registry.run(
        store.config(promote_if="always"), make_context("register", evaluated(), run_id="r1")
    )
    assert store.alias()["version"] == 1

    result = registry.run(
        store.config(promote_if=promote_if), make_context("register", evaluated(passed), run_id="r2")
    )
    alias = store.alias()
    assert result["metrics"]["promoted"] == float(promoted)
    assert alias["version"] == (2 if promoted else baseline["metrics"]["version"])
    assert alias["run_id"] == ("r2" if promoted else "r1")


def test_a_late_retry_does_not_take_the_alias_back(local, make_context, evaluated):
    config = local.config(promote_if="always")
    registry.run(config, make_context("register", evaluated(), run_id="old"))
    registry.run(config, make_context("register", evaluated(), run_id="new"))
    retry = registry.run(config, make_context("register", evaluated(), run_id="old"))
    assert (retry["metrics"]["version"], retry["metrics"]["promoted"]) == (1, 0.0)
    assert local.alias()["version"] == 2


def test_the_slower_of_two_registrations_does_not_take_the_alias_back(
    local, make_context, evaluated, monkeypatch
):
    # "slow" claims version 1; while it copies, "fast" registers and promotes version 2. When
    # "slow" finishes, version 1 is older than what the alias names: it stays on version 2.
    config = local.config(promote_if="always")
    write_version = ModelRegistryHook.write_version

    def slow_write(self, model_name, claim, artifacts, metadata):
        if metadata["run_id"] == "slow":
            fast = registry.run(config, make_context("register", evaluated(), run_id="fast"))
            assert fast["metrics"]["version"] == 2
        return write_version(self, model_name, claim, artifacts, metadata)

    monkeypatch.setattr(ModelRegistryHook, "write_version", slow_write)
    slow = registry.run(config, make_context("register", evaluated(), run_id="slow"))
    assert (slow["metrics"]["version"], slow["metrics"]["promoted"]) == (1, 0.0)
    assert local.alias()["version"] == 2
    assert local.hook.list_versions(MODEL) == [1, 2]


def test_all_metrics_passed_needs_the_evaluation_metric(tmp_path, make_context, evaluated):
    upstream = evaluated()
    del upstream["evaluate"]["metrics"]["all_metrics_passed"]
    config = registry.Config(registry=f"file://{tmp_path}/registry", model_name=MODEL)
    with pytest.raises(ValueError, match="no 'all_metrics_passed' metric"):
        registry.run(config, make_context("register", upstream))
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


# -- the contract ------------------------------------------------------------------------------


def test_it_declares_its_outputs_and_the_artifacts_it_copies(tmp_path, make_context, evaluated):
    component = resolve_component("registry.register_model")
    config = registry.Config(registry=f"file://{tmp_path}/registry", artifacts=["model", "user_index"])
    assert component.declares_io
    assert list(component.produces(config).artifacts) == ["version"]
    assert set(component.produces(config).metrics) == {"version", "promoted", "reused"}
    assert list(component.requires(config).artifacts) == ["model", "user_index"]

    outputs = run_stage(component, config, make_context("register", evaluated()))
    assert component.produces(config).missing_from(outputs) == []

    # An upstream stage without the artifact is refused before anything is claimed.
    upstream = evaluated()
    del upstream["evaluate"]["artifacts"]["user_index"]
    other = registry.Config(registry=f"file://{tmp_path}/other", artifacts=["model", "user_index"])
    with pytest.raises(ContractError, match="'user_index'"):
        run_stage(component, other, make_context("register", upstream, run_id="r2"))
    assert not (tmp_path / "other").exists()


def test_nothing_about_a_registration_can_change_at_trigger_time():
    # Where models go, their name, the alias and when it moves are the spec author's decision.
    assert overridable_fields(registry.Config) == frozenset()


def test_config_validation():
    assert registry.Config(registry="/srv/models").registry == "file:///srv/models"
    with pytest.raises(ValidationError, match="is not a URI"):
        registry.Config(registry="models/acme")
    with pytest.raises(ValidationError, match="must be letters"):
        registry.Config(registry="s3://models/acme/", model_name="../escape")
    with pytest.raises(ValidationError):
        registry.Config(registry="s3://models/acme/", promote_if="sometimes")


# -- model kinds -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["als", "ease"])
def test_a_built_in_model_is_registered_with_its_kind_and_manifest(kind, local, make_context, tmp_path):
    import numpy as np

    from airflow_mlpipe.components import _model_artifact

    arrays = (
        {"user_factors": np.ones((3, 2)), "item_factors": np.ones((4, 2))}
        if kind == "als"
        else {"item_weights": np.zeros((4, 4))}
    )
    manifest = _model_artifact.manifest(kind, f"model.{kind}", arrays, {})
    source = tmp_path / "model.npz"
    source.write_bytes(_model_artifact.dumps(manifest, arrays))
    upstream = {
        "evaluate": {"artifacts": {"model": f"file://{source}"}, "metrics": {"all_metrics_passed": 1.0}}
    }

    result = registry.run(local.config(), make_context("register", upstream))
    metadata = local.hook.read_metadata(MODEL, result["metrics"]["version"])
    assert metadata["model_kind"] == kind
    assert metadata["model_manifest"] == manifest


def test_an_npz_without_a_manifest_is_registered_as_an_als_model(local, make_context, tmp_path):
    import numpy as np

    source = tmp_path / "model.npz"
    np.savez(source, user_factors=np.ones((3, 2)), item_factors=np.ones((4, 2)))
    upstream = {
        "evaluate": {"artifacts": {"model": f"file://{source}"}, "metrics": {"all_metrics_passed": 1.0}}
    }
    result = registry.run(local.config(), make_context("register", upstream))
    assert local.hook.read_metadata(MODEL, result["metrics"]["version"])["model_kind"] == "als"


def test_another_kind_of_model_file_is_registered_without_a_kind(local, make_context, evaluated):
    result = registry.run(local.config(), make_context("register", evaluated()))
    assert "model_kind" not in local.hook.read_metadata(MODEL, result["metrics"]["version"])
