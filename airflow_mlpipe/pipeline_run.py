"""What the tasks of a pipeline run share: the pipeline they belong to and the run's conf.

The factory builds tasks with these, and both operators (the stages' ``ComponentOperator`` and
the ``ExecutionRecordOperator``) read them; neither operator imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The run conf key (and DAG param) holding trigger-time config overrides per stage.
OVERRIDES_PARAM = "overrides"
#: The XCom key under which a failed stage leaves its error for the record and the e-mail.
ERROR_XCOM_KEY = "mlpipe_error"


@dataclass(frozen=True)
class PipelineRef:
    """What a task needs to know about the pipeline it belongs to."""

    name: str
    version: str
    config_version: str
    environment: str
    sources: tuple[str, ...]


def stage_overrides(conf: Mapping[str, Any] | None, stage: str, stages: Sequence[str]) -> dict[str, Any]:
    """The trigger-time config overrides for ``stage`` from the run's ``conf``.

    A run triggered with ``{"overrides": {"train": {"epochs": 5}}}`` runs ``train`` with
    ``epochs: 5``. Overrides naming a stage the pipeline does not have fail the run rather than
    being silently ignored.
    """
    overrides = (conf or {}).get(OVERRIDES_PARAM) or {}
    if not isinstance(overrides, Mapping):
        raise ValueError(f"'{OVERRIDES_PARAM}' in the run's conf must map stage names to config overrides")
    unknown = sorted(set(overrides) - set(stages))
    if unknown:
        raise ValueError(f"'{OVERRIDES_PARAM}' names unknown stages {unknown}; stages are {list(stages)}")
    stage_override = overrides.get(stage) or {}
    if not isinstance(stage_override, Mapping):
        raise ValueError(f"'{OVERRIDES_PARAM}.{stage}' must be a mapping of config keys to values")
    return dict(stage_override)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it; nested mappings merge, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def resolve_git_commit(context: Mapping[str, Any], sources: Sequence[str]) -> str:
    """The DAG bundle's version when the bundle has one (GitDagBundle), else the spec's repo HEAD."""
    from airflow_mlpipe.git import UNKNOWN, head_commit

    bundle = getattr(context.get("ti"), "bundle_instance", None)
    version = getattr(bundle, "version", None)
    if version:
        return str(version)
    for source in sources:
        commit = head_commit(source)
        if commit:
            return commit
    return UNKNOWN
