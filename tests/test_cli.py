"""The ``mlpipe`` command: exit codes, output formats, and no tracebacks for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlpipe.cli import main

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "dags" / "pipelines"
SCHEMA = REPO / "schema" / "pipeline.schema.json"

BROKEN = """\
name: broken
version: 1.0.0
metadata:
  owner: me
  schedule: "0 3 * *"
stages:
  - name: only
    component: data.extract.database
    config: {query: "SELECT 1", connection: db, batch_sise: 10}
"""


def test_validate_exits_zero_for_the_shipped_specs(capsys):
    assert main(["validate", str(SPECS), "--env", "dev"]) == 0
    assert "2 spec(s) valid" in capsys.readouterr().out


def test_validate_reports_each_problem_as_path_line_col_with_hint(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text(BROKEN)

    assert main(["validate", str(tmp_path), "--env", "dev"]) == 1

    out = capsys.readouterr().out
    assert f"{tmp_path / 'broken.yaml'}:5:13: metadata.schedule: '0 3 * *' is not a valid cron" in out

    (tmp_path / "broken.yaml").write_text(BROKEN.replace('"0 3 * *"', '"0 3 * * *"'))
    assert main(["validate", str(tmp_path), "--env", "dev"]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'broken.yaml'}:9:49: stages[only].config.batch_sise: unknown field" in out
    assert "hint: did you mean 'batch_size'?" in out


def test_validate_json_format_lists_problems_with_locations(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text(BROKEN.replace('"0 3 * *"', '"0 3 * * *"'))
    (tmp_path / "fine.yaml").write_text(
        (SPECS / "user_engagement_features.yaml")
        .read_text()
        .replace("name: user_engagement_features", "name: fine")
    )

    assert main(["validate", str(tmp_path), "--env", "dev", "--format", "json"]) == 1

    report = json.loads(capsys.readouterr().out)
    assert report["valid"] == ["fine"]
    assert [(p["line"], p["column"], p["field"]) for p in report["problems"]] == [
        (9, 49, "stages[only].config.batch_sise"),
    ]
    assert report["problems"][0]["suggestion"] == "did you mean 'batch_size'?"


def test_validate_checks_every_overlay_not_just_the_chosen_environment(tmp_path, capsys):
    (tmp_path / "fine.yaml").write_text(
        (SPECS / "user_engagement_features.yaml")
        .read_text()
        .replace("name: user_engagement_features", "name: fine")
    )
    (tmp_path / "fine.staging.yaml").write_text("stages:\n  - name: extrakt\n    config: {batch_size: 5}\n")

    assert main(["validate", str(tmp_path), "--env", "dev"]) == 1

    out = capsys.readouterr().out
    assert "fine.staging.yaml:2:11: stages[extrakt]: the overlay names stage 'extrakt'" in out
    assert "did you mean 'extract'?" in out


def test_render_prints_the_execution_format(capsys):
    assert main(["render", str(SPECS / "recommender_training.yaml"), "--env", "production"]) == 0

    rendered = json.loads(capsys.readouterr().out)
    assert list(rendered) == ["pipeline", "version", "environment", "config_version", "metadata", "stages"]
    assert rendered["environment"] == "production"
    register = next(stage for stage in rendered["stages"] if stage["name"] == "register")
    assert register["config"]["registry"] == "s3://models/acme/"
    assert register["upstream"] == ["evaluate"]


def test_render_explain_names_the_file_each_value_came_from(capsys):
    assert main(["render", str(SPECS / "recommender_training.yaml"), "--env", "production", "--explain"]) == 0

    lines = capsys.readouterr().out.splitlines()
    registry = next(line for line in lines if line.startswith("stages[register].config.registry"))
    assert "recommender_training.production.yaml:13:17" in registry
    query = next(line for line in lines if line.startswith("stages[extract].config.query"))
    assert "recommender_training.yaml:" in query and "production" not in query


def test_render_of_an_invalid_spec_prints_problems_and_exits_one(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text(BROKEN)

    assert main(["render", str(tmp_path / "broken.yaml"), "--env", "dev"]) == 1
    assert "broken.yaml:5:13" in capsys.readouterr().out


def test_committed_schema_is_current(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(SCHEMA.read_text()), "run 'make schema'"


def test_schema_validates_shipped_specs_and_knows_component_configs():
    import jsonschema
    import yaml

    schema = json.loads(SCHEMA.read_text())
    spec = yaml.safe_load((SPECS / "recommender_training.yaml").read_text())
    jsonschema.validate(spec, schema)
    spec["stages"][0]["config"]["batch_sise"] = 5
    with pytest.raises(jsonschema.ValidationError, match="batch_sise"):
        jsonschema.validate(spec, schema)


def test_components_lists_the_builtins(capsys):
    assert main(["components"]) == 0

    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [
        "data.extract.database",
        "evaluation.recommender",
        "features.user_engagement",
        "model.ease",
        "model.matrix_factorization",
        "registry.register_model",
    ]


def test_components_describes_one_component(capsys):
    assert main(["components", "model.matrix_factorization"]) == 0

    out = capsys.readouterr().out
    assert "early_stopping_patience" in out and '"properties"' in out


def test_components_unknown_name_suggests_and_exits_one(capsys):
    assert main(["components", "model.matrix_factorisation"]) == 1
    assert "did you mean 'model.matrix_factorization'?" in capsys.readouterr().err


def test_new_scaffolds_a_spec_that_validates(tmp_path, capsys):
    assert main(["new", "churn_model", "--dir", str(tmp_path)]) == 0
    assert main(["validate", str(tmp_path / "churn_model.yaml"), "--env", "dev"]) == 0
    assert main(["new", "churn_model", "--dir", str(tmp_path)]) == 1  # no silent overwrite
    assert main(["new", "Churn-Model", "--dir", str(tmp_path)]) == 1


def test_command_line_errors_never_show_a_traceback(tmp_path):
    (tmp_path / "broken.yaml").write_bytes(b"name: [\x00\xff")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("mlpipe")), "validate", str(tmp_path), "--env", "dev"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "broken.yaml:1:" in result.stdout


# --- warnings, .airflowignore, overridable, declarations, new --component ---------------------

FIXTURES = REPO / "tests" / "spec" / "fixture_pkg"

WITH_EXTRA = """\
name: {name}
version: 1.0.0
metadata:
  owner: me
stages:
  - name: quantum
    component: mlpipe_spec_fixtures.needs_extra
"""


@pytest.fixture
def fixture_components(monkeypatch):
    """The spec tests' fixture components, importable and allowed as components."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv("AIRFLOW__MLPIPE__COMPONENT_MODULES", "mlpipe_spec_fixtures")


def test_validate_prints_warnings_and_still_exits_zero(tmp_path, capsys, fixture_components):
    (tmp_path / "quantum.yaml").write_text(WITH_EXTRA.format(name="quantum"))

    assert main(["validate", str(tmp_path), "--env", "dev"]) == 0

    out = capsys.readouterr().out
    assert (
        f"{tmp_path / 'quantum.yaml'}:7:16: stages[quantum].component: warning: stage 'quantum' needs" in out
    )
    assert '    hint: install it where the stage runs: pip install "airflow-mlpipe[quantum]"' in out
    assert "1 spec(s) valid, 1 warning(s)" in out


def test_validate_json_lists_warnings_apart_from_problems(tmp_path, capsys, fixture_components):
    (tmp_path / "quantum.yaml").write_text(WITH_EXTRA.format(name="quantum"))

    assert main(["validate", str(tmp_path), "--env", "dev", "--format", "json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["valid"] == ["quantum"] and report["problems"] == []
    [warning] = report["warnings"]
    assert (warning["line"], warning["column"], warning["severity"]) == (7, 16, "warning")
    assert warning["field"] == "stages[quantum].component"


def test_validate_honours_airflowignore_and_says_when_a_named_file_is_ignored(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text(BROKEN)
    (tmp_path / ".airflowignore").write_text("broken.yaml\n")

    assert main(["validate", str(tmp_path), "--env", "dev", "--ignore-file-syntax", "glob"]) == 0
    assert "0 spec(s) valid" in capsys.readouterr().out

    args = ["validate", str(tmp_path / "broken.yaml"), "--env", "dev", "--ignore-file-syntax", "glob"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'broken.yaml'}:1:1: warning: this spec is excluded by an .airflowignore" in out

    assert main(["validate", str(tmp_path), "--env", "dev", "--ignore-file-syntax", "regexp"]) == 0
    (tmp_path / ".airflowignore").write_text("^broken\\.yaml$\n")
    assert main(["validate", str(tmp_path), "--env", "dev", "--ignore-file-syntax", "glob"]) == 1
    assert "broken.yaml:5:13" in capsys.readouterr().out


def test_render_shows_each_stages_effective_overridable_fields(tmp_path, capsys, fixture_components):
    spec = tmp_path / "demo.yaml"
    spec.write_text(
        """\
name: demo
version: 1.0.0
metadata: {owner: me}
stages:
  - name: feats
    component: mlpipe_spec_fixtures.features
  - name: train
    component: mlpipe_spec_fixtures.trainer
    dependencies: [feats]
  - name: tuned
    component: mlpipe_spec_fixtures.trainer
    dependencies: [feats]
    overridable: [seed, epochs]
"""
    )

    assert main(["render", str(spec), "--env", "dev"]) == 0
    stages = {s["name"]: s for s in json.loads(capsys.readouterr().out)["stages"]}
    assert stages["feats"]["overridable"] == []
    assert stages["train"]["overridable"] == ["epochs", "learning_rate"]
    assert stages["tuned"]["overridable"] == ["epochs", "seed"]

    assert main(["render", str(spec), "--env", "dev", "--explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert 'stages[train].overridable = ["epochs", "learning_rate"]    # component default' in "\n".join(
        lines
    )
    assert f'stages[tuned].overridable = ["epochs", "seed"]    # {spec}:13:18' in lines
    assert not any(line.startswith("stages[tuned].overridable[") for line in lines)


def test_components_shows_declarations_extra_and_overridable_fields(capsys, fixture_components):
    assert main(["components", "mlpipe_spec_fixtures.trainer"]) == 0
    out = capsys.readouterr().out
    assert "  epochs (default 10, overridable): " in out
    assert "  seed (default 0): " in out
    assert "overridable at trigger time: epochs, learning_rate" in out
    assert "produces: artifacts model; metrics loss" in out
    assert "requires: artifacts features" in out
    assert "extra: none" in out

    assert main(["components", "mlpipe_spec_fixtures.needs_extra"]) == 0
    out = capsys.readouterr().out
    assert "produces: not declared" in out
    assert "extra: quantum (modules json, mlpipe_spec_fixtures_not_installed_xyz; missing here: " in out
    assert 'pip install "airflow-mlpipe[quantum]"' in out

    assert main(["components", "mlpipe_spec_fixtures.by_config"]) == 0
    assert "requires: depends on the stage's config (requires(config))" in capsys.readouterr().out


def test_new_component_scaffolds_a_module_that_resolves_and_validates(tmp_path, capsys, monkeypatch):
    assert main(["new", "--component", "acme_ml.components.churn", "--dir", str(tmp_path)]) == 0
    package = tmp_path / "acme_ml" / "components"
    assert (package / "churn.py").is_file() and (package / "test_churn.py").is_file()
    assert (tmp_path / "acme_ml" / "__init__.py").is_file() and (package / "__init__.py").is_file()

    monkeypatch.syspath_prepend(str(tmp_path))
    from airflow_mlpipe.contract import ComponentModule, overridable_fields
    from airflow_mlpipe.resolver import resolve_component

    component = resolve_component("acme_ml.components.churn", ("acme_ml.components",))
    assert isinstance(component.module, ComponentModule)
    assert overridable_fields(component.config_model) == {"threshold"}
    config = component.config_model.model_validate({"threshold": 0.7})
    assert component.requires(config).artifacts == ("table",)
    assert component.produces(config).artifacts == ("summary",)
    assert component.doc.splitlines()[0].startswith("Churn: ")

    # A spec using it validates, wired to a stage producing its 'table'.
    spec = tmp_path / "specs" / "churn.yaml"
    spec.parent.mkdir()
    spec.write_text(
        "name: churn\nversion: 1.0.0\nmetadata: {owner: me}\nstages:\n"
        "  - {name: score, component: acme_ml.components.churn, config: {threshold: 0.7}}\n"
    )
    monkeypatch.setenv("AIRFLOW__MLPIPE__COMPONENT_MODULES", "acme_ml.components")
    capsys.readouterr()
    assert main(["validate", str(spec), "--env", "dev"]) == 1  # nothing upstream produces 'table'
    assert "stage 'score' requires artifact 'table'" in capsys.readouterr().out

    assert main(["new", "--component", "acme_ml.components.churn", "--dir", str(tmp_path)]) == 1
    assert main(["new", "--component", "acme_ml.class.churn", "--dir", str(tmp_path)]) == 1
    assert main(["new", "--dir", str(tmp_path)]) == 1  # neither a pipeline nor a component


def test_new_component_test_runs_with_run_component(tmp_path, monkeypatch):
    """The scaffolded test file passes, with run_component standing in if it is not there yet."""
    assert main(["new", "--component", "churn", "--dir", str(tmp_path)]) == 0
    import airflow_mlpipe.testing as testing

    if not hasattr(testing, "run_component"):
        monkeypatch.setattr(testing, "run_component", _run_component_stand_in, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = pytest.main([str(tmp_path / "test_churn.py"), "-q", "-p", "no:cacheprovider", "-p", "no:mlpipe"])
    assert result == pytest.ExitCode.OK


def _run_component_stand_in(component, config, *, inputs=None, artifact_dir=None, **names):
    """Only for this test, until airflow_mlpipe.testing.run_component lands: the same path."""
    import tempfile

    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.contract import ComponentContext
    from airflow_mlpipe.resolver import Component
    from airflow_mlpipe.runner import run_stage

    resolved = Component(component.__name__, component)
    validated = resolved.config_model.model_validate(dict(config))
    folder = Path(artifact_dir) if artifact_dir is not None else Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    context = ComponentContext(
        pipeline="test_pipeline",
        pipeline_version="0.0.0",
        config_version="test",
        environment="test",
        stage="stage",
        run_id="test_run",
        git_commit="unknown",
        inputs=dict(inputs or {}),
        artifact_dir=ObjectStoragePath(f"file://{folder.resolve()}"),
    )
    return run_stage(resolved, validated, context)


def test_spec_changes_compares_current_configs_with_recorded_ones():
    from airflow_mlpipe.cli import spec_changes
    from airflow_mlpipe.history import CurrentSpec
    from airflow_mlpipe.resolver import resolve_component

    extract_model = resolve_component("data.extract.database").config_model
    recorded_extract = extract_model.model_validate(
        {"query": "SELECT 1", "conn_id": "db", "batch_size": 500, "parameters": {"d": "2024-01-01"}}
    ).model_dump(mode="json")
    recorded = {
        "stages_completed": ["extract", "features", "old"],
        "configs": {
            # As the record has them: rendered, overrides applied, defaults filled, secrets masked.
            "extract": recorded_extract,
            "features": {"window_days": 30, "password": "***"},
            "old": {"value": 1},
        },
    }
    current = CurrentSpec(
        pipeline="p",
        config_version="new",
        stages={
            "extract": {
                "component": "data.extract.database",
                "config": {"query": "SELECT 2", "conn_id": "db", "parameters": {"d": "{{ ds }}"}},
            },
            "features": {"component": "not.a.component", "config": {"window_days": 30, "password": "s3cret"}},
            "added": {"component": "not.a.component", "config": {}},
        },
    )

    lines = spec_changes(recorded, current, overrides={"extract": {"batch_size": 500}})

    assert sorted(lines) == sorted(
        [
            "  stage old: not in the current spec",
            "  stage added: new in the current spec",
            '  stage extract: query: "SELECT 1" (recorded) -> "SELECT 2" (current)',
        ]
    )
