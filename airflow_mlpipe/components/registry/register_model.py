"""Register the evaluated model as a new immutable version in a file, object-store or MLflow registry.

The registry itself (layout, how version numbers are claimed, how the alias moves) is
:class:`airflow_mlpipe.hooks.model_registry.ModelRegistryHook`; this component claims a
version for the run (or finds the one an earlier try of the same run claimed), copies the
upstream artifacts into it with the run's provenance and metrics, and moves the alias when
``promote_if`` holds: ``all_metrics_passed`` (the upstream metric of ``evaluation.recommender``
is 1.0), ``always`` or ``never``. The alias never moves back to an older version. The stage
updates the Airflow Asset ``<registry>/<model_name>`` with ``{"version", "metrics",
"promoted"}`` as event extra.

None of the fields can be overridden at trigger time: where models go, under which name, and
when they are promoted is the spec author's decision.

Artifacts: ``version`` (URI of the version folder). Metrics: ``version``, ``promoted``,
``reused`` (1.0 when a retry found this run's version already registered).

``registry: "mlflow://NAME"`` registers in the MLflow Model Registry of ``[mlpipe]
mlflow_tracking_uri`` instead (:class:`airflow_mlpipe.hooks.mlflow.MlflowRegistryHook`): the
registered model ``NAME`` (a bare ``mlflow://`` takes ``model_name``, default the pipeline), a
new MLflow model version per registration, the alias an MLflow alias. The artifact ``version``
is then ``models:/NAME/N`` and the Asset ``mlflow://NAME``.

When the upstream ``model`` artifact is a built-in model (``components/_model_artifact.py``), the
version's metadata says which kind it is and how to score it: ``model_kind`` (``als`` or
``ease``) and ``model_manifest`` (the artifact's manifest; an artifact from before manifests is
an ``als`` model). Other artifacts are registered as they are, without these fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_mlpipe.contract import Produces, Requires

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from airflow_mlpipe.contract import ComponentContext
    from airflow_mlpipe.hooks.mlflow import MlflowRegistryHook
    from airflow_mlpipe.hooks.model_registry import ModelRegistryHook

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # the hook's NAME_PATTERN (Config imports no Airflow)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MLFLOW = "mlflow://"  # the MLflow hook's SCHEME (Config imports no Airflow)


class Config(BaseModel):
    """Configuration of ``registry.register_model``."""

    model_config = ConfigDict(extra="forbid")

    registry: str = Field(
        description="Registry root URI, e.g. file:///srv/models or s3://models/acme/ (an absolute path means "
        "file://), or mlflow://NAME for the MLflow Model Registry of [mlpipe] mlflow_tracking_uri"
    )
    model_name: str | None = Field(
        default=None, description="Name of the model in the registry; default the pipeline name"
    )
    promote_if: Literal["all_metrics_passed", "always", "never"] = Field(
        default="all_metrics_passed",
        description="When to point the alias at the new version: all_metrics_passed, always or never",
    )
    alias: str = Field(default="production", description="Alias that promotion moves")
    conn_id: str | None = Field(
        default=None, description="Airflow connection for the registry's object store (e.g. aws_default)"
    )
    artifacts: list[str] | None = Field(
        default=None, description="Upstream artifacts to copy into the version; default all of them"
    )
    max_claim_attempts: int = Field(
        default=1000, gt=0, description="Version numbers to try before giving up under heavy contention"
    )

    @field_validator("registry")
    @classmethod
    def _registry_uri(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("/"):
            return f"file://{value}"
        if not _SCHEME.match(value):
            raise ValueError(f"'{value}' is not a URI; write e.g. file:///srv/models or s3://bucket/models")
        return value

    @field_validator("model_name", "alias")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                f"'{value}' must be letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _mlflow_registry(self) -> Config:
        if not self.registry.lower().startswith(_MLFLOW):
            return self
        uri_name = _mlflow_model_name(self.registry)
        if uri_name is not None and not _NAME.match(uri_name):
            raise ValueError(
                f"registry: MLflow model name '{uri_name}' must be letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if uri_name and self.model_name and uri_name != self.model_name:
            raise ValueError(
                f"registry '{self.registry}' names the model '{uri_name}' but model_name is "
                f"'{self.model_name}'; give the name once"
            )
        if self.conn_id:
            raise ValueError(
                "conn_id is not used by an mlflow:// registry: the server is [mlpipe] mlflow_tracking_uri"
            )
        return self


# Registering is a side effect: a cached stage would register nothing.
cache = "never"
produces = Produces(artifacts=("version",), metrics=("version", "promoted", "reused"))


def requires(config: Config) -> Requires:
    """The upstream artifacts copied into the version: those ``artifacts`` names (default: all)."""
    return Requires(artifacts=tuple(config.artifacts or ()))


def registered_model_name(config: Config, pipeline: str) -> str:
    """The registered model's name: an ``mlflow://NAME``'s, else ``model_name``, else the pipeline's."""
    if config.registry.lower().startswith(_MLFLOW):
        return _mlflow_model_name(config.registry) or config.model_name or pipeline
    return config.model_name or pipeline


def model_uri(config: Config, pipeline: str) -> str:
    """The URI of the model's folder in the registry (also the URI of its Airflow Asset)."""
    if config.registry.lower().startswith(_MLFLOW):
        return f"{_MLFLOW}{registered_model_name(config, pipeline)}"
    return f"{config.registry.rstrip('/')}/{registered_model_name(config, pipeline)}"


def assets(config: Config, pipeline: str) -> list[Asset]:
    """The model's Asset, updated by every registration (declared at parse time, no I/O)."""
    from airflow.sdk import Asset

    uri = model_uri(config, pipeline)
    return [Asset(uri=uri, name=uri, group="model")]


def hook(config: Config) -> ModelRegistryHook | MlflowRegistryHook:
    """The registry the config names (by its scheme)."""
    from airflow_mlpipe.hooks import registry_hook

    return registry_hook(config.registry, conn_id=config.conn_id)


def run(config: Config, context: ComponentContext) -> Mapping[str, Any]:
    """Claim a version (or find this run's), copy artifacts, write metadata, complete, maybe promote."""
    log = context.log
    name = registered_model_name(config, context.pipeline)
    if not _NAME.match(name):
        raise ValueError(f"the pipeline name '{name}' cannot be a model name; set model_name")
    upstream = context.input()
    if config.promote_if == "all_metrics_passed" and "all_metrics_passed" not in upstream.metrics:
        raise ValueError(
            "promote_if is all_metrics_passed but the upstream stage has no 'all_metrics_passed' metric; "
            "register the output of evaluation.recommender, or set promote_if to always or never"
        )
    selected = _selected_artifacts(config, upstream.artifacts)
    registry = hook(config)
    log.info("Registering %s (%s) from run %s", name, registry.model_uri(name), context.run_id)

    run_key = {"pipeline": context.pipeline, "run_id": context.run_id}
    claim = registry.claim_version(name, run_key, config.max_claim_attempts)
    if claim.complete:
        log.info("Run %s already registered version %d; not creating another", context.run_id, claim.version)
        metadata = registry.read_metadata(name, claim.version)
    else:
        provenance = {**_provenance(context, upstream.metrics), **_model_description(selected)}
        metadata = registry.write_version(name, claim, selected, provenance)
    # The version's own record: an MLflow registry numbers a version only when it creates it.
    version, version_uri = int(metadata["version"]), str(metadata["uri"])

    promote = {
        "always": True,
        "never": False,
        "all_metrics_passed": upstream.metrics.get("all_metrics_passed") == 1.0,
    }[config.promote_if]
    if promote:
        promote = registry.promote(name, config.alias, version, details=run_key)
    else:
        log.info("Not promoted (promote_if=%s); %s unchanged", config.promote_if, config.alias)

    if context.outlet_events is not None:
        for asset in assets(config, context.pipeline):
            context.outlet_events[asset].extra = {
                "version": version,
                "metrics": metadata.get("metrics", {}),
                "promoted": promote,
            }
    return {
        "artifacts": {"version": version_uri},
        "metrics": {"version": version, "promoted": float(promote), "reused": float(claim.complete)},
    }


# -- reading the registry (shortcuts to the hook's read API) ----------------------------------


def list_versions(registry: str, model_name: str, conn_id: str | None = None) -> list[int]:
    """Complete versions of ``model_name``, oldest first: the registry hook's ``list_versions``."""
    from airflow_mlpipe.hooks import registry_hook

    return registry_hook(registry, conn_id=conn_id).list_versions(model_name)


def read_metadata(registry: str, model_name: str, version: int, conn_id: str | None = None) -> dict[str, Any]:
    """The metadata of a complete version: the registry hook's ``read_metadata``."""
    from airflow_mlpipe.hooks import registry_hook

    return registry_hook(registry, conn_id=conn_id).read_metadata(model_name, version)


def read_alias(
    registry: str, model_name: str, alias: str = "production", conn_id: str | None = None
) -> dict[str, Any] | None:
    """What ``alias`` points to, or None: the registry hook's ``read_alias``."""
    from airflow_mlpipe.hooks import registry_hook

    return registry_hook(registry, conn_id=conn_id).read_alias(model_name, alias)


def _mlflow_model_name(registry: str) -> str | None:
    return registry.strip()[len(_MLFLOW) :].strip("/") or None


def _provenance(context: ComponentContext, metrics: Mapping[str, float]) -> dict[str, Any]:
    """What the version's metadata says about where it came from and how good it is."""
    return {
        "pipeline": context.pipeline,
        "pipeline_version": context.pipeline_version,
        "config_version": context.config_version,
        "environment": context.environment,
        "git_commit": context.git_commit,
        "run_id": context.run_id,
        "stage": context.stage,
        "metrics": dict(metrics),
        "thresholds": {
            name.removeprefix("threshold."): value
            for name, value in metrics.items()
            if name.startswith("threshold.")
        },
    }


def _model_description(artifacts: Mapping[str, str]) -> dict[str, Any]:
    """``model_kind`` and ``model_manifest`` of a built-in ``model`` artifact; nothing for another file."""
    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.components._model_artifact import read_manifest

    if "model" not in artifacts:
        return {}
    path = ObjectStoragePath(artifacts["model"])
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        try:
            manifest = read_manifest(handle)
        except ValueError:  # not an .npz model of a built-in: register it as it is
            return {}
    return {"model_kind": manifest.get("kind"), "model_manifest": manifest}


def _selected_artifacts(config: Config, artifacts: Mapping[str, str]) -> dict[str, str]:
    if config.artifacts is None:
        selected = dict(artifacts)
    else:
        missing = [name for name in config.artifacts if name not in artifacts]
        if missing:
            raise ValueError(
                f"the upstream stage has no artifact(s) {missing} (it has: {', '.join(artifacts) or 'none'})"
            )
        selected = {name: artifacts[name] for name in config.artifacts}
    if not selected:
        raise ValueError("the upstream stage passed no artifacts: there is no model to register")
    for name in selected:
        if not _NAME.match(name):
            raise ValueError(f"artifact name '{name}' cannot be a file name in the registry")
    return selected
