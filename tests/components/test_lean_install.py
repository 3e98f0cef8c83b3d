"""Without the ``recommender`` extra (no numpy, scipy, implicit, threadpoolctl) the package still
validates and parses pipelines, extracts, builds features and registers models, and training
says what to install.

The checks run in a fresh interpreter (``without_ml_stack.py``) whose import system refuses the
ML stack, because this test process has it loaded already.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("without_ml_stack.py")
BUILTINS = {
    "data.extract.database",
    "features.user_engagement",
    "model.matrix_factorization",
    "evaluation.recommender",
    "registry.register_model",
}
ROWS = [
    (1, 10, "view", 1.0, "2024-05-28 10:00:00"),
    (1, 11, "purchase", 25.0, "2024-05-29 11:00:00"),
    (2, 10, "click", 3.0, "2024-05-30 12:00:00"),
    (2, 10, "view", 2.0, "2024-05-31 13:00:00"),
    (3, 12, "view", 4.0, "2024-04-01 09:00:00"),  # before the query's :since
]


def test_parse_extract_features_and_registry_work_without_the_ml_stack(tmp_path: Path) -> None:
    database = tmp_path / "events.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE user_events (user_id, item_id, event_type, value, date)")
        connection.executemany("INSERT INTO user_events VALUES (?, ?, ?, ?, ?)", ROWS)
    connection.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW_CONN_LEAN_DB": f"sqlite:///{database}",
    }

    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(REPO / "dags" / "pipelines"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])

    # The blocker was in the way (at least training's check asked for numpy) and nothing got past it.
    assert "numpy" in report["refused_imports"]
    assert report["ml_modules_loaded"] == []
    assert set(report["imported_components"]) >= BUILTINS

    # `mlpipe validate` and the factory work on the reference specs.
    assert report["validate_exit_code"] == 0, report["validate_output"]
    # The reference DAGs are real DAGs, not placeholders for a spec that failed to load.
    dags = report["dags"]
    assert set(dags) == {"recommender_training", "user_engagement_features"}
    assert all("mlpipe:invalid-spec" not in dag["tags"] for dag in dags.values()), dags
    swept_train = ["train.plan", "train.variants", "train"]  # a plan, the mapped variants, the selection
    assert dags["recommender_training"]["tasks"] == sorted(
        ["extract", "transform_features", *swept_train, "evaluate", "register", "execution_record"]
    )

    # The extract ran against SQLite and wrote its Parquet file in batches of 2 rows.
    extract = report["extract"]
    assert extract["metrics"] == {"rows": 4, "batches": 2}
    table = pq.read_table(extract["artifacts"]["data"].removeprefix("file://"))
    assert sorted(table.column("user_id").to_pylist()) == [1, 1, 2, 2]

    # Features need pyarrow only: two users, three pairs in the 7-day window.
    features = report["features"]
    assert features["metrics"] == {"events": 4, "users": 2, "items": 2, "interactions": 3}
    interactions = pq.read_table(features["artifacts"]["interactions"].removeprefix("file://"))
    assert interactions.to_pydict()["weight"] == [1.0, 10.0, 4.0]  # view; purchase; click + view

    # The registry copies them into version 1 and promotes it, numpy-free as well.
    assert report["register"]["metrics"]["version"] == 1.0
    assert report["register"]["metrics"]["promoted"] == 1.0

    # Training names the missing modules and the install command instead of failing on an import.
    assert report["training_missing_modules"] == ["numpy", "scipy", "implicit", "threadpoolctl"]
    assert report["training_install_command"] == 'pip install "airflow-mlpipe[recommender]"'
    assert "needs the 'recommender' extra" in report["training_error"]
    assert 'pip install "airflow-mlpipe[recommender]"' in report["training_error"]
