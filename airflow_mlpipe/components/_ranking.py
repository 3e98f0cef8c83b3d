"""Vectorised top-k recommendation and ranking metrics, shared by training (validation) and evaluation.

Metric names (see :mod:`._metric_names`) are ``<kind>@<k>`` with kind one of ``recall``,
``precision``, ``ndcg``, ``map`` and ``hit_rate``, or ``coverage`` / ``coverage@<k>``. With
binary relevance, for a user with ``R`` relevant (held-out) items and ``h_r`` = 1 when the item
at rank ``r`` is relevant:

* ``recall@k``    = sum(h_1..h_k) / R
* ``precision@k`` = sum(h_1..h_k) / k
* ``hit_rate@k``  = 1 if any of h_1..h_k else 0
* ``ndcg@k``      = sum(h_r / log2(r + 1)) / sum_{r <= min(R, k)} 1 / log2(r + 1)
* ``map@k``       = sum(h_r * precision@r) / min(R, k)

each averaged over the evaluated users, and ``coverage@k`` = distinct items recommended in any
user's top k / items in the catalogue. Items a user already interacted with in training are never
recommended to that user.

Scoring works on batches of users so memory stays bounded (see :func:`batch_size_for`), and the
top k comes from ``numpy.argpartition`` (linear time), sorting only those k.

Imported only from inside ``run`` (it needs numpy and scipy).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import numpy as np
import scipy.sparse as sp

from airflow_mlpipe.components._metric_names import parse_metric, resolve_ks

#: Floats per score matrix: 2**24 float32 scores are 64 MiB.
DEFAULT_MAX_SCORES_PER_BATCH = 2**24

Recommender = Callable[[np.ndarray, sp.csr_matrix, int], np.ndarray]


def top_k_unseen(scores: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first, skipping ``seen`` items.

    ``scores`` (users x items) is modified in place. Ties go to the lower item index. Slots for
    which no unseen item is left hold -1.

    Rather than ``argpartition`` over every row (the slow part of evaluating many users), this
    splits each row into chunks and takes the k-th largest chunk maximum as a threshold: at
    least k scores (those k maxima) reach it, and usually only a few more, so only those
    candidates are sorted.
    """
    n_users, n_items = scores.shape
    top = np.full((n_users, k), -1, dtype=np.int64)
    if n_users == 0 or n_items == 0 or k == 0:
        return top
    seen = seen.tocoo()
    scores[seen.row, seen.col] = -np.inf
    k_eff = min(k, n_items)
    # Chunk j holds items j, j + n_chunks, j + 2 * n_chunks...: a strided split reduces with
    # whole-row vector maxima, far faster than many small contiguous chunks.
    n_chunks = min(n_items, max(64, 32 * k_eff))
    per_chunk = n_items // n_chunks
    chunk_max = scores[:, : per_chunk * n_chunks].reshape(n_users, per_chunk, n_chunks).max(axis=1)
    rest = n_items - per_chunk * n_chunks
    if rest:
        np.maximum(chunk_max[:, :rest], scores[:, per_chunk * n_chunks :], out=chunk_max[:, :rest])
    threshold = np.partition(chunk_max, n_chunks - k_eff, axis=1)[:, n_chunks - k_eff]
    # flatnonzero on the flat mask is much faster than a 2-D nonzero
    rows, cols = np.divmod(np.flatnonzero(scores >= threshold[:, None]), n_items)
    values = scores[rows, cols]
    order = np.lexsort((cols, -values, rows))  # by user, then best score, then lowest item
    rows, cols, values = rows[order], cols[order], values[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = (rank < k_eff) & (values > -np.inf)
    top[rows[keep], rank[keep]] = cols[keep]
    return top


def top_k_popular(popularity: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """The k most popular items per user among those the user has not seen, best first.

    All users share one ranking, so only its first ``k + most items seen by one user`` entries
    can matter; nothing of size users x items is built.
    """
    n_users = seen.shape[0]
    ranking = np.argsort(-popularity, kind="stable")
    most_seen = int(np.diff(seen.indptr).max()) if n_users else 0
    candidates = ranking[: min(len(ranking), k + most_seen)]
    unseen = seen[:, candidates].toarray() == 0
    rank = np.cumsum(unseen, axis=1)
    rows, cols = np.nonzero(unseen & (rank <= k))
    top = np.full((n_users, k), -1, dtype=np.int64)
    top[rows, rank[rows, cols] - 1] = candidates[cols]
    return top


def hits(top: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean matrix like ``top``: True where the recommended item is relevant to that row's user."""
    n_items = relevant.shape[1]
    rel = relevant.tocoo()
    relevant_keys = rel.row.astype(np.int64) * n_items + rel.col
    top_keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top
    return np.isin(top_keys, relevant_keys) & (top >= 0)


def per_user_metric(hit: np.ndarray, n_relevant: np.ndarray, kind: str, k: int) -> np.ndarray:
    """One ranking metric per user from the hit matrix of (at least) the top k."""
    h = hit[:, :k].astype(np.float64)
    if kind == "recall":
        return h.sum(axis=1) / n_relevant
    if kind == "precision":
        return h.sum(axis=1) / k
    if kind == "hit_rate":
        return (h.sum(axis=1) > 0).astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    n_ideal = np.minimum(n_relevant, k)
    if kind == "ndcg":
        ideal = np.cumsum(discount)[n_ideal - 1]
        return (h @ discount) / ideal
    if kind == "map":
        precision_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1)
        return (precision_at_r * h).sum(axis=1) / n_ideal
    raise ValueError(f"not a per-user ranking metric: {kind}")


def evaluate(
    recommend: Recommender,
    users: np.ndarray,
    seen: sp.csr_matrix,
    relevant: sp.csr_matrix,
    metrics: Iterable[str],
    *,
    default_k: int | None = None,
    batch_users: int = 1024,
    log: logging.Logger | None = None,
    label: str = "model",
) -> dict[str, float]:
    """Mean of each metric over ``users`` (indices into the rows of ``seen`` and ``relevant``).

    ``recommend(user_batch, seen_batch, k)`` returns the top-k item indices per user (-1 padded).
    Users without relevant items should not be passed: their recall is undefined.
    """
    specs = [parse_metric(name) for name in metrics]
    ks = resolve_ks(specs, default_k)
    k_max = max(ks.values(), default=0)
    if not specs or len(users) == 0:
        return {spec.name: float("nan") for spec in specs}
    n_items = seen.shape[1]
    sums = dict.fromkeys(ks, 0.0)
    recommended = {spec.name: np.zeros(n_items, dtype=bool) for spec in specs if spec.kind == "coverage"}
    started = last_log = time.monotonic()
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]
        rel = relevant[batch]
        top = recommend(batch, seen[batch], k_max)
        hit = hits(top, rel)
        n_relevant = np.diff(rel.indptr)
        for spec in specs:
            k = ks[spec.name]
            if spec.kind == "coverage":
                items = top[:, :k]
                recommended[spec.name][items[items >= 0]] = True
            else:
                sums[spec.name] += float(per_user_metric(hit, n_relevant, spec.kind, k).sum())
        if log is not None and time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            done = min(start + batch_users, len(users))
            log.info("%s: scored %d/%d users (%.0fs)", label, done, len(users), last_log - started)
    result = {name: total / len(users) for name, total in sums.items()}
    for name, marked in recommended.items():
        result[name] = float(marked.sum()) / n_items if n_items else 0.0
    return {spec.name: result[spec.name] for spec in specs}


def factor_recommender(user_factors: np.ndarray, item_factors: np.ndarray) -> Recommender:
    """Recommend by dot product of latent factors."""
    item_factors_t = np.ascontiguousarray(item_factors.T)

    def recommend(batch: np.ndarray, seen_batch: sp.csr_matrix, k: int) -> np.ndarray:
        return top_k_unseen(user_factors[batch] @ item_factors_t, seen_batch, k)

    return recommend


def item_item_recommender(item_weights: np.ndarray, history: sp.csr_matrix) -> Recommender:
    """Recommend by ``history[user] @ item_weights`` (EASE): the user's items vote for similar items.

    ``history`` holds every user's binary interaction row; ``item_weights`` is items x items.
    """

    def recommend(batch: np.ndarray, seen_batch: sp.csr_matrix, k: int) -> np.ndarray:
        scores = np.asarray(history[batch] @ item_weights, dtype=np.float32)
        return top_k_unseen(scores, seen_batch, k)

    return recommend


def popularity_recommender(popularity: np.ndarray) -> Recommender:
    """Recommend the most popular unseen items (the baseline every model should beat)."""

    def recommend(batch: np.ndarray, seen_batch: sp.csr_matrix, k: int) -> np.ndarray:
        return top_k_popular(popularity, seen_batch, k)

    return recommend


def batch_size_for(n_items: int, max_scores: int = DEFAULT_MAX_SCORES_PER_BATCH) -> int:
    """Users per batch so a batch's score matrix stays within ``max_scores`` entries."""
    return max(1, min(4096, max_scores // max(1, n_items)))
