"""ComponentOperator's OpenLineage methods: built from what execute kept, for success and failure."""

from __future__ import annotations

import pytest

from .conftest import RunTask, TaskInstanceStub
from .test_component_operator import two_stages


@pytest.fixture(autouse=True)
def _openlineage(openlineage_provider: None) -> None:
    """Every test here needs the provider."""


def test_complete_lineage_is_what_execute_read_and_returned_without_reading_again(
    run_task: RunTask, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = two_stages()
    ti = TaskInstanceStub("ops", "run1")
    made = run_task(tasks["make"], ti)
    used = run_task(tasks["use"], ti)
    # The listener calls this after execute: nothing may be pulled or digested again.
    monkeypatch.setattr(ti, "xcom_pull", lambda *a, **k: pytest.fail("xcom pulled again"))
    monkeypatch.setattr(
        "airflow_mlpipe.operators.component.artifact_digest", lambda uri: pytest.fail("digest computed again")
    )

    lineage = tasks["use"].get_openlineage_facets_on_complete(ti)

    [read] = lineage.inputs
    assert read.name == made["artifacts"]["table"].removeprefix("file://")
    assert read.facets["version"].datasetVersion == made["digests"]["table"]
    [wrote] = lineage.outputs
    assert wrote.name == used["artifacts"]["copy"].removeprefix("file://")
    assert wrote.facets["version"].datasetVersion == used["digests"]["copy"]
    facet = lineage.run_facets["mlpipe"]
    assert (facet.pipeline, facet.pipelineVersion, facet.configVersion, facet.stage) == (
        "ops",
        "1.0.0",
        "abc",
        "use",
    )
    assert facet.fingerprint == used["fingerprint"]


def test_a_failed_stage_names_what_it_read_and_no_outputs(run_task: RunTask) -> None:
    tasks = two_stages(use={"raise_with": "boom"})
    ti = TaskInstanceStub("ops", "run1")
    made = run_task(tasks["make"], ti)
    with pytest.raises(RuntimeError):
        run_task(tasks["use"], ti)

    lineage = tasks["use"].get_openlineage_facets_on_failure(ti)

    assert [dataset.name for dataset in lineage.inputs] == [
        made["artifacts"]["table"].removeprefix("file://")
    ]
    assert lineage.outputs == []
    assert lineage.run_facets["mlpipe"].stage == "use"


def test_the_start_event_names_the_pipeline_before_anything_ran() -> None:
    tasks = two_stages()

    lineage = tasks["make"].get_openlineage_facets_on_start()

    assert lineage.inputs == [] and lineage.outputs == []
    assert lineage.run_facets["mlpipe"].pipeline == "ops"
