"""OpenLineage for pipeline stages: the datasets a stage read and wrote, and the run it belongs to.

The Airflow OpenLineage provider's listener calls :class:`ComponentOperator`'s
``get_openlineage_facets_on_start/complete/failure`` only when OpenLineage is on (the provider
installed, a transport configured, not disabled); those methods import this module, which imports
the provider. Nothing here is loaded at parse time, or in a task while OpenLineage is off.

What a stage's events carry (the COMPLETE event all of it):

* **inputs**: every artifact of every upstream stage it read (the ``StageOutputs`` the operator
  pulled from their XComs), each with its content digest as the dataset's version; for
  ``data.extract.database`` also the tables its query reads, parsed by the provider's SQL parser
  and named as the provider names the tables of its SQL operators (``postgres://host:5432``,
  ``db.schema.table``), or, when nothing can be parsed, the connection's database itself;
* **outputs**: every artifact it wrote (or, on a cache hit, took from the run that wrote it), each
  with its digest as the version;
* the run facet ``mlpipe``: pipeline, pipeline version, config version, environment, stage,
  component, and the stage-cache fingerprint and hit.

Artifact URIs are named by OpenLineage's conventions for object stores (namespace
``s3://bucket``, name the key) and local files (namespace ``file``, name the absolute path, or
``file://host`` when the URI names a host), the names Airflow's own file and S3 Assets get, so a
lineage backend joins a stage's artifacts with other tasks reading the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser
from attrs import define
from openlineage.client.event_v2 import Dataset, InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    DatasetFacet,
    JobFacet,
    RunFacet,
    dataset_version_dataset,
)

from airflow_mlpipe.contract import StageOutputs
from airflow_mlpipe.pipeline_run import PipelineRef, StageResult

#: Key of the run facet describing the pipeline run a stage belongs to.
RUN_FACET = "mlpipe"
#: Key of the dataset facet naming the stage and artifact a dataset is.
ARTIFACT_FACET = "mlpipe_artifact"
#: Object stores whose URI's host part is the bucket (OpenLineage: namespace ``scheme://bucket``).
_BUCKET_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "wasbs", "az", "adl"})
#: Schema of tables named without one, for databases whose hook has no OpenLineage support.
_DEFAULT_SCHEMAS = {"sqlite": "main"}


@define
class MlpipeRunFacet(RunFacet):
    """The pipeline run a stage ran in: what the execution record says about it.

    Fields are camelCase, as OpenLineage's own facets' are.
    """

    pipeline: str
    pipelineVersion: str
    configVersion: str
    environment: str
    stage: str
    component: str
    fingerprint: str | None = None
    cacheHit: bool = False
    cachedFrom: str | None = None


@define
class MlpipeArtifactDatasetFacet(DatasetFacet):
    """Which stage's which artifact a dataset is, with its content digest."""

    stage: str
    artifact: str
    uri: str
    digest: str | None = None


def artifact_dataset_name(uri: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of an artifact URI or local path.

    ``s3://bucket/key`` (and ``s3://conn_id@bucket/key``, the ``ObjectStoragePath`` form naming
    an Airflow connection) is ``("s3://bucket", "key")``; ``file:///a/b`` and ``/a/b`` are
    ``("file", "/a/b")``; ``file://host/a/b`` is ``("file://host", "/a/b")``.
    """
    if "://" not in uri:
        return "file", uri
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = parts.netloc.rpartition("@")[2]  # the connection id is no part of the data's name
    if scheme in ("file", "local"):
        return (f"file://{host}" if host else "file"), parts.path or "/"
    if scheme in _BUCKET_SCHEMES:
        return f"{scheme}://{host}", parts.path.lstrip("/") or "/"
    return f"{scheme}://{host}", parts.path or "/"


def artifact_dataset(
    uri: str, *, stage: str, artifact: str, digest: str | None, output: bool
) -> InputDataset | OutputDataset:
    """One artifact as an input or output dataset, its digest as the dataset's version."""
    namespace, name = artifact_dataset_name(uri)
    facets: dict[str, DatasetFacet] = {
        ARTIFACT_FACET: MlpipeArtifactDatasetFacet(stage=stage, artifact=artifact, uri=uri, digest=digest)
    }
    if digest:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=digest)
    dataset_type = OutputDataset if output else InputDataset
    return dataset_type(namespace=namespace, name=name, facets=facets)


def artifact_datasets(stage: str, outputs: StageOutputs, *, output: bool) -> list[Any]:
    """Every artifact of one stage's outputs, in name order."""
    return [
        artifact_dataset(uri, stage=stage, artifact=name, digest=outputs.digests.get(name), output=output)
        for name, uri in sorted(outputs.artifacts.items())
    ]


def connection_database_info(
    conn_type: str, host: str | None, port: int | None, schema: str | None
) -> DatabaseInfo:
    """Where a database is, for a connection whose hook does not say (OpenLineage naming).

    Namespace ``<conn_type>://<host>:<port>``. A SQLite connection names its file (in the host, or,
    from a ``sqlite:////path`` URI, in the schema): its namespace is ``sqlite:///path/to/file.db``.
    """
    if conn_type == "sqlite":
        host, port, schema = host or schema, None, None
    authority = f"{host}:{port}" if host and port else host or None
    return DatabaseInfo(scheme=conn_type or "unknown", authority=authority, database=schema or None)


def query_tables(
    query: str, database_info: DatabaseInfo, dialect: str = "generic", default_schema: str | None = None
) -> OperatorLineage:
    """The tables ``query`` reads, as the provider's SQL parser names them (no database call).

    ``inputs`` are empty when nothing could be parsed (the parser's errors are in the run facet
    ``extractionError``); the ``sql`` job facet holds the query.
    """
    parser = SQLParser(dialect=dialect, default_schema=default_schema)
    hook: Any = None  # only used to ask the database for table schemas, which we do not
    return parser.generate_openlineage_metadata_from_sql(
        sql=query, hook=hook, database_info=database_info, use_connection=False
    )


def database_sources(config: Mapping[str, Any]) -> OperatorLineage:
    """The tables a ``data.extract.database`` stage read, or its connection's database."""
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(str(config["conn_id"]))
    database_info, dialect, default_schema = _database_info(connection)
    lineage = query_tables(str(config["query"]), database_info, dialect, default_schema)
    if lineage.inputs:
        return lineage
    # Unparseable SQL still came from somewhere: name the database, so the lineage is not empty.
    namespace = SQLParser.create_namespace(database_info)
    name = database_info.database or str(config["conn_id"])
    return OperatorLineage(
        inputs=[Dataset(namespace=namespace, name=name)],
        run_facets=lineage.run_facets,
        job_facets=lineage.job_facets,
    )


def _database_info(connection: Any) -> tuple[DatabaseInfo, str, str | None]:
    """The connection's OpenLineage database info, SQL dialect and default schema."""
    try:
        hook = connection.get_hook()
        database_info = hook.get_openlineage_database_info(connection)
    except Exception:  # no provider for the connection type here, or no lineage support in it
        hook, database_info = None, None
    if hook is not None and database_info is not None:
        try:
            default_schema = hook.get_openlineage_default_schema()  # PostgreSQL asks the server
        except Exception:
            default_schema = None
        return database_info, hook.get_openlineage_database_dialect(connection), default_schema
    conn_type = str(connection.conn_type or "")
    info = connection_database_info(conn_type, connection.host, connection.port, connection.schema)
    return info, "generic", _DEFAULT_SCHEMAS.get(conn_type)


#: Components whose stages read datasets other than upstream artifacts: component -> their sources.
SOURCE_DATASETS: dict[str, Callable[[Mapping[str, Any]], OperatorLineage]] = {
    "data.extract.database": database_sources,
}


def run_facet(
    pipeline: PipelineRef, stage: str, component: str, result: StageResult | None
) -> MlpipeRunFacet:
    """The ``mlpipe`` run facet of one stage run."""
    return MlpipeRunFacet(
        pipeline=pipeline.name,
        pipelineVersion=pipeline.version,
        configVersion=pipeline.config_version,
        environment=pipeline.environment,
        stage=stage,
        component=component,
        fingerprint=result.fingerprint if result else None,
        cacheHit=bool(result and result.cached_from),
        cachedFrom=result.cached_from if result else None,
    )


def stage_lineage(
    pipeline: PipelineRef,
    stage: str,
    component: str,
    inputs: Mapping[str, StageOutputs] | None = None,
    result: StageResult | None = None,
    log: Any = None,
) -> OperatorLineage:
    """A stage's lineage from what its operator kept: the upstream outputs it read, its result.

    Before the stage ran (``inputs`` and ``result`` ``None``) only the run facet; after a failure
    the inputs it had read; after success its outputs too, and a source stage's tables.
    """
    input_datasets: list[Any] = []
    for upstream, upstream_outputs in sorted((inputs or {}).items()):
        input_datasets += artifact_datasets(upstream, upstream_outputs, output=False)
    run_facets: dict[str, RunFacet] = {RUN_FACET: run_facet(pipeline, stage, component, result)}
    job_facets: dict[str, JobFacet] = {}
    sources = SOURCE_DATASETS.get(component)
    if sources is not None and result is not None:
        try:
            source_lineage = sources(result.config)
        except Exception as exc:  # lineage must never be why a stage's event is missing
            if log is not None:
                log.warning(
                    "OpenLineage: no source datasets for stage '%s': %s: %s", stage, type(exc).__name__, exc
                )
        else:
            input_datasets += [
                InputDataset(namespace=dataset.namespace, name=dataset.name, facets=dataset.facets)
                for dataset in source_lineage.inputs
            ]
            run_facets = {**source_lineage.run_facets, **run_facets}
            job_facets.update(source_lineage.job_facets)
    output_datasets = artifact_datasets(stage, result.outputs, output=True) if result is not None else []
    return OperatorLineage(
        inputs=input_datasets, outputs=output_datasets, run_facets=run_facets, job_facets=job_facets
    )
