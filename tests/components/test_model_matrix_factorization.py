"""model.matrix_factorization: determinism, early stopping, and what it (never) trains on."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from airflow_mlpipe.components import _split
from airflow_mlpipe.components.model import matrix_factorization as mf

SMALL = {"factors": 16, "regularization": 0.05, "epochs": 8, "early_stopping_patience": None}


def _open(uri: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri).open("rb")


def _factors(result) -> tuple[np.ndarray, np.ndarray]:
    with _open(result["artifacts"]["model"]) as handle, np.load(handle) as model:
        return model["user_factors"], model["item_factors"]


def test_same_seed_gives_identical_factors_and_another_seed_does_not(interactions_upstream, make_context):
    upstream = interactions_upstream()
    first = mf.run(mf.Config(**SMALL, seed=3), make_context("train", upstream, run_id="a"))
    second = mf.run(mf.Config(**SMALL, seed=3), make_context("train", upstream, run_id="b"))
    other = mf.run(mf.Config(**SMALL, seed=4), make_context("train", upstream, run_id="c"))

    for same, again in zip(_factors(first), _factors(second), strict=True):
        assert np.array_equal(same, again)
    assert not np.array_equal(_factors(first)[0], _factors(other)[0])
    assert first["metrics"] == second["metrics"]


def test_early_stopping_keeps_the_best_epoch(interactions_upstream, make_context):
    upstream = interactions_upstream()
    config = mf.Config(factors=16, regularization=0.01, epochs=30, early_stopping_patience=3, seed=1)
    result = mf.run(config, make_context("train", upstream, run_id="early"))
    with _open(result["artifacts"]["history"]) as handle:
        history = json.load(handle)["values"]
    metrics = result["metrics"]

    assert metrics["epochs_run"] == len(history)
    best = metrics["best_epoch"]
    assert history[best - 1] == max(history) == metrics["val_recall@10"]
    assert all(value <= history[best - 1] for value in history[best:])
    # it stopped exactly `patience` epochs after the best one (or ran out of epochs)
    assert metrics["epochs_run"] == best + 3 < 30

    # The factors kept are the best epoch's: training exactly that many epochs reproduces them.
    replay = mf.Config(factors=16, regularization=0.01, epochs=best, early_stopping_patience=None, seed=1)
    replayed = mf.run(replay, make_context("train", upstream, run_id="replay"))
    for kept, again in zip(_factors(result), _factors(replayed), strict=True):
        assert np.array_equal(kept, again)


def test_patience_counts_epochs_without_improvement(interactions_upstream, make_context):
    upstream = interactions_upstream()
    # No epoch can improve by more than 1.0 on a metric in [0, 1]: only the first counts as best.
    never_better = mf.Config(**{**SMALL, "epochs": 20, "early_stopping_patience": 4}, min_improvement=1.0)
    stopped = mf.run(never_better, make_context("train", upstream, run_id="stop"))
    assert (stopped["metrics"]["best_epoch"], stopped["metrics"]["epochs_run"]) == (1, 5)

    no_patience = mf.run(mf.Config(**{**SMALL, "epochs": 6}), make_context("train", upstream, run_id="all"))
    assert no_patience["metrics"]["epochs_run"] == 6


def test_training_never_sees_held_out_pairs(interactions_upstream, make_context, monkeypatch):
    upstream = interactions_upstream()
    seen = {}
    original = mf.train_als

    def spy(config, train_matrix, validation_matrix, log):
        seen["train"], seen["validation"] = train_matrix.copy(), validation_matrix.copy()
        return original(config, train_matrix, validation_matrix, log)

    monkeypatch.setattr(mf, "train_als", spy)
    config = mf.Config(**SMALL, test_split=0.25, split_seed=11)
    result = mf.run(config, make_context("train", upstream))

    with _open(upstream["features"]["artifacts"]["interactions"]) as handle:
        table = pq.read_table(handle)
    with _open(result["artifacts"]["user_index"]) as handle:
        user_row = dict(zip(*pq.read_table(handle).to_pydict().values(), strict=True))
    with _open(result["artifacts"]["item_index"]) as handle:
        item_row = dict(zip(*pq.read_table(handle).to_pydict().values(), strict=True))
    users = table.column("user_id").to_numpy()
    items = table.column("item_id").to_numpy()
    test = _split.held_out(users, items, 0.25, 11)
    rows = np.array([user_row[u] for u in users])
    cols = np.array([item_row[i] for i in items])

    trained = np.asarray(seen["train"][rows, cols]).ravel() != 0
    validated = np.asarray(seen["validation"][rows, cols]).ravel() != 0
    assert test.sum() > 0.2 * len(test)
    assert not (trained & test).any(), "a held-out test pair was in the training matrix"
    assert not (validated & test).any(), "a held-out test pair was used for early stopping"
    assert not (trained & validated).any()
    assert (trained | validated | test).all()  # every other pair is used
    assert seen["train"].nnz == int(trained.sum())

    with _open(result["artifacts"]["split"]) as handle:
        record = json.load(handle)
    assert (record["test_split"], record["split_seed"], record["test_pairs"]) == (0.25, 11, int(test.sum()))
    assert result["metrics"]["test_interactions"] == int(test.sum())


def test_artifacts_map_ids_to_factor_rows(interactions_upstream, make_context):
    upstream = interactions_upstream()
    result = mf.run(mf.Config(**SMALL), make_context("train", upstream))
    user_factors, item_factors = _factors(result)
    with _open(result["artifacts"]["user_index"]) as handle:
        user_index = pq.read_table(handle)
    with _open(result["artifacts"]["item_index"]) as handle:
        item_index = pq.read_table(handle)
    assert user_index.column_names == ["user_id", "index"]
    assert user_factors.shape == (user_index.num_rows, 16)
    assert item_factors.shape == (item_index.num_rows, 16)
    assert sorted(user_index.column("index").to_pylist()) == list(range(user_index.num_rows))
    assert result["artifacts"]["interactions"] == upstream["features"]["artifacts"]["interactions"]


def test_config_validates_the_validation_metric():
    assert mf.Config(validation_metric="ndcg@20").validation_metric == "ndcg@20"
    with pytest.raises(ValidationError, match="unknown metric"):
        mf.Config(validation_metric="recall")
    with pytest.raises(ValidationError, match="coverage does not measure accuracy"):
        mf.Config(validation_metric="coverage")


def test_defaults_are_the_measured_ones_and_a_single_interaction_outweighs_a_missing_one():
    config = mf.Config()
    assert (config.factors, config.regularization, config.alpha, config.refit) == (64, 20.0, 3.0, True)
    # implicit weighs every unobserved entry 1: one interaction of weight 1 must count for more.
    assert 1 + config.alpha * np.log1p(1.0) > 1


def test_confidence_is_one_plus_alpha_times_the_scaled_weight(
    interactions_upstream, make_context, monkeypatch
):
    upstream = interactions_upstream()
    seen = {}
    original = mf.train_als

    def spy(config, train_matrix, validation_matrix, log):
        seen["train"] = train_matrix.copy()
        return original(config, train_matrix, validation_matrix, log)

    monkeypatch.setattr(mf, "train_als", spy)
    with _open(upstream["features"]["artifacts"]["interactions"]) as handle:
        weights = set(pq.read_table(handle).column("weight").to_pylist())
    mf.run(mf.Config(**SMALL, alpha=2.0), make_context("train", upstream, run_id="log"))
    expected = {np.float32(1 + 2.0 * np.log1p(w)) for w in weights}
    assert set(np.unique(seen["train"].data)) <= expected

    mf.run(mf.Config(**SMALL, alpha=2.0, confidence="linear"), make_context("train", upstream, run_id="lin"))
    assert set(np.unique(seen["train"].data)) <= {np.float32(1 + 2.0 * w) for w in weights}


def test_refit_retrains_on_train_and_validation_pairs_for_the_best_epoch_count(
    interactions_upstream, make_context, monkeypatch
):
    upstream = interactions_upstream()
    config = {"factors": 16, "regularization": 5.0, "epochs": 30, "early_stopping_patience": 3, "seed": 2}
    fits = []
    original = mf.fit_als

    def spy(config, matrix, epochs):
        fits.append((matrix.copy(), epochs))
        return original(config, matrix, epochs)

    monkeypatch.setattr(mf, "fit_als", spy)
    refit = mf.run(mf.Config(**config), make_context("train", upstream, run_id="refit"))
    assert len(fits) == 1
    matrix, epochs = fits[0]
    assert epochs == refit["metrics"]["best_epoch"]
    train_and_validation = (
        refit["metrics"]["train_interactions"] + refit["metrics"]["validation_interactions"]
    )
    assert matrix.nnz == train_and_validation

    no_refit = mf.run(mf.Config(**config, refit=False), make_context("train", upstream, run_id="plain"))
    assert len(fits) == 1  # no refit without refit
    # The early-stopping run is the same, so are the validation metrics; the models differ.
    assert refit["metrics"] == no_refit["metrics"]
    assert not np.array_equal(_factors(refit)[1], _factors(no_refit)[1])
    # The refit is the training of best_epoch epochs on train + validation, from the seed.
    expected = original(mf.Config(**config), matrix, epochs)
    for saved, again in zip(_factors(refit), expected, strict=True):
        assert np.array_equal(saved, again)


def test_reports_val_recall_and_ndcg_at_10_whatever_early_stopping_uses(interactions_upstream, make_context):
    upstream = interactions_upstream()
    config = mf.Config(**SMALL, validation_metric="map@5")
    result = mf.run(config, make_context("train", upstream))
    metrics = result["metrics"]
    assert {"val_map@5", "val_recall@10", "val_ndcg@10"} <= set(metrics)
    assert set(mf.produces(config).metrics) == set(metrics)
    with _open(result["artifacts"]["history"]) as handle:
        history = json.load(handle)
    best = history["metrics"][metrics["best_epoch"] - 1]
    assert best == {
        "map@5": metrics["val_map@5"],
        "recall@10": metrics["val_recall@10"],
        "ndcg@10": metrics["val_ndcg@10"],
    }
    assert 0 < metrics["val_recall@10"] <= 1 and 0 < metrics["val_ndcg@10"] <= 1


def test_the_model_artifact_says_it_is_an_als_model_and_its_bytes_are_reproducible(
    interactions_upstream, make_context
):
    from airflow_mlpipe.components import _model_artifact

    upstream = interactions_upstream()
    first = mf.run(mf.Config(**SMALL), make_context("train", upstream, run_id="a"))
    second = mf.run(mf.Config(**SMALL), make_context("train", upstream, run_id="b"))
    with _open(first["artifacts"]["model"]) as handle:
        data = handle.read()
    with _open(second["artifacts"]["model"]) as handle:
        assert handle.read() == data  # same training, same bytes: digests match across runs
    model = _model_artifact.loads(data)
    assert model.kind == "als"
    assert model.manifest["component"] == "model.matrix_factorization"
    assert model.manifest["scoring"] == "user_factors[user] @ item_factors.T"
    assert model.manifest["arrays"] == {
        "user_factors": list(model.arrays["user_factors"].shape),
        "item_factors": list(model.arrays["item_factors"].shape),
    }
    assert model.manifest["hyperparameters"]["factors"] == 16


def test_without_refit_early_stopping_saves_the_best_epochs_factors(interactions_upstream, make_context):
    upstream = interactions_upstream()
    config = {"factors": 16, "regularization": 0.01, "seed": 1, "refit": False}
    stopped = mf.run(
        mf.Config(**config, epochs=30, early_stopping_patience=3), make_context("train", upstream, run_id="a")
    )
    best = stopped["metrics"]["best_epoch"]
    assert best < stopped["metrics"]["epochs_run"]  # later epochs overwrote the model after the best one
    replay = mf.Config(**config, epochs=best, early_stopping_patience=None)
    replayed = mf.run(replay, make_context("train", upstream, run_id="b"))
    for kept, again in zip(_factors(stopped), _factors(replayed), strict=True):
        assert np.array_equal(kept, again)


def test_factors_start_where_implicit_itself_would_start_them():
    import scipy.sparse as sp

    from airflow_mlpipe.components.model.matrix_factorization import _als

    rng = np.random.default_rng(0)
    matrix = sp.random(120, 40, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    config = mf.Config(factors=8, seed=5)
    ours = _als(config, *matrix.shape)
    theirs = _als(config, *matrix.shape)
    theirs.user_factors = theirs.item_factors = None  # implicit draws them from the seed in its fit
    for model in (ours, theirs):
        model.fit(matrix, show_progress=False)
    assert np.array_equal(ours.user_factors, theirs.user_factors)
    assert np.array_equal(ours.item_factors, theirs.item_factors)
