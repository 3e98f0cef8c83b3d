"""model.ease: the closed form, what it (never) trains on, its memory check, and its model artifact."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from airflow_mlpipe.components import _model_artifact, _split
from airflow_mlpipe.components.evaluation import recommender as evaluation
from airflow_mlpipe.components.model import ease


def _read(uri: str) -> bytes:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri).read_bytes()


def _weights(result) -> np.ndarray:
    return _model_artifact.loads(_read(result["artifacts"]["model"])).arrays["item_weights"]


def _rows(result, name: str) -> dict:
    table = pq.read_table(pa.BufferReader(_read(result["artifacts"][name])))
    return dict(zip(*table.to_pydict().values(), strict=True))


def test_fit_is_the_closed_form_solution():
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 12)) < 0.3).astype(np.float64)
    import scipy.sparse as sp

    weights = ease.fit_ease(sp.csr_matrix(dense * 3.0), l2=5.0)  # weights are ignored: binary
    gram = dense.T @ dense + 5.0 * np.eye(12)
    inverse = np.linalg.inv(gram)
    expected = -inverse / np.diag(inverse)
    np.fill_diagonal(expected, 0.0)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    # B minimises ||X - XB||^2 + l2 ||B||^2 with diag(B) = 0: the gradient vanishes off the diagonal.
    gradient = gram @ expected - dense.T @ dense
    off_diagonal = ~np.eye(12, dtype=bool)
    np.testing.assert_allclose(gradient[off_diagonal], 0.0, atol=1e-8)


def test_trains_on_train_pairs_validates_on_validation_and_refits_without_the_test_pairs(
    interactions_upstream, make_context, monkeypatch
):
    upstream = interactions_upstream()
    fitted = []
    original = ease.fit_ease

    def spy(matrix, l2, num_threads=1):
        fitted.append(matrix.copy())
        return original(matrix, l2, num_threads)

    monkeypatch.setattr(ease, "fit_ease", spy)
    result = ease.run(ease.Config(l2=10.0, test_split=0.25, split_seed=3), make_context("train", upstream))

    table = pq.read_table(pa.BufferReader(_read(upstream["features"]["artifacts"]["interactions"])))
    users = table.column("user_id").to_numpy()
    items = table.column("item_id").to_numpy()
    test = _split.held_out(users, items, 0.25, 3)
    validation = ~test & _split.held_out(users, items, 0.1, 3, _split.VALIDATION_SALT)
    user_row, item_row = _rows(result, "user_index"), _rows(result, "item_index")
    rows = np.array([user_row[u] for u in users])
    cols = np.array([item_row[i] for i in items])

    first, refit = fitted
    in_first = np.asarray(first[rows, cols]).ravel() != 0
    in_refit = np.asarray(refit[rows, cols]).ravel() != 0
    assert (in_first == (~test & ~validation)).all(), "the validated model trains on the training pairs only"
    assert (in_refit == ~test).all(), "the refit adds the validation pairs, never the test pairs"
    metrics = result["metrics"]
    assert metrics["train_interactions"] == first.nnz
    assert metrics["validation_interactions"] == int(validation.sum())
    assert metrics["test_interactions"] == int(test.sum())
    assert set(metrics) == set(ease.produces(ease.Config()).metrics)
    assert 0 < metrics["val_recall@10"] <= 1 and 0 < metrics["val_ndcg@10"] <= 1

    # The saved model is the refit: the closed form on train + validation pairs.
    np.testing.assert_array_equal(_weights(result), original(refit, 10.0))


def test_without_refit_the_saved_model_is_the_validated_one(interactions_upstream, make_context):
    upstream = interactions_upstream()
    plain = ease.run(ease.Config(l2=10.0, refit=False), make_context("train", upstream, run_id="a"))
    refit = ease.run(ease.Config(l2=10.0), make_context("train", upstream, run_id="b"))
    assert plain["metrics"] == refit["metrics"]  # the validation is the same
    assert not np.array_equal(_weights(plain), _weights(refit))


def test_same_inputs_give_the_same_bytes_and_a_manifest_that_says_ease(interactions_upstream, make_context):
    upstream = interactions_upstream()
    first = ease.run(ease.Config(l2=10.0), make_context("train", upstream, run_id="a"))
    second = ease.run(ease.Config(l2=10.0), make_context("train", upstream, run_id="b"))
    assert _read(first["artifacts"]["model"]) == _read(second["artifacts"]["model"])

    model = _model_artifact.loads(_read(first["artifacts"]["model"]))
    assert model.kind == "ease"
    assert model.manifest["component"] == "model.ease"
    assert model.manifest["scoring"] == "history[user] @ item_weights"
    assert model.manifest["hyperparameters"] == {"l2": 10.0, "refit": True}
    weights = model.arrays["item_weights"]
    assert weights.shape == (len(_rows(first, "item_index")),) * 2
    assert np.all(np.diag(weights) == 0)
    # numpy reads it like any .npz
    with np.load(pa.BufferReader(_read(first["artifacts"]["model"]))) as archive:
        assert np.array_equal(archive["item_weights"], weights)


def test_evaluation_scores_an_ease_model_and_it_beats_popularity(interactions_upstream, make_context):
    upstream = interactions_upstream()
    trained = ease.run(ease.Config(l2=10.0), make_context("train", upstream))
    config = evaluation.Config(metrics=["recall@10", "ndcg@10", "coverage"])
    result = evaluation.run(config, make_context("evaluate", {"train": trained}))
    metrics = result["metrics"]
    assert metrics["recall@10"] > metrics["baseline.recall@10"]
    assert metrics["ndcg@10"] > metrics["baseline.ndcg@10"]
    assert result["artifacts"]["model"] == trained["artifacts"]["model"]


def test_a_catalogue_too_large_for_memory_fails_before_allocating_with_the_figures_and_a_way_out():
    with pytest.raises(MemoryError) as error:
        ease.check_memory(100_000, limit_mb=4096)
    message = str(error.value)
    assert "100,000 x 100,000" in message and "120.0 GB" in message
    assert "memory_limit_mb (4096 MB)" in message
    assert "model.matrix_factorization" in message and "fewer items" in message
    ease.check_memory(10_000, limit_mb=2048)  # 1.2 GB fits in 2 GB

    available = ease.available_memory()
    assert available is None or available > 0


def test_the_memory_check_runs_before_training(interactions_upstream, make_context, monkeypatch):
    upstream = interactions_upstream()
    monkeypatch.setattr(ease, "fit_ease", lambda *args: pytest.fail("fitted although it does not fit"))
    # Without memory_limit_mb the limit is what the worker has available: pretend 100 kB.
    monkeypatch.setattr(ease, "available_memory", lambda: 100_000)
    with pytest.raises(
        MemoryError, match=r"120 x 120 item matrix: about 173 kB .* the 100 kB this worker has available"
    ):
        ease.run(ease.Config(l2=1.0), make_context("train", upstream))


def test_config():
    assert ease.Config().l2 == 200.0
    assert "l2" in ease.Config.model_fields and ease.Config.model_fields["l2"].json_schema_extra
    with pytest.raises(ValidationError):
        ease.Config(l2=0)
    with pytest.raises(ValidationError, match="coverage does not measure accuracy"):
        ease.Config(validation_metric="coverage")
