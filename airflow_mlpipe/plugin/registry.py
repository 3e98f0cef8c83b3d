"""A pipeline's model registries, read through :class:`ModelRegistryHook`'s read API.

Only the locations a pipeline's current spec names (its serialized DAG's register stages) are
read: a location written in an execution record is a claim by whoever could write that record,
and reading it would let the page probe any store the api-server can reach.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: Registry versions listed per model (the newest ones).
MAX_VERSIONS = 25
#: Fields of a version's metadata the page shows.
VERSION_FIELDS = ("uri", "created_at", "run_id", "pipeline_version", "config_version", "git_commit")


def version_entry(number: int, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """One version as the API returns it: its number, provenance, metrics and thresholds."""
    entry: dict[str, Any] = {"version": number}
    entry.update({name: metadata.get(name) for name in VERSION_FIELDS})
    entry["metrics"] = dict(metadata.get("metrics") or {})
    entry["thresholds"] = dict(metadata.get("thresholds") or {})
    return entry


def read_registry(
    location: Mapping[str, Any], hook_factory: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """The complete versions of one model (newest first, at most :data:`MAX_VERSIONS`) and what its
    alias points to; ``error`` says why they could not be read (an unreachable store must not
    break the page)."""
    result: dict[str, Any] = {
        "uri": location["uri"],
        "model_name": location["model_name"],
        "alias": location["alias"],
        "alias_version": None,
        "versions": [],
        "total_versions": 0,
        "error": None,
    }
    if location.get("templated"):
        result["error"] = "the spec's registry settings are templates, rendered only when the stage runs"
        return result
    if hook_factory is None:
        from airflow_mlpipe.hooks import registry_hook

        hook_factory = registry_hook
    try:
        hook = hook_factory(location["registry"], conn_id=location.get("conn_id"))
        model_name = location["model_name"]
        numbers = hook.list_versions(model_name)
        pointer = hook.read_alias(model_name, location["alias"])
        result["alias_version"] = pointer.get("version") if pointer else None
        result["total_versions"] = len(numbers)
        result["versions"] = [
            version_entry(number, hook.read_metadata(model_name, number))
            for number in reversed(numbers[-MAX_VERSIONS:])
        ]
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
    return result
