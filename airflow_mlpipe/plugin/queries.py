"""Reads from Airflow's metadata database: execution records, runs and DAGs.

The execution record is the XCom ``return_value`` of the ``execution_record`` task. Each record is
returned together with its run as the database knows it, including ``trigger_source`` (the
``dag_run.triggered_by`` column: ``rest_api``, ``ui``, ``cli``, ``timetable``...), which the Task
SDK does not give tasks, so the record itself can only say ``manual`` for a manual run. The run's
``triggered_by`` puts that source in the record's vocabulary (``api`` for the REST API).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_mlpipe.record import RECORD_TASK_ID, triggered_by_source

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _enum_value(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_summary(run: Any) -> dict[str, Any]:
    """The fields of a ``DagRun`` row the page and the API show."""
    duration = None
    if run.start_date is not None and run.end_date is not None:
        duration = round((run.end_date - run.start_date).total_seconds(), 3)
    return {
        "run_id": run.run_id,
        "state": _enum_value(run.state),
        "run_type": _enum_value(run.run_type),
        "trigger_source": _enum_value(run.triggered_by),
        "triggered_by": triggered_by_source(_enum_value(run.triggered_by), _enum_value(run.run_type)),
        "triggering_user_name": run.triggering_user_name,
        "run_after": _iso(run.run_after),
        "start_date": _iso(run.start_date),
        "end_date": _iso(run.end_date),
        "duration_seconds": duration,
        "run_path": f"dags/{quote(run.dag_id, safe='')}/runs/{quote(run.run_id, safe='')}",
    }


def _record_value(xcom: Any) -> Any:
    from airflow.models.xcom import XComModel

    value = XComModel.deserialize_value(xcom)
    return value if isinstance(value, dict) else {"value": value}


def records(
    session: Session, dag_id: str, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The execution records of ``dag_id``, newest first, with their runs; and how many there are."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import func, select

    where = (
        XComModel.dag_id == dag_id,
        XComModel.task_id == RECORD_TASK_ID,
        XComModel.key == "return_value",
        XComModel.map_index == -1,
    )
    total = session.scalar(select(func.count()).select_from(XComModel).where(*where)) or 0
    query = (
        select(XComModel, DagRun)
        .join(DagRun, DagRun.id == XComModel.dag_run_id)
        .where(*where)
        .order_by(XComModel.timestamp.desc(), DagRun.id.desc())
        .offset(offset)
        .limit(limit)
    )
    entries = [
        {**run_summary(run), "record": _record_value(xcom)} for xcom, run in session.execute(query).all()
    ]
    return entries, total


def latest_run(session: Session, dag_id: str) -> dict[str, Any] | None:
    """The newest run of ``dag_id`` (it may still be running and have no record yet)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1))
    return run_summary(run) if run is not None else None


def dag_states(session: Session, dag_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per DAG id known to Airflow: whether it is paused and its owners."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    rows = session.execute(
        select(DagModel.dag_id, DagModel.is_paused, DagModel.owners, DagModel.is_stale).where(
            DagModel.dag_id.in_(list(dag_ids))
        )
    ).all()
    return {
        dag_id: {"is_paused": bool(is_paused), "owners": owners, "is_stale": bool(is_stale)}
        for dag_id, is_paused, owners, is_stale in rows
    }
