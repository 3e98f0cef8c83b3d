"""Sweeps at run time: which variant wins, and what the execution record says about them.

A swept stage ``train`` is three tasks (see :mod:`airflow_mlpipe.operators.sweep`):
``train.plan`` lists the variants, ``train.variants`` runs one mapped task instance per variant,
and ``train`` picks the winner and returns its outputs as a plain stage would. The record's
``sweeps`` holds one :class:`SweepOutcome` per swept stage. Pure functions here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The XCom key under which a swept stage's task leaves its :class:`SweepOutcome`.
SWEEP_XCOM_KEY = "mlpipe_sweep"
#: The XCom key under which a sweep's plan task leaves each variant's resolved config.
PLANNED_CONFIGS_XCOM_KEY = "mlpipe_sweep_configs"
#: Task id suffixes of a swept stage's planning task and mapped variants.
PLAN_SUFFIX = ".plan"
VARIANTS_SUFFIX = ".variants"


def plan_task_id(stage: str) -> str:
    return stage + PLAN_SUFFIX


def variants_task_id(stage: str) -> str:
    return stage + VARIANTS_SUFFIX


class VariantOutcome(BaseModel):
    """One variant of a sweep in one run."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="the variant's values, as its map index shows them")
    variant: dict[str, Any] = Field(description="the values this variant sets")
    config: dict[str, Any] = Field(description="the variant's resolved config (secrets masked)")
    metrics: dict[str, float] = Field(default_factory=dict)
    state: Literal["success", "failed"]
    error: str | None = Field(None, description="why it failed, after its retries")
    cached_from: str | None = Field(None, description="on a cache hit: the run that computed it")


class SweepOutcome(BaseModel):
    """What a swept stage tried, and which variant went downstream."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    mode: Literal["max", "min"]
    selected: int | None = Field(description="index into variants of the winner; null when none succeeded")
    variants: list[VariantOutcome]


def select_variant(values: Sequence[float | None], mode: str) -> int | None:
    """The index of the best value (``max`` or ``min``); the first of equals; ``None`` if none.

    ``None`` and NaN (a variant that failed, or did not report the metric) never win.
    """
    best: int | None = None
    for index, value in enumerate(values):
        if value is None or math.isnan(value):
            continue
        if best is None:
            best = index
            continue
        current = values[best]
        assert current is not None
        if (value > current) if mode == "max" else (value < current):
            best = index
    return best


def failure_summary(stage: str, outcome: SweepOutcome) -> str:
    """Why a sweep had no winner: every variant's error (or that it lacked the metric)."""
    lines = [f"stage '{stage}': no variant of the sweep succeeded with the metric '{outcome.metric}':"]
    for index, variant in enumerate(outcome.variants):
        if variant.state == "failed":
            reason = variant.error or "failed"
        else:
            reason = f"reported no '{outcome.metric}' (its metrics: {', '.join(variant.metrics) or 'none'})"
        lines.append(f"  [{index}] {variant.label}: {reason}")
    return "\n".join(lines)
