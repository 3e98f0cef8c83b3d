"""Swept stages in real in-process runs (``airflow dags test``): variants as mapped tasks,
the winner downstream, failures, ties, the per-variant cache and trigger-time grids."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

# val_score = factors / (1 + regularization); variants whose factors are in fail_factors raise.
SPEC = """\
name: {name}
version: 1.0.0
metadata:
  owner: team-sweep
  schedule: null
stages:
  - name: first
    component: mlpipe_test_steps.steps
    config: {{value: 1}}
  - name: train
    component: mlpipe_test_steps.scored
    config: {{fail_factors: {fail_factors}}}
    dependencies: [first]
    retries: 1
    retry_delay: 1
    sweep:
{sweep}
  - name: use
    component: mlpipe_test_steps.echo
    dependencies: [train]
"""

GRID = """\
      grid: {factors: [4, 8, 16], regularization: [0, 1]}
      select: {metric: val_score, mode: max}
      max_parallel: 2
"""


def write(tmp_path: Path, name: str, sweep: str, fail_factors: str = "[]") -> Path:
    folder = tmp_path / "specs"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(SPEC.format(name=name, sweep=sweep, fail_factors=fail_factors))
    return folder


def task_instances(sandbox, dag_id: str, run_id: str) -> dict[tuple[str, int], tuple[str, int, str | None]]:
    """(task_id, map_index) -> (state, try_number, rendered_map_index), from the sandbox's database."""
    with sqlite3.connect(sandbox.database) as db:
        rows = db.execute(
            "SELECT task_id, map_index, state, try_number, rendered_map_index FROM task_instance "
            "WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        ).fetchall()
    return {(task, index): (state, tries, label) for task, index, state, tries, label in rows}


def variants_that_ran(run) -> list[str]:
    """The variants whose component ran in this run (it logs a progress line), in log order."""
    return [
        line.split("scored progress: ", 1)[1].strip().split(" [")[0]
        for line in run.output.splitlines()
        if "scored progress: " in line
    ]


def test_a_sweep_runs_each_variant_as_a_mapped_task_and_passes_the_best_downstream(
    mlpipe_sandbox, tmp_path, subprocess_env
):
    specs = write(tmp_path, "sweep_grid", GRID, fail_factors="[16]")

    run = mlpipe_sandbox.run(specs, "sweep_grid", env=subprocess_env)

    # Two variants failed (after their retry); the sweep still succeeded, and so did the run.
    assert run.state == "success", run.output[-3000:]
    record = run.record
    assert record["stages_completed"] == ["first", "train", "use"] and record["stages_failed"] == []
    tis = task_instances(mlpipe_sandbox, "sweep_grid", run.run_id)
    labels = [
        "factors=4, regularization=0",
        "factors=4, regularization=1",
        "factors=8, regularization=0",
        "factors=8, regularization=1",
        "factors=16, regularization=0",
        "factors=16, regularization=1",
    ]
    assert [tis[("train.variants", i)][2] for i in range(6)] == labels, "map indexes name the variants"
    assert [tis[("train.variants", i)][0] for i in range(6)] == ["success"] * 4 + ["failed"] * 2
    assert [tis[("train.variants", i)][1] for i in (4, 5)] == [2, 2], "each failed variant retried on its own"
    assert tis[("train", -1)][0] == tis[("train.plan", -1)][0] == "success"

    # The winner: factors=8, regularization=0 (val_score 8), and only it goes downstream.
    sweep = record["sweeps"]["train"]
    assert (sweep["metric"], sweep["mode"], sweep["selected"]) == ("val_score", "max", 2)
    assert [v["label"] for v in sweep["variants"]] == labels
    assert [v["metrics"].get("val_score") for v in sweep["variants"]] == [4.0, 2.0, 8.0, 4.0, None, None]
    assert [v["state"] for v in sweep["variants"]] == ["success"] * 4 + ["failed"] * 2
    assert all("diverged with factors=16" in v["error"] for v in sweep["variants"][4:])
    assert sweep["variants"][4]["config"] == {"factors": 16, "regularization": 0.0, "fail_factors": [16]}
    assert record["configs"]["train"] == {"factors": 8, "regularization": 0.0, "fail_factors": [16]}
    winner = record["outputs"]["train"]
    assert winner["metrics"] == {"val_score": 8.0, "factors": 8.0}
    assert (
        Path(winner["artifacts"]["model"].removeprefix("file://")).read_text()
        == "factors=8 regularization=0.0"
    )
    assert record["outputs"]["use"]["metrics"] == {"train.val_score": 8.0, "train.factors": 8.0}
    received = json.loads(
        Path(record["outputs"]["use"]["artifacts"]["received"].removeprefix("file://")).read_text()
    )
    assert received["train"]["artifacts"] == winner["artifacts"], "downstream got the winner's artifacts"
    # Each variant writes into a folder of its own: <stage>.variants.<map index>/<try>/.
    assert Path(winner["artifacts"]["model"]).parent.parent.name == "train.variants.2"

    # Rerun: every variant that succeeded comes from the cache (its own entry); the failed ones
    # run again, and the winner is the same, taken from the first run.
    again = mlpipe_sandbox.run(specs, "sweep_grid", env=subprocess_env)
    assert again.state == "success", again.output[-3000:]
    assert sorted(set(variants_that_ran(again))) == [
        "factors=16 regularization=0.0",
        "factors=16 regularization=1.0",
    ]
    again_sweep = again.record["sweeps"]["train"]
    assert [v["cached_from"] for v in again_sweep["variants"][:4]] == [run.run_id] * 4
    assert again_sweep["selected"] == 2
    assert again.record["stages_cached"] == ["train"]  # steps and echo are not cached components
    assert again.record["cached_from"]["train"] == run.run_id
    assert again.record["outputs"]["train"] == winner


def test_ties_go_to_the_first_variant_and_min_picks_the_lowest(mlpipe_sandbox, tmp_path, subprocess_env):
    sweep = """\
      variants:
        - {factors: 4, regularization: 1}
        - {factors: 2, regularization: 0}
        - {factors: 8, regularization: 1}
      select: {metric: val_score, mode: min}
"""
    # val_score: 2.0, 2.0, 4.0: the first two tie for the lowest.
    specs = write(tmp_path, "sweep_ties", sweep)

    run = mlpipe_sandbox.run(specs, "sweep_ties", env=subprocess_env)

    assert run.state == "success", run.output[-3000:]
    assert run.record["sweeps"]["train"]["selected"] == 0
    assert run.record["configs"]["train"]["factors"] == 4
    assert run.record["outputs"]["use"]["metrics"]["train.factors"] == 4.0


def test_a_sweep_whose_variants_all_fail_fails_the_stage_with_every_error(
    mlpipe_sandbox, tmp_path, subprocess_env
):
    sweep = """\
      grid: {factors: [4, 8]}
      select: {metric: val_score, mode: max}
"""
    specs = write(tmp_path, "sweep_fails", sweep, fail_factors="[4, 8]")

    run = mlpipe_sandbox.run(specs, "sweep_fails", env=subprocess_env)

    assert run.state == "failed"
    record = run.record
    assert record["stages_failed"] == ["train"] and record["stages_skipped"] == ["use"]
    error = record["errors"]["train"]
    assert "no variant of the sweep succeeded" in error
    assert "[0] factors=4: RuntimeError: diverged with factors=4" in error
    assert "[1] factors=8: RuntimeError: diverged with factors=8" in error
    assert record["sweeps"]["train"]["selected"] is None
    assert [v["state"] for v in record["sweeps"]["train"]["variants"]] == ["failed", "failed"]


def test_a_trigger_may_replace_the_grid_within_what_the_spec_allows(mlpipe_sandbox, tmp_path, subprocess_env):
    specs = write(tmp_path, "sweep_trigger", GRID)

    # factors is overridable; regularization is swept by the spec: both may be swept by a trigger.
    grid = {"factors": [2, 32], "regularization": [3]}
    run = mlpipe_sandbox.run(
        specs, "sweep_trigger", conf={"overrides": {"train": {"sweep": {"grid": grid}}}}, env=subprocess_env
    )
    assert run.state == "success", run.output[-3000:]
    sweep = run.record["sweeps"]["train"]
    assert [v["label"] for v in sweep["variants"]] == [
        "factors=2, regularization=3",
        "factors=32, regularization=3",
    ]
    assert sweep["selected"] == 1 and run.record["configs"]["train"]["factors"] == 32

    # A grid over a field that is neither overridable nor swept by the spec is refused by the
    # run's first stage, like any refused override (tests/test_sweeps.py, without a run).

    # A bad value in a trigger's grid fails the plan, naming the variant, before any variant runs.
    invalid = mlpipe_sandbox.run(
        specs,
        "sweep_trigger",
        conf={"overrides": {"train": {"sweep": {"grid": {"factors": [4, -1]}}}}},
        env=subprocess_env,
    )
    assert invalid.state == "failed"
    assert invalid.record["stages_failed"] == ["train"]
    assert "variant 1 (factors=-1)" in invalid.record["errors"]["train"]
    assert variants_that_ran(invalid) == []
