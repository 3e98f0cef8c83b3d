"""The spec models: field checks (located problems), to_execution_format(), to_yaml(), config_version."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from mlpipe_spec_testing import SOURCE, STEPS, VALID, edit, load, only_problem, spec_problems, where, write
from pydantic import ValidationError

from airflow_mlpipe.spec import Pipeline, StageSettings
from airflow_mlpipe.spec.models import SCHEDULE_PRESETS

# --- required, unknown and mistyped fields -----------------------------------------------------


def test_missing_stages_is_reported_at_the_top_mapping(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "name: demo\nversion: 1.0.0\nmetadata:\n  owner: me\n")
    assert where(problem) == ("demo.yaml", 1, 1)
    assert problem.field == "stages"
    assert problem.message == "missing required field 'stages'"


def test_missing_owner_is_reported_at_the_metadata_mapping_with_the_field_description(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "  owner: ml-team\n", ""))
    assert where(problem) == ("demo.yaml", 4, 3)
    assert problem.field == "metadata.owner"
    assert problem.message == "missing required field 'owner'"
    assert problem.suggestion == "'owner': team or person; shown as the DAG owner"


def test_missing_stage_component_is_reported_at_the_stage(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "    component: mlpipe_spec_fixtures.source\n", ""))
    assert where(problem) == ("demo.yaml", 13, 5)
    assert problem.field == "stages[extract].component"
    assert problem.message == "missing required field 'component'"
    assert problem.suggestion == "'component': e.g. data.extract.database"


def test_misspelt_top_level_key_suggests_the_field_and_reports_the_missing_one(tmp_path: Path) -> None:
    problems = spec_problems(tmp_path, edit(VALID, "stages:\n", "stage:\n"))
    assert [(where(p), p.field, p.message, p.suggestion) for p in problems] == [
        (
            ("demo.yaml", 1, 1),
            "stages",
            "missing required field 'stages'",
            "'stages': the pipeline's stages, at least one, each with a name and a component",
        ),
        (("demo.yaml", 12, 1), "stage", "unknown field 'stage'", "did you mean 'stages'?"),
    ]


def test_unknown_stage_field_suggests_closest_name(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "    dependencies: [extract]\n", "    retires: 3\n"))
    assert where(problem) == ("demo.yaml", 22, 5)
    assert problem.field == "stages[train].retires"
    assert problem.message == "unknown field 'retires'"
    assert problem.suggestion == "did you mean 'retries'?"


def test_misspelt_dependencies_suggests_dependencies(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "dependencies: [extract]", "dependancies: [extract]"))
    assert where(problem) == ("demo.yaml", 22, 5)
    assert problem.field == "stages[train].dependancies"
    assert problem.suggestion == "did you mean 'dependencies'?"


def test_misspelt_default_setting_suggests_the_setting(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "  retries: 1\n", "  retires: 1\n"))
    assert where(problem) == ("demo.yaml", 10, 3)
    assert problem.field == "defaults.retires"
    assert problem.suggestion == "did you mean 'retries'?"


def test_misspelt_metadata_key_suggests_the_key(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, '  schedule: "0 3 * * *"', '  schedul: "0 3 * * *"'))
    assert where(problem) == ("demo.yaml", 7, 3)
    assert problem.field == "metadata.schedul"
    assert problem.suggestion == "did you mean 'schedule'?"


def test_unknown_key_with_no_close_match_lists_the_allowed_fields(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "  tags: [ml]\n", "  tags: [ml]\n  colour: blue\n"))
    assert where(problem) == ("demo.yaml", 7, 3)
    assert problem.message == "unknown field 'colour'"
    assert problem.suggestion == (
        "allowed fields: owner, description, tags, schedule, notify_on_failure, start_date, catchup"
    )


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "column", "message"),
    [
        (
            "  retries: 1\n",
            "  retries: two\n",
            "defaults.retries",
            10,
            12,
            "Input should be a valid integer, unable to parse string as an integer (got 'two')",
        ),
        (
            "  retries: 1\n",
            "  retries: -1\n",
            "defaults.retries",
            10,
            12,
            "Input should be greater than or equal to 0 (got -1)",
        ),
        ("  tags: [ml]\n", "  tags: ml\n", "metadata.tags", 6, 9, "Input should be a valid list (got 'ml')"),
        (
            "  tags: [ml]\n",
            "  tags: [ml, 3]\n",
            "metadata.tags[1]",
            6,
            14,
            "Input should be a valid string (got 3)",
        ),
        (
            "  description: a test pipeline\n",
            "  description: [a, list]\n",
            "metadata.description",
            5,
            16,
            "Input should be a valid string",
        ),
        (
            "  tags: [ml]\n",
            "  tags: [ml]\n  catchup: perhaps\n",
            "metadata.catchup",
            7,
            12,
            "Input should be a valid boolean, unable to interpret input (got 'perhaps')",
        ),
        (
            "  tags: [ml]\n",
            "  tags: [ml]\n  start_date: yesterday\n",
            "metadata.start_date",
            7,
            15,
            "Input should be a valid date or datetime, input is too short (got 'yesterday')",
        ),
    ],
)
def test_mistyped_field_is_reported_at_its_value(
    tmp_path: Path, old: str, new: str, field: str, line: int, column: int, message: str
) -> None:
    problem = only_problem(tmp_path, edit(VALID, old, new))
    assert where(problem) == ("demo.yaml", line, column)
    assert problem.field == field
    assert problem.message == message


def test_union_typed_field_reports_one_problem_with_the_spec_field_path(tmp_path: Path) -> None:
    # start_date is `date | datetime | None`: pydantic reports once per union member.
    problems = spec_problems(tmp_path, edit(VALID, "  tags: [ml]\n", "  tags: [ml]\n  start_date: [1]\n"))
    assert [(p.field, where(p)) for p in problems] == [("metadata.start_date", ("demo.yaml", 7, 15))]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            f"name: demo\nversion: 1.0.0\nmetadata: [me]\nstages: [{{name: a, component: {SOURCE}}}]\n",
            "metadata",
            "Input should be a valid dictionary or instance of Metadata",
        ),
        (
            "name: demo\nversion: 1.0.0\nmetadata: {owner: me}\nstages: []\n",
            "stages",
            "List should have at least 1 item after validation, not 0",
        ),
        ("name: demo\nversion: 1.0.0\nmetadata: {owner: me}\nstages: {a: b}\n", "stages", "valid list"),
        ("name: demo\nversion: 1.0.0\nmetadata: {owner: me}\nstages: [extract]\n", "stages[0]", "valid"),
    ],
)
def test_wrongly_shaped_sections_are_reported(tmp_path: Path, text: str, field: str, message: str) -> None:
    problem = only_problem(tmp_path, text)
    assert problem.field == field
    assert message in problem.message
    assert where(problem)[1] in (3, 4)


# --- version -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("1.0", 'expected a quoted string, got float 1.0; quote it: "1.0"'),
        ("3", 'expected a quoted string, got int 3; quote it: "3"'),
        ("'v3.2.1'", "'v3.2.1' is not a semantic version like 1.4.0 (drop the leading 'v')"),
        ("v3.2.1", "'v3.2.1' is not a semantic version like 1.4.0 (drop the leading 'v')"),
        ("'1.0'", "'1.0' is not a semantic version like 1.4.0"),
        ("01.0.0", "'01.0.0' is not a semantic version like 1.4.0"),
        ("1.0.0-", "'1.0.0-' is not a semantic version like 1.4.0"),
        ("1.0.0.0", "'1.0.0.0' is not a semantic version like 1.4.0"),
        ("''", "'' is not a semantic version like 1.4.0"),
    ],
)
def test_version_must_be_a_semantic_version_string(tmp_path: Path, written: str, message: str) -> None:
    problem = only_problem(tmp_path, edit(VALID, "version: 1.0.0\n", f"version: {written}\n"))
    assert where(problem) == ("demo.yaml", 2, 10)
    assert problem.field == "version"
    assert problem.message == message


@pytest.mark.parametrize(
    "version", ["0.0.0", "3.2.1", "1.0.0-alpha.1", "1.0.0+build.5", "10.20.30-rc.1+sha.1"]
)
def test_valid_semantic_versions_load(tmp_path: Path, version: str) -> None:
    path = write(tmp_path, "demo.yaml", edit(VALID, "version: 1.0.0\n", f"version: {version}\n"))
    assert load(path).version == version


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Demo", "1demo", "de-mo", "de mo", "_demo", "d" * 201])
def test_pipeline_name_must_be_lowercase_letters_digits_and_underscores(tmp_path: Path, name: str) -> None:
    problem = only_problem(tmp_path, edit(VALID, "name: demo\n", f"name: '{name}'\n"))
    assert where(problem) == ("demo.yaml", 1, 7)
    assert problem.field == "name"
    assert problem.message == f"String should match pattern '^[a-z][a-z0-9_]{{0,199}}$' (got '{name}')"


def test_stage_name_must_be_a_valid_task_id(tmp_path: Path) -> None:
    problem, dependency = spec_problems(
        tmp_path, edit(VALID, "  - name: extract\n", "  - name: Extract Data\n")
    )
    assert where(problem) == ("demo.yaml", 13, 11)
    assert problem.field == "stages[Extract Data].name"
    assert "String should match pattern" in problem.message
    # reported alongside: the graph check still sees the (misnamed) stage
    assert where(dependency) == ("demo.yaml", 22, 20)
    assert dependency.suggestion == "did you mean 'Extract Data'?"


@pytest.mark.parametrize("component", ["data..extract", "data.extract.", "os.system; rm -rf /", "1data.x"])
def test_component_must_look_like_a_module_path(tmp_path: Path, component: str) -> None:
    problem = only_problem(
        tmp_path, edit(VALID, "component: mlpipe_spec_fixtures.source", f"component: '{component}'")
    )
    assert where(problem) == ("demo.yaml", 14, 16)
    assert problem.field == "stages[extract].component"
    assert problem.message.startswith("String should match pattern")


# --- schedule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 3 * *", "'0 3 * *' is not a valid cron expression"),
        ("0 3 * * * *", "'0 3 * * * *' is not a valid cron expression"),
        ("61 3 * * *", "'61 3 * * *' is not a valid cron expression"),
        ("0 25 * * *", "'0 25 * * *' is not a valid cron expression"),
        ("*/0 * * * *", "'*/0 * * * *' is not a valid cron expression"),
        ("every day", "'every day' is not a valid cron expression"),
        ("@dayly", "'@dayly' is not an Airflow schedule preset (" + ", ".join(SCHEDULE_PRESETS) + ")"),
        ("@daily ", "'@daily ' is not an Airflow schedule preset"),
    ],
)
def test_invalid_schedule_is_reported_at_its_value(tmp_path: Path, schedule: str, message: str) -> None:
    problem = only_problem(tmp_path, edit(VALID, '"0 3 * * *"', f'"{schedule}"'))
    assert where(problem) == ("demo.yaml", 7, 13)
    assert problem.field == "metadata.schedule"
    assert problem.message.startswith(message)


def test_invalid_cron_message_explains_the_five_fields(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, '"0 3 * * *"', '"0 3 * *"'))
    assert "use five fields (minute hour day-of-month month day-of-week)" in problem.message
    assert "or a preset like @daily" in problem.message


@pytest.mark.parametrize(
    "schedule", [*SCHEDULE_PRESETS, "0 3 * * *", "*/15 * * * 1-5", "0 0 1 */3 *", "30 2 * * mon"]
)
def test_valid_schedules_load_unchanged(tmp_path: Path, schedule: str) -> None:
    path = write(tmp_path, "demo.yaml", edit(VALID, '"0 3 * * *"', f'"{schedule}"'))
    assert load(path).metadata.schedule == schedule


def test_null_schedule_means_manual_runs(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.yaml", edit(VALID, 'schedule: "0 3 * * *"', "schedule: null"))
    assert load(path).metadata.schedule is None


# --- e-mail ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["not-an-email", "a@", "@example.com", "a b@example.com", "a@@example.com"]
)
def test_invalid_failure_address_is_reported_at_the_item(tmp_path: Path, address: str) -> None:
    problem = only_problem(
        tmp_path, edit(VALID, "[alerts@example.com]", f"[alerts@example.com, '{address}']")
    )
    assert where(problem) == ("demo.yaml", 8, 43)
    assert problem.field == "metadata.notify_on_failure[1]"
    assert problem.message.startswith("value is not a valid email address")
    assert repr(address) in problem.message


def test_valid_failure_addresses_load(tmp_path: Path) -> None:
    path = write(
        tmp_path, "demo.yaml", edit(VALID, "[alerts@example.com]", "[a@example.com, b.c+d@ml.example.org]")
    )
    assert load(path).metadata.notify_on_failure == ["a@example.com", "b.c+d@ml.example.org"]


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"),
    [(300, 300), (1.5, 1.5), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1h 30m", 5400), ("1.5h", 5400),
     ("2d", 172800), ("PT5M", 300), ("P1D", 86400)],
)  # fmt: skip
def test_durations_accept_seconds_and_compact_strings(written: object, seconds: float) -> None:
    assert StageSettings(retry_delay=written).retry_delay == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("5 minutes", "'5 minutes' is not a duration"),
        ("m5", "'m5' is not a duration"),
        (0, "a duration must be longer than zero"),
        (-5, "a duration must be longer than zero"),
        ("0s", "a duration must be longer than zero"),
        (True, "a duration is a number of seconds or a string like '5m'"),
        (float("inf"), "'inf' is too long for a duration"),
        ("99999999999d", "'99999999999d' is too long for a duration"),
        (10**20, "is too long for a duration"),
    ],
)
def test_invalid_durations_are_validation_errors_not_crashes(written: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        StageSettings(execution_timeout=written)
    assert message in str(info.value)


def test_invalid_duration_in_the_spec_is_located(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "retry_delay: 5m", "retry_delay: soon"))
    assert where(problem) == ("demo.yaml", 11, 16)
    assert problem.field == "defaults.retry_delay"
    assert problem.message.startswith("'soon' is not a duration; write seconds (300) or e.g. '90s'")


def test_infinite_timeout_in_the_spec_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "retry_delay: 5m", "retry_delay: .inf"))
    assert problem.field == "defaults.retry_delay"
    assert problem.message == "'inf' is too long for a duration"


# --- the loaded model --------------------------------------------------------------------------


def test_loaded_pipeline_has_typed_values_environment_and_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.yaml", VALID)
    pipeline = load(path, "staging")
    assert pipeline.environment == "staging"
    assert pipeline.sources == (str(path),)
    assert pipeline.defaults.retry_delay == timedelta(minutes=5)
    assert pipeline.defaults.retries == 1
    assert pipeline.metadata.catchup is False
    assert pipeline.metadata.start_date is None
    assert pipeline.stage("train").dependencies == ["extract"]
    assert pipeline.stage("extract").dependencies == []
    with pytest.raises(KeyError):
        pipeline.stage("missing")


def test_pipeline_is_immutable(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", VALID))
    with pytest.raises(ValidationError):
        pipeline.name = "other"  # type: ignore[misc]


# --- render ------------------------------------------------------------------------------------


def test_render_has_exactly_the_execution_format(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", VALID), "production")
    rendered = pipeline.to_execution_format()
    assert rendered == {
        "pipeline": "demo",
        "version": "1.0.0",
        "environment": "production",
        "config_version": pipeline.config_version,
        "metadata": {
            "owner": "ml-team",
            "description": "a test pipeline",
            "tags": ["ml"],
            "schedule": "0 3 * * *",
            "notify_on_failure": ["alerts@example.com"],
            "start_date": None,
            "catchup": False,
        },
        "stages": [
            {"name": "extract", "component": SOURCE, "config": {"table": "events"}, "upstream": []},
            {
                "name": "train",
                "component": STEPS,
                "config": {"epochs": 3, "rate": 0.5},
                "upstream": ["extract"],
            },
        ],
    }
    assert list(rendered) == ["pipeline", "version", "environment", "config_version", "metadata", "stages"]
    assert all(list(stage) == ["name", "component", "config", "upstream"] for stage in rendered["stages"])
    assert json.loads(json.dumps(rendered)) == rendered


def test_render_keeps_templated_values_for_run_time(tmp_path: Path) -> None:
    text = edit(VALID, "      epochs: 3\n", '      epochs: "{{ params.epochs }}"\n')
    rendered = load(write(tmp_path, "demo.yaml", text)).to_execution_format()
    assert rendered["stages"][1]["config"]["epochs"] == "{{ params.epochs }}"


# --- to_yaml round trip ------------------------------------------------------------------------

RICH = """\
name: demo
version: 2.0.0-rc.1
metadata:
  owner: ml-team
  tags: [ml, nightly]
  schedule: "@daily"
  start_date: {start_date}
  catchup: true
defaults:
  execution_timeout: 1h30m
stages:
  - name: extract
    component: mlpipe_spec_fixtures.source
    pool: db
    queue: io
    retries: 0
    retry_delay: 90
  - name: train
    component: mlpipe_spec_fixtures.steps
    config:
      epochs: "{{{{ params.epochs }}}}"
      cutoff: 2024-02-29
      labels: ["007", "yes", "null", "1.0"]
      options: {{mode: slow}}
      settings: {{when: 2024-01-01 12:00:00, nested: [1, 2.5, true, null, {{a: b}}], empty: {{}}}}
    dependencies: [extract]
"""


@pytest.mark.parametrize(
    "start_date",
    ["2024-01-01", "2024-01-01 00:00:00", "2024-01-01T05:00:00Z", "2024-01-01 05:30:00+02:00", "null"],
)
def test_to_yaml_reads_back_to_an_equal_model_with_the_same_config_version(
    tmp_path: Path, start_date: str
) -> None:
    pipeline = load(write(tmp_path / "a", "demo.yaml", RICH.format(start_date=start_date)))
    text = pipeline.to_yaml()
    reloaded = load(write(tmp_path / "b", "demo.yaml", text))
    assert reloaded.bind(pipeline.environment, pipeline.sources) == pipeline
    assert reloaded.config_version == pipeline.config_version
    assert type(reloaded.metadata.start_date) is type(pipeline.metadata.start_date)
    config = reloaded.stage("train").config
    assert config["cutoff"] == date(2024, 2, 29)
    assert config["settings"]["when"] == datetime(2024, 1, 1, 12, 0)
    assert config["labels"] == ["007", "yes", "null", "1.0"]
    # and the text itself is what Pipeline.model_validate reads back to an equal model
    assert (
        Pipeline.model_validate(yaml.safe_load(text)).bind(pipeline.environment, pipeline.sources) == pipeline
    )


@pytest.mark.parametrize(
    "description",
    [
        "a\x85b",
        "line\u2028separator",
        " leading and trailing ",
        "multi\nline\n",
        "yes",
        "null",
        "é ✓",
        "'\"#: x",
    ],
)
def test_to_yaml_round_trips_awkward_strings(tmp_path: Path, description: str) -> None:
    text = edit(VALID, "description: a test pipeline", f"description: {json.dumps(description)}")
    pipeline = load(write(tmp_path, "demo.yaml", text))
    assert pipeline.metadata.description == description
    reloaded = Pipeline.model_validate(yaml.safe_load(pipeline.to_yaml()))
    assert reloaded.metadata.description == description


def test_to_yaml_leaves_out_defaults_and_keeps_field_order(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", VALID))
    data = yaml.safe_load(pipeline.to_yaml())
    assert list(data) == ["name", "version", "metadata", "defaults", "stages"]
    assert data["metadata"] == {
        "owner": "ml-team",
        "description": "a test pipeline",
        "tags": ["ml"],
        "schedule": "0 3 * * *",
        "notify_on_failure": ["alerts@example.com"],
    }
    assert data["defaults"] == {"retries": 1, "retry_delay": "PT5M"}
    assert data["stages"][0] == {"name": "extract", "component": SOURCE, "config": {"table": "events"}}


def test_to_yaml_keeps_timezones(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", RICH.format(start_date="2024-01-01 05:30:00+02:00")))
    start = Pipeline.model_validate(yaml.safe_load(pipeline.to_yaml())).metadata.start_date
    assert start == datetime(2024, 1, 1, 3, 30, tzinfo=timezone.utc)
    assert isinstance(start, datetime) and start.utcoffset() == timedelta(hours=2)


# --- config_version ----------------------------------------------------------------------------

# The same pipeline as VALID, written differently: key order, indentation, flow style, comments,
# quoting, explicit defaults and other spellings of the same duration.
SAME_AS_VALID = [
    pytest.param(
        """\
        stages:
          - component: mlpipe_spec_fixtures.source
            config: {table: events}
            name: extract
          - dependencies: [extract]
            config: {rate: 0.5, epochs: 3}
            name: train
            component: mlpipe_spec_fixtures.steps
        defaults: {retry_delay: 5m, retries: 1}
        metadata:
          notify_on_failure: [alerts@example.com]
          schedule: "0 3 * * *"
          tags: [ml]
          description: a test pipeline
          owner: ml-team
        version: 1.0.0
        name: demo
        """,
        id="key-order",
    ),
    pytest.param(
        """\
        # The demo pipeline.
        name:    demo     # the dag_id
        version: 1.0.0

        metadata:
            owner: ml-team
            description: a test pipeline
            tags:
                - ml
            schedule: "0 3 * * *"
            notify_on_failure:
                - alerts@example.com

        defaults:
            retries: 1
            retry_delay: 5m
        stages:
        -   name: extract
            component: mlpipe_spec_fixtures.source
            config:
                table: events     # the source table
        -   name: train
            component: mlpipe_spec_fixtures.steps
            config: {epochs: 3, rate: 0.5}
            dependencies:
            - extract
        """,
        id="whitespace-and-comments",
    ),
    pytest.param(
        """\
        name: "demo"
        version: '1.0.0'
        metadata:
          owner: "ml-team"
          description: 'a test pipeline'
          tags: ["ml"]
          schedule: '0 3 * * *'
          notify_on_failure: ['alerts@example.com']
        defaults:
          retries: 1
          retry_delay: "5m"
        stages:
          - name: 'extract'
            component: "mlpipe_spec_fixtures.source"
            config:
              table: "events"
          - name: train
            component: mlpipe_spec_fixtures.steps
            config:
              epochs: 3
              rate: 0.5
            dependencies: ["extract"]
        """,
        id="quoting",
    ),
    pytest.param(
        """\
        name: demo
        version: 1.0.0
        metadata:
          owner: ml-team
          description: a test pipeline
          tags: [ml]
          schedule: "0 3 * * *"
          notify_on_failure: [alerts@example.com]
          start_date: null
          catchup: false
        defaults:
          retries: 1
          retry_delay: 300
          execution_timeout: null
          pool: null
          queue: null
        stages:
          - name: extract
            component: mlpipe_spec_fixtures.source
            config:
              table: events
            dependencies: []
            retries: null
          - name: train
            component: mlpipe_spec_fixtures.steps
            config:
              epochs: 3
              rate: 0.5
            dependencies: [extract]
        """,
        id="explicit-defaults-and-duration-in-seconds",
    ),
    pytest.param(
        """\
        name: demo
        version: 1.0.0
        metadata: {owner: ml-team, description: a test pipeline, tags: [ml], schedule: "0 3 * * *",
                   notify_on_failure: [alerts@example.com]}
        defaults: {retries: 1, retry_delay: 0h5m0s}
        stages: [{name: extract, component: mlpipe_spec_fixtures.source, config: {table: events}},
                 {name: train, component: mlpipe_spec_fixtures.steps, config: {epochs: 3, rate: 0.5},
                  dependencies: [extract]}]
        """,
        id="flow-style",
    ),
]


@pytest.mark.parametrize("text", SAME_AS_VALID)
def test_config_version_ignores_formatting(tmp_path: Path, text: str) -> None:
    expected = load(write(tmp_path / "a", "demo.yaml", VALID)).config_version
    assert load(write(tmp_path / "b", "demo.yaml", text)).config_version == expected


def test_config_version_is_a_short_hex_digest_and_ignores_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.yaml", VALID)
    version = load(path, "dev").config_version
    assert len(version) == 12 and int(version, 16) >= 0
    assert load(path, "production").config_version == version  # same files, same values


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("version: 1.0.0", "version: 1.0.1"),
        ("owner: ml-team", "owner: ml-team-2"),
        ("description: a test pipeline", "description: a test pipeline."),
        ("tags: [ml]", "tags: [ml, nightly]"),
        ('schedule: "0 3 * * *"', 'schedule: "0 4 * * *"'),
        ("[alerts@example.com]", "[other@example.com]"),
        ("  tags: [ml]\n", "  tags: [ml]\n  catchup: true\n"),
        ("  tags: [ml]\n", "  tags: [ml]\n  start_date: 2024-01-01\n"),
        ("  retries: 1\n", "  retries: 2\n"),
        ("retry_delay: 5m", "retry_delay: 6m"),
        ("  retry_delay: 5m\n", "  retry_delay: 5m\n  pool: gpu\n"),
        ("table: events", "table: events_v2"),
        ("epochs: 3", "epochs: 4"),
        ("rate: 0.5", "rate: 0.25"),
        ("rate: 0.5", "rate: '0.5'"),
        ("      rate: 0.5\n", "      rate: 0.5\n      options: {mode: slow}\n"),
        ("    dependencies: [extract]\n", ""),
        ("    config:\n      table: events\n", ""),
        ("    config:\n      table: events\n", "    config:\n      table: events\n    queue: io\n"),
    ],
)
def test_config_version_changes_when_any_value_changes(tmp_path: Path, old: str, new: str) -> None:
    original = load(write(tmp_path / "a", "demo.yaml", VALID)).config_version
    assert load(write(tmp_path / "b", "demo.yaml", edit(VALID, old, new))).config_version != original


def test_config_version_changes_when_stages_are_reordered_or_renamed(tmp_path: Path) -> None:
    original = load(write(tmp_path / "a", "demo.yaml", VALID)).config_version
    renamed = VALID.replace("extract", "load")
    assert load(write(tmp_path / "b", "demo.yaml", renamed)).config_version != original
    head, train = VALID.split("  - name: train\n")
    stages_at = head.index("  - name: extract\n")
    reordered = head[:stages_at] + "  - name: train\n" + train + head[stages_at:]
    swapped = load(write(tmp_path / "c", "demo.yaml", reordered))
    assert [s.name for s in swapped.stages] == ["train", "extract"]
    assert swapped.config_version != original


def test_render_is_json_safe_even_with_dates_in_stage_config():
    from airflow_mlpipe.spec.models import Pipeline

    pipeline = Pipeline.model_validate(
        {
            "name": "dated",
            "version": "1.0.0",
            "metadata": {"owner": "me"},
            "stages": [{"name": "a", "component": "x.y", "config": {"since": date(2024, 1, 2)}}],
        }
    )

    rendered = pipeline.to_execution_format()

    assert rendered["stages"][0]["config"] == {"since": "2024-01-02"}
    assert json.loads(json.dumps(rendered)) == rendered
