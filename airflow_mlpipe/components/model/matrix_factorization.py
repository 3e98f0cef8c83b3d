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
* the rest is the training matrix, with confidence ``1 + alpha * log1p(weight)`` (or
  ``1 + alpha * weight`` with ``confidence: linear``). ``implicit`` gives every unobserved entry
  weight 1, so the 1 makes a single interaction count more than a missing one whatever ``alpha``.

With ``refit`` (the default), once early stopping has found the best epoch count the model is
trained again from the same seed on the training and validation pairs together, for that many
epochs: the validation pairs are a tenth of the data, and a final model should learn from them.
The reported ``val_*`` metrics are those of the early-stopping run at its best epoch (the refit
model has seen the validation pairs, so it cannot be validated on them); ``val_recall@10`` and
``val_ndcg@10`` are always reported, whatever ``validation_metric`` early stopping uses, so a
sweep can select on them.

The defaults (``factors`` 64, ``regularization`` 20, ``alpha`` 3) come from a grid measured on the
validation split of the 100k-rating movie benchmark (BENCHMARKS.md, section 9): ``implicit`` does
not scale the regularisation by the number of interactions, so values around 20 to 30 suit data
of that size (0.01, the old default, overfits after a few epochs); scale it with the number of
interactions per user or item on much larger data, or sweep it.

Training is deterministic for a given ``seed``: one thread, BLAS limited to one thread, and
factors initialised from the seed.

Artifacts: ``model`` (``model.npz`` with ``user_factors`` and ``item_factors`` and a
``manifest.json`` saying it is an ``als`` model, see ``components/_model_artifact.py``), ``user_index``
and ``item_index`` (Parquet: id -> row of the factor matrix), ``split`` (JSON), ``history``
(JSON: the validation metric per epoch) and ``interactions`` (the input, passed on for
evaluation). Metrics: ``epochs_run``, ``best_epoch``, ``val_<metric>`` (with ``val_recall@10`` and
``val_ndcg@10``), ``users``, ``items``,
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
        default=20.0,
        ge=0,
        description="L2 regularisation of the factors (not scaled by the number of interactions)",
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
        default=3.0,
        gt=0,
        description="Confidence scale of observed interactions: confidence is 1 + alpha * f(weight)",
        json_schema_extra={OVERRIDABLE: True},
    )
    confidence: Literal["log", "linear"] = Field(
        default="log",
        description="Confidence from weight: 1 + alpha * log1p(weight) (log) or 1 + alpha * weight (linear)",
    )
    refit: bool = Field(
        default=True,
        description="After early stopping, retrain on training + validation pairs for the best epoch count",
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
#: Validation metrics reported whatever ``validation_metric`` is: what a sweep selects on.
SWEEP_METRICS = ("recall@10", "ndcg@10")


def validation_metrics(config: Config) -> list[str]:
    """The metrics computed on the validation pairs: early stopping's first, then the sweep's."""
    return list(dict.fromkeys((config.validation_metric, *SWEEP_METRICS)))


def produces(config: Config) -> Produces:
    return Produces(
        artifacts=ARTIFACTS,
        metrics=(
            "epochs_run",
            "best_epoch",
            *(f"val_{name}" for name in validation_metrics(config)),
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
    """Fit ALS epoch by epoch, keep the best epoch, refit on train + validation, save factors and mappings."""
    import numpy as np

    from airflow_mlpipe.components import _interactions, _model_artifact

    log = context.log
    source_uri = context.input().artifacts[config.input_artifact]
    data = _interactions.read_and_split(
        source_uri, config.weight_column, config.test_split, config.split_seed, config.validation_split, log
    )
    # In place, in float64 as before (the matrices hold it as float32): the weights are not needed
    # again, and at 20M events each copy of them is 130 MiB.
    confidence = data.weights
    if config.confidence == "log":
        np.log1p(confidence, out=confidence)
    confidence *= config.alpha
    confidence += 1.0
    train_matrix = data.matrix(data.train, confidence)
    validation_matrix = data.matrix(data.validation)

    best_factors, history, best_epoch = train_als(config, train_matrix, validation_matrix, log)
    del train_matrix, validation_matrix  # free before the refit builds its own matrix
    best_values = history[best_epoch - 1]
    if config.refit:
        known = ~data.test
        log.info("Refitting on %d training + validation pairs for %d epochs", int(known.sum()), best_epoch)
        user_factors, item_factors = fit_als(config, data.matrix(known, confidence), best_epoch)
    else:
        assert best_factors is not None  # train_als keeps them without a refit
        user_factors, item_factors = best_factors

    arrays = {"user_factors": user_factors, "item_factors": item_factors}
    hyperparameters = config.model_dump(include={"factors", "regularization", "alpha", "confidence", "refit"})
    manifest = _model_artifact.manifest(
        "als", "model.matrix_factorization", arrays, {**hyperparameters, "epochs": best_epoch}
    )
    model_path = context.artifact_dir / "model.npz"
    model_path.write_bytes(_model_artifact.dumps(manifest, arrays))
    written = _interactions.write_index_and_split(data, context.artifact_dir)
    history_path = context.artifact_dir / "history.json"
    history_path.write_text(
        json.dumps(
            {
                "metric": config.validation_metric,
                "best_epoch": best_epoch,
                "values": [epoch[config.validation_metric] for epoch in history],
                "metrics": history,
                "refit": config.refit,
            },
            indent=2,
        )
    )

    log.info(
        "Best epoch %d of %d: validation %s = %.4f%s",
        best_epoch,
        len(history),
        config.validation_metric,
        best_values[config.validation_metric],
        "; the model is the refit on training + validation pairs" if config.refit else "",
    )
    return {
        "artifacts": {
            "model": str(model_path),
            **written,
            "history": str(history_path),
            "interactions": source_uri,
        },
        "metrics": {
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            **{f"val_{name}": value for name, value in best_values.items()},
            **data.counts(),
        },
    }


def train_als(
    config: Config, train_matrix: sp.csr_matrix, validation_matrix: sp.csr_matrix, log: Any
) -> tuple[tuple[np.ndarray, np.ndarray] | None, list[dict[str, float]], int]:
    """Fit one ALS epoch at a time; return the best epoch's (user, item) factors, the validation
    metrics of every epoch (:func:`validation_metrics`) and the best epoch (by ``validation_metric``).

    With ``refit`` the best factors are not kept (None): the refit retrains from the seed and needs
    only the best epoch's number, and a copy of them is as large as the model (250 MiB for 1M users).
    """
    import implicit.cpu.als  # noqa: F401  (before the BLAS limit: the import loads a BLAS it must cover)
    import numpy as np
    from threadpoolctl import threadpool_limits

    from airflow_mlpipe.components import _ranking

    validation_users = np.flatnonzero(np.diff(validation_matrix.indptr) > 0)
    if len(validation_users) > config.validation_max_users:
        sample = np.random.default_rng(config.seed).choice(
            validation_users, config.validation_max_users, replace=False
        )
        validation_users = np.sort(sample)
    batch_users = _ranking.batch_size_for(train_matrix.shape[1])
    metrics = validation_metrics(config)

    history: list[dict[str, float]] = []
    best_value, best_epoch = -np.inf, 0
    best_factors: tuple[np.ndarray, np.ndarray] | None = None
    # implicit's own threads do the work; a multi-threaded BLAS underneath only adds contention
    # (implicit warns about it) and makes results depend on scheduling.
    with threadpool_limits(limits=1, user_api="blas"):
        model = _als(config, *train_matrix.shape)
        for epoch in range(1, config.epochs + 1):
            started = time.monotonic()
            model.fit(train_matrix, show_progress=False)  # continues from the current factors
            values = _ranking.evaluate(
                _ranking.factor_recommender(model.user_factors, model.item_factors),
                validation_users,
                train_matrix,
                validation_matrix,
                metrics,
                batch_users=batch_users,
            )
            history.append({name: float(value) for name, value in values.items()})
            value = values[config.validation_metric]
            if value > best_value + config.min_improvement or best_epoch == 0:
                best_value, best_epoch = value, epoch
                if not config.refit:  # into the same buffers each time: no new 250 MiB allocations
                    if best_factors is None:
                        best_factors = (model.user_factors.copy(), model.item_factors.copy())
                    else:
                        np.copyto(best_factors[0], model.user_factors)
                        np.copyto(best_factors[1], model.item_factors)
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
    return best_factors, history, best_epoch


def fit_als(config: Config, matrix: sp.csr_matrix, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit ALS from the seed for ``epochs`` epochs, as :func:`train_als` does, without validating."""
    import implicit.cpu.als  # noqa: F401  (before the BLAS limit, as in train_als)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        model = _als(config, *matrix.shape)
        for _ in range(epochs):  # epoch by epoch, exactly as train_als: the same epochs, the same factors
            model.fit(matrix, show_progress=False)
    return model.user_factors, model.item_factors


def _als(config: Config, users: int, items: int) -> Any:
    """A model for ``users`` x ``items`` with its factors initialised from the seed."""
    import numpy as np
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=config.factors,
        regularization=config.regularization,
        alpha=1.0,  # confidences are computed in run, where log or linear scaling is chosen
        iterations=1,
        num_threads=config.num_threads,
        random_state=config.seed,
    )
    # The same numbers implicit's first fit draws (a generator from the seed, users then items,
    # uniform [0, 1) times 0.01), scaled in place: implicit's `random(...) * 0.01` holds two copies
    # of the user factors at once (500 MiB for 1M users x 64).
    rng = np.random.default_rng(config.seed)
    model.user_factors = rng.random((users, config.factors), dtype=np.float32)
    model.user_factors *= np.float32(0.01)
    model.item_factors = rng.random((items, config.factors), dtype=np.float32)
    model.item_factors *= np.float32(0.01)
    return model
