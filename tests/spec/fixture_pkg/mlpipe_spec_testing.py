"""Helpers shared by the spec-layer tests: write a spec, load it, collect its problems.

Every load passes ``environment`` and ``component_modules`` explicitly, so no test needs Airflow's
configuration (or imports Airflow at all).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_mlpipe.spec import Pipeline, Problem, SpecError, load_pipeline

MODULES = ("mlpipe_spec_fixtures",)
STEPS = "mlpipe_spec_fixtures.steps"
SOURCE = "mlpipe_spec_fixtures.source"

# A small valid spec using the test components; line numbers are referred to by tests.
VALID = """\
name: demo
version: 1.0.0
metadata:
  owner: ml-team
  description: a test pipeline
  tags: [ml]
  schedule: "0 3 * * *"
  notify_on_failure: [alerts@example.com]
defaults:
  retries: 1
  retry_delay: 5m
stages:
  - name: extract
    component: mlpipe_spec_fixtures.source
    config:
      table: events
  - name: train
    component: mlpipe_spec_fixtures.steps
    config:
      epochs: 3
      rate: 0.5
    dependencies: [extract]
"""


def edit(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (fails loudly if it is not there once)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def write(folder: Path, filename: str, text: str | bytes) -> Path:
    """Write ``text`` (dedented) or raw ``bytes`` to ``folder/filename``; return the path."""
    path = folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(path: Path, environment: str = "dev") -> Pipeline:
    return load_pipeline(path, environment, component_modules=MODULES)


def problems_of(path: Path, environment: str = "dev") -> list[Problem]:
    """The problems loading ``path`` reports; fails the test if it loads."""
    with pytest.raises(SpecError) as info:
        load(path, environment)
    assert info.value.problems, "a SpecError must carry at least one problem"
    return info.value.problems


def spec_problems(
    folder: Path, text: str | bytes, name: str = "demo", overlay: str | None = None, environment: str = "dev"
) -> list[Problem]:
    """Write ``NAME.yaml`` (and ``NAME.ENV.yaml`` if ``overlay`` is given) and return its problems."""
    path = write(folder, f"{name}.yaml", text)
    if overlay is not None:
        write(folder, f"{name}.{environment}.yaml", overlay)
    return problems_of(path, environment)


def only_problem(folder: Path, text: str | bytes, **kwargs: object) -> Problem:
    """The single problem of a spec (fails the test if there are several)."""
    problems = spec_problems(folder, text, **kwargs)  # type: ignore[arg-type]
    assert len(problems) == 1, [p.format() for p in problems]
    return problems[0]


def where(problem: Problem) -> tuple[str, int, int]:
    """``(file name, line, column)`` of a problem, for compact assertions."""
    assert problem.location is not None, problem
    return Path(problem.location.file).name, problem.location.line, problem.location.column
