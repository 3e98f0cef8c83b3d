"""Runs and their execution records, read from Airflow's metadata database (for ``mlpipe``).

The ``mlpipe`` commands that look at past runs (``diff``, ``replay``) read the database the way
the ``airflow`` CLI does: through the configured Airflow home (``[database] sql_alchemy_conn``),
``airflow.utils.session.create_session`` and the ORM models (``DagModel``, ``DagRun``,
``XComModel``, ``SerializedDagModel``). A record is the XCom ``return_value`` of the
``execution_record`` task.

Every way this can fail for a user's reason (no such pipeline, no such run, a run without a
record, a database that is missing, unreachable or not migrated) raises :class:`HistoryError`
with a one-line message and a hint; the CLI prints it and exits 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.record import RECORD_TASK_ID
from airflow_mlpipe.suggest import did_you_mean

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: How many run ids a "no such run" message may search for a suggestion.
_SUGGESTION_RUNS = 200


class HistoryError(Exception):
    """A pipeline, run or record that is not there, or a metadata database that cannot be read."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class CurrentSpec:
    """What a pipeline's DAG says about the spec it was built from (its ``doc_md``)."""

    pipeline: str
    config_version: str
    stages: dict[str, dict[str, Any]]  # stage -> {"component": ..., "config": {...}}


def load_airflow_configuration() -> None:
    """Load the providers' configuration (``[mlpipe]`` among it), as ``airflow`` commands do first."""
    from airflow.providers_manager import ProvidersManager

    ProvidersManager().initialize_providers_configuration()


@contextmanager
def metadata_session() -> Iterator[Session]:
    """A session on Airflow's metadata database; database failures become :class:`HistoryError`."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        from airflow.utils.session import create_session
    except Exception as exc:  # Airflow's settings could not even be initialised
        raise HistoryError(f"cannot load Airflow's settings: {type(exc).__name__}: {exc}") from None
    try:
        with create_session() as session:
            yield session
    except SQLAlchemyError as exc:
        raise _database_error(exc) from None


def _database_error(exc: Exception) -> HistoryError:
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    where = _database_url()
    if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
        return HistoryError(
            f"Airflow's metadata database {where} has no Airflow tables ({detail})",
            hint="run 'airflow db migrate', or point AIRFLOW_HOME / AIRFLOW__DATABASE__SQL_ALCHEMY_CONN "
            "at the deployment's database",
        )
    return HistoryError(
        f"cannot read Airflow's metadata database {where}: {detail}",
        hint="check [database] sql_alchemy_conn (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN) and that the "
        "database is running",
    )


def _database_url() -> str:
    """The configured database URL without its password (for error messages)."""
    try:
        from airflow.configuration import conf
        from sqlalchemy.engine import make_url

        url = make_url(str(conf.get("database", "sql_alchemy_conn")))
        return f"({url.render_as_string(hide_password=True)})"
    except Exception:
        return ""


def pipeline_exists(session: Session, pipeline: str) -> bool:
    """Whether Airflow knows a DAG ``pipeline`` (one the dag-processor or a ``dags test`` stored)."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    return session.scalar(select(DagModel.dag_id).where(DagModel.dag_id == pipeline)) is not None


def require_pipeline(session: Session, pipeline: str) -> None:
    """Raise :class:`HistoryError` (with a did-you-mean) unless Airflow knows the DAG ``pipeline``."""
    from airflow.models.dag import DagModel
    from sqlalchemy import select

    if pipeline_exists(session, pipeline):
        return
    known = session.scalars(select(DagModel.dag_id)).all()
    raise HistoryError(
        f"unknown pipeline '{pipeline}': Airflow's metadata database has no DAG of that id",
        hint=did_you_mean(pipeline, known)
        or "check the name, and that the dag-processor has parsed its spec",
    )


def read_record(session: Session, pipeline: str, run_id: str) -> dict[str, Any]:
    """The execution record of run ``run_id`` of ``pipeline``."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    require_pipeline(session, pipeline)
    run = session.scalar(select(DagRun).where(DagRun.dag_id == pipeline, DagRun.run_id == run_id))
    if run is None:
        recent = session.scalars(
            select(DagRun.run_id)
            .where(DagRun.dag_id == pipeline)
            .order_by(DagRun.id.desc())
            .limit(_SUGGESTION_RUNS)
        ).all()
        hint = did_you_mean(run_id, recent)
        if not hint:
            hint = f"recent runs: {', '.join(recent[:3])}" if recent else "the pipeline has no runs yet"
        raise HistoryError(f"pipeline '{pipeline}' has no run '{run_id}'", hint=hint)
    xcom = session.scalar(
        select(XComModel).where(
            XComModel.dag_run_id == run.id,
            XComModel.task_id == RECORD_TASK_ID,
            XComModel.key == "return_value",
            XComModel.map_index == -1,
        )
    )
    value = XComModel.deserialize_value(xcom) if xcom is not None else None
    if not isinstance(value, dict):
        state = getattr(run.state, "value", run.state)
        raise HistoryError(
            f"run '{run_id}' of pipeline '{pipeline}' has no execution record (run state: {state})",
            hint=f"the '{RECORD_TASK_ID}' task writes it when the run ends; wait for the run to finish",
        )
    return value


def read_run_after(session: Session, pipeline: str, run_id: str) -> Any:
    """When run ``run_id`` of ``pipeline`` was due (its ``run_after``): what its templates saw."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    value = session.scalar(select(DagRun.run_after).where(DagRun.dag_id == pipeline, DagRun.run_id == run_id))
    if value is None:
        raise HistoryError(f"pipeline '{pipeline}' has no run '{run_id}'")
    return value


def serialized_spec(session: Session, pipeline: str) -> CurrentSpec | None:
    """The spec of the pipeline's latest serialized DAG, as the dag-processor stored it."""
    from airflow.models.serialized_dag import SerializedDagModel

    row = SerializedDagModel.get(pipeline, session=session)
    if row is None:
        return None
    row.load_op_links = False  # links come from plugins; only the docs are read
    return spec_from_doc_md(row.dag.doc_md)


def spec_from_doc_md(doc_md: str | None) -> CurrentSpec | None:
    """The resolved spec the factory writes into a pipeline DAG's ``doc_md`` (None if none)."""
    from airflow_mlpipe.plugin.summaries import resolved_spec

    resolved = resolved_spec(doc_md)
    if resolved is None:
        return None
    return CurrentSpec(
        pipeline=resolved.pipeline,
        config_version=resolved.config_version,
        stages={
            stage.name: {"component": stage.component, "config": dict(stage.config)}
            for stage in resolved.stages
        },
    )
