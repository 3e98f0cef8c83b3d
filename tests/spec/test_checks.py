"""Checks on components' declarations: wiring of declared I/O, overridable names, warnings."""

from __future__ import annotations

import hashlib
import json
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
from mlpipe_spec_testing import MODULES, load, only_problem, spec_problems, where, write

from airflow_mlpipe.contract import overridable_fields
from airflow_mlpipe.resolver import resolve_component
from airflow_mlpipe.spec import load_folder, stage_overridable

PKG = "mlpipe_spec_fixtures"

HEADER = """\
name: demo
version: 1.0.0
metadata:
  owner: ml-team
stages:
"""


def spec(*stages: str) -> str:
    return HEADER + "".join(stages)


def stage(name: str, component: str, dependencies: str = "[]", config: str = "{}", extra: str = "") -> str:
    text = f"  - name: {name}\n    component: {PKG}.{component}\n    config: {config}\n"
    text += f"    dependencies: {dependencies}\n"
    return text + "".join(f"    {line}\n" for line in extra.splitlines())


# --- declared inputs and outputs ---------------------------------------------------------------


def test_required_artifact_from_a_declaring_upstream_is_fine(tmp_path: Path) -> None:
    text = spec(
        stage("transform_features", "features"),
        stage("train", "trainer", "[transform_features]"),
        stage("evaluate", "evaluator", "[transform_features, train]"),
    )
    pipeline = load(write(tmp_path, "demo.yaml", text))
    assert [s.name for s in pipeline.stages] == ["transform_features", "train", "evaluate"]
    assert pipeline.warnings == ()


def test_missing_required_artifact_is_located_at_dependencies_and_names_what_upstream_produces(
    tmp_path: Path,
) -> None:
    text = spec(
        stage("transform_features", "features"),
        stage("train", "trainer", "[transform_features]"),
        stage("evaluate", "evaluator", "[transform_features]"),
    )
    problem = only_problem(tmp_path, text)
    # 'dependencies: [transform_features]' of evaluate: line 17, the value at column 19
    assert where(problem) == ("demo.yaml", 17, 19)
    assert problem.field == "stages[evaluate].dependencies"
    assert (
        problem.message
        == "stage 'evaluate' requires artifact 'model', which none of its upstream stages produces"
    )
    assert problem.suggestion == (
        "stage 'evaluate' needs artifact 'model' from an upstream stage; its upstream "
        "'transform_features' produces 'features', 'interactions'; add 'train' (which produces it) "
        "to dependencies"
    )


def test_no_stage_producing_the_artifact_says_so(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, spec(stage("train", "trainer")))
    assert problem.field == "stages[train].dependencies"
    assert problem.suggestion == (
        "stage 'train' needs artifact 'features' from an upstream stage; it has no upstream stages; "
        "add the stage that produces 'features' to dependencies"
    )


def test_stage_without_dependencies_key_is_located_at_the_stage(tmp_path: Path) -> None:
    text = HEADER + f"  - name: train\n    component: {PKG}.trainer\n"
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 6, 5)
    assert "requires artifact 'features'" in problem.message


def test_an_upstream_that_declares_nothing_keeps_the_check_silent(tmp_path: Path) -> None:
    # 'source' declares no produces: it might return the model, so nothing can be said.
    text = spec(
        stage("extract", "source"),
        stage("transform_features", "features"),
        stage("evaluate", "evaluator", "[transform_features, extract]"),
    )
    assert load(write(tmp_path, "demo.yaml", text)).stage("evaluate").dependencies == [
        "transform_features",
        "extract",
    ]


def test_declarations_that_depend_on_the_config_are_checked_with_it(tmp_path: Path) -> None:
    text = spec(
        stage("make", "by_config", config="{output_artifact: rows}"),
        stage("use", "by_config", "[make]", config="{input_artifact: table}"),
    )
    problem = only_problem(tmp_path, text)
    assert problem.field == "stages[use].dependencies"
    assert "its upstream 'make' produces 'rows'" in problem.suggestion
    fixed = text.replace("{output_artifact: rows}", "{output_artifact: table}")
    load(write(tmp_path, "demo.yaml", fixed))


def test_a_templated_config_skips_that_stages_check(tmp_path: Path) -> None:
    # The config validates only at run time, so the declaration cannot be asked now.
    text = spec(
        stage("make", "by_config", config="{output_artifact: rows}"),
        stage("use", "by_config", "[make]", config="{input_artifact: table, count: '{{ params.count }}'}"),
    )
    load(write(tmp_path, "demo.yaml", text))


def test_a_templated_upstream_config_keeps_the_check_silent(tmp_path: Path) -> None:
    text = spec(
        stage("make", "by_config", config="{count: '{{ params.count }}', output_artifact: rows}"),
        stage("use", "by_config", "[make]", config="{input_artifact: table}"),
    )
    load(write(tmp_path, "demo.yaml", text))


def test_the_hint_never_suggests_depending_on_a_downstream_stage(tmp_path: Path) -> None:
    # 'use' produces 'table' but depends on 'make': adding it to make's dependencies is a cycle.
    text = spec(
        stage("make", "by_config", config="{input_artifact: table, output_artifact: rows}"),
        stage("use", "by_config", "[make]", config="{input_artifact: rows, output_artifact: table}"),
    )
    problem = only_problem(tmp_path, text)
    assert problem.field == "stages[make].dependencies"
    assert problem.suggestion.endswith("add the stage that produces 'table' to dependencies")


def test_an_unknown_dependency_is_reported_once_not_as_a_missing_input(tmp_path: Path) -> None:
    text = spec(stage("transform_features", "features"), stage("train", "trainer", "[transform_feature]"))
    problem = only_problem(tmp_path, text)
    assert problem.message == "stage 'train' depends on unknown stage 'transform_feature'"


# --- overridable -------------------------------------------------------------------------------


def test_stage_overridable_replaces_the_components_marks(tmp_path: Path) -> None:
    text = spec(
        stage("transform_features", "features", extra="overridable: [window_days]"),
        stage("train", "trainer", "[transform_features]", extra="overridable: [seed]"),
        stage("again", "trainer", "[transform_features]"),
        stage("frozen", "trainer", "[transform_features]", extra="overridable: []"),
    )
    pipeline = load(write(tmp_path, "demo.yaml", text))
    trainer = resolve_component(f"{PKG}.trainer", MODULES)
    features = resolve_component(f"{PKG}.features", MODULES)
    assert overridable_fields(trainer.config_model) == {"epochs", "learning_rate"}
    assert stage_overridable(pipeline.stage("train"), trainer) == {"seed"}  # narrower and other
    assert stage_overridable(pipeline.stage("again"), trainer) == {"epochs", "learning_rate"}
    assert stage_overridable(pipeline.stage("frozen"), trainer) == frozenset()
    assert stage_overridable(pipeline.stage("transform_features"), features) == {"window_days"}  # wider


def test_overridable_names_must_be_config_fields(tmp_path: Path) -> None:
    text = spec(
        stage("transform_features", "features"),
        stage("train", "trainer", "[transform_features]", extra="overridable: [epochs, epoch, colour]"),
    )
    problems = spec_problems(tmp_path, text)
    assert [(where(p), p.field, p.message, p.suggestion) for p in problems] == [
        (
            ("demo.yaml", 14, 27),
            "stages[train].overridable",
            f"'epoch' is not a config field of component '{PKG}.trainer'",
            "did you mean 'epochs'?",
        ),
        (
            ("demo.yaml", 14, 34),
            "stages[train].overridable",
            f"'colour' is not a config field of component '{PKG}.trainer'",
            "its config fields: epochs, learning_rate, seed",
        ),
    ]


def test_overridable_is_not_a_defaults_setting(tmp_path: Path) -> None:
    text = spec(stage("extract", "source")).replace(
        "stages:\n", "defaults:\n  overridable: [table]\nstages:\n"
    )
    problem = only_problem(tmp_path, text)
    assert problem.field == "defaults.overridable"
    assert problem.message == "unknown field 'overridable'"


def test_overridable_leaves_the_config_version_of_specs_without_it_alone(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", spec(stage("extract", "source"))))
    # The hash as it was computed before stages had the field: the dump without it (and without
    # 'sweep', 'approval' and 'runtime', which came later and are left out the same way).
    dumped = pipeline.model_dump(mode="json")
    for dumped_stage in dumped["stages"]:
        del (
            dumped_stage["overridable"],
            dumped_stage["sweep"],
            dumped_stage["approval"],
            dumped_stage["runtime"],
        )
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    assert pipeline.config_version == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    listed = load(write(tmp_path, "demo.yaml", spec(stage("extract", "source", extra="overridable: []"))))
    assert listed.config_version != pipeline.config_version


# --- warnings ----------------------------------------------------------------------------------


def test_an_extra_that_is_not_installed_is_a_warning_not_an_error(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", spec(stage("quantum", "needs_extra"))))
    [warning] = pipeline.warnings
    assert warning.severity == "warning"
    assert where(warning) == ("demo.yaml", 7, 16)  # the stage's component
    assert warning.field == "stages[quantum].component"
    assert warning.message == (
        f"stage 'quantum' needs the 'quantum' extra of component '{PKG}.needs_extra', which is not "
        "installed here (missing: mlpipe_spec_fixtures_not_installed_xyz)"
    )
    assert 'pip install "airflow-mlpipe[quantum]"' in warning.suggestion


def test_a_config_deprecation_is_a_warning_at_the_field(tmp_path: Path) -> None:
    text = spec(stage("train", "deprecated", config="{lr: 0.3, options: {legacy: true}}"))
    pipeline = load(write(tmp_path, "demo.yaml", text))
    assert pipeline.stage("train").config == {"lr": 0.3, "options": {"legacy": True}}
    assert [(where(w), w.field, w.message, w.severity) for w in pipeline.warnings] == [
        (
            ("demo.yaml", 8, 14),
            "stages[train].config.lr",
            "'lr' is deprecated: write 'learning_rate'",
            "warning",
        ),
        (
            ("demo.yaml", 8, 33),
            "stages[train].config.options.legacy",
            "legacy mode goes away in 2.0",
            "warning",
        ),
    ]


def test_other_warnings_from_a_config_go_on_to_the_process(tmp_path: Path) -> None:
    text = spec(stage("train", "deprecated", config="{learning_rate: 0.5}"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = load(write(tmp_path, "demo.yaml", text))
    assert pipeline.warnings == ()
    assert [str(w.message) for w in caught if w.category is UserWarning] == ["an unrelated user warning"]


def test_warnings_of_a_broken_spec_come_with_its_errors(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", spec(stage("quantum", "needs_extra", config="{size: big}")))
    write(tmp_path, "fine.yaml", spec(stage("quantum", "needs_extra")).replace("name: demo", "name: fine"))
    result = load_folder(tmp_path, "dev", component_modules=MODULES)
    assert list(result.pipelines) == ["fine"]
    assert [p.field for p in result.errors["demo"].problems] == ["stages[quantum].config.size"]
    assert [w.field for w in result.warnings["demo"]] == ["stages[quantum].component"]
    assert [w.field for w in result.warnings["fine"]] == ["stages[quantum].component"]
    assert ": warning: " not in result.errors["demo"].format()  # what a placeholder DAG shows


@pytest.mark.parametrize("component", ["features", "trainer", "source"])
def test_components_without_extra_or_deprecations_give_no_warnings(tmp_path: Path, component: str) -> None:
    text = (
        spec(stage("only", component))
        if component != "trainer"
        else spec(stage("feats", "features"), stage("only", "trainer", "[feats]"))
    )
    assert load(write(tmp_path, "demo.yaml", text)).warnings == ()


def test_cache_true_on_a_component_that_must_never_be_cached_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "reg.yaml").write_text(
        "name: reg\nversion: 1.0.0\nmetadata: {owner: t}\nstages:\n"
        "  - name: register\n"
        "    component: registry.register_model\n"
        "    config: {registry: 'file:///tmp/r'}\n"
        "    cache: true\n"
        "    cache_ttl: 7d\n"
    )

    result = load_folder(tmp_path)

    [problem] = result.errors["reg"].problems
    assert problem.field == "stages[register].cache"
    assert (problem.location.line, problem.location.column) == (8, 12)
    assert "never be cached" in problem.message and "remove 'cache: true'" in problem.suggestion


def test_cache_ttl_is_a_duration(tmp_path: Path) -> None:
    (tmp_path / "ttl.yaml").write_text(
        "name: ttl\nversion: 1.0.0\nmetadata: {owner: t}\ndefaults: {cache_ttl: 30d}\nstages:\n"
        "  - name: extract\n"
        "    component: data.extract.database\n"
        "    config: {query: SELECT 1, conn_id: db}\n"
        "    cache_ttl: 12h\n"
        "    cache: true\n"
    )

    pipeline = load_folder(tmp_path).pipelines["ttl"]

    assert pipeline.defaults.cache_ttl == timedelta(days=30)
    assert pipeline.stage("extract").cache_ttl == timedelta(hours=12)
    assert pipeline.stage("extract").cache is True  # off by default, allowed when the spec asks
