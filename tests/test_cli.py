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
