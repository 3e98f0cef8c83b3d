"""Implicit-feedback matrix factorisation (alternating least squares, ``implicit``) with early stopping.

Reads the ``interactions`` artifact of the upstream stage (``features.user_engagement``: one row
per user-item pair with a ``weight``) and splits its pairs three ways, deterministically:

* ``test_split`` of the pairs is held out for ``evaluation.recommender`` and never trained on.
  The split hashes (user, item, ``split_seed``) (see ``components/_split.py``), so the evaluate
  stage rebuilds exactly the same hold-out; the settings and a fingerprint of the held-out pairs
  are written to the ``split`` artifact, and evaluation refuses to run if its own settings differ.
* ``validation_split`` of the remaining pairs is held out for early stopping: after every epoch
  the validation metric (``validation_metric``, e.g. ``recall@10``) is computed on them, and
  training stops once it has not improved for ``early_stopping_patience`` epochs. The factors of
  the best epoch are kept.
* the rest is the training matrix, with confidence ``alpha * log1p(weight)`` (or
  ``alpha * weight`` with ``confidence: linear``).

Training is deterministic for a given ``seed``: one thread, BLAS limited to one thread, and
factors initialised from the seed.

Artifacts: ``model`` (``model.npz`` with ``user_factors`` and ``item_factors``), ``user_index``
and ``item_index`` (Parquet: id -> row of the factor matrix), ``split`` (JSON), ``history``
(JSON: the validation metric per epoch) and ``interactions`` (the input, passed on for
evaluation). Metrics: ``epochs_run``, ``best_epoch``, ``val_<metric>``, ``users``, ``items``,
``train_interactions``, ``validation_interactions``, ``test_interactions``. Reads the upstream
artifact named ``input_artifact``. Needs the ``recommender`` extra (numpy, scipy, implicit,
threadpoolctl). Overridable at trigger time: ``epochs``, ``factors``, ``regularization``, ``alpha``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_mlpipe.components._metric_names import parse_metric
from airflow_mlpipe.contract import OVERRIDABLE, Extra, Produces, Requires

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import scipy.sparse as sp

    from airflow_mlpipe.contract import ComponentContext


class Config(BaseModel):
    """Configuration of ``model.matrix_factorization``."""

    model_config = ConfigDict(extra="forbid")

    # The tuning knobs (factors, regularization, epochs, alpha) are overridable at trigger time;
    # the splits and seeds are not: evaluation must rebuild the same hold-out.
    factors: int = Field(
        default=64,
        gt=0,
        description="Number of latent factors per user and item",
        json_schema_extra={OVERRIDABLE: True},
    )
    regularization: float = Field(
        default=0.01,
        ge=0,
        description="L2 regularisation of the factors",
        json_schema_extra={OVERRIDABLE: True},
    )
    epochs: int = Field(
        default=50,
        gt=0,
        description="Maximum number of ALS epochs (sweeps over users and items)",
        json_schema_extra={OVERRIDABLE: True},
    )
    early_stopping_patience: int | None = Field(
        default=5,
        gt=0,
        description="Stop after this many epochs without validation improvement; null to run all epochs",
    )
    min_improvement: float = Field(
        default=0.0, ge=0, description="Smallest increase of the validation metric that counts as improvement"
    )
    alpha: float = Field(
        default=1.0,
        gt=0,
        description="Confidence scale of observed interactions",
        json_schema_extra={OVERRIDABLE: True},
    )
    confidence: Literal["log", "linear"] = Field(
        default="log",
        description="Confidence from weight: alpha * log1p(weight) (log) or alpha * weight (linear)",
    )
    seed: int = Field(default=42, description="Seed of the factor initialisation and validation sampling")
    test_split: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Fraction of user-item pairs held out for evaluation; equal to the evaluation's",
    )
    split_seed: int = Field(
        default=0, description="Seed of the hold-out hashing, shared with the evaluation stage"
    )
    validation_split: float = Field(
        default=0.1, gt=0, lt=1, description="Fraction of the non-test pairs held out for early stopping"
    )
    validation_metric: str = Field(
        default="recall@10", description="Ranking metric for early stopping, e.g. recall@10, ndcg@20, map@10"
    )
    validation_max_users: int = Field(
        default=5_000, gt=0, description="Validate on at most this many users (a seeded sample) per epoch"
    )
    num_threads: int = Field(default=1, gt=0, description="Threads for ALS; 1 keeps training reproducible")
    input_artifact: str = Field(
        default="interactions", description="Name of the upstream interactions artifact"
    )
    weight_column: str = Field(default="weight", description="Interaction strength column of the input")

    @field_validator("validation_metric")
    @classmethod
    def _ranking_metric(cls, value: str) -> str:
        if parse_metric(value).kind == "coverage":
            raise ValueError("coverage does not measure accuracy; validate on e.g. recall@10 or ndcg@10")
        return value


#: What ``run`` and ``train_als`` import (threadpoolctl pins BLAS to one thread).
# Deterministic per seed: the same inputs and config give the same model.
cache = "on"
extra = Extra("recommender", modules=("numpy", "scipy", "implicit", "threadpoolctl"))

#: Artifacts ``run`` always returns (``interactions`` is the input, passed on for evaluation).
ARTIFACTS = ("model", "user_index", "item_index", "split", "history", "interactions")


def produces(config: Config) -> Produces:
    return Produces(
        artifacts=ARTIFACTS,
        metrics=(
            "epochs_run",
            "best_epoch",
            f"val_{config.validation_metric}",
            "users",
            "items",
            "train_interactions",
            "validation_interactions",
            "test_interactions",
        ),
    )


def requires(config: Config) -> Requires:
    return Requires(artifacts=(config.input_artifact,))


def run(config: Config, context: ComponentContext) -> Mapping[str, Any]:
    """Fit ALS epoch by epoch on the training pairs, keep the best epoch, save factors and mappings."""
    import numpy as np
    import pyarrow.parquet as pq
    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.components import _split

    log = context.log
    source_uri = context.input().artifacts[config.input_artifact]
    with ObjectStoragePath(source_uri).open("rb") as handle:
        interactions = pq.read_table(handle, columns=["user_id", "item_id", config.weight_column])
    if interactions.num_rows == 0:
        raise ValueError(f"{source_uri} has no interactions to train on")

    user_index, users = _index(interactions.column("user_id"), "user_id")
    item_index, items = _index(interactions.column("item_id"), "item_id")
    # The split hashes the Arrow columns as they are: no numpy copy of the ids.
    user_ids = interactions.column("user_id")
    item_ids = interactions.column("item_id")
    weights = interactions.column(config.weight_column).to_numpy(zero_copy_only=False).astype(np.float64)

    test, split_settings = _split.make_test_split(user_ids, item_ids, config.test_split, config.split_seed)
    validation = ~test & _split.held_out(
        user_ids, item_ids, config.validation_split, config.split_seed, _split.VALIDATION_SALT
    )
    train = ~test & ~validation
    del interactions, user_ids, item_ids  # not needed past the split: free them before training
    log.info(
        "%d users, %d items, %d pairs: %d to train on, %d for validation, %d held out for evaluation",
        len(user_index),
        len(item_index),
        len(test),
        int(train.sum()),
        int(validation.sum()),
        int(test.sum()),
    )
    confidence = np.log1p(weights) if config.confidence == "log" else weights
    shape = (len(user_index), len(item_index))
    train_matrix = _csr(users[train], items[train], config.alpha * confidence[train], shape)
    validation_matrix = _csr(users[validation], items[validation], np.ones(int(validation.sum())), shape)

    user_factors, item_factors, history, best_epoch = train_als(config, train_matrix, validation_matrix, log)

    model_path = context.artifact_dir / "model.npz"
    with model_path.open("wb") as sink:
        np.savez(sink, user_factors=user_factors, item_factors=item_factors)
    user_index_path = context.artifact_dir / "user_index.parquet"
    item_index_path = context.artifact_dir / "item_index.parquet"
    with user_index_path.open("wb") as sink:
        pq.write_table(user_index, sink)
    with item_index_path.open("wb") as sink:
        pq.write_table(item_index, sink)
    split_path = context.artifact_dir / "split.json"
    # No URIs in it: the same training gives the same bytes, whichever run wrote them.
    split_record = {**split_settings.to_json(), "validation_split": config.validation_split}
    split_path.write_text(json.dumps(split_record, indent=2))
    history_path = context.artifact_dir / "history.json"
    history_path.write_text(
        json.dumps(
            {"metric": config.validation_metric, "best_epoch": best_epoch, "values": history}, indent=2
        )
    )

    best_value = history[best_epoch - 1] if best_epoch else float("nan")
    log.info(
        "Kept the factors of epoch %d of %d: validation %s = %.4f",
        best_epoch,
        len(history),
        config.validation_metric,
        best_value,
    )
    return {
        "artifacts": {
            "model": str(model_path),
            "user_index": str(user_index_path),
            "item_index": str(item_index_path),
            "split": str(split_path),
            "history": str(history_path),
            "interactions": source_uri,
        },
        "metrics": {
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            f"val_{config.validation_metric}": best_value,
            "users": shape[0],
            "items": shape[1],
            "train_interactions": int(train.sum()),
            "validation_interactions": int(validation.sum()),
            "test_interactions": int(test.sum()),
        },
    }


def train_als(
    config: Config, train_matrix: sp.csr_matrix, validation_matrix: sp.csr_matrix, log: Any
) -> tuple[np.ndarray, np.ndarray, list[float], int]:
    """Fit one ALS epoch at a time; return the best epoch's factors, the metric history and that epoch."""
    import numpy as np
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from airflow_mlpipe.components import _ranking

    validation_users = np.flatnonzero(np.diff(validation_matrix.indptr) > 0)
    if len(validation_users) > config.validation_max_users:
        sample = np.random.default_rng(config.seed).choice(
            validation_users, config.validation_max_users, replace=False
        )
        validation_users = np.sort(sample)
    batch_users = _ranking.batch_size_for(train_matrix.shape[1])

    history: list[float] = []
    best_value, best_epoch = -np.inf, 0
    best_factors: tuple[np.ndarray, np.ndarray] | None = None
    # implicit's own threads do the work; a multi-threaded BLAS underneath only adds contention
    # (implicit warns about it) and makes results depend on scheduling.
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=1.0,  # confidences are scaled above, where log or linear scaling is chosen
            iterations=1,
            num_threads=config.num_threads,
            random_state=config.seed,
        )
        for epoch in range(1, config.epochs + 1):
            started = time.monotonic()
            model.fit(train_matrix, show_progress=False)  # continues from the current factors
            value = _ranking.evaluate(
                _ranking.factor_recommender(model.user_factors, model.item_factors),
                validation_users,
                train_matrix,
                validation_matrix,
                [config.validation_metric],
                batch_users=batch_users,
            )[config.validation_metric]
            history.append(float(value))
            if value > best_value + config.min_improvement or best_factors is None:
                best_value, best_epoch = value, epoch
                best_factors = (model.user_factors.copy(), model.item_factors.copy())
            log.info(
                "epoch %d/%d: validation %s = %.4f (best %.4f at epoch %d) in %.2fs",
                epoch,
                config.epochs,
                config.validation_metric,
                value,
                best_value,
                best_epoch,
                time.monotonic() - started,
            )
            patience = config.early_stopping_patience
            if patience is not None and epoch - best_epoch >= patience:
                log.info("Stopping early: no improvement for %d epochs", patience)
                break
    assert best_factors is not None  # at least one epoch ran
    return best_factors[0], best_factors[1], history, best_epoch


def _index(ids: pa.ChunkedArray, id_column: str) -> tuple[pa.Table, np.ndarray]:
    """Sorted distinct ids as an ``(<id_column>, index)`` table, and each input row's index."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    distinct = pc.unique(ids).sort()
    positions = pc.index_in(ids, value_set=distinct).to_numpy()  # int32: half the memory of int64
    table = pa.table({id_column: distinct, "index": pa.array(np.arange(len(distinct), dtype=np.int64))})
    return table, positions


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    import numpy as np
    import scipy.sparse as sp

    # Duplicate pairs (if the input had any) are summed by the conversion.
    return sp.coo_matrix((values.astype(np.float32), (rows, cols)), shape=shape).tocsr()
