"""Jinja templates in stage configs are checked when the spec loads, without rendering them."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlpipe_spec_testing import load, only_problem, where, write

from airflow_mlpipe.spec.templates import AIRFLOW_FILTERS, CONTEXT_NAMES, is_template, template_problem


def test_context_names_are_airflows_task_context() -> None:
    from airflow.sdk.definitions.context import KNOWN_CONTEXT_KEYS

    assert set(CONTEXT_NAMES) == KNOWN_CONTEXT_KEYS


def test_airflow_filters_are_airflows() -> None:
    from airflow.sdk.definitions._internal.templater import FILTERS

    assert set(AIRFLOW_FILTERS) == set(FILTERS)


@pytest.mark.parametrize(
    "text",
    [
        "{{ macros.ds_add(dag_run.run_after | ds, -90) }}",
        "{{ logical_date | ts_nodash }}-{{ run_id }}",
        "{% set day = ds %}{{ day }}",
        "{% for i in range(3) %}{{ loop.index }}{% endfor %}",
        "{% do params.update({}) %}{{ params.epochs | int }}",
        "{{ var.value.missing_variable }}",  # never rendered, so no Variable is looked up
        "{{ conn.analytics_db.host }}",
        "{# a comment #}plain",
        "{% if ti.try_number > 1 %}retry{% endif %}",
    ],
)
def test_templates_that_render_in_airflow_have_no_problem(text: str) -> None:
    assert is_template(text)
    assert template_problem(text) is None


@pytest.mark.parametrize(
    ("text", "message", "suggestion"),
    [
        ("{{ ds }", "does not parse: unexpected '}'", "'{{' has its '}}'"),
        ("{% if ds %}x", "does not parse", "'{%' its '%}'"),
        ("{# never closed", "Missing end of comment tag", ""),
        ("{{ parms.epochs }}", "uses 'parms'", "did you mean 'params'?"),
        ("{{ undefined_thing }}", "uses 'undefined_thing'", "Templates reference"),
        ("{{ logical_date | ds_nodahs }}", "unknown filter 'ds_nodahs'", "did you mean 'ds_nodash'?"),
        ("{{ ds is definedd }}", "unknown test 'definedd'", "did you mean 'defined'?"),
    ],
)
def test_templates_that_would_fail_to_render_are_explained(text: str, message: str, suggestion: str) -> None:
    problem = template_problem(text)
    assert problem is not None
    assert message in problem[0]
    assert suggestion in problem[1]


def test_a_syntax_error_in_a_multiline_template_names_its_line() -> None:
    problem = template_problem("SELECT *\nFROM events\nWHERE day > '{{ ds '\n")
    assert problem is not None and "(line 3 of the template)" in problem[0]


@pytest.mark.parametrize("text", ["plain text", "a {single} brace", "50% {x}", 42, None])
def test_values_without_jinja_syntax_are_not_templates(text: object) -> None:
    assert not is_template(text)


SPEC = """\
name: demo
version: 1.0.0
metadata: {owner: me}
stages:
  - name: train
    component: mlpipe_spec_fixtures.steps
    config:
      epochs: EPOCHS
"""


@pytest.mark.parametrize("epochs", ['"{{ params.epochs }}"', '"{% if ds %}3{% else %}1{% endif %}"'])
def test_a_templated_value_is_typed_after_rendering_not_at_load(tmp_path: Path, epochs: str) -> None:
    pipeline = load(write(tmp_path, "demo.yaml", SPEC.replace("EPOCHS", epochs)))
    assert pipeline.stage("train").config["epochs"] == epochs.strip('"')


def test_a_value_without_template_syntax_is_typed_at_load(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, SPEC.replace("EPOCHS", '"{ three }"'))
    assert problem.field == "stages[train].config.epochs"
    assert where(problem) == ("demo.yaml", 8, 15)
