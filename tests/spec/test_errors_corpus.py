"""A corpus of broken specs (``fixtures/errors``), each stating the exact problems it must produce.

Every file begins with ``# expect: [FILE:]LINE:COLUMN | FIELD | MESSAGE | SUGGESTION`` lines (see
``fixtures/README.md``). The whole folder is loaded once with :func:`load_folder`, as the DAG
factory does, so the corpus also checks that one broken spec never hides another.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from mlpipe_spec_testing import MODULES

from airflow_mlpipe.spec import FolderResult, Location, Problem, SpecError, load_folder
from airflow_mlpipe.suggest import did_you_mean

FIXTURES = Path(__file__).parent / "fixtures"
ERRORS = FIXTURES / "errors"
VALID = FIXTURES / "valid"
ENVIRONMENT = "prod"


@dataclass(frozen=True)
class Expected:
    file: str
    line: int
    column: int
    field: str
    message: str
    suggestion: str

    def matches(self, problem: Problem) -> bool:
        location = problem.location
        return (
            location is not None
            and Path(location.file).name == self.file
            and (location.line, location.column) == (self.line, self.column)
            and problem.field == self.field
            and self.message in problem.message
            and (self.suggestion in problem.suggestion if self.suggestion else problem.suggestion == "")
        )


def _expectations(path: Path) -> list[Expected]:
    expected = []
    for raw in path.read_bytes().decode("latin-1").splitlines():
        if not raw.startswith("# expect: "):
            continue
        where, field, message, suggestion = (
            part.strip() for part in raw.removeprefix("# expect: ").split("|")
        )
        *file, line, column = where.split(":")
        expected.append(
            Expected(file[0] if file else path.name, int(line), int(column), field, message, suggestion)
        )
    return expected


def _corpus() -> dict[str, list[Expected]]:
    """Pipeline name -> expected problems (from the base file first, then its overlays)."""
    corpus: dict[str, list[Expected]] = {}
    for path in sorted(ERRORS.glob("*.yaml"), key=lambda p: (p.name.split(".")[0], p.name.count("."))):
        corpus.setdefault(path.name.split(".")[0], []).extend(_expectations(path))
    return corpus


CORPUS = _corpus()


@pytest.fixture(scope="module")
def corpus_result() -> FolderResult:
    return load_folder(ERRORS, ENVIRONMENT, component_modules=MODULES)


def test_every_corpus_entry_states_its_expected_problems() -> None:
    assert len(CORPUS) >= 40
    assert all(CORPUS.values()), [name for name, expected in CORPUS.items() if not expected]


def test_no_broken_spec_loads(corpus_result: FolderResult) -> None:
    assert corpus_result.pipelines == {}
    assert sorted(corpus_result.errors) == sorted(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_spec_reports_exactly_the_expected_problems(corpus_result: FolderResult, name: str) -> None:
    if name == "unknown_component":
        pytest.importorskip("airflow_mlpipe.components.data.extract.database")
    problems = corpus_result.errors[name].problems
    expected = CORPUS[name]
    assert len(problems) == len(expected), "\n".join(p.format() for p in problems)
    for want, got in zip(expected, problems, strict=True):
        assert want.matches(got), f"expected {want}\n     got {got.format()} [{got.field}]"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_spec_fails_the_same_way_alone(tmp_path: Path, name: str) -> None:
    # Loaded on its own (what a worker does with only=...), a spec reports the same problems.
    for path in ERRORS.glob(f"{name}.*"):
        shutil.copy(path, tmp_path / path.name)
    alone = load_folder(tmp_path, ENVIRONMENT, only=name, component_modules=MODULES)
    together = load_folder(ERRORS, ENVIRONMENT, only=name, component_modules=MODULES)
    assert alone.pipelines == {} == together.pipelines
    strip = [(p.message.replace(str(tmp_path), ""), p.field, p.location.line if p.location else 0)
             for p in alone.errors[name].problems]  # fmt: skip
    assert strip == [
        (p.message.replace(str(ERRORS), ""), p.field, p.location.line if p.location else 0)
        for p in together.errors[name].problems
    ]


def test_every_problem_in_the_corpus_names_file_line_and_column(corpus_result: FolderResult) -> None:
    for error in corpus_result.errors.values():
        for problem in error.problems:
            assert problem.location is not None
            assert Path(problem.location.file).parent == ERRORS
            assert problem.location.line >= 1 and problem.location.column >= 1


# --- valid specs -------------------------------------------------------------------------------


def test_valid_specs_load_for_every_environment() -> None:
    pytest.importorskip("airflow_mlpipe.components.data.extract.database")
    for environment in ("dev", "prod", "staging"):
        result = load_folder(VALID, environment, component_modules=MODULES)
        assert result.errors == {}, {name: error.format() for name, error in result.errors.items()}
        assert sorted(result.pipelines) == ["recommender_training", "training_loop"]


def test_the_issue_example_loads_as_written() -> None:
    pytest.importorskip("airflow_mlpipe.components.data.extract.database")
    pipeline = load_folder(VALID, "dev", component_modules=MODULES).pipelines["recommender_training"]
    assert pipeline.name == "recommender_training"
    assert pipeline.version == "3.2.1"
    assert pipeline.metadata.start_date == date(2024, 1, 1)
    assert pipeline.metadata.catchup is False
    assert pipeline.defaults.retry_delay == timedelta(minutes=5)
    assert pipeline.to_execution_format()["stages"] == [
        {
            "name": "extract",
            "component": "data.extract.database",
            "config": {
                "query": "SELECT * FROM user_events WHERE date > :cutoff",
                "connection": "analytics_db",
                "batch_size": 10000,
                "parameters": {"cutoff": "{{ ds }}"},
            },
            "upstream": [],
        }
    ]


def test_valid_overlays_apply_per_environment() -> None:
    dev = load_folder(VALID, "dev", component_modules=MODULES).pipelines["training_loop"]
    prod = load_folder(VALID, "prod", component_modules=MODULES).pipelines["training_loop"]
    staging = load_folder(VALID, "staging", component_modules=MODULES).pipelines["training_loop"]
    assert [s.name for s in dev.stages] == ["load"]
    assert [s.name for s in prod.stages] == ["load", "train", "publish"]
    assert [s.name for s in staging.stages] == ["load", "train"]
    assert prod.stage("load").config == {"table": "events", "limit": None}
    assert prod.stage("train").retries == 1 and staging.stage("train").retries == 3
    assert prod.metadata.start_date == datetime(2024, 6, 1, 4, 0)
    assert len({dev.config_version, prod.config_version, staging.config_version}) == 3


# --- Problem, SpecError and did_you_mean -------------------------------------------------------


def test_problem_formats_location_field_message_and_hint() -> None:
    problem = Problem(
        "unknown field 'retires'", Location("p.yaml", 3, 5), "stages[a].retires", "did you mean?"
    )
    assert (
        problem.format() == "p.yaml:3:5: stages[a].retires: unknown field 'retires'\n    hint: did you mean?"
    )
    assert problem.to_dict() == {
        "file": "p.yaml",
        "line": 3,
        "column": 5,
        "field": "stages[a].retires",
        "message": "unknown field 'retires'",
        "suggestion": "did you mean?",
        "severity": "error",
    }
    assert Problem("bad").format() == "<unknown>: bad"


def test_a_warning_formats_with_its_severity_after_the_field() -> None:
    warning = Problem("old spelling", Location("p.yaml", 7, 9), "stages[a].config.lr", "rename it", "warning")
    assert warning.is_warning and not Problem("x").is_warning
    assert warning.format() == "p.yaml:7:9: stages[a].config.lr: warning: old spelling\n    hint: rename it"
    assert warning.to_dict()["severity"] == "warning"


def test_spec_error_carries_and_formats_every_problem() -> None:
    problems = [Problem("a", Location("f", 1, 1)), Problem("b", Location("f", 2, 3), "x", "fix it")]
    error = SpecError(iter(problems))
    assert error.problems == problems
    assert str(error) == "f:1:1: a\nf:2:3: x: b\n    hint: fix it"


@pytest.mark.parametrize(
    ("word", "candidates", "suggestion"),
    [
        ("retires", ["retries", "retry_delay", "pool"], "did you mean 'retries'?"),
        ("dependancies", ["name", "dependencies"], "did you mean 'dependencies'?"),
        (
            "data.extract.databse",
            ["data.extract.database", "model.train"],
            "did you mean 'data.extract.database'?",
        ),
        ("zzz", ["extract", "train"], ""),
        ("x", [], ""),
    ],
)
def test_did_you_mean_suggests_only_close_matches(word: str, candidates: list[str], suggestion: str) -> None:
    assert did_you_mean(word, candidates) == suggestion
