"""Reads from Airflow's metadata database: pipeline DAGs, execution records and runs.

Pipelines are the DAGs tagged ``mlpipe``, whatever loader file (and spec folder) built them;
their summaries come from their latest serialized DAGs, as the dag-processor stored them
(:mod:`airflow_mlpipe.plugin.summaries`), and are kept per DAG until its ``dag_hash`` changes.

The execution record is the XCom ``return_value`` of the ``execution_record`` task. Each record is
returned together with its run as the database knows it, including ``trigger_source`` (the
``dag_run.triggered_by`` column: ``rest_api``, ``ui``, ``cli``, ``timetable``...), which the Task
SDK does not give tasks, so the record itself can only say ``manual`` for a manual run. The run's
``triggered_by`` puts that source in the record's vocabulary (``api`` for the REST API).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_mlpipe.plugin.summaries import MLPIPE_TAG, snapshot, summary, unreadable_summary
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


def _record_filter(dag_id: str) -> tuple[Any, ...]:
    from airflow.models.xcom import XComModel

    return (
        XComModel.dag_id == dag_id,
        XComModel.task_id == RECORD_TASK_ID,
        XComModel.key == "return_value",
        XComModel.map_index == -1,
    )


def records(
    session: Session, dag_id: str, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """The execution records of ``dag_id``, newest first, with their runs; and how many there are."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import func, select

    where = _record_filter(dag_id)
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


def record(session: Session, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The execution record of one run of ``dag_id`` with its run, as :func:`records` gives it.

    None when the run does not exist or has no record (yet: it may still be running).
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = (
        select(XComModel, DagRun)
        .join(DagRun, DagRun.id == XComModel.dag_run_id)
        .where(*_record_filter(dag_id), DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        .limit(1)
    )
    row = session.execute(query).first()
    if row is None:
        return None
    xcom, run = row
    return {**run_summary(run), "record": _record_value(xcom)}


def latest_run(session: Session, dag_id: str) -> dict[str, Any] | None:
    """The newest run of ``dag_id`` (it may still be running and have no record yet)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1))
    return run_summary(run) if run is not None else None


@dataclass(frozen=True)
class PipelineDag:
    """A DAG the factory built, as the ``dag`` table has it."""

    dag_id: str
    is_paused: bool
    loader_file: str | None  # the DAG file that built it, relative to its bundle's root
    bundle_name: str | None


def pipeline_dags(session: Session, *, include_stale: bool = False) -> dict[str, PipelineDag]:
    """Every DAG tagged ``mlpipe`` (placeholders of broken specs included), by dag_id.

    A stale DAG (its loader file no longer builds it) is left out unless ``include_stale``.
    """
    from airflow.models.dag import DagModel, DagTag
    from sqlalchemy import select

    query = (
        select(DagModel.dag_id, DagModel.is_paused, DagModel.relative_fileloc, DagModel.bundle_name)
        .join(DagTag, DagTag.dag_id == DagModel.dag_id)
        .where(DagTag.name == MLPIPE_TAG)
    )
    if not include_stale:
        query = query.where(DagModel.is_stale.is_(False))
    return {
        dag_id: PipelineDag(dag_id, bool(is_paused), loader_file, bundle_name)
        for dag_id, is_paused, loader_file, bundle_name in session.execute(query).all()
    }


def is_pipeline(session: Session, dag_id: str) -> bool:
    """Whether ``dag_id`` is a DAG the factory built (stale ones too: their records remain)."""
    from airflow.models.dag import DagTag
    from sqlalchemy import select

    found = session.scalar(
        select(DagTag.dag_id).where(DagTag.dag_id == dag_id, DagTag.name == MLPIPE_TAG).limit(1)
    )
    return found is not None


_summaries_lock = threading.Lock()
_summaries: dict[str, tuple[str, dict[str, Any]]] = {}  # dag_id -> (dag_hash, summary)


def summaries(session: Session, dag_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The summary of each DAG's latest serialized version (DAGs never serialized are left out).

    One query lists the latest versions' hashes; only DAGs whose hash changed since the last call
    are loaded and deserialized.
    """
    from airflow.models.dag_version import DagVersion
    from airflow.models.serialized_dag import SerializedDagModel
    from sqlalchemy import func, select

    ids = sorted(set(dag_ids))
    if not ids:
        return {}
    latest = (
        select(DagVersion.dag_id, func.max(DagVersion.version_number).label("version_number"))
        .join(SerializedDagModel, SerializedDagModel.dag_version_id == DagVersion.id)
        .where(DagVersion.dag_id.in_(ids))
        .group_by(DagVersion.dag_id)
        .subquery()
    )
    rows = session.execute(
        select(SerializedDagModel.dag_id, SerializedDagModel.dag_hash, SerializedDagModel.id)
        .join(DagVersion, SerializedDagModel.dag_version_id == DagVersion.id)
        .join(
            latest,
            (DagVersion.dag_id == latest.c.dag_id) & (DagVersion.version_number == latest.c.version_number),
        )
    ).all()
    found: dict[str, dict[str, Any]] = {}
    for dag_id, dag_hash, row_id in rows:
        with _summaries_lock:
            cached = _summaries.get(dag_id)
        if cached is not None and cached[0] == dag_hash:
            found[dag_id] = cached[1]
            continue
        row = session.get(SerializedDagModel, row_id)
        if row is None:  # replaced since the listing: the next request sees the new one
            continue
        row.load_op_links = False  # links come from plugins; the summary needs none
        try:
            found[dag_id] = summary(snapshot(row.dag))
        except Exception as exc:  # one unreadable DAG must not hide the others
            found[dag_id] = unreadable_summary(dag_id, f"{type(exc).__name__}: {exc}")
        with _summaries_lock:
            _summaries[dag_id] = (dag_hash, found[dag_id])
    return found
