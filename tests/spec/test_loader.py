"""The loader: whole-spec checks (stage graph, file name, components, component configs) and folders."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from mlpipe_spec_testing import (
    MODULES,
    VALID,
    edit,
    load,
    only_problem,
    problems_of,
    spec_problems,
    where,
    write,
)

from airflow_mlpipe.spec import SpecError, load_folder, load_pipeline
from airflow_mlpipe.spec.checks import RESERVED_STAGE_NAMES

FIXTURE_PACKAGES = Path(__file__).parent / "fixture_pkg"
THIRD_STAGE = "  - name: evaluate\n    component: mlpipe_spec_fixtures.source\n    dependencies: [train]\n"


def folder_load(folder: Path, environment: str = "dev", only: str | None = None):
    return load_folder(folder, environment, only=only, component_modules=MODULES)


# --- stage graph -------------------------------------------------------------------------------


def test_valid_spec_loads(tmp_path: Path) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", VALID))
    assert [(s.name, s.dependencies) for s in pipeline.stages] == [("extract", []), ("train", ["extract"])]


def test_duplicate_stage_name_points_at_the_second_and_names_the_first(tmp_path: Path) -> None:
    text = VALID + "  - name: extract\n    component: mlpipe_spec_fixtures.source\n"
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 23, 11)
    assert problem.field == "stages[extract].name"
    assert problem.message == "duplicate stage name 'extract' (first at line 13)"
    assert "must be unique" in problem.suggestion


def test_dependency_on_unknown_stage_suggests_the_closest_stage(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "[extract]", "[extrct]"))
    assert where(problem) == ("demo.yaml", 22, 20)
    assert problem.field == "stages[train].dependencies"
    assert problem.message == "stage 'train' depends on unknown stage 'extrct'"
    assert problem.suggestion == "did you mean 'extract'?"


def test_dependency_on_unknown_stage_without_close_match_lists_the_stages(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "[extract]", "[extract, zzz]"))
    assert where(problem) == ("demo.yaml", 22, 29)
    assert problem.message == "stage 'train' depends on unknown stage 'zzz'"
    assert problem.suggestion == "stages are: extract, train"


def test_self_dependency_is_reported_at_the_dependency(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "[extract]", "[extract, train]"))
    assert where(problem) == ("demo.yaml", 22, 29)
    assert problem.field == "stages[train].dependencies"
    assert problem.message == "stage 'train' depends on itself"
    assert problem.suggestion == "remove 'train' from its own dependencies"


def test_two_stage_cycle_names_the_cycle(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path, edit(VALID, "      table: events\n", "      table: events\n    dependencies: [train]\n")
    )
    assert where(problem) == ("demo.yaml", 17, 19)
    assert problem.field == "stages[extract].dependencies"
    assert problem.message == "the stages form a cycle: extract -> train -> extract"
    assert problem.suggestion == "a pipeline is a DAG: remove one of these dependencies"


def test_longer_cycle_is_named_in_dependency_order(tmp_path: Path) -> None:
    text = """\
        name: demo
        version: 1.0.0
        metadata: {owner: me}
        stages:
          - {name: start, component: mlpipe_spec_fixtures.source}
          - {name: a, component: mlpipe_spec_fixtures.source, dependencies: [start, c]}
          - {name: b, component: mlpipe_spec_fixtures.source, dependencies: [a]}
          - {name: c, component: mlpipe_spec_fixtures.source, dependencies: [b]}
        """
    problem = only_problem(tmp_path, text)
    assert problem.message == "the stages form a cycle: a -> c -> b -> a"
    assert where(problem) == ("demo.yaml", 6, 69)
    assert problem.field == "stages[a].dependencies"


def test_diamond_is_not_a_cycle(tmp_path: Path) -> None:
    text = """\
        name: demo
        version: 1.0.0
        metadata: {owner: me}
        stages:
          - {name: a, component: mlpipe_spec_fixtures.source}
          - {name: b, component: mlpipe_spec_fixtures.source, dependencies: [a]}
          - {name: c, component: mlpipe_spec_fixtures.source, dependencies: [a]}
          - {name: d, component: mlpipe_spec_fixtures.source, dependencies: [b, c]}
        """
    assert [s.name for s in load(write(tmp_path, "demo.yaml", text)).stages] == ["a", "b", "c", "d"]


def test_reserved_stage_name_is_refused(tmp_path: Path) -> None:
    assert "execution_record" in RESERVED_STAGE_NAMES
    problem = only_problem(tmp_path, VALID.replace("extract", "execution_record"))
    assert where(problem) == ("demo.yaml", 13, 11)
    assert problem.field == "stages[execution_record].name"
    assert problem.message == "'execution_record' is reserved for the task that writes the execution record"
    assert problem.suggestion == "choose another stage name"


def test_every_graph_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = edit(VALID, "[extract]", "[train, extrct]") + THIRD_STAGE.replace("evaluate", "execution_record")
    problems = spec_problems(tmp_path, text)
    name = "execution_record"
    assert [(p.field, p.message) for p in problems] == [
        (
            "stages[execution_record].name",
            f"'{name}' is reserved for the task that writes the execution record",
        ),
        ("stages[train].dependencies", "stage 'train' depends on itself"),
        ("stages[train].dependencies", "stage 'train' depends on unknown stage 'extrct'"),
    ]


# --- file name ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_file_name_must_match_the_pipeline_name(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path, f"demo{suffix}", edit(VALID, "name: demo\n", "name: recommender\n"))
    problems = problems_of(path)
    assert len(problems) == 1
    assert where(problems[0]) == (f"demo{suffix}", 1, 7)
    assert problems[0].field == "name"
    assert problems[0].message == f"the pipeline is named 'recommender' but its file is 'demo{suffix}'"
    assert problems[0].suggestion == (
        f"the file name is the pipeline name: rename the file to 'recommender{suffix}' or set 'name: demo'"
    )


# --- components --------------------------------------------------------------------------------


def test_unknown_builtin_component_suggests_the_closest_builtin(tmp_path: Path) -> None:
    pytest.importorskip("airflow_mlpipe.components.data.extract.database")
    problem = only_problem(
        tmp_path, edit(VALID, "component: mlpipe_spec_fixtures.source", "component: data.extract.databse")
    )
    assert where(problem) == ("demo.yaml", 14, 16)
    assert problem.field == "stages[extract].component"
    assert problem.message == "unknown component 'data.extract.databse'"
    assert problem.suggestion == "did you mean 'data.extract.database'?"


def test_builtin_component_config_is_checked_by_its_own_schema(tmp_path: Path) -> None:
    pytest.importorskip("airflow_mlpipe.components.data.extract.database")
    text = """\
        name: demo
        version: 1.0.0
        metadata: {owner: me}
        stages:
          - name: extract
            component: data.extract.database
            config:
              query: "SELECT * FROM user_events WHERE date > :cutoff"
              connection: analytics_db
              batch_size: lots
              parameters: {cutoff: "{{ ds }}"}
        """
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 10, 19)
    assert problem.field == "stages[extract].config.batch_size"
    assert (
        problem.message
        == "Input should be a valid integer, unable to parse string as an integer (got 'lots')"
    )
    fixed = write(tmp_path, "demo.yaml", textwrap.dedent(text).replace("lots", "10000"))
    assert load(fixed).stage("extract").config["batch_size"] == 10000


def test_component_outside_the_allowed_modules_is_refused(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path, edit(VALID, "component: mlpipe_spec_fixtures.source", "component: os.system")
    )
    assert where(problem) == ("demo.yaml", 14, 16)
    assert problem.field == "stages[extract].component"
    assert problem.message.startswith("component 'os.system' is not allowed: components come from")
    assert problem.message.endswith("(now: mlpipe_spec_fixtures)")


@pytest.mark.parametrize("dotted", [False, True])
def test_refused_component_module_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dotted: bool
) -> None:
    name = f"mlpipe_marker_{uuid.uuid4().hex}"
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').close()\n"
    modules = tmp_path / "modules"
    if dotted:  # a package whose __init__ would run on the way to the submodule
        write(modules / name, "__init__.py", code)
        write(modules / name, "evil.py", code)
        component = f"{name}.evil"
    else:
        write(modules, f"{name}.py", code)
        component = name
    monkeypatch.syspath_prepend(str(modules))
    specs = tmp_path / "specs"
    problem = only_problem(
        specs, edit(VALID, "component: mlpipe_spec_fixtures.source", f"component: {component}")
    )
    assert problem.message.startswith(f"component '{component}' is not allowed")
    assert not marker.exists()
    assert name not in sys.modules
    # The module really is importable and would have left the marker: the check above means something.
    __import__(component)
    assert marker.exists()
    for loaded in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[loaded]


def test_unknown_component_under_an_allowed_prefix_is_unknown_not_forbidden(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path,
        edit(VALID, "component: mlpipe_spec_fixtures.source", "component: mlpipe_spec_fixtures.stpes"),
    )
    assert where(problem) == ("demo.yaml", 14, 16)
    assert problem.message == "unknown component 'mlpipe_spec_fixtures.stpes'"
    assert problem.suggestion


def test_module_without_config_is_not_a_component(tmp_path: Path) -> None:
    text = edit(VALID, "component: mlpipe_spec_fixtures.source", "component: mlpipe_spec_fixtures.no_config")
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 14, 16)
    assert problem.message == (
        "component 'mlpipe_spec_fixtures.no_config' (mlpipe_spec_fixtures.no_config) "
        "has no pydantic 'Config' model"
    )
    assert "class Config(pydantic.BaseModel)" in problem.suggestion


def test_component_that_fails_to_import_is_a_located_problem(tmp_path: Path) -> None:
    text = edit(VALID, "component: mlpipe_spec_fixtures.source", "component: mlpipe_spec_fixtures.broken")
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 14, 16)
    assert problem.message == (
        "component 'mlpipe_spec_fixtures.broken' failed to import from mlpipe_spec_fixtures.broken: "
        "RuntimeError: this component is broken on purpose"
    )


# --- component configs -------------------------------------------------------------------------


def test_config_value_failing_the_component_schema_points_at_the_value(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "epochs: 3", 'epochs: "ten"'))
    assert where(problem) == ("demo.yaml", 20, 15)
    assert problem.field == "stages[train].config.epochs"
    assert (
        problem.message == "Input should be a valid integer, unable to parse string as an integer (got 'ten')"
    )


def test_config_constraint_violation_points_at_the_value(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "epochs: 3", "epochs: 0"))
    assert where(problem) == ("demo.yaml", 20, 15)
    assert problem.message == "Input should be greater than 0"  # the value is in the message already


def test_unknown_config_key_points_at_the_key_and_suggests_the_field(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "rate: 0.5", "rat: 0.5"))
    assert where(problem) == ("demo.yaml", 21, 7)
    assert problem.field == "stages[train].config.rat"
    assert problem.message == "unknown field 'rat'"
    assert problem.suggestion == "did you mean 'rate'?"


def test_unknown_nested_config_key_suggests_the_nested_field(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path, edit(VALID, "      rate: 0.5\n", "      rate: 0.5\n      options:\n        depht: 2\n")
    )
    assert where(problem) == ("demo.yaml", 23, 9)
    assert problem.field == "stages[train].config.options.depht"
    assert problem.suggestion == "did you mean 'depth'?"


def test_missing_config_key_is_reported_at_the_config_with_its_description(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "      epochs: 3\n", ""))
    assert where(problem) == ("demo.yaml", 20, 7)
    assert problem.field == "stages[train].config.epochs"
    assert problem.message == "missing required field 'epochs'"
    assert problem.suggestion == "'epochs': how many passes"


def test_missing_config_mapping_is_reported_at_the_stage(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "    config:\n      epochs: 3\n      rate: 0.5\n", ""))
    assert where(problem) == ("demo.yaml", 17, 5)
    assert problem.field == "stages[train].config.epochs"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("epochs: 3", 'epochs: "{{ params.epochs }}"'),
        ("rate: 0.5", "rate: '{{ var.value.rate }}'"),
        ("      rate: 0.5\n", "      rate: 0.5\n      options: {depth: '{{ params.depth }}'}\n"),
        ("      rate: 0.5\n", "      rate: 0.5\n      cutoff: '{{ ds }}'\n"),
        ("      rate: 0.5\n", "      rate: 0.5\n      labels: '{{ params.labels }}'\n"),
    ],
)
def test_templated_config_values_are_not_errors_at_parse_time(tmp_path: Path, old: str, new: str) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", edit(VALID, old, new)))
    assert "{{" in str(pipeline.stage("train").config)


def test_templated_value_does_not_hide_other_config_errors(tmp_path: Path) -> None:
    problem = only_problem(
        tmp_path, edit(VALID, "epochs: 3\n      rate: 0.5", "epochs: '{{ ds }}'\n      rate: fast")
    )
    assert where(problem) == ("demo.yaml", 21, 13)
    assert problem.field == "stages[train].config.rate"


def test_templated_value_under_an_unknown_key_is_still_an_unknown_key(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, edit(VALID, "rate: 0.5", "epocs: '{{ params.epochs }}'"))
    assert where(problem) == ("demo.yaml", 21, 7)
    assert problem.message == "unknown field 'epocs'"
    assert problem.suggestion == "did you mean 'epochs'?"


def test_problems_of_every_stage_and_check_are_reported_together(tmp_path: Path) -> None:
    text = edit(
        edit(VALID, "table: events", "table: [events]"), "rate: 0.5", "rat: 0.5"
    ) + THIRD_STAGE.replace("[train]", "[trian]")
    problems = spec_problems(tmp_path, text)
    assert [(where(p)[1], p.field) for p in problems] == [
        (25, "stages[evaluate].dependencies"),
        (16, "stages[extract].config.table"),
        (21, "stages[train].config.rat"),
    ]


def test_field_errors_graph_and_component_problems_are_reported_together(tmp_path: Path) -> None:
    text = edit(edit(edit(VALID, "version: 1.0.0", "version: 1.0"), "[extract]", "[extrct]"), "rate:", "rat:")
    problems = spec_problems(tmp_path, text)
    assert [(where(p)[1:], p.field) for p in problems] == [
        ((2, 10), "version"),
        ((22, 20), "stages[train].dependencies"),
        ((21, 7), "stages[train].config.rat"),
    ]


# --- folders -----------------------------------------------------------------------------------


def test_broken_spec_next_to_good_ones_does_not_stop_them(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", VALID)
    write(tmp_path, "other.yaml", VALID.replace("name: demo", "name: other"))
    write(
        tmp_path, "broken.yaml", VALID.replace("name: demo", "name: broken").replace("epochs: 3", "epochs: x")
    )
    result = folder_load(tmp_path)
    assert sorted(result.pipelines) == ["demo", "other"]
    assert list(result.errors) == ["broken"]
    [problem] = result.errors["broken"].problems
    assert where(problem) == ("broken.yaml", 20, 15)
    assert sorted(result.files) == ["broken", "demo", "other"]


def test_unparseable_spec_in_a_folder_is_reported_by_name(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", VALID)
    write(tmp_path, "bad.yaml", "name: bad\n\tversion: 1\n")
    result = folder_load(tmp_path)
    assert list(result.pipelines) == ["demo"]
    assert where(result.errors["bad"].problems[0]) == ("bad.yaml", 2, 1)


def test_same_name_in_two_subfolders_reports_both_files_and_loads_the_others(tmp_path: Path) -> None:
    first = write(tmp_path / "team_a", "demo.yaml", VALID)
    second = write(tmp_path / "team_b" / "nested", "demo.yaml", VALID)
    write(tmp_path / "team_b", "other.yaml", VALID.replace("name: demo", "name: other"))
    result = folder_load(tmp_path)
    assert list(result.pipelines) == ["other"]
    problems = result.errors["demo"].problems
    assert [p.location.file for p in problems if p.location] == [str(first), str(second)]
    for problem in problems:
        assert (problem.location.line, problem.location.column) == (1, 1)  # type: ignore[union-attr]
        assert problem.field == "name"
        assert problem.message == f"2 spec files define the pipeline 'demo': {first}, {second}"
        assert "must be unique" in problem.suggestion


def test_only_loads_just_the_named_spec(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", VALID)
    write(tmp_path, "other.yaml", VALID.replace("name: demo", "name: other"))
    write(tmp_path, "broken.yaml", "name: [")
    write(tmp_path / "sub", "demo.prod.yaml", "metadata: {owner: x}\n")  # another folder's stray overlay
    result = folder_load(tmp_path, only="other")
    assert list(result.pipelines) == ["other"]
    assert result.errors == {}
    assert list(result.files) == ["other"]


def test_only_for_a_broken_spec_reports_just_its_errors(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", VALID)
    write(tmp_path, "broken.yaml", "name: [")
    result = folder_load(tmp_path, only="broken")
    assert result.pipelines == {}
    assert list(result.errors) == ["broken"]


def test_overlay_without_base_is_an_error_in_its_own_file(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", VALID)
    orphan = write(tmp_path, "ghost.dev.yaml", "metadata: {owner: x}\n")
    result = folder_load(tmp_path)
    assert list(result.pipelines) == ["demo"]
    [problem] = result.errors["ghost"].problems
    assert problem.location is not None and problem.location.file == str(orphan)
    assert (problem.location.line, problem.location.column) == (1, 1)
    assert problem.message == "overlay for environment 'dev' has no base spec 'ghost.yaml' beside it"
    assert "create ghost.yaml next to it" in problem.suggestion


def test_overlay_in_another_folder_than_its_base_is_an_error_and_the_name_is_not_loaded(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a", "demo.yaml", VALID)
    orphan = write(tmp_path / "b", "demo.prod.yaml", "metadata: {owner: x}\n")
    result = folder_load(tmp_path, "prod")
    # One verdict per name: never both a pipeline and an error for the same dag_id.
    assert result.pipelines == {}
    assert [p.location.file for p in result.errors["demo"].problems if p.location] == [str(orphan)]


def test_stray_overlay_and_broken_base_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path / "a", "demo.yaml", edit(VALID, "epochs: 3", "epochs: x"))
    write(tmp_path / "b", "demo.prod.yaml", "metadata: {owner: x}\n")
    problems = folder_load(tmp_path, "prod").errors["demo"].problems
    assert [(where(p)[0], p.message.split(" ")[0]) for p in problems] == [
        ("demo.prod.yaml", "overlay"),
        ("demo.yaml", "Input"),
    ]


def test_folder_applies_the_environment_overlay(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", VALID)
    overlay = write(tmp_path, "demo.prod.yaml", "metadata: {owner: prod-team}\n")
    base = tmp_path / "demo.yaml"
    assert folder_load(tmp_path, "dev").pipelines["demo"].metadata.owner == "ml-team"
    prod = folder_load(tmp_path, "prod")
    assert prod.pipelines["demo"].metadata.owner == "prod-team"
    assert prod.pipelines["demo"].sources == (str(base), str(overlay))
    assert prod.files["demo"].overlays == {"prod": overlay}


def test_folder_skips_hidden_and_private_entries_and_other_files(tmp_path: Path) -> None:
    write(tmp_path, "demo.yaml", VALID)
    write(tmp_path / ".git", "broken.yaml", "name: [")
    write(tmp_path / "_drafts", "draft.yaml", "name: [")
    write(tmp_path, ".hidden.yaml", "name: [")
    write(tmp_path, "notes.txt", "name: [")
    write(tmp_path, "README.md", "# specs")
    write(tmp_path / "sub", "other.yml", VALID.replace("name: demo", "name: other"))
    result = folder_load(tmp_path)
    assert sorted(result.pipelines) == ["demo", "other"]
    assert result.errors == {}


def test_empty_or_missing_folder_loads_nothing(tmp_path: Path) -> None:
    assert folder_load(tmp_path).pipelines == {}
    result = folder_load(tmp_path / "missing")
    assert (result.pipelines, result.errors) == ({}, {})


# --- no Airflow at parse time ------------------------------------------------------------------


def test_loading_with_explicit_environment_and_modules_never_imports_airflow(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.yaml", VALID)
    broken = write(tmp_path, "broken.yaml", "name: broken\nversion: 1.0\n")
    script = textwrap.dedent(
        f"""
        import sys
        from airflow_mlpipe.spec import SpecError, load_folder, load_pipeline

        pipeline = load_pipeline({str(path)!r}, "dev", component_modules={MODULES!r})
        pipeline.to_execution_format(), pipeline.to_yaml(), pipeline.config_version
        try:
            load_pipeline({str(broken)!r}, "dev", component_modules={MODULES!r})
        except SpecError as exc:
            exc.format()
        result = load_folder({str(tmp_path)!r}, "dev", component_modules={MODULES!r})
        assert sorted(result.pipelines) == ["demo"], result
        try:
            import airflow_mlpipe.components.data.extract.database  # a built-in, if present
        except ImportError:
            pass
        print(sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow.")))
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(FIXTURE_PACKAGES), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_spec_error_message_lists_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.yaml", edit(VALID, "[extract]", "[extrct]"))
    with pytest.raises(SpecError) as info:
        load_pipeline(path, "dev", component_modules=MODULES)
    assert str(info.value) == (
        f"{path}:22:20: stages[train].dependencies: stage 'train' depends on unknown stage 'extrct'\n"
        "    hint: did you mean 'extract'?"
    )
