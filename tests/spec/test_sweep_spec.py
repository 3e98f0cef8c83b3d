"""A stage's ``sweep`` in the spec: what loads, and every mistake at its file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlpipe_spec_testing import load, spec_problems, write

from airflow_mlpipe.spec.sweeps import MAX_VARIANTS, expand_variants, variant_label

HEADER = """\
name: demo
version: 1.0.0
metadata:
  owner: ml-team
stages:
  - name: features
    component: mlpipe_spec_fixtures.features
  - name: train
    component: mlpipe_spec_fixtures.trainer
    config: {seed: 3}
    dependencies: [features]
"""


def swept(sweep: str, component: str = "trainer") -> str:
    text = HEADER.replace("mlpipe_spec_fixtures.trainer", f"mlpipe_spec_fixtures.{component}")
    return text + "    sweep:\n" + "".join(f"      {line}\n" for line in sweep.splitlines())


def located(problems) -> list[tuple[int, int, str, str]]:
    return [(p.location.line, p.location.column, p.field, p.message) for p in problems]


def test_a_grid_sweep_loads_and_expands_to_every_combination_in_order(tmp_path: Path) -> None:
    text = swept(
        "grid: {epochs: [5, 10], learning_rate: [0.1, 0.01]}\n"
        "select: {metric: loss, mode: min}\nmax_parallel: 4"
    )
    stage = load(write(tmp_path, "demo.yaml", text)).stage("train")
    assert stage.sweep is not None and stage.sweep.max_parallel == 4
    assert stage.sweep.expand() == [
        {"epochs": 5, "learning_rate": 0.1},
        {"epochs": 5, "learning_rate": 0.01},
        {"epochs": 10, "learning_rate": 0.1},
        {"epochs": 10, "learning_rate": 0.01},
    ]
    assert [variant_label(v) for v in stage.sweep.expand()][1] == "epochs=5, learning_rate=0.01"
    assert stage.sweep.swept_fields() == {"epochs", "learning_rate"}


def test_an_overlay_turns_a_sweep_off_with_null_and_the_stage_runs_once(tmp_path: Path) -> None:
    text = swept("grid: {epochs: [5, 10]}\nselect: {metric: loss, mode: min}")
    path = write(tmp_path, "demo.yaml", text)
    write(tmp_path, "demo.once.yaml", "stages:\n  - name: train\n    sweep: null\n")
    assert load(path).stage("train").sweep is not None
    once = load(path, "once")
    assert once.stage("train").sweep is None
    assert once.config_version == load(write(tmp_path / "plain", "demo.yaml", HEADER)).config_version


def test_a_sweep_changes_the_config_version_and_a_spec_without_one_keeps_its_hash(tmp_path: Path) -> None:
    plain = load(write(tmp_path, "demo.yaml", HEADER))
    text = swept("variants: [{epochs: 5}, {epochs: 10, seed: 4}]\nselect: {metric: loss, mode: min}")
    with_sweep = load(write(tmp_path / "b", "demo.yaml", text))
    assert with_sweep.config_version != plain.config_version
    assert "sweep" not in plain.to_execution_format()["stages"][1]
    assert with_sweep.to_execution_format()["stages"][1]["sweep"]["select"] == {
        "metric": "loss",
        "mode": "min",
    }
    # The base stays as it was before sweeps existed: the hash ignores an absent sweep.
    import hashlib
    import json

    data = plain.model_dump(mode="json")
    for stage in data["stages"]:
        del stage["overridable"], stage["sweep"], stage["approval"], stage["runtime"]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert plain.config_version == hashlib.sha256(canonical.encode()).hexdigest()[:12]


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        pytest.param(
            "grid: {epoch: [5, 10]}\nselect: {metric: loss, mode: min}",
            [(13, 14, "stages[train].sweep.grid", "'epoch' is not a config field of this stage's component")],
            id="grid-key-not-a-config-field",
        ),
        pytest.param(
            "grid: {epochs: [5, ten]}\nselect: {metric: loss, mode: min}",
            [
                (
                    13,
                    26,
                    "stages[train].sweep.grid.epochs",
                    "Input should be a valid integer, unable to parse string as an integer (got 'ten')",
                )
            ],
            id="grid-value-invalid",
        ),
        pytest.param(
            "variants: [{epochs: 5}, {learning_rate: fast}]\nselect: {metric: loss, mode: min}",
            [
                (
                    13,
                    47,
                    "stages[train].sweep.variants[1].learning_rate",
                    "Input should be a valid number, unable to parse string as a number (got 'fast')",
                )
            ],
            id="variant-invalid",
        ),
        pytest.param(
            "variants: [{epochs: 5}, {epoks: 3}]\nselect: {metric: loss, mode: min}",
            [
                (
                    13,
                    32,
                    "stages[train].sweep.variants[1]",
                    "'epoks' is not a config field of this stage's component",
                )
            ],
            id="variant-unknown-field",
        ),
        pytest.param(
            "grid: {epochs: [5]}\nvariants: [{epochs: 5}]\nselect: {metric: loss, mode: min}",
            [
                (
                    13,
                    7,
                    "stages[train].sweep",
                    "a sweep has either a 'grid' or a list of 'variants' (exactly one of them)",
                )
            ],
            id="grid-and-variants",
        ),
        pytest.param(
            "select: {metric: loss, mode: min}",
            [
                (
                    13,
                    7,
                    "stages[train].sweep",
                    "a sweep has either a 'grid' or a list of 'variants' (exactly one of them)",
                )
            ],
            id="neither",
        ),
        pytest.param(
            "grid: {epochs: [5]}\nselect: {metric: loss, mode: best}",
            [(14, 36, "stages[train].sweep.select.mode", "Input should be 'max' or 'min' (got 'best')")],
            id="mode",
        ),
        pytest.param(
            "grid: {epochs: [5]}\nselect: {metric: '', mode: max}",
            [
                (
                    14,
                    24,
                    "stages[train].sweep.select.metric",
                    "String should have at least 1 character",
                )
            ],
            id="empty-metric",
        ),
        pytest.param(
            "grid: {epochs: [5]}\nselect: {metric: loss, mode: max}\nmax_parallel: 0",
            [
                (
                    15,
                    21,
                    "stages[train].sweep.max_parallel",
                    "Input should be greater than or equal to 1 (got 0)",
                )
            ],
            id="max-parallel",
        ),
        pytest.param(
            "grid: {epochs: []}\nselect: {metric: loss, mode: max}",
            [(13, 7, "stages[train].sweep", "'grid' gives no values for 'epochs'; list at least one")],
            id="empty-grid-values",
        ),
        pytest.param(
            "grid: {epochs: ['{{ params.e }}']}\nselect: {metric: loss, mode: max}",
            [
                (
                    13,
                    23,
                    "stages[train].sweep.grid.epochs",
                    "sweep values are not templates: they are merged into the config after it is rendered",
                )
            ],
            id="templated-value",
        ),
    ],
)
def test_a_bad_sweep_is_reported_at_its_line_and_field(tmp_path: Path, sweep: str, expected) -> None:
    assert located(spec_problems(tmp_path, swept(sweep))) == expected


def test_a_grid_over_the_cap_is_refused_with_the_count(tmp_path: Path) -> None:
    values = ", ".join(str(n) for n in range(17))
    sweep = f"grid: {{epochs: [{values}], seed: [{values}]}}\nselect: {{metric: loss, mode: max}}"
    [problem] = spec_problems(tmp_path, swept(sweep))
    assert problem.field == "stages[train].sweep" and problem.location.line == 13
    assert problem.message == f"the sweep has 289 variants, more than the {MAX_VARIANTS} allowed"


def test_a_component_with_side_effects_cannot_be_swept(tmp_path: Path) -> None:
    sweep = "grid: {target: [a, b]}\nselect: {metric: loss, mode: max}"
    [problem] = spec_problems(tmp_path, swept(sweep, component="publisher"))
    assert (problem.field, problem.location.line) == ("stages[train].sweep", 12)  # at its key
    assert "has side effects" in problem.message and "remove 'sweep'" in problem.suggestion


def test_a_config_may_leave_out_a_required_field_every_variant_sets(tmp_path: Path) -> None:
    text = HEADER.replace("mlpipe_spec_fixtures.trainer", "mlpipe_spec_fixtures.steps").replace(
        "config: {seed: 3}", "config: {rate: 0.5}"
    )
    # steps' Config requires 'epochs'; the sweep sets it in every variant.
    text += "    sweep:\n      grid: {epochs: [1, 2]}\n      select: {metric: loss, mode: min}\n"
    assert load(write(tmp_path, "demo.yaml", text)).stage("train").sweep is not None


def test_selecting_a_metric_the_component_does_not_declare_is_a_warning_with_a_suggestion(
    tmp_path: Path,
) -> None:
    sweep = "grid: {epochs: [5, 10]}\nselect: {metric: los, mode: min}"
    pipeline = load(write(tmp_path, "demo.yaml", swept(sweep)))
    [warning] = pipeline.warnings
    assert warning.is_warning and warning.field == "stages[train].sweep.select.metric"
    assert warning.location.line == 14 and warning.suggestion == "did you mean 'loss'?"


def test_expand_variants_lists_variants_as_given() -> None:
    assert expand_variants(None, [{"a": 1}, {"a": 2, "b": {"c": 3}}]) == [{"a": 1}, {"a": 2, "b": {"c": 3}}]
    assert variant_label({"a": 2, "b": {"c": 3}}) == "a=2, b={c=3}"
