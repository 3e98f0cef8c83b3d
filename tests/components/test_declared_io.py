"""The built-ins' ``produces``/``requires``/``extra`` declarations are true of what ``run`` does.

Each component runs through the runner (``airflow_mlpipe.testing.run_component`` calls
``run_stage``), so a declared output that ``run`` does not return, or an upstream artifact it
requires that is not there, fails with the runner's ``ContractError``. On top of that:

* what ``run`` returns is exactly what it declares (nothing undeclared that it always returns);
* upstream stages offering exactly the required artifacts are enough (``run`` reads nothing
  else), and taking any one of them away fails before ``run``, with the runner's message.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_mlpipe.contract import ContractError, Extra, StageOutputs
from airflow_mlpipe.resolver import Component, resolve_component
from airflow_mlpipe.runner import check_outputs
from airflow_mlpipe.testing import run_component

TRAIN = {"factors": 8, "regularization": 0.05, "epochs": 3, "early_stopping_patience": None, "seed": 5}
EVENTS = [
    (user, item, kind, float(value), f"2024-05-{day:02d} 12:00:00")
    for user, item, kind, value, day in [
        (1, 10, "view", 1, 20),
        (1, 11, "purchase", 25, 21),
        (2, 10, "click", 3, 22),
        (2, 12, "view", 2, 23),
        (3, 11, "view", 4, 24),
    ]
]


def _component(name: str) -> Component:
    return resolve_component(name, allowed_prefixes=())


def _assert_returns_exactly_what_it_declares(
    name: str, config: Mapping[str, Any], outputs: StageOutputs, passed_through: set[str] = frozenset()
) -> None:
    """``outputs`` has every declared name and nothing else (but artifacts merely passed through)."""
    component = _component(name)
    validated = component.config_model.model_validate(dict(config))
    declared = component.produces(validated)
    assert declared is not None, f"{name} declares no produces"
    assert set(outputs.artifacts) - passed_through == set(declared.artifacts)
    assert set(outputs.metrics) == set(declared.metrics)
    # ... and the declaration is what the runner checks: without any one of them, the stage fails.
    for artifact in declared.artifacts:
        less = {"artifacts": {k: v for k, v in outputs.artifacts.items() if k != artifact}}
        with pytest.raises(ContractError, match=f"produces artifact '{artifact}'"):
            check_outputs(component, validated, {**less, "metrics": dict(outputs.metrics)})
    for metric in declared.metrics:
        less = {"metrics": {k: v for k, v in outputs.metrics.items() if k != metric}}
        with pytest.raises(ContractError, match=f"metric '{metric}'"):
            check_outputs(component, validated, {"artifacts": dict(outputs.artifacts), **less})


def _assert_each_required_artifact_is_checked_first(
    name: str, config: Mapping[str, Any], upstream_stage: str, artifacts: Mapping[str, str]
) -> None:
    """Without any one required artifact upstream, the runner refuses before ``run`` starts."""
    component = _component(name)
    required = component.requires(component.config_model.model_validate(dict(config)))
    assert required is not None and set(required.artifacts) == set(artifacts)
    for missing in required.artifacts:
        fewer = {k: v for k, v in artifacts.items() if k != missing}
        with pytest.raises(ContractError, match=f"requires the upstream artifact\\(s\\) '{missing}'"):
            run_component(name, config, inputs={upstream_stage: {"artifacts": fewer}})


def _events_db(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE user_events (user_id, item_id, event_type, value, date)")
        connection.executemany("INSERT INTO user_events VALUES (?, ?, ?, ?, ?)", EVENTS)
    connection.close()
    return path


# -- data.extract.database ----------------------------------------------------------------------


def test_extract_returns_what_it_declares_and_requires_nothing(tmp_path, sqlite_connection):
    sqlite_connection("analytics_db", _events_db(tmp_path / "events.db"))
    config = {"query": "SELECT * FROM user_events", "conn_id": "analytics_db", "batch_size": 2}

    outputs = run_component("data.extract.database", config, artifact_dir=tmp_path / "out")

    _assert_returns_exactly_what_it_declares("data.extract.database", config, outputs)
    assert outputs.metrics == {"rows": 5, "batches": 3}
    component = _component("data.extract.database")
    assert component.requires(component.config_model.model_validate(config)).artifacts == ()
    assert component.extra is None  # SQLAlchemy and pyarrow come with the package itself


# -- features.user_engagement -------------------------------------------------------------------


@pytest.fixture
def events_parquet(tmp_path: Path) -> str:
    import pyarrow as pa

    columns = list(zip(*EVENTS, strict=True))
    table = pa.table(dict(zip(["user_id", "item_id", "event_type", "value", "date"], columns, strict=True)))
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    return f"file://{path}"


@pytest.mark.parametrize("input_artifact", ["data", "events"])
def test_features_read_exactly_the_configured_input_artifact(tmp_path, events_parquet, input_artifact):
    config = {"window_days": 30, "window_end": "2024-06-01T00:00:00", "input_artifact": input_artifact}
    inputs = {"extract": {"artifacts": {input_artifact: events_parquet}}}

    outputs = run_component("features.user_engagement", config, inputs=inputs, artifact_dir=tmp_path / "out")

    _assert_returns_exactly_what_it_declares("features.user_engagement", config, outputs)
    assert outputs.metrics == {"events": 5, "users": 3, "items": 3, "interactions": 5}
    _assert_each_required_artifact_is_checked_first(
        "features.user_engagement", config, "extract", {input_artifact: events_parquet}
    )
    assert _component("features.user_engagement").extra is None  # pyarrow only


# -- model.matrix_factorization and evaluation.recommender --------------------------------------


@pytest.fixture(scope="module")
def interactions_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    import pyarrow as pa

    # 120 users, 60 items in 6 taste groups: each user has 12 items of its group and 3 others.
    pairs = [(user, item) for user in range(120) for item in range(60) if item % 6 == user % 6]
    pairs += [(user, (user * 7 + step) % 60) for user in range(120) for step in (1, 2, 3)]
    unique = sorted(set(pairs))
    table = pa.table(
        {
            "user_id": [1000 + user for user, _ in unique],
            "item_id": [5000 + item for _, item in unique],
            "weight": [float(1 + (user + item) % 5) for user, item in unique],
        }
    )
    path = tmp_path_factory.mktemp("interactions") / "interactions.parquet"
    pq.write_table(table, path)
    return f"file://{path}"


@pytest.fixture(scope="module")
def trained(interactions_uri: str, tmp_path_factory: pytest.TempPathFactory) -> StageOutputs:
    return run_component(
        "model.matrix_factorization",
        TRAIN,
        inputs={"features": {"artifacts": {"interactions": interactions_uri}}},
        artifact_dir=tmp_path_factory.mktemp("train"),
    )


@pytest.mark.parametrize("validation_metric", ["recall@10", "ndcg@5"])
def test_training_returns_what_it_declares_for_its_validation_metric(
    tmp_path, interactions_uri, validation_metric
):
    config = {**TRAIN, "validation_metric": validation_metric}
    inputs = {"features": {"artifacts": {"interactions": interactions_uri}}}

    outputs = run_component("model.matrix_factorization", config, inputs=inputs, artifact_dir=tmp_path)

    _assert_returns_exactly_what_it_declares("model.matrix_factorization", config, outputs)
    assert f"val_{validation_metric}" in outputs.metrics
    _assert_each_required_artifact_is_checked_first(
        "model.matrix_factorization", config, "features", {"interactions": interactions_uri}
    )


def test_ease_returns_what_it_declares_and_evaluation_accepts_it(tmp_path, interactions_uri):
    config = {"l2": 5.0, "validation_metric": "map@5"}
    inputs = {"features": {"artifacts": {"interactions": interactions_uri}}}

    outputs = run_component("model.ease", config, inputs=inputs, artifact_dir=tmp_path / "train")

    _assert_returns_exactly_what_it_declares("model.ease", config, outputs)
    assert {"val_recall@10", "val_ndcg@10", "val_map@5"} <= set(outputs.metrics)
    _assert_each_required_artifact_is_checked_first(
        "model.ease", config, "features", {"interactions": interactions_uri}
    )
    evaluated = run_component(
        "evaluation.recommender", {}, inputs={"train": outputs}, artifact_dir=tmp_path / "evaluate"
    )
    _assert_returns_exactly_what_it_declares("evaluation.recommender", {}, evaluated)


def test_training_reads_the_configured_input_artifact(tmp_path, interactions_uri):
    config = {**TRAIN, "input_artifact": "pairs"}
    outputs = run_component(
        "model.matrix_factorization",
        config,
        inputs={"features": {"artifacts": {"pairs": interactions_uri}}},
        artifact_dir=tmp_path,
    )
    _assert_returns_exactly_what_it_declares("model.matrix_factorization", config, outputs)
    with pytest.raises(ContractError, match="'pairs'"):
        run_component(
            "model.matrix_factorization",
            config,
            inputs={"features": {"artifacts": {"interactions": interactions_uri}}},
        )


EVALUATIONS = [
    pytest.param(
        {"metrics": ["recall@10", "ndcg@10", "coverage"], "thresholds": {"recall@10": 0.0}}, id="baseline"
    ),
    pytest.param(
        {"metrics": ["ndcg@5", "hit_rate@3"], "baseline": False, "thresholds": {}}, id="no-baseline"
    ),
    pytest.param(
        {"metrics": ["map@10"], "thresholds": {"map@10": 0.5}, "max_users": 30}, id="threshold-sampled"
    ),
]


@pytest.mark.parametrize("config", EVALUATIONS)
def test_evaluation_needs_exactly_the_required_artifacts_and_returns_what_it_declares(
    tmp_path, trained, config
):
    required = {name: trained.artifacts[name] for name in ("model", "user_index", "item_index", "split")}
    required["interactions"] = trained.artifacts["interactions"]

    # Only the required artifacts upstream: enough, and then nothing but the declared ones come back.
    outputs = run_component(
        "evaluation.recommender", config, inputs={"train": {"artifacts": required}}, artifact_dir=tmp_path
    )
    _assert_returns_exactly_what_it_declares("evaluation.recommender", config, outputs)
    _assert_each_required_artifact_is_checked_first("evaluation.recommender", config, "train", required)


def test_evaluation_passes_other_model_artifacts_on(tmp_path, trained):
    config = {"metrics": ["recall@10"]}
    outputs = run_component(
        "evaluation.recommender", config, inputs={"train": trained.to_dict()}, artifact_dir=tmp_path
    )
    # 'history' is not required, so not declared; it is passed on when training wrote one.
    _assert_returns_exactly_what_it_declares("evaluation.recommender", config, outputs, {"history"})
    assert outputs.artifacts["history"] == trained.artifacts["history"]
    assert "interactions" not in outputs.artifacts  # training data, not part of the model


# -- extras -------------------------------------------------------------------------------------

ML_STACK = ("numpy", "scipy", "implicit", "threadpoolctl")

#: Runs one component in a fresh interpreter; prints the ML modules loaded before and after.
_PROBE = """
import json, sys
from airflow_mlpipe.testing import run_component

def loaded():
    return sorted({name.split(".")[0] for name in sys.modules} & set(STACK))

before = loaded()
run_component(NAME, CONFIG, inputs=INPUTS)
print(json.dumps({"before": before, "after": loaded()}))
"""


def _ml_modules_loaded_by(name: str, config: dict, inputs: dict, airflow_home: Path) -> dict[str, list]:
    values = f"STACK, NAME, CONFIG, INPUTS = {ML_STACK!r}, {name!r}, {config!r}, {inputs!r}"
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home)}
    completed = subprocess.run(
        [sys.executable, "-c", values + _PROBE], capture_output=True, text=True, env=env, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_each_extra_names_exactly_the_ml_modules_its_run_loads(interactions_uri, trained, tmp_path):
    training, evaluation = _component("model.matrix_factorization"), _component("evaluation.recommender")
    assert training.extra == Extra("recommender", modules=ML_STACK)
    assert evaluation.extra == Extra("recommender", modules=("numpy", "scipy"))

    train_inputs = {"features": {"artifacts": {"interactions": interactions_uri}}}
    loaded = _ml_modules_loaded_by("model.matrix_factorization", TRAIN, train_inputs, tmp_path)
    assert loaded == {"before": [], "after": sorted(training.extra.modules)}

    evaluate_inputs = {"train": trained.to_dict()}
    loaded = _ml_modules_loaded_by("evaluation.recommender", {}, evaluate_inputs, tmp_path)
    assert loaded == {"before": [], "after": sorted(evaluation.extra.modules)}
