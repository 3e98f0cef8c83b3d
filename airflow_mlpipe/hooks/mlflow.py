"""MLflow hooks: a pipeline run as an MLflow run, and the MLflow Model Registry as a model registry.

:class:`MlflowHook` owns the tracking server: the experiment named after a pipeline, the one
MLflow run of each pipeline run (found again by its ``mlpipe.*`` tags, so the register stage and
the record task write to the same run), batched logging and the run's end.
:class:`MlflowRegistryHook` gives ``registry.register_model`` the interface of
:class:`~airflow_mlpipe.hooks.model_registry.ModelRegistryHook` on top of MLflow's registry:
``registry: "mlflow://NAME"`` registers versions of the registered model ``NAME``.

MLflow is imported when a hook first talks to the server, never at import time: with tracking
off and no ``mlflow://`` registry nothing of MLflow is loaded. Every call runs with bounded HTTP
retries and timeouts (MLflow's defaults retry for minutes), unless the deployment set MLflow's
own ``MLFLOW_HTTP_REQUEST_*`` variables, which then win.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from airflow_mlpipe.hooks.model_registry import DEFAULT_ALIAS, Claim, check_name

SCHEME = "mlflow://"
#: The version tag that finds the version a pipeline run registered (retries register no second).
RUN_KEY_TAG = "mlpipe.run_key"
#: Metadata fields stored on a version as JSON (the rest are plain strings, readable in MLflow's UI).
_JSON_FIELDS = ("metrics", "thresholds", "model_manifest", "artifacts", "source_artifacts")
_RUNNING = "RUNNING"


def is_mlflow_registry(registry: str) -> bool:
    """Whether ``registry`` names the MLflow Model Registry (``mlflow://NAME`` or ``mlflow://``)."""
    return registry.strip().lower().startswith(SCHEME)


def registered_model_name(registry: str) -> str | None:
    """The model name an ``mlflow://NAME`` URI carries (None for a bare ``mlflow://``)."""
    name = registry.strip()[len(SCHEME) :].strip("/")
    return name or None


@contextlib.contextmanager
def bounded_http(max_retries: int, timeout: int) -> Iterator[None]:
    """MLflow's HTTP retries and timeout bounded for the block, unless the environment sets them.

    MLflow reads these variables on every request; by default it retries 7 times with
    exponential back-off and waits 120 s per request, minutes for a server that is down.
    """
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout),
    }
    added = [name for name in wanted if name not in os.environ]
    os.environ.update({name: wanted[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


class MlflowHook(BaseHook):
    """
    Talk to an MLflow tracking server: experiments, runs, batched logging.

    :param tracking_uri: the tracking server (``http://mlflow:5000``, ``databricks``...)
    :param max_retries: HTTP retries per request (MLflow's ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
        wins when set)
    :param timeout: seconds per HTTP request (``MLFLOW_HTTP_REQUEST_TIMEOUT`` wins when set)
    """

    hook_name = "MLflow (airflow-mlpipe)"

    def __init__(self, tracking_uri: str, max_retries: int = 2, timeout: int = 15) -> None:
        super().__init__()
        self.tracking_uri = tracking_uri
        password = urlsplit(tracking_uri).password
        if password:
            from airflow.sdk.log import mask_secret

            # MLflow's errors and log lines quote the URL: Airflow's masker hides the password.
            mask_secret(password)
        self.max_retries = max_retries
        self.timeout = timeout
        self._client: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tracking_uri=...)"  # the URI may carry a password

    def get_conn(self) -> Any:
        """The ``MlflowClient`` of the tracking server (and of its model registry)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _bounded(self) -> contextlib.AbstractContextManager[None]:
        return bounded_http(self.max_retries, self.timeout)

    # -- experiments and runs ----------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The id of the experiment ``name``, created if there is none."""
        from mlflow.exceptions import MlflowException

        client = self.get_conn()
        with self._bounded():
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                return str(experiment.experiment_id)
            try:
                return str(client.create_experiment(name))
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                # Another run created it at the same moment.
                return str(client.get_experiment_by_name(name).experiment_id)

    def pipeline_run(
        self,
        experiment_id: str,
        run_name: str,
        key: Mapping[str, str],
        start_time_ms: int | None = None,
    ) -> str:
        """The MLflow run of one pipeline run: a running one with the ``key`` tags, else a new one.

        A run that already ended belongs to an earlier attempt of the whole pipeline run (cleared
        and run again): MLflow does not let params change, so the new attempt gets a run of its own.
        """
        client = self.get_conn()
        condition = " and ".join(f"tags.`{name}` = {_quoted(value)}" for name, value in key.items())
        with self._bounded():
            found = client.search_runs(
                [experiment_id],
                filter_string=f"{condition} and attributes.status = '{_RUNNING}'",
                max_results=1,
                order_by=["attributes.start_time ASC"],
            )
            if found:
                return str(found[0].info.run_id)
            run = client.create_run(
                experiment_id, start_time=start_time_ms, tags=dict(key), run_name=run_name
            )
        self.log.info("Created MLflow run %s (%s) in experiment %s", run.info.run_id, run_name, experiment_id)
        return str(run.info.run_id)

    def log_batch(
        self,
        run_id: str,
        params: Mapping[str, str] = {},
        metrics: Mapping[str, float] = {},
        tags: Mapping[str, str] = {},
    ) -> int:
        """Log everything in as few ``log_batch`` requests as MLflow's limits allow; how many."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.utils.validation import (
            MAX_ENTITIES_PER_BATCH,
            MAX_METRICS_PER_BATCH,
            MAX_PARAMS_TAGS_PER_BATCH,
        )

        now = int(time.time() * 1000)
        batches = _batches(
            [Param(key, value) for key, value in params.items()],
            [Metric(key, value, now, 0) for key, value in metrics.items()],
            [RunTag(key, value) for key, value in tags.items()],
            per_kind=(MAX_PARAMS_TAGS_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH),
            total=MAX_ENTITIES_PER_BATCH,
        )
        client = self.get_conn()
        with self._bounded():
            for batch_params, batch_metrics, batch_tags in batches:
                client.log_batch(
                    run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags, synchronous=True
                )
        return len(batches)

    def end_run(self, run_id: str, status: str) -> None:
        """End the run with ``status`` (``FINISHED`` or ``FAILED``)."""
        with self._bounded():
            self.get_conn().set_terminated(run_id, status=status)

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """The run's page in MLflow's UI, for an HTTP tracking server (without credentials)."""
        from airflow_mlpipe.tracking import public_uri

        uri = public_uri(self.tracking_uri).rstrip("/")
        if not uri.startswith(("http://", "https://")):
            return None
        return f"{uri}/#/experiments/{experiment_id}/runs/{run_id}"


class MlflowRegistryHook(MlflowHook):
    """
    The MLflow Model Registry behind the interface ``registry.register_model`` uses.

    A registration logs the version's files (the upstream artifacts and ``metadata.json``) as
    artifacts of the pipeline run's MLflow run, under ``registry/<model name>/``, and creates a
    model version from them, with the same metadata as a file registry's ``metadata.json`` as
    version tags. Version numbers are MLflow's. The alias (``production``) is MLflow's registered
    model alias. A retry of the same pipeline run finds its version by the ``mlpipe.run_key`` tag
    instead of creating another.

    :param registry: ``mlflow://NAME`` (or ``mlflow://``, the model name then comes from the
        stage config or the pipeline)
    :param conn_id: unused (the server is ``[mlpipe] mlflow_tracking_uri``); accepted so that
        the hook is built like :class:`ModelRegistryHook`
    :param tracking_uri: the server; default ``[mlpipe] mlflow_tracking_uri`` / ``MLFLOW_TRACKING_URI``
    """

    hook_name = "MLflow Model Registry (airflow-mlpipe)"

    def __init__(
        self,
        registry: str,
        conn_id: str | None = None,
        tracking_uri: str | None = None,
        max_retries: int = 3,
        timeout: int = 120,
    ) -> None:
        from airflow_mlpipe import settings

        uri = tracking_uri or settings.mlflow_tracking_uri()
        if not uri:
            raise ValueError(
                f"registry '{registry}' is the MLflow Model Registry, but no tracking server is set: "
                "set [mlpipe] mlflow_tracking_uri (AIRFLOW__MLPIPE__MLFLOW_TRACKING_URI) or "
                "MLFLOW_TRACKING_URI"
            )
        super().__init__(uri, max_retries=max_retries, timeout=timeout)
        self.registry = registry.strip()
        self.conn_id = conn_id

    def model_uri(self, model_name: str) -> str:
        """The model's URI (also the URI of its Airflow Asset): ``mlflow://<model name>``."""
        return f"{SCHEME}{model_name}"

    # -- reading -----------------------------------------------------------------------------

    def list_versions(self, model_name: str) -> list[int]:
        """The model's versions that are ready, oldest first ([] for an unknown model)."""
        with self._bounded():
            versions = self.get_conn().search_model_versions(f"name = {_quoted(model_name)}")
        return sorted(int(v.version) for v in versions if str(v.status) == "READY")

    def read_metadata(self, model_name: str, version: int) -> dict[str, Any]:
        """The version's metadata (its tags decoded); FileNotFoundError for a missing one."""
        from mlflow.exceptions import MlflowException

        try:
            with self._bounded():
                model_version = self.get_conn().get_model_version(model_name, str(version))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise FileNotFoundError(f"{model_name} has no version {version} in MLflow") from None
            raise
        return _metadata(model_version)

    def read_alias(self, model_name: str, alias: str = DEFAULT_ALIAS) -> dict[str, Any] | None:
        """What ``alias`` points to (``{"version": N, "uri": ...}``), or None if it is not set."""
        from mlflow.exceptions import MlflowException

        try:
            with self._bounded():
                model_version = self.get_conn().get_model_version_by_alias(model_name, alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        version = int(model_version.version)
        return {"alias": alias, "version": version, "uri": _version_uri(model_name, version)}

    # -- registering -------------------------------------------------------------------------

    def claim_version(self, model_name: str, run_key: Mapping[str, str], max_attempts: int = 1000) -> Claim:
        """The version an earlier try of this run registered (``complete``), or a claim to create one.

        MLflow hands out version numbers when a version is created, so a new claim has number 0
        and no path until :meth:`write_version`; ``max_attempts`` is not needed here.
        """
        from mlflow.exceptions import MlflowException

        check_name(model_name, "model name")
        client = self.get_conn()
        with self._bounded():
            try:
                client.create_registered_model(model_name, tags={"mlpipe.created_by": "airflow-mlpipe"})
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            owned = client.search_model_versions(
                f"name = {_quoted(model_name)} and tags.`{RUN_KEY_TAG}` = {_quoted(_run_key_digest(run_key))}"
            )
        if owned:
            version = min(int(v.version) for v in owned)
            self.log.info("Run %s already registered version %d in MLflow", dict(run_key), version)
            return Claim(version, _version_uri(model_name, version), True)
        return Claim(0, None, False)

    def write_version(
        self,
        model_name: str,
        claim: Claim,
        artifacts: Mapping[str, str],
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Log ``artifacts`` (name -> URI) and the metadata to the pipeline run's MLflow run, then
        create a model version from them, its tags the metadata. Returns the version's metadata
        (with ``version`` and ``uri``, ``models:/<name>/<N>``)."""
        from airflow.sdk import ObjectStoragePath

        from airflow_mlpipe.tracking import run_key as tracking_run_key

        pipeline, run_id = str(metadata["pipeline"]), str(metadata["run_id"])
        environment = str(metadata.get("environment", ""))
        experiment_id = self.experiment_id(pipeline)
        mlflow_run_id = self.pipeline_run(
            experiment_id, run_id, tracking_run_key(pipeline, environment, run_id)
        )
        artifact_path = f"registry/{model_name}"
        copied: dict[str, str] = {}
        record: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="mlpipe-mlflow-") as folder:
            root = Path(folder)
            for name, uri in artifacts.items():
                source = ObjectStoragePath(uri)
                relative = f"{check_name(name, 'artifact name')}{source.suffix}"
                _copy_to_local(source, root / relative)
                copied[name] = relative
            record = {
                **metadata,
                "model_name": model_name,
                "artifacts": copied,
                "source_artifacts": dict(artifacts),
                "created_at": _now(),
                "mlflow_run_id": mlflow_run_id,
            }
            (root / "metadata.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
            client = self.get_conn()
            with self._bounded():
                client.log_artifacts(mlflow_run_id, str(root), artifact_path=artifact_path)
                source_uri = f"{client.get_run(mlflow_run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
                tags = {**_version_tags(record), RUN_KEY_TAG: _run_key_digest(_key_of(metadata))}
                model_version = client.create_model_version(
                    model_name,
                    source_uri,
                    run_id=mlflow_run_id,
                    tags=tags,
                    description=f"{pipeline} {metadata.get('pipeline_version', '')}, run {run_id}",
                )
        version = int(model_version.version)
        self.log.info("Created version %d of %s in MLflow from %s", version, model_name, source_uri)
        return {**record, "version": version, "uri": _version_uri(model_name, version), "source": source_uri}

    def promote(
        self, model_name: str, alias: str, version: int, details: Mapping[str, Any] | None = None
    ) -> bool:
        """Point ``alias`` at ``version`` unless it already names a newer one; whether it moved."""
        current = self.read_alias(model_name, alias)
        if current is not None and current["version"] > version:
            self.log.info(
                "Not promoting: %s already points to the newer version %s", alias, current["version"]
            )
            return False
        with self._bounded():
            self.get_conn().set_registered_model_alias(model_name, alias, str(version))
        self.log.info("Promoted: %s of %s now points to version %d", alias, model_name, version)
        return True


def _batches(
    params: Sequence[Any],
    metrics: Sequence[Any],
    tags: Sequence[Any],
    per_kind: tuple[int, int, int],
    total: int,
) -> list[tuple[list[Any], list[Any], list[Any]]]:
    """Split params, metrics and tags into ``log_batch`` calls within MLflow's per-request limits."""
    queues = [list(params), list(metrics), list(tags)]
    batches: list[tuple[list[Any], list[Any], list[Any]]] = []
    while True:
        room = total
        batch: list[list[Any]] = []
        for queue, limit in zip(queues, per_kind, strict=True):
            take = min(limit, room, len(queue))
            batch.append(queue[:take])
            del queue[:take]
            room -= take
        batches.append((batch[0], batch[1], batch[2]))
        if not any(queues):
            return batches


def _quoted(value: str) -> str:
    """A string literal for MLflow's search filters."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _run_key_digest(run_key: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(run_key), sort_keys=True).encode()).hexdigest()[:32]


def _key_of(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The run key ``registry.register_model`` claims with (pipeline and run id)."""
    return {"pipeline": str(metadata["pipeline"]), "run_id": str(metadata["run_id"])}


def _version_uri(model_name: str, version: int) -> str:
    return f"models:/{model_name}/{version}"


def _version_tags(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The metadata as version tags: strings as they are, everything else as JSON."""
    tags = {}
    for name, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, str) and name not in _JSON_FIELDS:
            tags[name] = value
        else:
            tags[name] = json.dumps(value, sort_keys=True, default=str)
    return tags


def _metadata(model_version: Any) -> dict[str, Any]:
    """A version's tags decoded back into the file registry's metadata shape."""
    metadata: dict[str, Any] = {}
    for name, value in (model_version.tags or {}).items():
        if name == RUN_KEY_TAG:
            continue
        if name in _JSON_FIELDS:
            try:
                metadata[name] = json.loads(value)
                continue
            except ValueError:
                pass
        metadata[name] = value
    version = int(model_version.version)
    metadata.update(
        {
            "model_name": model_version.name,
            "version": version,
            "uri": _version_uri(model_version.name, version),
            "source": model_version.source,
            "mlflow_run_id": model_version.run_id,
        }
    )
    if "created_at" not in metadata and model_version.creation_timestamp:
        created = datetime.datetime.fromtimestamp(
            model_version.creation_timestamp / 1000, datetime.timezone.utc
        )
        metadata["created_at"] = created.isoformat()
    return metadata


def _copy_to_local(source: Any, target: Path) -> None:
    """Copy a file or folder tree from any ObjectStoragePath to a local path, streaming."""
    import shutil

    if source.is_dir():
        for child in source.rglob("*"):
            if child.is_file():
                _copy_to_local(child, target / str(child.relative_to(source)))
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as reader, target.open("wb") as writer:
        shutil.copyfileobj(reader, writer, length=8 * 1024 * 1024)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


__all__ = [
    "RUN_KEY_TAG",
    "MlflowHook",
    "MlflowRegistryHook",
    "bounded_http",
    "is_mlflow_registry",
    "registered_model_name",
]
