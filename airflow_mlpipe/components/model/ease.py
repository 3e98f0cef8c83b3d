"""EASE: the closed-form item-item recommender (Steck, "Embarrassingly Shallow Autoencoders", 2019).

Reads the same ``interactions`` artifact as ``model.matrix_factorization`` and splits its pairs the
same three ways (``components/_interactions.py``): the ``test_split`` hold-out for
``evaluation.recommender``, ``validation_split`` of the rest for the ``val_*`` metrics, and the
training pairs. With ``X`` the binary users x items matrix of the training pairs, the model is

    G = X.T @ X + l2 * I,   P = inverse(G),   B = -P / diag(P) (column by column),   diag(B) = 0

and a user's scores are ``history[user] @ B``. One parameter, ``l2``; no epochs, no initialisation: the
same pairs give the same model. The ``val_*`` metrics (``val_recall@10``, ``val_ndcg@10`` and
``val_<validation_metric>``) are those of the model fitted on the training pairs alone; with
``refit`` (the default) the saved model is fitted again on training and validation pairs.
Weights are not used: a pair is an interaction or not.

The default ``l2`` (200) is the value the validation split of the 100k-rating movie benchmark
selects (BENCHMARKS.md, section 9); it grows with the number of users, so sweep it on other data.

**Memory.** ``B`` is a dense items x items matrix: the stage needs about 12 bytes per item pair
(the float64 matrix inverted in place, then a float32 copy), 1.2 GB for 10,000 items and 4.8 GB
for 20,000. Before allocating anything the stage compares that with ``memory_limit_mb``, or when
that is not set with the memory available to the worker (``MemAvailable``, capped by a cgroup
limit), and fails with the figures and what to do instead: fewer items (drop rare items
upstream) or ``model.matrix_factorization``, whose memory grows with items x factors.

Artifacts: ``model`` (``model.npz`` with ``item_weights`` and a ``manifest.json`` saying it is an
``ease`` model, see ``components/_model_artifact.py``), ``user_index``, ``item_index``, ``split``
and ``interactions`` (the input, passed on), exactly what ``evaluation.recommender`` reads.
Metrics: ``val_recall@10``, ``val_ndcg@10``, ``val_<validation_metric>``, ``users``, ``items``,
``train_interactions``, ``validation_interactions``, ``test_interactions``. Needs the
``recommender`` extra (numpy, scipy). Overridable at trigger time: ``l2``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_mlpipe.components._metric_names import parse_metric
from airflow_mlpipe.contract import OVERRIDABLE, Extra, Produces, Requires

if TYPE_CHECKING:
    import numpy as np
    import scipy.sparse as sp

    from airflow_mlpipe.contract import ComponentContext

#: Bytes per item pair at the peak of a fit: a float64 matrix inverted in place, then a float32 copy.
BYTES_PER_ITEM_PAIR = 12
#: Validation metrics reported whatever ``validation_metric`` is: what a sweep selects on.
SWEEP_METRICS = ("recall@10", "ndcg@10")


class Config(BaseModel):
    """Configuration of ``model.ease``."""

    model_config = ConfigDict(extra="forbid")

    l2: float = Field(
        default=200.0,
        gt=0,
        description="L2 regularisation of the item-item weights (grows with the number of users)",
        json_schema_extra={OVERRIDABLE: True},
    )
    refit: bool = Field(
        default=True,
        description="Fit the saved model on training + validation pairs (validated without them)",
    )
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
        default=0.1, gt=0, lt=1, description="Fraction of the non-test pairs held out for the val_* metrics"
    )
    validation_metric: str = Field(
        default="recall@10", description="A further ranking metric to report on validation, as val_<metric>"
    )
    validation_max_users: int = Field(
        default=5_000, gt=0, description="Validate on at most this many users (a seeded sample)"
    )
    seed: int = Field(default=42, description="Seed of the validation user sample")
    memory_limit_mb: int | None = Field(
        default=None,
        gt=0,
        description="Memory the item x item matrix may use; default what the worker has available",
    )
    num_threads: int = Field(
        default=1,
        gt=0,
        description="BLAS threads for the inversion; 1 keeps the model bit-for-bit reproducible",
    )
    input_artifact: str = Field(
        default="interactions", description="Name of the upstream interactions artifact"
    )

    @field_validator("validation_metric")
    @classmethod
    def _ranking_metric(cls, value: str) -> str:
        if parse_metric(value).kind == "coverage":
            raise ValueError("coverage does not measure accuracy; validate on e.g. recall@10 or ndcg@10")
        return value


# Deterministic: the same pairs and config give the same model.
cache = "on"
extra = Extra("recommender", modules=("numpy", "scipy", "threadpoolctl"))

#: Artifacts ``run`` always returns (``interactions`` is the input, passed on for evaluation).
ARTIFACTS = ("model", "user_index", "item_index", "split", "interactions")


def validation_metrics(config: Config) -> list[str]:
    return list(dict.fromkeys((config.validation_metric, *SWEEP_METRICS)))


def produces(config: Config) -> Produces:
    return Produces(
        artifacts=ARTIFACTS,
        metrics=(
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
    """Fit on the training pairs, validate, refit on training + validation pairs, save the weights."""
    import numpy as np

    from airflow_mlpipe.components import _interactions, _model_artifact, _ranking

    log = context.log
    source_uri = context.input().artifacts[config.input_artifact]
    data = _interactions.read_and_split(
        source_uri, None, config.test_split, config.split_seed, config.validation_split, log
    )
    check_memory(data.shape[1], config.memory_limit_mb)

    train = data.matrix(data.train)
    validation = data.matrix(data.validation)
    started = time.monotonic()
    weights = fit_ease(train, config.l2, config.num_threads)
    log.info(
        "Fitted EASE on %d training pairs, %d items, in %.2fs",
        train.nnz,
        data.shape[1],
        time.monotonic() - started,
    )

    users = np.flatnonzero((np.diff(validation.indptr) > 0) & (np.diff(train.indptr) > 0))
    if len(users) > config.validation_max_users:
        users = np.sort(
            np.random.default_rng(config.seed).choice(users, config.validation_max_users, replace=False)
        )
    values = _ranking.evaluate(
        _ranking.item_item_recommender(weights, train),
        users,
        train,
        validation,
        validation_metrics(config),
        batch_users=_ranking.batch_size_for(data.shape[1]),
    )
    log.info("Validation: %s", ", ".join(f"{name} = {value:.4f}" for name, value in values.items()))
    if config.refit:
        known = ~data.test
        log.info("Refitting on %d training + validation pairs", int(known.sum()))
        weights = fit_ease(data.matrix(known), config.l2, config.num_threads)

    arrays = {"item_weights": weights}
    manifest = _model_artifact.manifest(
        "ease", "model.ease", arrays, config.model_dump(include={"l2", "refit"})
    )
    model_path = context.artifact_dir / "model.npz"
    model_path.write_bytes(_model_artifact.dumps(manifest, arrays))
    written = _interactions.write_index_and_split(data, context.artifact_dir)
    return {
        "artifacts": {"model": str(model_path), **written, "interactions": source_uri},
        "metrics": {**{f"val_{name}": float(value) for name, value in values.items()}, **data.counts()},
    }


def fit_ease(matrix: sp.csr_matrix, l2: float, num_threads: int = 1) -> np.ndarray:
    """The EASE item-item weights (float32, items x items, zero diagonal) of a users x items matrix."""
    import numpy as np
    import scipy.linalg
    from threadpoolctl import threadpool_limits

    binary = matrix.copy()
    binary.data[:] = 1.0
    n_items = binary.shape[1]
    gram = np.zeros((n_items, n_items), dtype=np.float64)
    # X.T @ X a block of columns at a time: the sparse product of the whole matrix can be nearly
    # dense, and as a sparse matrix it takes more memory than the dense result it is copied into.
    columns = binary.tocsc()
    width = max(1, 2**24 // max(1, n_items))
    for start in range(0, n_items, width):
        gram[:, start : start + width] = (binary.T @ columns[:, start : start + width]).toarray()
    diagonal = np.diag_indices(n_items)
    gram[diagonal] += l2
    with threadpool_limits(limits=num_threads, user_api="blas"):
        inverse = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    del gram
    inverse /= -np.diag(inverse)
    inverse[diagonal] = 0.0
    return inverse.astype(np.float32)


def check_memory(n_items: int, limit_mb: int | None) -> None:
    """Fail, with the figures and what to do instead, when the item x item matrix would not fit."""
    needed = BYTES_PER_ITEM_PAIR * n_items * n_items
    if limit_mb is not None:
        limit, where = limit_mb * 2**20, f"memory_limit_mb ({limit_mb} MB)"
    else:
        available = available_memory()
        if available is None:
            return
        limit, where = available, f"the {_gb(available)} this worker has available"
    if needed > limit:
        raise MemoryError(
            f"model.ease needs a dense {n_items:,} x {n_items:,} item matrix: about {_gb(needed)} "
            f"({BYTES_PER_ITEM_PAIR} bytes per item pair), more than {where}. Keep fewer items (drop "
            "items with few interactions before this stage), run it on a worker with more memory "
            "(and set memory_limit_mb), or use model.matrix_factorization, whose memory grows with "
            "items x factors instead of items x items."
        )


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup v2 limit; None if unknown."""
    import os

    available: int | None = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max") as limit_file, open("/sys/fs/cgroup/memory.current") as used:
            limit = limit_file.read().strip()
            if limit != "max":
                room = int(limit) - int(used.read().strip())
                available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


def _gb(size: int) -> str:
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
