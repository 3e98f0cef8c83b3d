"""Offline evaluation of a recommender on the interactions held out of its training.

The upstream stage is a built-in model, ``model.matrix_factorization`` or ``model.ease``: its
``model`` artifact says what kind of model it is and how to score it (``manifest.json``, see
``components/_model_artifact.py``; an artifact from before the manifest is an ALS model). Its
``split`` artifact records how it held
out test pairs (``test_split``, ``split_seed``, the hashing algorithm and a fingerprint of the
held-out pairs). This stage rebuilds the hold-out from the same ``interactions`` with the same
deterministic hash, checks it agrees with that record, and refuses to run on any disagreement:
a different ``test_split`` or ``split_seed`` here than in training, changed interactions, or a
different split algorithm. So metrics are always computed on pairs the model never trained on.

Every user with at least one held-out pair and at least one known (non-held-out) pair is
evaluated; users seen only in the hold-out are cold-start users the model has no factors for,
and are counted in ``cold_start_users`` instead. Items a user already interacted with are never
recommended to them. Metrics (see ``components/_ranking.py`` for the definitions):
``recall@k``, ``precision@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k`` for any k, and ``coverage``
(share of the catalogue appearing in some user's top k; k is ``k`` or the largest k of the
metrics). The same metrics are computed for a popularity baseline (``baseline.<metric>``), which
the model should beat.

Each threshold is a minimum: ``passed.<metric>`` is 1.0 when the metric reaches it, else 0.0, and
``all_metrics_passed`` is 1.0 when every threshold passed (also when there are none).

Artifacts: ``report`` (JSON with everything above), plus the upstream model artifacts (``model``,
``user_index``, ``item_index``, ``split``, ``history``...) passed through, so a following
``registry.register_model`` stage finds them. Metrics: each metric, ``baseline.<metric>``,
``threshold.<metric>``, ``passed.<metric>``, ``all_metrics_passed``, ``users_evaluated``,
``cold_start_users``, ``test_interactions``. Needs the ``recommender`` extra (numpy, scipy).
Overridable at trigger time: ``metrics`` only (never the thresholds, which decide promotion).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_mlpipe.components._metric_names import parse_metric
from airflow_mlpipe.contract import OVERRIDABLE, Extra, Produces, Requires

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from airflow_mlpipe.contract import ComponentContext

#: Upstream artifacts that are training data rather than part of the model: not passed on.
DATA_ARTIFACTS = frozenset({"interactions"})
REQUIRED_ARTIFACTS = ("model", "user_index", "item_index", "split", "interactions")
#: The required artifacts passed on (every upstream artifact but the data ones is), and the report.
ARTIFACTS = (*(name for name in REQUIRED_ARTIFACTS if name not in DATA_ARTIFACTS), "report")

# Deterministic: the same model, split and config give the same metrics.
cache = "on"
extra = Extra("recommender", modules=("numpy", "scipy"))
requires = Requires(artifacts=REQUIRED_ARTIFACTS)


class Config(BaseModel):
    """Configuration of ``evaluation.recommender``."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[str] = Field(
        default_factory=lambda: ["recall@10", "ndcg@10", "coverage"],
        min_length=1,
        description="Metrics: recall@k, precision@k, ndcg@k, map@k, hit_rate@k (any k), coverage",
        json_schema_extra={OVERRIDABLE: True},
    )
    test_split: float = Field(
        default=0.2, ge=0, lt=1, description="Fraction of pairs held out; must equal the training stage's"
    )
    split_seed: int | None = Field(
        default=None, description="Seed of the hold-out hashing; checked against training's when set"
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Minimum value per metric for it to pass, e.g. {recall@10: 0.15}"
    )
    k: int | None = Field(
        default=None, gt=0, description="Length of the lists coverage is measured on; default the largest k"
    )
    baseline: bool = Field(default=True, description="Also evaluate a most-popular-items baseline")
    max_users: int | None = Field(
        default=None, gt=0, description="Evaluate a seeded random sample of at most this many users"
    )
    seed: int = Field(default=0, description="Seed of the user sample when max_users is set")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        for name in value:
            parse_metric(name)
        if len(set(value)) != len(value):
            raise ValueError("metrics are listed more than once")
        return value

    @model_validator(mode="after")
    def _thresholds_on_computed_metrics(self) -> Config:
        unknown = sorted(set(self.thresholds) - set(self.metrics))
        if unknown:
            raise ValueError(
                f"thresholds for metrics that are not computed: {', '.join(unknown)}; add them to metrics"
            )
        return self


def produces(config: Config) -> Produces:
    return Produces(
        artifacts=ARTIFACTS,
        metrics=(
            *config.metrics,
            *(f"baseline.{name}" for name in config.metrics if config.baseline),
            *(f"threshold.{name}" for name in config.thresholds),
            *(f"passed.{name}" for name in config.thresholds),
            "all_metrics_passed",
            "users_evaluated",
            "cold_start_users",
            "test_interactions",
        ),
    )


def run(config: Config, context: ComponentContext) -> Mapping[str, Any]:
    """Rebuild and check the hold-out, score model and baseline, apply thresholds, write the report."""
    import numpy as np

    from airflow_mlpipe.components import _model_artifact, _ranking, _split

    log = context.log
    artifacts = context.input().artifacts
    recorded = _split.SplitSettings.from_json(json.loads(_read_bytes(artifacts["split"])))
    _check_split_settings(config, recorded)

    interactions = _read_parquet(artifacts["interactions"], ["user_id", "item_id"])
    user_ids = interactions.column("user_id").to_numpy(zero_copy_only=False)
    item_ids = interactions.column("item_id").to_numpy(zero_copy_only=False)
    test, rebuilt = _split.make_test_split(user_ids, item_ids, recorded.test_split, recorded.split_seed)
    if (rebuilt.test_pairs, rebuilt.total_pairs, rebuilt.fingerprint) != (
        recorded.test_pairs,
        recorded.total_pairs,
        recorded.fingerprint,
    ):
        raise ValueError(
            f"the held-out pairs rebuilt from {artifacts['interactions']} ({rebuilt.test_pairs} of "
            f"{rebuilt.total_pairs}, fingerprint {rebuilt.fingerprint}) differ from those training held out "
            f"({recorded.test_pairs} of {recorded.total_pairs}, fingerprint {recorded.fingerprint}): the "
            "interactions changed after training; rerun training"
        )

    user_index = _read_parquet(artifacts["user_index"], ["user_id", "index"])
    item_index = _read_parquet(artifacts["item_index"], ["item_id", "index"])
    users = _lookup(interactions.column("user_id"), user_index, "user_id")
    items = _lookup(interactions.column("item_id"), item_index, "item_id")
    model = _model_artifact.loads(_read_bytes(artifacts["model"]), artifacts["model"])
    shape = (user_index.num_rows, item_index.num_rows)
    if model.n_items != shape[1]:
        raise ValueError(
            f"the model scores {model.n_items} items but its item_index has {shape[1]}: "
            "the model and index artifacts come from different training runs"
        )
    known = _binary_csr(users[~test], items[~test], shape)
    held_out = _binary_csr(users[test], items[test], shape)

    has_test = np.diff(held_out.indptr) > 0
    has_known = np.diff(known.indptr) > 0
    evaluated = np.flatnonzero(has_test & has_known)
    cold_start = int((has_test & ~has_known).sum())
    if config.max_users is not None and len(evaluated) > config.max_users:
        sample = np.random.default_rng(config.seed).choice(evaluated, config.max_users, replace=False)
        evaluated = np.sort(sample)
    if len(evaluated) == 0:
        raise ValueError("no user has both held-out and known interactions: nothing to evaluate on")
    log.info(
        "Evaluating the %s model on %s: %d held-out interactions of %d users (%d cold-start users "
        "skipped), %d items",
        model.kind,
        ", ".join(config.metrics),
        int(test.sum()),
        len(evaluated),
        cold_start,
        shape[1],
    )

    batch_users = _ranking.batch_size_for(shape[1])
    started = time.monotonic()
    results = _ranking.evaluate(
        model.recommender(known),
        evaluated,
        known,
        held_out,
        config.metrics,
        default_k=config.k,
        batch_users=batch_users,
        log=log,
        label="model",
    )
    log.info("Model: %s (%.1fs)", _format(results), time.monotonic() - started)
    baseline: dict[str, float] = {}
    if config.baseline:
        started = time.monotonic()
        popularity = np.diff(known.tocsc().indptr).astype(np.float64)
        baseline = _ranking.evaluate(
            _ranking.popularity_recommender(popularity),
            evaluated,
            known,
            held_out,
            config.metrics,
            default_k=config.k,
            batch_users=batch_users,
            log=log,
            label="popularity baseline",
        )
        log.info("Popularity baseline: %s (%.1fs)", _format(baseline), time.monotonic() - started)

    passed = {name: float(results[name] >= minimum) for name, minimum in config.thresholds.items()}
    all_passed = float(all(value == 1.0 for value in passed.values()))
    for name, minimum in config.thresholds.items():
        log.info(
            "%s %s = %.4f (threshold %.4f)", "PASS" if passed[name] else "FAIL", name, results[name], minimum
        )
    log.info("All thresholds passed: %s", bool(all_passed))

    metrics: dict[str, float] = dict(results)
    metrics.update({f"baseline.{name}": value for name, value in baseline.items()})
    metrics.update({f"threshold.{name}": value for name, value in config.thresholds.items()})
    metrics.update({f"passed.{name}": value for name, value in passed.items()})
    metrics.update(
        {
            "all_metrics_passed": all_passed,
            "users_evaluated": len(evaluated),
            "cold_start_users": cold_start,
            "test_interactions": int(test.sum()),
        }
    )
    # Only what the inputs and config determine (which run wrote it is in the record): the same
    # evaluation gives the same bytes, so a replay can compare the report by its digest.
    report = {
        "metrics": results,
        "baseline": baseline,
        "thresholds": config.thresholds,
        "passed": passed,
        "all_metrics_passed": bool(all_passed),
        "users_evaluated": len(evaluated),
        "cold_start_users": cold_start,
        "test_interactions": int(test.sum()),
        "split": recorded.to_json(),
        "model_kind": model.kind,
    }
    report_path = context.artifact_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2, default=_json_number))

    passed_on = {name: uri for name, uri in artifacts.items() if name not in DATA_ARTIFACTS}
    return {"artifacts": {**passed_on, "report": str(report_path)}, "metrics": metrics}


def _check_split_settings(config: Config, recorded: Any) -> None:
    from airflow_mlpipe.components._split import SPLIT_ALGORITHM

    if recorded.algorithm != SPLIT_ALGORITHM:
        raise ValueError(
            f"training held out pairs with split algorithm {recorded.algorithm}, this evaluation uses "
            f"{SPLIT_ALGORITHM}: rerun training with this version of airflow_mlpipe"
        )
    if not math.isclose(config.test_split, recorded.test_split, rel_tol=0, abs_tol=1e-12):
        raise ValueError(
            f"evaluation test_split is {config.test_split} but training held out test_split="
            f"{recorded.test_split}; set the same test_split in the training stage's config and here"
        )
    if config.split_seed is not None and config.split_seed != recorded.split_seed:
        raise ValueError(
            f"evaluation split_seed is {config.split_seed} but training used split_seed="
            f"{recorded.split_seed}; set the same split_seed in both stages (or leave it out here)"
        )


def _open(uri: str) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri).open("rb")


def _read_bytes(uri: str) -> bytes:
    with _open(uri) as handle:
        return handle.read()


def _read_parquet(uri: str, columns: list[str]) -> pa.Table:
    import pyarrow.parquet as pq

    with _open(uri) as handle:
        # Not pq.read_table: it goes through pyarrow.dataset, whose import is 0.1-0.3 s of a task
        # whose upstream stages came from the cache (and so imported nothing before it).
        return pq.ParquetFile(handle).read(columns=columns)


def _lookup(ids: pa.ChunkedArray, index: pa.Table, id_column: str) -> np.ndarray:
    """Row of each id in the factor matrices, from the (id, index) table training wrote."""
    import numpy as np
    import pyarrow.compute as pc

    position = pc.index_in(ids, value_set=index.column(id_column))
    if position.null_count:
        raise ValueError(
            f"{position.null_count} interactions have a {id_column} the model's index does not know: "
            "the interactions changed after training"
        )
    return index.column("index").to_numpy()[position.to_numpy()].astype(np.int64)


def _binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> Any:
    import numpy as np
    import scipy.sparse as sp

    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _format(values: Mapping[str, float]) -> str:
    return ", ".join(f"{name}={value:.4f}" for name, value in values.items())


def _json_number(value: Any) -> Any:
    # numpy scalars that slipped into the report
    return value.item() if hasattr(value, "item") else str(value)
