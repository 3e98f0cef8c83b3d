"""The plugin's FastAPI app: the ML Pipelines page and its JSON API, under ``/mlpipe``.

Routes (relative to the prefix):

* ``GET /``: the page (a static HTML file with a small script that calls the API); without a
  valid session it redirects to Airflow's login page;
* ``GET /static/...``: its script, stylesheet and icon (no data);
* ``GET /api/pipelines``: every pipeline the user may read: its spec summary, its DAG's state,
  its newest run and its latest execution record;
* ``GET /api/pipelines/{name}/records``: its execution records with their runs, newest first;
* ``GET /api/pipelines/{name}/registry``: its model registry's versions and where the alias points.

Every ``/api`` route authenticates like Airflow's REST API (401 without a token or session, 403
with an invalid one) and asks Airflow's auth manager whether the user may read the DAG, and
for records its runs and XComs (403 otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from airflow_mlpipe import __version__
from airflow_mlpipe.plugin import security

STATIC = Path(__file__).parent / "static"

User = Annotated[BaseUser, Depends(security.current_user)]


class RunEntry(BaseModel):
    """A run as Airflow's database knows it, with its execution record when it has one."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    state: str | None
    run_type: str | None
    trigger_source: str | None = Field(
        description="dag_run.triggered_by: rest_api, ui, cli, timetable, asset, backfill, test..."
    )
    triggered_by: str = Field(
        description="the trigger source in the record's words: api, manual, schedule, asset or backfill"
    )
    triggering_user_name: str | None
    run_after: str | None
    start_date: str | None
    end_date: str | None
    duration_seconds: float | None
    run_path: str = Field(description="the run's page in the Airflow UI, relative to the UI's root")
    record: dict[str, Any] | None = Field(None, description="the execution record (XCom of execution_record)")


class PipelineEntry(BaseModel):
    """A pipeline: its spec summary, its DAG, its newest run and its latest execution record."""

    model_config = ConfigDict(extra="forbid")

    name: str
    valid: bool = Field(description="false for a spec that failed validation (a placeholder DAG)")
    version: str | None
    config_version: str | None
    environment: str | None
    schedule: str | None
    owners: list[str]
    description: str
    tags: list[str]
    notify_on_failure: list[str]
    stages: list[dict[str, Any]]
    thresholds: dict[str, float]
    problems: list[str]
    dag_path: str = Field(description="the DAG's page in the Airflow UI, relative to the UI's root")
    is_paused: bool | None
    latest_run: RunEntry | None
    latest_record: RunEntry | None


class PipelineCollection(BaseModel):
    pipelines: list[PipelineEntry]
    total_entries: int
    environment: str
    spec_folder: str
    mlpipe_version: str


class RecordCollection(BaseModel):
    pipeline: str
    records: list[RunEntry]
    total_entries: int


class RegistryModel(BaseModel):
    uri: str
    model_name: str
    alias: str
    alias_version: int | None
    versions: list[dict[str, Any]]
    total_versions: int
    error: str | None


class RegistryCollection(BaseModel):
    pipeline: str
    models: list[RegistryModel]


def create_app() -> FastAPI:
    """The FastAPI app Airflow mounts at :data:`URL_PREFIX`."""
    app = FastAPI(
        title="ML Pipelines (airflow-mlpipe)",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False, response_model=None)
    async def page(request: Request) -> Response:
        if await security.session_user(request) is None:
            return RedirectResponse(security.login_url(str(request.url)), status.HTTP_303_SEE_OTHER)
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/pipelines")
    def list_pipelines(user: User) -> PipelineCollection:
        """Every pipeline of the spec folder whose DAG the user may read, newest record included."""
        from airflow.utils.session import create_session

        from airflow_mlpipe import settings
        from airflow_mlpipe.plugin import queries, specs

        result = specs.load_specs()
        readable = security.readable_dag_ids(user)
        summaries = [specs.summary(p) for name, p in result.pipelines.items() if name in readable]
        summaries += [
            specs.invalid_summary(name, [problem.format() for problem in error.problems])
            for name, error in result.errors.items()
            if name in readable
        ]
        entries = []
        with create_session() as session:
            dags = queries.dag_states(session, [s["name"] for s in summaries])
            for summary in sorted(summaries, key=lambda s: s["name"]):
                name = summary["name"]
                latest_record = latest_run = None
                if security.can_read(user, name, security.RECORD_ENTITIES):
                    latest_run = queries.latest_run(session, name)
                    newest, _ = queries.records(session, name, limit=1)
                    latest_record = newest[0] if newest else None
                entries.append(
                    PipelineEntry(
                        **summary,
                        dag_path=f"dags/{name}",
                        is_paused=dags.get(name, {}).get("is_paused"),
                        latest_run=RunEntry(**latest_run) if latest_run else None,
                        latest_record=RunEntry(**latest_record) if latest_record else None,
                    )
                )
        return PipelineCollection(
            pipelines=entries,
            total_entries=len(entries),
            environment=settings.environment(),
            spec_folder=str(specs.spec_folder()),
            mlpipe_version=__version__,
        )

    @app.get("/api/pipelines/{name}/records")
    def list_records(
        name: str,
        user: User,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> RecordCollection:
        """The pipeline's execution records, newest first, each with its run's state and trigger."""
        from airflow.utils.session import create_session

        from airflow_mlpipe.plugin import queries

        security.require_read(user, name, security.RECORD_ENTITIES)
        _require_known(name)
        with create_session() as session:
            entries, total = queries.records(session, name, limit=limit, offset=offset)
        return RecordCollection(pipeline=name, records=[RunEntry(**e) for e in entries], total_entries=total)

    @app.get("/api/pipelines/{name}/registry")
    def registry(name: str, user: User) -> RegistryCollection:
        """The models the pipeline registers: versions (newest first) and the alias's version."""
        from airflow.utils.session import create_session

        from airflow_mlpipe.plugin import queries, specs

        security.require_read(user, name, security.RECORD_ENTITIES)
        _require_known(name)
        with create_session() as session:
            entries, _ = queries.records(session, name, limit=20)
        pipeline = specs.load_specs().pipelines.get(name)
        models = [specs.read_registry(location) for location in specs.registry_locations(pipeline, entries)]
        return RegistryCollection(pipeline=name, models=[RegistryModel(**m) for m in models])

    return app


def _require_known(name: str) -> None:
    from airflow_mlpipe.plugin import specs

    result = specs.load_specs()
    if name not in result.pipelines and name not in result.errors:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No pipeline spec named '{name}'")
