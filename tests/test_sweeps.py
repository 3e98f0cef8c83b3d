"""Sweeps without Airflow running: picking the winner, the outcome of a sweep, trigger-time grids."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from airflow_mlpipe.pipeline_run import OverrideError, PipelineRef, run_overrides
from airflow_mlpipe.spec.sweeps import Sweep
from airflow_mlpipe.sweeps import failure_summary, select_variant


@pytest.mark.parametrize(
    ("values", "mode", "expected"),
    [
        ([0.1, 0.3, 0.2], "max", 1),
        ([0.1, 0.3, 0.2], "min", 0),
        ([0.3, 0.1, 0.3], "max", 0),  # a tie goes to the first
        ([0.2, 0.1, 0.1], "min", 1),
        ([None, 0.1, math.nan, 0.05], "max", 1),  # failed or unreported never wins
        ([None, math.nan], "max", None),
        ([], "min", None),
    ],
)
def test_select_variant_picks_the_first_best_among_those_with_a_value(values, mode, expected):
    assert select_variant(values, mode) == expected


def test_a_sweep_outcome_names_the_winner_and_explains_a_sweep_without_one():
    from airflow_mlpipe.operators.sweep import sweep_outcome

    sweep = Sweep.model_validate(
        {"grid": {"factors": [8, 16, 32]}, "select": {"metric": "loss", "mode": "min"}}
    )
    variants = sweep.expand()
    results = [
        {"metrics": {"loss": 0.5}, "config": {"factors": 8}},
        None,
        {"metrics": {"other": 1.0}, "config": {"factors": 32}, "cached_from": "run-1"},
    ]
    errors = [None, "RuntimeError: diverged", None]
    outcome = sweep_outcome(
        sweep, variants, [{"factors": 8}, {"factors": 16}, {"factors": 32}], results, errors
    )
    assert outcome.selected == 0
    assert [v.state for v in outcome.variants] == ["success", "failed", "success"]
    assert outcome.variants[1].config == {"factors": 16}
    assert outcome.variants[1].error == "RuntimeError: diverged"
    assert outcome.variants[2].cached_from == "run-1"

    none = sweep_outcome(sweep, variants, [], [None, None, results[2]], ["boom 8", "boom 16", None])
    assert none.selected is None
    assert failure_summary("train", none).splitlines() == [
        "stage 'train': no variant of the sweep succeeded with the metric 'loss':",
        "  [0] factors=8: boom 8",
        "  [1] factors=16: boom 16",
        "  [2] factors=32: reported no 'loss' (its metrics: other)",
    ]


PIPELINE = PipelineRef(
    name="p",
    version="1.0.0",
    config_version="abc",
    environment="dev",
    sources=(),
    overridable=MappingProxyType({"extract": frozenset(), "train": frozenset({"epochs"})}),
    swept=MappingProxyType({"train": frozenset({"factors"})}),
)


def overrides(train: dict) -> dict:
    return run_overrides({"overrides": {"train": train}}, PIPELINE)


def test_a_trigger_may_replace_a_sweep_over_overridable_and_already_swept_fields():
    assert overrides({"sweep": {"grid": {"factors": [1, 2], "epochs": [3]}}}) == {"train": {}}
    assert overrides({"sweep": {"variants": [{"factors": 1}]}, "epochs": 5}) == {"train": {"epochs": 5}}


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"sweep": {"grid": {"seed": [1, 2]}}}, "may not sweep seed"),
        ({"sweep": {"grid": {"factors": [1]}, "select": {"metric": "x", "mode": "max"}}}, "not select"),
        ({"sweep": {"grid": {"factors": list(range(300))}}}, "300 variants, more than the 256 allowed"),
        ({"sweep": {"grid": {"factors": 3}}}, "must map config fields to lists of values"),
        ({"sweep": {"grid": {"factors": [1]}, "variants": [{}]}}, "exactly one of them"),
        ({"sweep": {"grid": {"epochs": [1, 2]}}, "epochs": 3}, "both overrides and sweeps epochs"),
        ({"factors": 3}, "overrides factors, which the stage's sweep varies"),
    ],
)
def test_a_bad_trigger_time_sweep_is_refused_before_any_stage_runs(train, message):
    with pytest.raises(OverrideError, match=message):
        overrides(train)


def test_a_stage_without_a_sweep_takes_no_sweep_override():
    with pytest.raises(OverrideError, match=r"may not change extract\.sweep"):
        run_overrides({"overrides": {"extract": {"sweep": {"grid": {"a": [1]}}}}}, PIPELINE)
