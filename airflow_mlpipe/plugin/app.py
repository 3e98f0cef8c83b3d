"""The plugin's FastAPI app: the ML Pipelines page and its JSON API, under ``/mlpipe``.

Routes (relative to the prefix):

* ``GET /``: the page (a static HTML file with a small script that calls the API); without a
  valid session it redirects to Airflow's login page;
* ``GET /static/...``: its script, stylesheet and icon (no data);
* ``GET /api/pipelines``: every pipeline the user may read (every DAG tagged ``mlpipe``, from
  whichever loader file): its spec summary, its DAG's state, its newest run and its latest
  execution record;
* ``GET /api/pipelines/{name}/records``: its execution records with their runs, newest first;
* ``GET /api/pipelines/{name}/compare?a=RUN_ID&b=RUN_ID``: how run ``b``'s record differs from
  run ``a``'s, stage by stage (:func:`airflow_mlpipe.compare.compare_records`), with both runs;
* ``GET /api/pipelines/{name}/registry``: the versions in the registries its spec names, and
  where each alias points.

Every ``/api`` route authenticates like Airflow's REST API (401 without a token or session, 403
with an invalid one) and asks Airflow's auth manager whether the user may read the DAG, and
for records (and comparisons of them) its runs and XComs (403 otherwise). Query parameters are
bounded (422 outside the bounds). Specs are known from their serialized DAGs in the metadata
database: this process never reads a spec file. Every response passes through Airflow's secrets
masker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from airflow_mlpipe import __version__
from airflow_mlpipe.plugin import security
from airflow_mlpipe.plugin.masking import mask

STATIC = Path(__file__).parent / "static"
#: Bounds of the records route's paging parameters.
MAX_LIMIT = 500
MAX_OFFSET = 1_000_000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="records per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="records to skip, newest first")]
#: Airflow's own bound on a run id (``airflow.models.base.ID_LEN``).
MAX_RUN_ID = 250
RunA = Annotated[str, Query(min_length=1, max_length=MAX_RUN_ID, description="the run compared against")]
RunB = Annotated[
    str, Query(min_length=1, max_length=MAX_RUN_ID, description="the run whose changes are shown")
]

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


class RegistryLocation(BaseModel):
    """Where a register stage of the spec puts its model."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    registry: str
    conn_id: str | None
    model_name: str
    alias: str
    uri: str = Field(description="the model's folder in the registry")
    templated: bool = Field(description="a value is a Jinja template, rendered only at run time")


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
    registries: list[RegistryLocation]
    problems: list[str]
    loader_file: str | None = Field(description="the DAG file that built it, relative to its DAG bundle")
    dag_path: str = Field(description="the DAG's page in the Airflow UI, relative to the UI's root")
    is_paused: bool | None
    latest_run: RunEntry | None
    latest_record: RunEntry | None


class PipelineCollection(BaseModel):
    pipelines: list[PipelineEntry]
    total_entries: int
    environment: str = Field(description="the api-server's [mlpipe] environment")
    loader_files: list[str] = Field(description="the DAG files that built the listed pipelines")
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


StageStatus = Literal["computed", "cached", "failed", "skipped", "absent"]


class ConfigDifference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="the config leaf, dotted (early_stopping.patience)")
    a: Any = Field(description="its value in run a (null where a lacks it)")
    b: Any = Field(description="its value in run b (null where b lacks it)")


class ArtifactComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    a: str | None = Field(description="the artifact's content digest in run a")
    b: str | None = Field(description="the artifact's content digest in run b")
    same: bool = Field(description="both runs have a digest and they are equal")


class MetricComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    a: float | str | None
    b: float | str | None
    delta: float | None = Field(description="b - a, where both are numbers")


class StageComparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    status: tuple[StageStatus, StageStatus] = Field(description="the stage's status in run a and in run b")
    config: list[ConfigDifference] = Field(description="every config leaf that differs")
    artifacts: list[ArtifactComparison]
    metrics: list[MetricComparison] = Field(description="every metric either run has")
    same: bool = Field(description="config, artifact digests and metrics all equal")


class RunComparison(BaseModel):
    """How run ``b`` differs from run ``a``, stage by stage, with both runs as the records route has them."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str
    runs: tuple[str | None, str | None] = Field(description="the records' execution ids, a then b")
    config_version: tuple[str | None, str | None]
    stages: list[StageComparison]
    same: bool = Field(description="every stage is the same")
    a: RunEntry
    b: RunEntry


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
        """Every pipeline whose DAG the user may read, from every loader file, newest record included."""
        from airflow.utils.session import create_session

        from airflow_mlpipe import settings
        from airflow_mlpipe.plugin import queries

        readable = security.readable_dag_ids(user)
        entries = []
        with create_session() as session:
            dags = queries.pipeline_dags(session)
            summaries = queries.summaries(session, set(dags) & readable)
            for name in sorted(summaries):
                latest_record = latest_run = None
                if security.can_read(user, name, security.RECORD_ENTITIES):
                    latest_run = queries.latest_run(session, name)
                    newest, _ = queries.records(session, name, limit=1)
                    latest_record = newest[0] if newest else None
                entries.append(
                    PipelineEntry(
                        **summaries[name],
                        loader_file=dags[name].loader_file,
                        dag_path=f"dags/{quote(name, safe='')}",
                        is_paused=dags[name].is_paused,
                        latest_run=RunEntry(**latest_run) if latest_run else None,
                        latest_record=RunEntry(**latest_record) if latest_record else None,
                    )
                )
        collection = PipelineCollection(
            pipelines=entries,
            total_entries=len(entries),
            environment=settings.environment(),
            loader_files=sorted({e.loader_file for e in entries if e.loader_file}),
            mlpipe_version=__version__,
        )
        return _masked(collection)

    @app.get("/api/pipelines/{name}/records")
    def list_records(name: str, user: User, limit: Limit = 50, offset: Offset = 0) -> RecordCollection:
        """The pipeline's execution records, newest first, each with its run's state and trigger."""
        from airflow.utils.session import create_session

        from airflow_mlpipe.plugin import queries

        security.require_read(user, name, security.RECORD_ENTITIES)
        with create_session() as session:
            _require_pipeline(session, name)
            entries, total = queries.records(session, name, limit=limit, offset=offset)
        records = [RunEntry(**entry) for entry in entries]
        return _masked(RecordCollection(pipeline=name, records=records, total_entries=total))

    @app.get("/api/pipelines/{name}/compare")
    def compare(name: str, user: User, a: RunA, b: RunB) -> RunComparison:
        """How run ``b``'s record differs from run ``a``'s: per stage, status, config, digests, metrics."""
        from airflow.utils.session import create_session

        from airflow_mlpipe.compare import compare_records
        from airflow_mlpipe.plugin import queries

        security.require_read(user, name, security.RECORD_ENTITIES)
        with create_session() as session:
            _require_pipeline(session, name)
            entries = {run_id: queries.record(session, name, run_id) for run_id in dict.fromkeys((a, b))}
        entry_a, entry_b = entries[a], entries[b]
        if entry_a is None or entry_b is None:
            missing = [run_id for run_id, entry in entries.items() if entry is None]
            named = " and ".join(f"'{run_id}'" for run_id in missing)
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"No execution record for run {named} of pipeline '{name}': the run does not exist "
                "or has not finished; pick runs listed by "
                f"/mlpipe/api/pipelines/{quote(name, safe='')}/records",
            )
        comparison = compare_records(entry_a["record"], entry_b["record"])
        for stage in comparison["stages"]:
            _mask_config_values(stage["config"])
        response = RunComparison(pipeline=name, **comparison, a=RunEntry(**entry_a), b=RunEntry(**entry_b))
        return _masked(response)

    @app.get("/api/pipelines/{name}/registry")
    def registry(name: str, user: User) -> RegistryCollection:
        """The models the pipeline's current spec registers: versions (newest first), the alias's version."""
        from airflow.utils.session import create_session

        from airflow_mlpipe.plugin import queries
        from airflow_mlpipe.plugin.registry import read_registry

        security.require_read(user, name, security.RECORD_ENTITIES)
        with create_session() as session:
            _require_pipeline(session, name)
            summary = queries.summaries(session, [name]).get(name)
        # Read outside the session: a slow store must not hold a database connection.
        locations = summary["registries"] if summary else []
        models = [RegistryModel(**read_registry(location)) for location in locations]
        return _masked(RegistryCollection(pipeline=name, models=models))

    return app


def _require_pipeline(session: Any, name: str) -> None:
    from airflow_mlpipe.plugin import queries

    if not queries.is_pipeline(session, name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No pipeline named '{name}' (no DAG tagged 'mlpipe')")


def _mask_config_values(differences: list[dict[str, Any]]) -> None:
    """Mask each difference's values by the name of its config key.

    The masker hides values by their dict key; here the key (``db.password``) is itself a value,
    so the masker would not see it: ask it about the dotted key instead.
    """
    for difference in differences:
        for run in ("a", "b"):
            difference[run] = mask(difference[run], name=difference["key"])


_Model = TypeVar("_Model", bound=BaseModel)


def _masked(response: _Model) -> _Model:
    """``response`` with every secret Airflow's masker knows replaced, as it leaves the API."""
    return type(response).model_validate(mask(response.model_dump(mode="json")))
