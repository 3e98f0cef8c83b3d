"""Fixtures for the plugin's unit tests: DAGs as the api-server reads them from the database.

``serialized_dags`` builds DAGs from spec files with the real factory, then sends each through
Airflow's DAG serialization and back (``DagSerialization.to_dict`` / ``from_dict``, what the
dag-processor stores and the api-server loads), so the plugin sees what it sees in production.
No database is needed.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SerializedDags = Callable[..., dict[str, Any]]


def write_specs(folder: Path, specs: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in specs.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def round_trip(dag: Any, edit: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """``dag`` as the api-server gets it: serialized to JSON, stored, deserialized."""
    from airflow.serialization.serialized_objects import DagSerialization

    data = json.loads(json.dumps(DagSerialization.to_dict(dag)))
    if edit is not None:
        edit(data)
    return DagSerialization.from_dict(data)


@pytest.fixture
def serialized_dags(tmp_path: Path) -> SerializedDags:
    def build(specs: dict[str, str], environment: str = "dev", **kwargs: Any) -> dict[str, Any]:
        from airflow_mlpipe.factory import build_dags

        folder = write_specs(tmp_path / "pipelines", specs)
        return {dag_id: round_trip(dag, **kwargs) for dag_id, dag in build_dags(folder, environment).items()}

    return build


PIPELINE = """\
    name: ranking
    version: 1.4.0
    metadata:
      owner: ranking-team
      description: Ranks things
      tags: [ranking]
      schedule: "@daily"
      notify_on_failure: ["ranking@example.com"]
    stages:
      - name: extract
        component: data.extract.database
        config:
          query: "SELECT * FROM user_events"
          connection: analytics_db
      - name: features
        component: features.user_engagement
        dependencies: [extract]
      - name: train
        component: model.matrix_factorization
        dependencies: [features]
      - name: evaluate
        component: evaluation.recommender
        config:
          metrics: ["recall@10", "ndcg@10"]
          thresholds: {recall@10: 0.2, ndcg@10: 0.1}
        dependencies: [train]
      - name: register
        component: registry.register_model
        config:
          registry: /srv/models
          alias: live
        dependencies: [evaluate]
      - name: register_s3
        component: registry.register_model
        config:
          registry: "s3://models/acme/"
          conn_id: aws_default
          model_name: ranker
        dependencies: [evaluate]
    """
