"""Operator unit tests: real operators in a real DAG, called with a small task context.

No Airflow processes and no metadata database: the task instance below keeps XComs in a dict,
which is all the operators use of it (the Task SDK's ``xcom_pull``/``xcom_push`` and breadcrumbs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FIXTURE_PACKAGES = Path(__file__).parent / "fixture_pkg"
TEST_COMPONENTS = "mlpipe_op_steps"

if str(FIXTURE_PACKAGES) not in sys.path:
    sys.path.insert(0, str(FIXTURE_PACKAGES))


@dataclass
class TaskInstanceStub:
    """The parts of the Task SDK's RuntimeTaskInstance the operators call."""

    dag_id: str
    run_id: str
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    task_id: str = ""
    try_number: int = 1
    other_runs: dict[str, dict[tuple[str, str], Any]] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value", run_id: str | None = None) -> Any:
        xcoms = self.xcoms if run_id in (None, self.run_id) else self.other_runs.get(run_id, {})
        return xcoms.get((task_ids, key))

    def get_task_breadcrumbs(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return [{"task_id": task, "state": state, "duration": 1.5} for task, state in self.states.items()]


@dataclass
class DagRunStub:
    conf: dict[str, Any]
    run_type: str = "manual"
    triggering_user_name: str | None = "alice"


RunTask = Callable[..., Any]


@pytest.fixture
def operator_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Artifacts under ``tmp_path``; the fixture components allowed."""
    monkeypatch.setenv("AIRFLOW__MLPIPE__COMPONENT_MODULES", TEST_COMPONENTS)
    monkeypatch.setenv("AIRFLOW__MLPIPE__ARTIFACT_ROOT", f"file://{tmp_path / 'artifacts'}")
    return tmp_path / "artifacts"


@pytest.fixture
def run_task(operator_env: Path) -> RunTask:
    """Execute one task of a DAG as its worker would: render its templates, then ``execute``."""

    def run(task: Any, ti: TaskInstanceStub, conf: dict[str, Any] | None = None) -> Any:
        ti.task_id = task.task_id
        context = {"ti": ti, "dag_run": DagRunStub(conf=conf or {}), "run_id": ti.run_id}
        task.render_template_fields(context)
        result = task.execute(context)
        if result is not None:
            ti.xcom_push("return_value", result)
        return result

    return run
