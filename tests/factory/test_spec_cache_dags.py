"""The factory with its validated-spec cache builds exactly the DAGs it builds without one."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.serialization.serialized_objects import DagSerialization

from airflow_mlpipe.factory import build_dags
from airflow_mlpipe.spec import loader

REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"


def serialized(dags: dict) -> dict:
    return {dag_id: DagSerialization.to_dict(dag) for dag_id, dag in dags.items()}


@pytest.mark.parametrize("environment", ["dev", "production"])
def test_dags_from_the_cache_are_the_dags_validation_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("AIRFLOW__MLPIPE__ENVIRONMENT", environment)
    monkeypatch.setenv("AIRFLOW__MLPIPE__SPEC_CACHE_DIR", "off")
    uncached = serialized(build_dags(REPO_DAGS / "pipelines"))

    monkeypatch.setenv("AIRFLOW__MLPIPE__SPEC_CACHE_DIR", str(tmp_path / "cache"))
    first = serialized(build_dags(REPO_DAGS / "pipelines"))  # validates and fills the cache
    validated: list[str] = []
    monkeypatch.setattr(loader, "validate_spec", lambda *args: validated.append("called"))
    cached = serialized(build_dags(REPO_DAGS / "pipelines"))  # validates nothing

    assert validated == []
    assert len(list((tmp_path / "cache").glob("*.pkl"))) == len(uncached) == 2
    assert first == uncached
    assert cached == uncached


def test_spec_cache_off_writes_nothing_and_still_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("AIRFLOW__MLPIPE__SPEC_CACHE_DIR", "off")
    assert set(build_dags(REPO_DAGS / "pipelines")) == {"recommender_training", "user_engagement_features"}
    assert not (tmp_path / "xdg").exists()

    monkeypatch.setenv("AIRFLOW__MLPIPE__SPEC_CACHE_DIR", "")  # the default: under XDG_CACHE_HOME
    build_dags(REPO_DAGS / "pipelines")
    assert len(list((tmp_path / "xdg" / "airflow-mlpipe" / "specs").glob("*.pkl"))) == 2
