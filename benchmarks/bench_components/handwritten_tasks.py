"""The callables of the hand-written contestant's ``PythonOperator`` tasks.

A team writing its DAGs by hand keeps the task code in a module of its own and points
``PythonOperator`` at it; these stand in for that code (they are never run by the parse
benchmarks).
"""

from __future__ import annotations

from typing import Any


def run_stage(config: dict[str, Any], **context: Any) -> dict[str, Any]:
    """One stage: a real team's function would compute features from ``config`` here."""
    return {"config": config}


def execution_record(notify_on_failure: list[str], **context: Any) -> None:
    """The last task: a real team's function would record the run and e-mail on failure."""
