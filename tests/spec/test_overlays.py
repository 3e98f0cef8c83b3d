"""Environment overlays (``NAME.ENV.yaml``): merging rules, located values, and overlay mistakes."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
from mlpipe_spec_testing import MODULES, SOURCE, VALID, edit, load, only_problem, spec_problems, where, write

from airflow_mlpipe.spec import Pipeline, SpecError, load_folder
from airflow_mlpipe.spec.overlays import merge_overlay
from airflow_mlpipe.spec.reader import parse_yaml

BASE = edit(VALID, "      rate: 0.5\n", "      rate: 0.5\n      options: {depth: 5}\n      labels: [a, b]\n")


def with_overlay(folder: Path, overlay: str, environment: str = "prod", base: str = BASE) -> Pipeline:
    path = write(folder, "demo.yaml", base)
    write(folder, f"demo.{environment}.yaml", overlay)
    return load(path, environment)


def overlay_problems(folder: Path, overlay: str, base: str = BASE) -> list:
    return spec_problems(folder, base, overlay=overlay, environment="prod")


def only_overlay_problem(folder: Path, overlay: str, base: str = BASE):
    return only_problem(folder, base, overlay=overlay, environment="prod")


# --- merging -----------------------------------------------------------------------------------


def test_overlay_deep_merges_a_stage_config(tmp_path: Path) -> None:
    pipeline = with_overlay(
        tmp_path,
        """\
        stages:
          - name: train
            config:
              rate: 0.25
              options: {mode: slow}
        """,
    )
    assert pipeline.stage("train").config == {
        "epochs": 3,
        "rate": 0.25,
        "options": {"depth": 5, "mode": "slow"},
        "labels": ["a", "b"],
    }
    assert pipeline.stage("extract").config == {"table": "events"}
    assert pipeline.stage("train").dependencies == ["extract"]


def test_overlay_deep_merges_metadata_and_defaults(tmp_path: Path) -> None:
    pipeline = with_overlay(tmp_path, "metadata: {owner: prod-team}\ndefaults: {retries: 3}\n")
    assert pipeline.metadata.owner == "prod-team"
    assert pipeline.metadata.description == "a test pipeline"
    assert pipeline.metadata.schedule == "0 3 * * *"
    assert pipeline.defaults.retries == 3
    assert pipeline.defaults.retry_delay == timedelta(minutes=5)


def test_overlay_replaces_lists_instead_of_appending(tmp_path: Path) -> None:
    pipeline = with_overlay(
        tmp_path,
        """\
        metadata:
          tags: [prod]
          notify_on_failure: [oncall@example.com]
        stages:
          - name: train
            config: {labels: [c]}
            dependencies: []
        """,
    )
    assert pipeline.metadata.tags == ["prod"]
    assert pipeline.metadata.notify_on_failure == ["oncall@example.com"]
    assert pipeline.stage("train").config["labels"] == ["c"]
    assert pipeline.stage("train").dependencies == []


def test_overlay_can_clear_a_value_with_null(tmp_path: Path) -> None:
    assert with_overlay(tmp_path, "metadata: {schedule: null}\n").metadata.schedule is None


def test_overlay_adds_a_stage_at_the_end(tmp_path: Path) -> None:
    pipeline = with_overlay(
        tmp_path,
        f"""\
        stages:
          - name: publish
            component: {SOURCE}
            dependencies: [train]
          - name: train
            retries: 4
        """,
    )
    assert [s.name for s in pipeline.stages] == ["extract", "train", "publish"]
    assert pipeline.stage("publish").dependencies == ["train"]
    assert pipeline.stage("train").retries == 4


def test_overlay_removes_a_stage(tmp_path: Path) -> None:
    pipeline = with_overlay(
        tmp_path,
        """\
        stages:
          - name: extract
            remove: true
          - name: train
            dependencies: []
        """,
    )
    assert [s.name for s in pipeline.stages] == ["train"]


@pytest.mark.parametrize("new_stage", [False, True])
def test_remove_false_is_ignored(tmp_path: Path, new_stage: bool) -> None:
    name = "publish" if new_stage else "train"
    component = f"    component: {SOURCE}\n" if new_stage else ""
    pipeline = with_overlay(
        tmp_path, f"stages:\n  - name: {name}\n    remove: false\n{component}    retries: 2\n"
    )
    assert pipeline.stage(name).retries == 2
    assert len(pipeline.stages) == (3 if new_stage else 2)


@pytest.mark.parametrize(
    ("base_suffix", "overlay_suffix"), [(".yml", ".yaml"), (".yaml", ".yml"), (".yml", ".yml")]
)
def test_overlay_applies_whatever_the_yaml_suffix(
    tmp_path: Path, base_suffix: str, overlay_suffix: str
) -> None:
    # load_pipeline (the CLI) and load_folder (the DAG factory) must agree on which overlay applies.
    path = write(tmp_path, f"demo{base_suffix}", BASE)
    overlay = write(tmp_path, f"demo.prod{overlay_suffix}", "metadata: {owner: prod-team}\n")
    single = load(path, "prod")
    assert single.metadata.owner == "prod-team"
    assert single.sources == (str(path), str(overlay))
    folder = load_folder(tmp_path, "prod", component_modules=MODULES).pipelines["demo"]
    assert folder.sources == single.sources


def test_overlay_for_another_environment_is_not_applied(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.yaml", BASE)
    write(tmp_path, "demo.prod.yaml", "metadata: {owner: prod-team}\n")
    dev = load(path, "dev")
    assert dev.metadata.owner == "ml-team"
    assert dev.sources == (str(path),)


def test_overlay_sets_sources_and_changes_config_version(tmp_path: Path) -> None:
    base = write(tmp_path, "demo.yaml", BASE)
    without = load(base, "prod")
    overlay = write(tmp_path, "demo.prod.yaml", "stages:\n  - name: train\n    config: {epochs: 4}\n")
    merged = load(base, "prod")
    assert merged.sources == (str(base), str(overlay))
    assert merged.environment == "prod"
    assert merged.config_version != without.config_version


def test_overlay_restating_base_values_keeps_config_version(tmp_path: Path) -> None:
    base = write(tmp_path, "demo.yaml", BASE)
    plain = load(base, "prod").config_version
    write(tmp_path, "demo.prod.yaml", "name: demo\nmetadata: {owner: ml-team}\nstages:\n  - {name: train}\n")
    assert load(base, "prod").config_version == plain


# --- locations of merged values ----------------------------------------------------------------


def test_merged_values_keep_the_location_of_the_file_that_wrote_them() -> None:
    base = parse_yaml(BASE, "demo.yaml")
    overlay = parse_yaml(
        "metadata:\n  owner: prod\nstages:\n  - name: train\n    config:\n      rate: 0.2\n", "demo.prod.yaml"
    )
    merged = merge_overlay(base, overlay, "demo.prod.yaml")
    metadata = merged["metadata"]
    assert str(metadata.value_locations["owner"]) == "demo.prod.yaml:2:10"
    assert str(metadata.value_locations["description"]) == "demo.yaml:5:16"
    train = merged["stages"][1]
    assert str(train.value_locations["component"]) == "demo.yaml:18:16"
    config = train["config"]
    assert str(config.value_locations["rate"]) == "demo.prod.yaml:6:13"
    assert str(config.key_locations["rate"]) == "demo.prod.yaml:6:7"
    assert str(config.value_locations["epochs"]) == "demo.yaml:20:15"
    assert str(merged["stages"].item_locations[1]) == "demo.yaml:17:5"


def test_merging_leaves_base_and_overlay_unchanged() -> None:
    base = parse_yaml(BASE, "demo.yaml")
    overlay = parse_yaml(
        "stages:\n  - name: train\n    config: {rate: 0.2}\n  - {name: extract, remove: true}\n", "o"
    )
    before_base, before_overlay = copy.deepcopy(dict(base)), copy.deepcopy(dict(overlay))
    merge_overlay(base, overlay, "o")
    assert dict(base) == before_base
    assert dict(overlay) == before_overlay


def test_overlay_error_in_a_merged_value_points_into_the_overlay(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "stages:\n  - name: train\n    config:\n      epochs: ten\n")
    assert where(problem) == ("demo.prod.yaml", 4, 15)
    assert problem.field == "stages[train].config.epochs"
    assert (
        problem.message == "Input should be a valid integer, unable to parse string as an integer (got 'ten')"
    )


def test_overlay_unknown_stage_key_points_into_the_overlay_with_a_suggestion(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "stages:\n  - name: train\n    retires: 2\n")
    assert where(problem) == ("demo.prod.yaml", 3, 5)
    assert problem.field == "stages[train].retires"
    assert problem.suggestion == "did you mean 'retries'?"


def test_overlay_unknown_top_level_key_points_into_the_overlay(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "# production\nmetdata: {owner: x}\n")
    assert where(problem) == ("demo.prod.yaml", 2, 1)
    assert problem.suggestion == "did you mean 'metadata'?"


def test_error_left_in_the_base_still_points_into_the_base(tmp_path: Path) -> None:
    base = edit(BASE, "epochs: 3", "epochs: x")
    problem = only_overlay_problem(tmp_path, "metadata: {owner: prod-team}\n", base=base)
    assert where(problem) == ("demo.yaml", 20, 15)


def test_removing_a_stage_others_depend_on_is_reported_at_the_dependency(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "stages:\n  - name: extract\n    remove: true\n")
    assert where(problem) == ("demo.yaml", 24, 20)
    assert problem.message == "stage 'train' depends on unknown stage 'extract'"
    assert problem.suggestion == "stages are: train"


def test_new_stage_with_a_bad_config_points_into_the_overlay(tmp_path: Path) -> None:
    overlay = "stages:\n  - name: tune\n    component: mlpipe_spec_fixtures.steps\n    config: {epochs: -1}\n"
    problem = only_overlay_problem(tmp_path, overlay)
    assert where(problem) == ("demo.prod.yaml", 4, 22)
    assert problem.field == "stages[tune].config.epochs"


# --- overlay mistakes --------------------------------------------------------------------------


def test_overlay_naming_an_unknown_stage_suggests_the_closest(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "stages:\n  - name: trian\n    config: {epochs: 4}\n")
    assert where(problem) == ("demo.prod.yaml", 2, 11)
    assert problem.field == "stages[trian]"
    assert problem.message == "the overlay names stage 'trian', which the base spec does not have"
    assert problem.suggestion == "did you mean 'train'?"


def test_overlay_naming_an_unknown_stage_without_component_explains_how_to_add(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "stages:\n  - name: publish\n    retries: 1\n")
    assert where(problem) == ("demo.prod.yaml", 2, 11)
    assert problem.suggestion == "to add a new stage, give it a 'component'"


def test_overlay_removing_an_unknown_stage_is_an_error(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "stages:\n  - name: extrakt\n    remove: true\n")
    assert where(problem) == ("demo.prod.yaml", 2, 11)
    assert problem.message == "the overlay names stage 'extrakt', which the base spec does not have"
    assert problem.suggestion == "did you mean 'extract'?"


def test_naming_a_stage_after_removing_it_is_an_error(tmp_path: Path) -> None:
    overlay = "stages:\n  - name: extract\n    remove: true\n  - name: extract\n    retries: 1\n"
    problem = only_overlay_problem(tmp_path, overlay)
    assert where(problem) == ("demo.prod.yaml", 4, 11)
    assert problem.field == "stages[extract]"
    assert problem.message == "the overlay names stage 'extract' after removing it"


def test_remove_with_other_keys_is_an_error(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "stages:\n  - name: train\n    remove: true\n    retries: 2\n")
    assert where(problem) == ("demo.prod.yaml", 2, 5)
    assert problem.field == "stages[train]"
    assert problem.message == "a stage marked 'remove: true' cannot also set ['retries']"


def test_overlay_cannot_rename_the_pipeline(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "metadata: {owner: x}\nname: demo_prod\n")
    assert where(problem) == ("demo.prod.yaml", 2, 7)
    assert problem.field == "name"
    assert problem.message == "an overlay cannot rename the pipeline ('demo' -> 'demo_prod')"
    assert problem.suggestion == "remove 'name' from the overlay"


@pytest.mark.parametrize(
    ("overlay", "line", "column"),
    [
        ("- metadata: {owner: x}\n", 1, 1),
        ("# overrides\n\n  - a\n", 3, 3),
        ("just a string\n", 1, 1),
        ("42\n", 1, 1),
        ("null\n", 1, 1),
    ],
)
def test_overlay_that_is_not_a_mapping_is_located_in_the_overlay(
    tmp_path: Path, overlay: str, line: int, column: int
) -> None:
    problem = only_overlay_problem(tmp_path, overlay)
    assert where(problem) == ("demo.prod.yaml", line, column)
    assert problem.message == "an overlay must be a mapping of fields to override"
    assert problem.suggestion


@pytest.mark.parametrize(
    ("item", "column"), [("train", 5), ("{config: {epochs: 4}}", 5), ("{name: 3}", 5), ("[train]", 5)]
)
def test_overlay_stage_must_be_a_mapping_with_a_name(tmp_path: Path, item: str, column: int) -> None:
    problem = only_overlay_problem(tmp_path, f"stages:\n  - {item}\n")
    assert where(problem) == ("demo.prod.yaml", 2, column)
    assert problem.field == "stages"
    assert problem.message == "each overlay stage must be a mapping with the 'name' of the stage it changes"


def test_every_overlay_problem_is_reported_at_once(tmp_path: Path) -> None:
    overlay = """\
        name: renamed
        stages:
          - name: trian
            retries: 1
          - name: extract
            remove: true
            pool: x
          - nonsense
        """
    problems = overlay_problems(tmp_path, overlay)
    assert [(where(p)[1:], p.field) for p in problems] == [
        ((1, 7), "name"),
        ((3, 11), "stages[trian]"),
        ((5, 5), "stages[extract]"),
        ((8, 5), "stages"),
    ]
    assert all(where(p)[0] == "demo.prod.yaml" for p in problems)


def test_overlay_syntax_error_points_into_the_overlay(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "metadata:\n\towner: x\n")
    assert where(problem) == ("demo.prod.yaml", 2, 1)
    assert "tabs" in problem.suggestion


def test_overlay_duplicate_key_points_into_the_overlay(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "metadata:\n  owner: a\n  owner: b\n")
    assert where(problem) == ("demo.prod.yaml", 3, 3)
    assert problem.field == "metadata.owner"


def test_base_read_error_wins_over_the_overlay(tmp_path: Path) -> None:
    problem = only_overlay_problem(tmp_path, "metadata: {owner: x}\n", base="name: [\n")
    assert where(problem)[0] == "demo.yaml"


def test_merge_overlay_refuses_a_non_mapping_overlay_with_a_location() -> None:
    with pytest.raises(SpecError) as info:
        merge_overlay(parse_yaml(BASE, "demo.yaml"), "text", "demo.prod.yaml")
    [problem] = info.value.problems
    assert str(problem.location) == "demo.prod.yaml:1:1"
