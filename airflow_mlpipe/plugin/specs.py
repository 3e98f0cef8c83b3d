"""Pipeline specs and model registries, as the page shows them.

Specs are read with the one loader (:func:`airflow_mlpipe.spec.load_folder`) from
``<[core] dags_folder>/pipelines``, the layout the README prescribes, for the api-server's
``[mlpipe] environment``. Reading YAML and importing component modules (whose heavy imports
live inside ``run``) is all it does; the result is reused until a spec file changes.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from airflow_mlpipe.spec import FolderResult, Pipeline, load_folder

SPEC_SUBFOLDER = "pipelines"
REGISTRY_COMPONENT = "registry.register_model"
#: Registry versions listed per model (the newest ones).
MAX_VERSIONS = 25

_VERSION_URI = re.compile(r"^(?P<root>.+)/versions/(?P<version>\d+)/?$")
_CONN_IN_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<conn_id>[^/@]+)@(?P<rest>.*)$")
_cache_lock = threading.Lock()
_cache: dict[tuple[str, str], tuple[Any, FolderResult]] = {}


def spec_folder() -> Path:
    """Where the specs live: ``pipelines/`` in Airflow's dags folder."""
    from airflow.configuration import conf

    return Path(os.path.expanduser(conf.get("core", "dags_folder"))) / SPEC_SUBFOLDER


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for directory, subdirectories, filenames in os.walk(folder):
        subdirectories.sort()
        for filename in sorted(filenames):
            if filename.endswith((".yaml", ".yml")):
                stat = os.stat(os.path.join(directory, filename))
                entries.append((os.path.join(directory, filename), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


def load_specs(folder: Path | None = None, environment: str | None = None) -> FolderResult:
    """Every spec of the folder for ``environment``; cached until a spec file changes."""
    from airflow_mlpipe import settings

    folder = folder or spec_folder()
    environment = environment or settings.environment()
    key = (str(folder), environment)
    signature = _signature(folder)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
    result = load_folder(folder, environment)
    with _cache_lock:
        _cache[key] = (signature, result)
    return result


def summary(pipeline: Pipeline) -> dict[str, Any]:
    """What the page shows about a valid spec."""
    metadata = pipeline.metadata
    return {
        "name": pipeline.name,
        "valid": True,
        "version": pipeline.version,
        "config_version": pipeline.config_version,
        "environment": pipeline.environment,
        "schedule": metadata.schedule,
        "owners": [metadata.owner],
        "description": metadata.description,
        "tags": list(metadata.tags),
        "notify_on_failure": [str(address) for address in metadata.notify_on_failure],
        "stages": [
            {"name": stage.name, "component": stage.component, "dependencies": list(stage.dependencies)}
            for stage in pipeline.stages
        ],
        "thresholds": thresholds(pipeline),
        "problems": [],
    }


def invalid_summary(name: str, problems: list[str]) -> dict[str, Any]:
    """What the page shows about a spec that failed validation (its DAG is a placeholder)."""
    return {
        "name": name,
        "valid": False,
        "version": None,
        "config_version": None,
        "environment": None,
        "schedule": None,
        "owners": [],
        "description": "",
        "tags": [],
        "notify_on_failure": [],
        "stages": [],
        "thresholds": {},
        "problems": problems,
    }


def thresholds(pipeline: Pipeline) -> dict[str, float]:
    """Metric thresholds written in the spec (``config.thresholds`` of any stage)."""
    found: dict[str, float] = {}
    for stage in pipeline.stages:
        values = stage.config.get("thresholds")
        if isinstance(values, dict):
            found.update({str(k): float(v) for k, v in values.items() if isinstance(v, int | float)})
    return found


def registry_locations(pipeline: Pipeline | None, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The models a pipeline registers: from its spec, and from where its recent runs registered.

    A run may register elsewhere than the spec says (a trigger-time override of ``registry``), so
    the version URIs in recent records count too. Returns ``{"registry", "model_name", "alias",
    "conn_id"}`` per model, deduplicated.
    """
    stages: dict[str, dict[str, Any]] = {}
    locations: dict[str, dict[str, Any]] = {}
    if pipeline is not None:
        for stage in pipeline.stages:
            if stage.component != REGISTRY_COMPONENT:
                continue
            config = stage.config
            settings = {"alias": config.get("alias") or "production", "conn_id": config.get("conn_id")}
            stages[stage.name] = settings
            registry = config.get("registry")
            model_name = config.get("model_name") or pipeline.name
            if isinstance(registry, str) and "{{" not in registry and "{{" not in str(model_name):
                registry = f"file://{registry}" if registry.startswith("/") else registry
                root = f"{registry.rstrip('/')}/{model_name}"
                locations.setdefault(root, {"registry": registry, "model_name": model_name, **settings})
    for entry in entries:
        outputs = (entry.get("record") or {}).get("outputs") or {}
        for stage_name, settings in stages.items():
            uri = ((outputs.get(stage_name) or {}).get("artifacts") or {}).get("version")
            match = _VERSION_URI.match(uri) if isinstance(uri, str) else None
            if match:
                root, conn_id = _split_conn_id(match["root"])
                registry, _, model_name = root.rpartition("/")
                found = {"registry": registry, "model_name": model_name, **settings}
                locations.setdefault(root, {**found, "conn_id": conn_id or settings["conn_id"]})
    return list(locations.values())


def _split_conn_id(uri: str) -> tuple[str, str | None]:
    """``s3://conn@bucket/key`` (how ObjectStoragePath prints a path with a connection) -> URI, conn."""
    match = _CONN_IN_URI.match(uri)
    if match is None:
        return uri, None
    return f"{match['scheme']}://{match['rest']}", match["conn_id"]


def read_registry(location: dict[str, Any]) -> dict[str, Any]:
    """The complete versions of one model (newest first) and what its alias points to."""
    from airflow_mlpipe.components.registry.register_model import list_versions, read_alias, read_metadata

    registry, model_name = location["registry"], location["model_name"]
    conn_id, alias = location.get("conn_id"), location["alias"]
    result: dict[str, Any] = {
        "uri": f"{registry.rstrip('/')}/{model_name}",
        "model_name": model_name,
        "alias": alias,
        "alias_version": None,
        "versions": [],
        "total_versions": 0,
        "error": None,
    }
    try:
        numbers = list_versions(registry, model_name, conn_id)
        pointer = read_alias(registry, model_name, alias, conn_id)
        result["alias_version"] = pointer.get("version") if pointer else None
        result["total_versions"] = len(numbers)
        for number in reversed(numbers[-MAX_VERSIONS:]):
            metadata = read_metadata(registry, model_name, number, conn_id)
            result["versions"].append(
                {
                    "version": number,
                    "uri": metadata.get("uri"),
                    "created_at": metadata.get("created_at"),
                    "run_id": metadata.get("run_id"),
                    "pipeline_version": metadata.get("pipeline_version"),
                    "config_version": metadata.get("config_version"),
                    "git_commit": metadata.get("git_commit"),
                    "metrics": metadata.get("metrics") or {},
                    "thresholds": metadata.get("thresholds") or {},
                }
            )
    except Exception as exc:  # an unreachable store must not break the page
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
    return result
