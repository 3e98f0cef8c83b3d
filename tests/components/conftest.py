"""Fixtures for the built-in component tests.

No Airflow metadata database is needed: connections come from ``AIRFLOW_CONN_<ID>`` environment
variables, which the task SDK's ``BaseHook.get_connection`` resolves outside a running task
through its environment-variable secrets backend, and artifacts go to ``file://`` paths.

Object-store tests talk to a real S3 API on loopback: the session's moto server from
``tests/conftest.py``, reached through Airflow's ``ObjectStoragePath`` with the ``aws`` connection
``mlpipe_s3``. Without ``moto[server]`` or ``apache-airflow-providers-amazon[s3fs]`` they skip,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

# Airflow writes a default airflow.cfg into AIRFLOW_HOME on first import: keep it out of ~.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mlpipe-components-airflow-home-"))

try:
    import airflow_mlpipe  # noqa: F401
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from airflow_mlpipe.contract import ComponentContext, StageOutputs

ContextFactory = Callable[..., ComponentContext]


@pytest.fixture
def make_context(tmp_path: Path) -> ContextFactory:
    """Build a real ComponentContext whose artifact_dir is a fresh ``file://`` ObjectStoragePath."""
    from airflow.sdk import ObjectStoragePath

    def make(
        stage: str,
        inputs: Mapping[str, Mapping[str, Any] | StageOutputs] | None = None,
        *,
        pipeline: str = "demo",
        run_id: str = "manual__2024-06-01T00:00:00+00:00",
        airflow_context: Mapping[str, Any] | None = None,
        outlet_events: Any = None,
    ) -> ComponentContext:
        artifact_dir = ObjectStoragePath(f"file://{tmp_path}/artifacts/{pipeline}/{run_id}/{stage}")
        artifact_dir.mkdir(parents=True, exist_ok=True)
        return ComponentContext(
            pipeline=pipeline,
            pipeline_version="1.0.0",
            config_version="cfg-test",
            environment="test",
            stage=stage,
            run_id=run_id,
            git_commit="0123abcd",
            inputs={
                name: value if isinstance(value, StageOutputs) else StageOutputs(**value)
                for name, value in (inputs or {}).items()
            },
            artifact_dir=artifact_dir,
            airflow_context=dict(airflow_context or {}),
            log=logging.getLogger(f"tests.components.{stage}"),
            outlet_events=outlet_events,
        )

    return make


@pytest.fixture
def sqlite_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Path], None]:
    """Define an Airflow connection ``conn_id`` to the SQLite file ``path`` through the environment."""

    def define(conn_id: str, path: Path) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", f"sqlite:///{path}")

    return define


@pytest.fixture(scope="session")
def small_demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic user_events database, shared by the tests that only read it."""
    from airflow_mlpipe.demo_data import generate_user_events

    path = tmp_path_factory.mktemp("demo") / "events.db"
    generate_user_events(path, n_users=400, n_items=200, n_events=20_000, seed=7, end_date="2024-06-01")
    return path


def clustered_interactions(
    n_users: int = 300, n_items: int = 120, per_user: int = 25, n_clusters: int = 6, seed: int = 0
) -> Any:
    """A user-item interaction table with latent taste clusters (what ALS should pick up)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, n_clusters, n_users)
    item_cluster = rng.integers(0, n_clusters, n_items)
    pairs = set()
    for user in range(n_users):
        own = np.flatnonzero(item_cluster == user_cluster[user])
        for _ in range(per_user):
            pool = own if rng.random() < 0.8 and len(own) else np.arange(n_items)
            pairs.add((user, int(rng.choice(pool))))
    users, items = map(np.array, zip(*sorted(pairs), strict=True))
    return pa.table(
        {
            "user_id": users + 1000,  # ids are not row numbers
            "item_id": items + 5000,
            "weight": rng.integers(1, 10, len(users)).astype(float),
        }
    )


@pytest.fixture
def interactions_upstream(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Write an interaction table to Parquet; return upstream outputs naming it ``interactions``."""
    import pyarrow.parquet as pq

    def write(table: Any = None, name: str = "interactions") -> dict[str, Any]:
        table = clustered_interactions() if table is None else table
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        return {"features": {"artifacts": {"interactions": f"file://{path}"}}}

    return write
