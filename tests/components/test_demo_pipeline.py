"""The reference pipeline on the demo data, stage by stage through the components' run().

Acceptance criterion: with the demo data and the reference spec, the thresholds (recall@10 >=
0.15, ndcg@10 >= 0.12) pass and the model beats the popularity baseline by at least 1.5x on
recall@10.
"""

from __future__ import annotations

import datetime
import sqlite3

import numpy as np
import pytest

from airflow_mlpipe.components.data.extract import database
from airflow_mlpipe.components.evaluation import recommender
from airflow_mlpipe.components.features import user_engagement
from airflow_mlpipe.components.model import matrix_factorization
from airflow_mlpipe.components.registry import register_model
from airflow_mlpipe.demo_data import generate_user_events

# The stage configs of the reference spec, as the operator hands them over once rendered.
DS = "2024-05-31"  # the daily run covering 2024-05-31, whose data interval ends 2024-06-01
REFERENCE = {
    "extract": {
        "query": "SELECT * FROM user_events WHERE date > :cutoff",
        "conn_id": "analytics_db",
        "batch_size": 10000,
        "parameters": {"cutoff": "2024-03-02"},  # {{ macros.ds_add(ds, -90) }}
    },
    "transform_features": {"window_days": 30, "aggregation": ["mean", "std", "count"]},
    "train": {"factors": 64, "regularization": 20, "alpha": 3, "epochs": 50, "early_stopping_patience": 5},
    "evaluate": {
        "metrics": ["recall@10", "ndcg@10", "coverage"],
        "test_split": 0.2,
        "thresholds": {"recall@10": 0.15, "ndcg@10": 0.12},
    },
    "register": {"registry": "s3://models/acme/", "promote_if": "all_metrics_passed"},
}


def test_reference_pipeline_on_demo_data_passes_and_beats_popularity(
    tmp_path, make_context, sqlite_connection
):
    database_file = tmp_path / "analytics.db"
    generate_user_events(database_file, end_date="2024-06-01")  # the demo defaults
    sqlite_connection("analytics_db", database_file)
    interval = {
        "ds": DS,
        "data_interval_start": datetime.datetime(2024, 5, 31, tzinfo=datetime.timezone.utc),
        "data_interval_end": datetime.datetime(2024, 6, 1, tzinfo=datetime.timezone.utc),
    }
    run_id = "scheduled__2024-05-31T00:00:00+00:00"

    def context(stage: str, upstream: str | None = None, outputs: dict | None = None):
        inputs = {upstream: outputs} if upstream else {}
        return make_context(stage, inputs, run_id=run_id, airflow_context=interval)

    extracted = database.run(database.Config(**REFERENCE["extract"]), context("extract"))
    features = user_engagement.run(
        user_engagement.Config(**REFERENCE["transform_features"]),
        context("transform_features", "extract", extracted),
    )
    trained = matrix_factorization.run(
        matrix_factorization.Config(**REFERENCE["train"]), context("train", "transform_features", features)
    )
    evaluated = recommender.run(
        recommender.Config(**REFERENCE["evaluate"]), context("evaluate", "train", trained)
    )
    # The registry of the reference spec is on S3; here it lives in a local folder.
    register_config = register_model.Config(
        **{**REFERENCE["register"], "registry": f"file://{tmp_path}/models/acme/"}
    )
    registered = register_model.run(register_config, context("register", "evaluate", evaluated))

    with sqlite3.connect(database_file) as direct:
        (after_cutoff,) = direct.execute(
            "SELECT count(*) FROM user_events WHERE date > '2024-03-02'"
        ).fetchone()
    assert extracted["metrics"]["rows"] == after_cutoff

    metrics = evaluated["metrics"]
    print(
        f"demo: model recall@10={metrics['recall@10']:.4f} ndcg@10={metrics['ndcg@10']:.4f} "
        f"coverage={metrics['coverage']:.4f}; popularity recall@10={metrics['baseline.recall@10']:.4f} "
        f"ndcg@10={metrics['baseline.ndcg@10']:.4f}; epochs {trained['metrics']['epochs_run']}"
    )
    assert metrics["recall@10"] >= 0.15 and metrics["passed.recall@10"] == 1.0
    assert metrics["ndcg@10"] >= 0.12 and metrics["passed.ndcg@10"] == 1.0
    assert metrics["all_metrics_passed"] == 1.0
    assert metrics["recall@10"] >= 1.5 * metrics["baseline.recall@10"]

    assert trained["metrics"]["epochs_run"] <= 50
    assert registered["metrics"] == {"version": 1, "promoted": 1.0, "reused": 0.0}
    alias = register_model.read_alias(register_config.registry, "demo")
    assert alias is not None and alias["version"] == 1
    metadata = register_model.read_metadata(register_config.registry, "demo", 1)
    assert metadata["metrics"]["recall@10"] == metrics["recall@10"]
    assert set(metadata["artifacts"]) >= {"model", "user_index", "item_index", "split", "report"}


def test_demo_data_is_reproducible_and_realistic(tmp_path):
    first, second, other = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    arguments = {"n_users": 300, "n_items": 200, "n_events": 20_000, "end_date": "2024-06-01", "days": 30}
    assert generate_user_events(first, seed=1, **arguments) == 20_000
    generate_user_events(second, seed=1, **arguments)
    generate_user_events(other, seed=2, **arguments)

    def rows(path):
        with sqlite3.connect(path) as connection:
            return connection.execute("SELECT * FROM user_events ORDER BY rowid").fetchall()

    events = rows(first)
    assert events == rows(second)
    assert events != rows(other)
    assert {event[2] for event in events} == {"view", "click", "purchase"}
    dates = [event[4] for event in events]
    assert min(dates) >= "2024-05-02 00:00:00" and max(dates) < "2024-06-01 00:00:00"
    # Zipf popularity: the top 10% of items draw far more than 10% of events.
    counts = np.sort(np.bincount([event[1] for event in events], minlength=200))[::-1]
    assert counts[:20].sum() > 0.3 * len(events)
    # Regenerating replaces the table rather than appending to it.
    generate_user_events(first, seed=1, **arguments)
    assert len(rows(first)) == 20_000


def test_demo_data_command_line(tmp_path, capsys):
    from airflow_mlpipe.demo_data import main

    main(
        [
            str(tmp_path / "cli.db"),
            "--users",
            "50",
            "--items",
            "20",
            "--events",
            "500",
            "--end-date",
            "2024-06-01",
        ]
    )
    assert "AIRFLOW_CONN_ANALYTICS_DB=sqlite:///" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "cli.db") as connection:
        assert connection.execute("SELECT count(*) FROM user_events").fetchone() == (500,)


@pytest.mark.parametrize("bad", [{"n_users": 0}, {"taste_strength": 1.5}])
def test_demo_data_rejects_bad_arguments(tmp_path, bad):
    with pytest.raises(ValueError):
        generate_user_events(tmp_path / "x.db", **bad)
