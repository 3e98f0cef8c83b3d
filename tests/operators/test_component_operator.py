"""ComponentOperator: inputs, declared I/O, trigger-time overrides and what its errors may say."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlpipe.operators.component import ComponentOperator
from airflow_mlpipe.pipeline_run import ERROR_XCOM_KEY, PipelineRef

from .conftest import RunTask, TaskInstanceStub

WRITER = "mlpipe_op_steps.writer"
READER = "mlpipe_op_steps.reader"


def build(
    stages: dict[str, tuple[str, dict[str, Any]]],
    overridable: dict[str, set[str]] | None = None,
    edges: tuple[tuple[str, str], ...] = (("make", "use"),),
    cache: bool = False,
    cache_ttl: timedelta | None = None,
) -> dict[str, ComponentOperator]:
    overridable = overridable or {}
    ref = PipelineRef(
        name="ops",
        version="1.0.0",
        config_version="abc",
        environment="test",
        sources=(),
        overridable=MappingProxyType({stage: frozenset(overridable.get(stage, ())) for stage in stages}),
    )
    with DAG("ops", schedule=None):
        tasks = {
            name: ComponentOperator(
                task_id=name,
                component=component,
                config=config,
                pipeline=ref,
                cache=cache,
                cache_ttl=cache_ttl,
            )
            for name, (component, config) in stages.items()
        }
        for upstream, downstream in edges:
            if upstream in tasks and downstream in tasks:
                tasks[upstream] >> tasks[downstream]
    return tasks


def two_stages(make: dict[str, Any] | None = None, use: dict[str, Any] | None = None, **kw: Any):
    return build({"make": (WRITER, make or {}), "use": (READER, use or {})}, **kw)


def test_downstream_reads_inputs_by_key_attribute_and_method(run_task: RunTask) -> None:
    tasks = two_stages()
    ti = TaskInstanceStub("ops", "run1")

    run_task(tasks["make"], ti)
    result = run_task(tasks["use"], ti)

    assert result["metrics"] == {"upstream_rows": 3.0}
    assert Path(result["artifacts"]["copy"].removeprefix("file://")).read_text() == "3 rows from SELECT 1"


def test_a_stage_returning_less_than_it_declares_fails_naming_what_is_missing(run_task: RunTask) -> None:
    tasks = two_stages(make={"skip_table": True})
    ti = TaskInstanceStub("ops", "run1")

    with pytest.raises(AirflowFailException, match=r"produces artifact 'table', but its run\(\) did not"):
        run_task(tasks["make"], ti)
    assert "artifact 'table'" in ti.xcoms[("make", ERROR_XCOM_KEY)]


def test_a_stage_whose_required_upstream_artifact_is_missing_fails_before_run(run_task: RunTask) -> None:
    tasks = two_stages()
    ti = TaskInstanceStub("ops", "run1")
    ti.xcoms[("make", "return_value")] = {"artifacts": {"other": "file:///x"}, "metrics": {}}

    with pytest.raises(AirflowFailException, match=r"requires the upstream artifact\(s\) 'table'"):
        run_task(tasks["use"], ti)


def test_a_missing_extra_fails_with_the_install_command(run_task: RunTask) -> None:
    tasks = build({"x": ("mlpipe_op_steps.needs_extra", {})})

    with pytest.raises(AirflowFailException, match=r"needs the 'quantum' extra.*pip install"):
        run_task(tasks["x"], TaskInstanceStub("ops", "run1"))


def test_an_overridable_field_is_applied(run_task: RunTask) -> None:
    tasks = two_stages(overridable={"make": {"rows"}})
    ti = TaskInstanceStub("ops", "run1")

    result = run_task(tasks["make"], ti, conf={"overrides": {"make": {"rows": 7}}})

    assert result["metrics"] == {"rows": 7.0}


def test_an_override_of_a_field_that_is_not_overridable_fails_every_stage_before_it_runs(
    run_task: RunTask, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    tasks = two_stages(make={"marker": str(marker)}, overridable={"make": {"rows"}})
    conf = {"overrides": {"use": {"batch_size": 5}, "make": {"query": "SELECT * FROM salaries"}}}
    ti = TaskInstanceStub("ops", "run1")

    # The first stage fails although the refused override is also for a later stage.
    with pytest.raises(AirflowFailException) as failure:
        run_task(tasks["make"], ti, conf=conf)

    message = str(failure.value)
    assert "make.query" in message and "use.batch_size" in message
    assert "overridable: [...]" in message  # says how a spec author allows it
    assert "make: rows" in message
    assert not marker.exists()
    assert "make.query" in ti.xcoms[("make", ERROR_XCOM_KEY)]


def test_an_override_for_an_unknown_stage_fails(run_task: RunTask) -> None:
    tasks = two_stages()

    with pytest.raises(AirflowFailException, match="unknown stages"):
        run_task(tasks["make"], TaskInstanceStub("ops", "run1"), conf={"overrides": {"nope": {"a": 1}}})


def test_an_invalid_config_error_leaves_out_the_rendered_secret(run_task: RunTask) -> None:
    from airflow.sdk.log import mask_secret

    secret = "pa55-invalid-config-Zq8"
    mask_secret(secret)
    # As if a template rendered a connection password into a field that then fails validation.
    tasks = two_stages(use={"batch_size": secret})
    ti = TaskInstanceStub("ops", "run1")
    run_task(tasks["make"], ti)

    with pytest.raises(AirflowFailException) as failure:
        run_task(tasks["use"], ti)

    assert "batch_size" in str(failure.value)
    assert secret not in str(failure.value)
    assert secret not in ti.xcoms[("use", ERROR_XCOM_KEY)]


def test_a_component_exception_carrying_a_secret_is_masked_in_the_error_xcom(run_task: RunTask) -> None:
    from airflow.sdk.log import mask_secret

    secret = "pa55-component-exception-K3v"
    mask_secret(secret)
    tasks = two_stages(use={"raise_with": secret})
    ti = TaskInstanceStub("ops", "run1")
    run_task(tasks["make"], ti)

    with pytest.raises(RuntimeError):
        run_task(tasks["use"], ti)

    error = ti.xcoms[("use", ERROR_XCOM_KEY)]
    assert error.startswith("RuntimeError: could not log in with")
    assert secret not in error


def test_a_stage_with_no_outputs_hands_on_its_fingerprint_and_config(run_task: RunTask) -> None:
    tasks = build({"quiet": ("mlpipe_op_steps.quiet", {})})
    ti = TaskInstanceStub("ops", "run1")

    result = run_task(tasks["quiet"], ti)

    assert result == {
        "artifacts": {},
        "metrics": {},
        "digests": {},
        "config": {},
        "fingerprint": result["fingerprint"],
    }
    assert len(result["fingerprint"]) == 64


def test_each_try_writes_into_a_folder_of_its_own(run_task: RunTask, operator_env: Path) -> None:
    tasks = two_stages(overridable={"make": {"rows"}})
    ti = TaskInstanceStub("ops", "run1")
    run_task(tasks["make"], ti)
    first = Path(ti.xcoms[("make", "return_value")]["artifacts"]["table"].removeprefix("file://"))

    ti.try_number = 2
    run_task(tasks["make"], ti, conf={"overrides": {"make": {"rows": 5}}})
    second = Path(ti.xcoms[("make", "return_value")]["artifacts"]["table"].removeprefix("file://"))

    assert (first.parent.name, second.parent.name) == ("1", "2")
    assert first.parent.parent == second.parent.parent
    # A later try never touches an earlier try's outputs (a stale try may still be reading them).
    assert first.read_text() == "3 rows from SELECT 1"
    assert second.read_text() == "5 rows from SELECT 1"


def test_the_same_try_run_again_starts_clean(run_task: RunTask) -> None:
    tasks = two_stages()
    ti = TaskInstanceStub("ops", "run1")
    run_task(tasks["make"], ti)
    try_dir = Path(ti.xcoms[("make", "return_value")]["artifacts"]["table"].removeprefix("file://")).parent
    (try_dir / "left-over.txt").write_text("stale")

    run_task(tasks["make"], ti)

    assert sorted(p.name for p in try_dir.iterdir()) == ["table.txt"]


def test_outputs_carry_content_digests_and_the_stage_fingerprint(run_task: RunTask) -> None:
    tasks = two_stages()
    ti = TaskInstanceStub("ops", "run1")

    made = run_task(tasks["make"], ti)

    table = Path(made["artifacts"]["table"].removeprefix("file://"))
    assert made["digests"] == {"table": "sha256:" + hashlib.sha256(table.read_bytes()).hexdigest()}
    assert len(made["fingerprint"]) == 64


def fingerprints_of(run_task: RunTask, run_id: str, conf: dict[str, Any] | None = None, **config: Any):
    tasks = two_stages(make=config, overridable={"make": {"rows"}})
    ti = TaskInstanceStub("ops", run_id)
    made = run_task(tasks["make"], ti, conf=conf)
    used = run_task(tasks["use"], ti)
    return made["fingerprint"], used["fingerprint"]


def test_fingerprints_follow_config_and_upstream_content_not_run_or_uri(run_task: RunTask) -> None:
    make, use = fingerprints_of(run_task, "run1")

    # Another run (other URIs), same config and same upstream bytes: the same fingerprints.
    assert fingerprints_of(run_task, "run2") == (make, use)
    # Spelling out a default changes nothing: the resolved config counts.
    assert fingerprints_of(run_task, "run3", rows=3) == (make, use)
    # An override changes that stage, and through its output's content the stage downstream.
    changed_make, changed_use = fingerprints_of(run_task, "run4", conf={"overrides": {"make": {"rows": 4}}})
    assert changed_make != make and changed_use != use
    # A config change that does not change the upstream's bytes leaves the downstream alone:
    # 'marker' only touches a file outside the artifact.
    marked_make, marked_use = fingerprints_of(run_task, "run5", marker="/dev/null")
    assert marked_make != make and marked_use == use
