"""Trigger-time overrides in real runs: only overridable fields change; the rest fails first."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

SPEC = """\
name: guarded
version: 1.0.0
metadata:
  owner: team-guarded
  schedule: null
stages:
  - name: first
    component: mlpipe_test_steps.steps
    config: {value: 1}
  - name: second
    component: mlpipe_test_steps.steps
    config: {value: 2, label: spec-label}
    dependencies: [first]
  - name: third
    component: mlpipe_test_steps.steps
    config: {value: 3, label: spec-label}
    dependencies: [second]
    overridable: [label]
"""


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "guarded.yaml").write_text(SPEC)
    return folder


def test_an_override_of_a_field_that_is_not_overridable_fails_before_any_stage_runs(
    mlpipe_sandbox, specs, subprocess_env
):
    conf = {"overrides": {"second": {"label": "changed", "value": 9}}}

    run = mlpipe_sandbox.run(specs, "guarded", conf=conf, env=subprocess_env)

    assert run.state == "failed"
    # The refused field belongs to 'second', but the first stage to start already refuses it.
    assert run.task_states["first"] == "failed"
    assert run.record["stages_skipped"] == ["second", "third"]
    error = run.record["errors"]["first"]
    assert "second.label" in error and "not overridable" in error and "overridable: [...]" in error
    assert "second.value" not in error  # 'value' is marked overridable by the component
    assert "steps progress" not in run.output  # no component ran


def test_the_spec_decides_per_stage_which_fields_a_trigger_may_change(mlpipe_sandbox, specs, subprocess_env):
    # 'third' lists only 'label': it widens the component's marks by 'label' and narrows away 'value'.
    allowed = mlpipe_sandbox.run(
        specs, "guarded", conf={"overrides": {"third": {"label": "from-trigger"}}}, env=subprocess_env
    )
    assert allowed.state == "success", allowed.output[-3000:]
    artifact = Path(allowed.record["outputs"]["third"]["artifacts"]["out"].removeprefix("file://"))
    assert artifact.read_text().split("|")[:2] == ["3", "from-trigger"]

    refused = mlpipe_sandbox.run(
        specs, "guarded", conf={"overrides": {"third": {"value": 30}}}, env=subprocess_env
    )
    assert refused.state == "failed"
    assert "third.value" in refused.record["errors"]["first"]
