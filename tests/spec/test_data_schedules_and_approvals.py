"""Spec fields for pipelines triggered by data (``schedule: {after|assets}``) and approval gates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from mlpipe_spec_testing import MODULES, VALID, edit, load, only_problem, spec_problems, where, write

from airflow_mlpipe.spec import AssetSchedule, StageApproval, load_folder

CRON = 'schedule: "0 3 * * *"'


def with_schedule(schedule: str, name: str = "demo") -> str:
    return edit(edit(VALID, CRON, f"schedule: {schedule}"), "name: demo", f"name: {name}")


def folder_errors(folder: Path, environment: str = "dev") -> dict[str, list]:
    result = load_folder(folder, environment, component_modules=MODULES)
    return {name: error.problems for name, error in result.errors.items()}


# --- schedule: {after: ...} / {assets: ...} ---------------------------------------------------


def test_schedule_after_pipelines_loads_as_an_asset_schedule_waiting_for_all(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", with_schedule("{after: [features, events]}")))

    assert pipeline.metadata.schedule == AssetSchedule(after=["features", "events"])
    assert pipeline.metadata.schedule.any is False


def test_schedule_on_assets_with_any_loads(tmp_path: Path) -> None:
    text = with_schedule('\n    assets: ["s3://bucket/a", "s3://bucket/b"]\n    any: true')
    pipeline = load(write(tmp_path, "demo.yaml", text))

    assert pipeline.metadata.schedule == AssetSchedule(assets=["s3://bucket/a", "s3://bucket/b"], any=True)


def test_specs_without_the_new_fields_keep_their_config_version(tmp_path: Path) -> None:
    # The hash VALID had before schedules on data and approvals existed.
    assert load(write(tmp_path, "demo.yaml", VALID)).config_version == "93f7ddecdf67"
    on_data = load(write(tmp_path, "demo.yaml", with_schedule("{after: [features]}")))
    assert on_data.config_version != "93f7ddecdf67"


def test_an_unknown_key_in_a_schedule_mapping_is_located_with_a_did_you_mean(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, with_schedule("{after: [features], ani: true}"))

    assert problem.field == "metadata.schedule.ani"
    assert problem.message == "unknown field 'ani'"
    assert problem.suggestion == "did you mean 'any'?"
    assert where(problem) == ("demo.yaml", 7, 33)


def test_a_schedule_mapping_without_after_or_assets_is_refused(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, with_schedule("{any: true}"))

    assert problem.field == "metadata.schedule"
    assert "needs 'after' (pipeline names) or 'assets' (asset URIs)" in problem.message
    assert where(problem) == ("demo.yaml", 7, 13)


@pytest.mark.parametrize(
    ("schedule", "field", "message"),
    [
        ("{after: [Features]}", "metadata.schedule.after[0]", "String should match pattern"),
        ("{after: [a, a]}", "metadata.schedule.after", "listed more than once: a"),
        (
            '{assets: ["airflow://x"]}',
            "metadata.schedule.assets[0]",
            "the asset scheme 'airflow' is reserved",
        ),
        ('{assets: ["s3://u:pw@bucket/x"]}', "metadata.schedule.assets[0]", "must not contain a password"),
        ('{assets: [" "]}', "metadata.schedule.assets[0]", "an asset URI cannot be empty"),
        ("{after: [a], any: maybe}", "metadata.schedule.any", "Input should be a valid boolean"),
        ("42", "metadata.schedule", "a schedule is a cron string, an Airflow preset, null, or a mapping"),
    ],
)
def test_a_wrong_schedule_value_is_reported_at_its_field(
    tmp_path: Path, schedule: str, field: str, message: str
) -> None:
    problem = only_problem(tmp_path, with_schedule(schedule))

    assert problem.field == field
    assert message in problem.message
    assert problem.location is not None and problem.location.line == 7


# --- after: checked across the folder ------------------------------------------------------------


def test_after_naming_an_unknown_pipeline_is_an_error_with_a_did_you_mean(tmp_path: Path) -> None:
    write(tmp_path, "features.yaml", with_schedule("null", "features"))
    write(tmp_path, "demo.yaml", with_schedule("{after: [featurs]}"))

    errors = folder_errors(tmp_path)

    assert set(errors) == {"demo"}
    [problem] = errors["demo"]
    assert problem.field == "metadata.schedule.after"
    assert problem.message == "pipeline 'demo' runs after unknown pipeline 'featurs'"
    assert problem.suggestion == "did you mean 'features'?"
    assert where(problem) == ("demo.yaml", 7, 22)


def test_after_may_name_a_pipeline_whose_own_spec_is_broken(tmp_path: Path) -> None:
    # The broken spec reports its own problem; the pipeline waiting for it is fine.
    write(tmp_path, "features.yaml", edit(with_schedule("null", "features"), "owner: ml-team", "owner: ''"))
    write(tmp_path, "demo.yaml", with_schedule("{after: [features]}"))

    assert set(folder_errors(tmp_path)) == {"features"}


def test_pipelines_running_after_each_other_in_a_cycle_are_errors_in_both_files(tmp_path: Path) -> None:
    write(tmp_path, "first.yaml", with_schedule("{after: [second]}", "first"))
    write(tmp_path, "second.yaml", with_schedule("{after: [first]}", "second"))
    write(tmp_path, "other.yaml", with_schedule("{after: [first]}", "other"))

    errors = folder_errors(tmp_path)

    assert set(errors) == {"first", "second"}  # a pipeline only waiting for the cycle is not in it
    [first], [second] = errors["first"], errors["second"]
    assert first.message == "pipelines run after each other in a cycle: first -> second -> first"
    assert second.message == "pipelines run after each other in a cycle: second -> first -> second"
    assert where(first) == ("first.yaml", 7, 22) and where(second) == ("second.yaml", 7, 22)
    assert first.field == "metadata.schedule.after"
    assert "remove 'second' from 'first'" in first.suggestion


def test_a_pipeline_running_after_itself_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", with_schedule("{after: [demo]}"))

    [problem] = folder_errors(tmp_path)["demo"]

    assert problem.message == "pipeline 'demo' runs after itself"
    assert problem.suggestion == "remove 'demo' from the 'after' of 'demo'"


def test_loading_one_spec_of_a_folder_skips_the_checks_across_specs(tmp_path: Path) -> None:
    # What a worker does to start one task: the other specs are not read.
    write(tmp_path, "demo.yaml", with_schedule("{after: [elsewhere]}"))

    result = load_folder(tmp_path, "dev", only="demo", component_modules=MODULES)

    assert set(result.pipelines) == {"demo"} and result.errors == {}


def test_an_overlay_can_schedule_a_pipeline_after_another(tmp_path: Path) -> None:
    write(tmp_path, "features.yaml", with_schedule("null", "features"))
    write(tmp_path, "demo.yaml", VALID)
    write(tmp_path, "demo.production.yaml", "metadata:\n  schedule: {after: [features, missing]}\n")

    assert folder_errors(tmp_path, "dev") == {}
    [problem] = folder_errors(tmp_path, "production")["demo"]
    assert where(problem) == ("demo.production.yaml", 2, 32)


# --- approval ----------------------------------------------------------------------------------

STAGE = "    dependencies: [extract]\n"


def with_approval(approval: str) -> str:
    return edit(VALID, STAGE, f"{STAGE}    approval: {approval}\n")


def test_a_stage_approval_loads_with_its_timeout(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", with_approval("{required: true, timeout: 3d}")))

    assert pipeline.stage("train").approval == StageApproval(required=True, timeout=timedelta(days=3))
    assert pipeline.stage("extract").approval is None


def test_an_approval_without_required_is_required(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", with_approval("{}")))

    assert pipeline.stage("train").approval == StageApproval(required=True, timeout=None)


@pytest.mark.parametrize(
    ("approval", "field", "message", "column"),
    [
        ("{required: true, timout: 3d}", "stages[train].approval.timout", "unknown field 'timout'", 32),
        ("{timeout: soon}", "stages[train].approval.timeout", "'soon' is not a duration", 25),
        ("{timeout: 0}", "stages[train].approval.timeout", "a duration must be longer than zero", 25),
        ("{required: sure}", "stages[train].approval.required", "Input should be a valid boolean", 26),
        ("yes", "stages[train].approval", "Input should be a valid dictionary", 15),
    ],
)
def test_a_wrong_approval_is_reported_at_its_field(
    tmp_path: Path, approval: str, field: str, message: str, column: int
) -> None:
    problem = only_problem(tmp_path, with_approval(approval))

    assert problem.field == field
    assert problem.message.startswith(message), problem.message
    assert where(problem) == ("demo.yaml", 23, column)


def test_approval_is_not_a_default_for_every_stage(tmp_path: Path) -> None:
    problems = spec_problems(tmp_path, edit(VALID, "  retries: 1\n", "  retries: 1\n  approval: {}\n"))

    assert [p.message for p in problems] == ["unknown field 'approval'"]
