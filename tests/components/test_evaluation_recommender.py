"""evaluation.recommender and the ranking helpers: hand-computed metrics, hold-out agreement, scale."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from pydantic import ValidationError

from airflow_mlpipe.components import _ranking
from airflow_mlpipe.components.evaluation import recommender
from airflow_mlpipe.components.model import matrix_factorization as mf

TRAIN = {"factors": 16, "regularization": 0.05, "epochs": 6, "early_stopping_patience": None, "seed": 5}


def _csr(sets: list[set[int]], n_items: int) -> sp.csr_matrix:
    rows = [user for user, items in enumerate(sets) for _ in items]
    cols = [item for items in sets for item in sorted(items)]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), n_items))


# Three users, six items; item factors are the identity so a user's factors are its scores.
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.5, 0.5, 0.1, 0.9, 0.2, 0.3],
    ],
    dtype=np.float32,
)
SEEN = [{0}, {4, 5}, set()]
RELEVANT = [{2, 5}, {3}, {4}]


def test_metrics_on_a_hand_computed_example():
    # Top 3 unseen: user 0 -> [1, 2, 3] (hit at rank 2); user 1 -> [3, 2, 1] (hit at rank 1);
    # user 2 -> [3, 0, 1] (items 0 and 1 tie: the lower index first; no hit).
    result = _ranking.evaluate(
        _ranking.factor_recommender(SCORES, np.eye(6, dtype=np.float32)),
        np.arange(3),
        _csr(SEEN, 6),
        _csr(RELEVANT, 6),
        ["recall@3", "precision@3", "ndcg@3", "map@3", "hit_rate@3", "recall@1", "coverage"],
    )
    ndcg_user0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))  # hit at rank 2 of 2 relevant
    expected = {
        "recall@3": (1 / 2 + 1 + 0) / 3,
        "precision@3": (1 / 3 + 1 / 3 + 0) / 3,
        "ndcg@3": (ndcg_user0 + 1 + 0) / 3,
        "map@3": ((1 / 2) / 2 + 1 + 0) / 3,  # user 0: precision@2 = 1/2 over min(2, 3) relevant
        "hit_rate@3": 2 / 3,
        "recall@1": (0 + 1 + 0) / 3,
        "coverage": 4 / 6,  # items 0, 1, 2, 3 appear in some top 3 (k = largest k)
    }
    assert result == pytest.approx(expected)


def test_popularity_baseline_on_the_hand_example():
    popularity = np.array([5.0, 4, 3, 2, 1, 0])
    top = _ranking.top_k_popular(popularity, _csr(SEEN, 6), 3)
    assert top.tolist() == [[1, 2, 3], [0, 1, 2], [0, 1, 2]]


def _brute_force_top_k(scores: np.ndarray, seen: list[set[int]], k: int) -> list[list[int]]:
    result = []
    for user, row in enumerate(scores):
        candidates = sorted((i for i in range(len(row)) if i not in seen[user]), key=lambda i: (-row[i], i))
        result.append((candidates[:k] + [-1] * k)[:k])
    return result


@pytest.mark.parametrize("seed", range(5))
def test_top_k_equals_a_brute_force_ranking(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 40, int(rng.integers(5, 400)), int(rng.integers(1, 30))
    scores = np.round(rng.standard_normal((n_users, n_items)), 1).astype(np.float32)  # many ties
    seen = [
        set(rng.choice(n_items, size=int(rng.integers(0, n_items)), replace=False).tolist())
        for _ in range(n_users)
    ]
    expected = _brute_force_top_k(scores, seen, k)
    assert _ranking.top_k_unseen(scores.copy(), _csr(seen, n_items), k).tolist() == expected
    popularity = np.round(rng.random(n_items), 1)
    tiled = np.tile(popularity, (n_users, 1))
    assert _ranking.top_k_popular(popularity, _csr(seen, n_items), k).tolist() == _brute_force_top_k(
        tiled, seen, k
    )


def _random_pairs(rng: np.random.Generator, n_users: int, n_items: int, n: int) -> sp.csr_matrix:
    matrix = sp.csr_matrix(
        (np.ones(n), (rng.integers(0, n_users, n), rng.integers(0, n_items, n))), shape=(n_users, n_items)
    )
    matrix.data[:] = 1.0  # duplicates were summed
    return matrix


def test_vectorised_evaluation_of_100k_users():
    rng = np.random.default_rng(0)
    n_users, n_items = 100_000, 5_000
    user_factors = rng.standard_normal((n_users, 16), dtype=np.float32)
    item_factors = rng.standard_normal((n_items, 16), dtype=np.float32)
    seen = _random_pairs(rng, n_users, n_items, 10 * n_users)
    relevant = _random_pairs(rng, n_users, n_items, 2 * n_users)
    relevant = (relevant - relevant.multiply(seen)).tocsr()  # test pairs are never known ones
    relevant.eliminate_zeros()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    metrics = ["recall@10", "ndcg@10", "map@10", "coverage"]

    result = _ranking.evaluate(
        _ranking.factor_recommender(user_factors, item_factors),
        users,
        seen,
        relevant,
        metrics,
        batch_users=_ranking.batch_size_for(n_items),
    )
    assert len(users) > 80_000
    assert all(0.0 <= value <= 1.0 for value in result.values())
    # The batched answer for a sample of users equals scoring those users one by one.
    sample = users[:: len(users) // 50][:50]
    one_by_one = [
        _ranking.evaluate(
            _ranking.factor_recommender(user_factors, item_factors),
            np.array([user]),
            seen,
            relevant,
            metrics[:3],
        )
        for user in sample
    ]
    batched = _ranking.evaluate(
        _ranking.factor_recommender(user_factors, item_factors), sample, seen, relevant, metrics[:3]
    )
    for name in metrics[:3]:
        assert batched[name] == pytest.approx(np.mean([single[name] for single in one_by_one]))


# -- the component ------------------------------------------------------------------------------


@pytest.fixture
def trained(interactions_upstream, make_context):
    upstream = interactions_upstream()
    return mf.run(mf.Config(**TRAIN), make_context("train", upstream))


def _read_parquet(uri: str) -> pa.Table:
    from airflow.sdk import ObjectStoragePath

    with ObjectStoragePath(uri).open("rb") as handle:
        return pq.read_table(handle)


def _reference_metrics(train_outputs: dict, test_split: float, split_seed: int, k: int) -> dict[str, float]:
    """A plain, per-user implementation to check the component against."""
    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.components import _split

    artifacts = train_outputs["artifacts"]
    table = _read_parquet(artifacts["interactions"])
    user_row = dict(zip(*_read_parquet(artifacts["user_index"]).to_pydict().values(), strict=True))
    item_row = dict(zip(*_read_parquet(artifacts["item_index"]).to_pydict().values(), strict=True))
    with ObjectStoragePath(artifacts["model"]).open("rb") as handle, np.load(handle) as model:
        scores = model["user_factors"] @ model["item_factors"].T
    users, items = table.column("user_id").to_numpy(), table.column("item_id").to_numpy()
    test = _split.held_out(users, items, test_split, split_seed)
    known: dict[int, set[int]] = {}
    held: dict[int, set[int]] = {}
    for user, item, is_test in zip(users, items, test, strict=True):
        (held if is_test else known).setdefault(user_row[user], set()).add(item_row[item])
    popularity = np.zeros(scores.shape[1])
    for items_known in known.values():
        popularity[list(items_known)] += 1

    def metrics_for(score_of) -> dict[str, float]:
        recalls, ndcgs = [], []
        for user in sorted(set(held) & set(known)):
            row = score_of(user)
            ranked = sorted((i for i in range(len(row)) if i not in known[user]), key=lambda i: (-row[i], i))[
                :k
            ]
            hit = [item in held[user] for item in ranked]
            recalls.append(sum(hit) / len(held[user]))
            ideal = sum(1 / math.log2(r + 2) for r in range(min(len(held[user]), k)))
            ndcgs.append(sum(h / math.log2(r + 2) for r, h in enumerate(hit)) / ideal)
        return {f"recall@{k}": float(np.mean(recalls)), f"ndcg@{k}": float(np.mean(ndcgs))}

    model = metrics_for(lambda user: scores[user])
    baseline = metrics_for(lambda user: popularity)
    return {**model, **{f"baseline.{name}": value for name, value in baseline.items()}}


def test_metrics_match_a_per_user_reference_on_held_out_pairs(trained, make_context):
    config = recommender.Config(metrics=["recall@10", "ndcg@10", "coverage"], test_split=0.2)
    result = recommender.run(config, make_context("evaluate", {"train": trained}))
    expected = _reference_metrics(trained, 0.2, 0, 10)
    for name, value in expected.items():
        assert result["metrics"][name] == pytest.approx(value, rel=1e-9), name
    assert result["metrics"]["recall@10"] > result["metrics"]["baseline.recall@10"]


def test_evaluation_only_scores_pairs_training_never_saw(interactions_upstream, make_context, monkeypatch):
    captured: dict[str, sp.csr_matrix] = {}
    train_als = mf.train_als

    def spy_train(config, train_matrix, validation_matrix, log):
        captured["trained"] = train_matrix.copy()
        return train_als(config, train_matrix, validation_matrix, log)

    evaluate = _ranking.evaluate

    def spy_evaluate(recommend, users, seen, relevant, metrics, **kwargs):
        captured.setdefault("relevant", relevant.copy())
        captured.setdefault("known", seen.copy())
        return evaluate(recommend, users, seen, relevant, metrics, **kwargs)

    monkeypatch.setattr(mf, "train_als", spy_train)
    upstream = interactions_upstream()
    train_outputs = mf.run(mf.Config(**TRAIN, test_split=0.3, split_seed=9), make_context("train", upstream))
    monkeypatch.setattr(_ranking, "evaluate", spy_evaluate)  # after training, which validates with it
    recommender.run(
        recommender.Config(test_split=0.3, split_seed=9), make_context("evaluate", {"train": train_outputs})
    )

    trained, relevant, known = (captured[name] > 0 for name in ("trained", "relevant", "known"))
    assert relevant.nnz == train_outputs["metrics"]["test_interactions"] > 0
    assert trained.multiply(relevant).nnz == 0, "evaluated on pairs the model was trained on"
    assert trained.multiply(known).nnz == trained.nnz  # everything trained on is filtered as known


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"test_split": 0.3}, "training held out test_split=0.2"),
        ({"test_split": 0.2, "split_seed": 1}, "training used split_seed=0"),
    ],
)
def test_refuses_to_evaluate_with_other_split_settings(trained, make_context, settings, message):
    with pytest.raises(ValueError, match=message):
        recommender.run(recommender.Config(**settings), make_context("evaluate", {"train": trained}))


def test_refuses_when_the_interactions_changed_after_training(trained, make_context, tmp_path):
    table = _read_parquet(trained["artifacts"]["interactions"])
    changed = table.slice(0, table.num_rows - 40)  # a later run of the features stage, say
    path = tmp_path / "changed.parquet"
    pq.write_table(changed, path)
    outputs = {**trained, "artifacts": {**trained["artifacts"], "interactions": f"file://{path}"}}
    with pytest.raises(ValueError, match="interactions changed after training"):
        recommender.run(recommender.Config(), make_context("evaluate", {"train": outputs}))


def test_thresholds_give_pass_fail_metrics(trained, make_context):
    config = recommender.Config(
        metrics=["recall@10", "ndcg@10", "precision@5"], thresholds={"recall@10": 0.0, "ndcg@10": 1.5}
    )
    result = recommender.run(config, make_context("evaluate", {"train": trained}))
    metrics = result["metrics"]
    assert (metrics["passed.recall@10"], metrics["passed.ndcg@10"], metrics["all_metrics_passed"]) == (
        1.0,
        0.0,
        0.0,
    )
    assert metrics["threshold.ndcg@10"] == 1.5
    assert "passed.precision@5" not in metrics

    everything = recommender.run(
        recommender.Config(metrics=["recall@10"], thresholds={"recall@10": 0.0}),
        make_context("evaluate", {"train": trained}, run_id="again"),
    )
    assert everything["metrics"]["all_metrics_passed"] == 1.0


def test_outputs_pass_the_model_on_and_write_a_report(trained, make_context):
    from airflow.sdk import ObjectStoragePath

    result = recommender.run(
        recommender.Config(thresholds={"recall@10": 0.0}), make_context("evaluate", {"train": trained})
    )
    artifacts = result["artifacts"]
    assert set(artifacts) == {"model", "user_index", "item_index", "split", "history", "report"}
    assert artifacts["model"] == trained["artifacts"]["model"]
    report = json.loads(ObjectStoragePath(artifacts["report"]).read_text())
    assert report["metrics"]["recall@10"] == result["metrics"]["recall@10"]
    assert report["baseline"]["recall@10"] == result["metrics"]["baseline.recall@10"]
    assert report["passed"] == {"recall@10": 1.0}
    assert report["split"]["test_split"] == 0.2


def test_config_checks_metric_names_and_thresholds():
    with pytest.raises(ValidationError, match="unknown metric 'recall@0'"):
        recommender.Config(metrics=["recall@0"])
    with pytest.raises(ValidationError, match="not computed: map@10"):
        recommender.Config(metrics=["recall@10"], thresholds={"map@10": 0.1})
    assert recommender.Config(metrics=["map@7", "coverage@20", "hit_rate@1"]).metrics[1] == "coverage@20"


# -- model kinds -------------------------------------------------------------------------------


def test_an_als_artifact_from_before_the_manifest_still_evaluates_the_same(trained, make_context, tmp_path):
    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.components import _model_artifact

    model = _model_artifact.loads(ObjectStoragePath(trained["artifacts"]["model"]).read_bytes())
    old = tmp_path / "old-model.npz"
    np.savez(old, **model.arrays)  # what training wrote before: the factors only
    legacy = {"artifacts": {**trained["artifacts"], "model": f"file://{old}"}, "metrics": {}}
    config = recommender.Config(metrics=["recall@10", "ndcg@10"])
    now = recommender.run(config, make_context("evaluate", {"train": trained}, run_id="now"))
    before = recommender.run(config, make_context("evaluate", {"train": legacy}, run_id="before"))
    assert before["metrics"] == now["metrics"]


def test_a_model_of_unknown_kind_is_refused_with_its_uri(trained, make_context, tmp_path):
    from airflow_mlpipe.components import _model_artifact

    weird = tmp_path / "weird.npz"
    weird.write_bytes(_model_artifact.dumps({"kind": "neural"}, {"weights": np.zeros(3)}))
    upstream = {"artifacts": {**trained["artifacts"], "model": f"file://{weird}"}, "metrics": {}}
    with pytest.raises(ValueError, match=r"weird\.npz is a model of unknown kind 'neural'"):
        recommender.run(recommender.Config(), make_context("evaluate", {"train": upstream}))


def test_item_item_recommender_scores_the_history_times_the_weights():
    weights = np.array([[0, 1, 0.5], [0.2, 0, 0.1], [0.9, 0.3, 0]], dtype=np.float32)
    history = _csr([{0}, {1, 2}], 3)
    top = _ranking.item_item_recommender(weights, history)(np.array([0, 1]), history, 2)
    # user 0: scores [0, 1, 0.5], item 0 seen -> 1, 2; user 1: [1.1, 0.3, 0.1], 1 and 2 seen -> 0
    assert top.tolist() == [[1, 2], [0, -1]]
