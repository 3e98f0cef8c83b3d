"""Two execution records side by side: what changed between runs, stage by stage.

Pure functions over records as stored (the ``execution_record`` XCom), shared by ``mlpipe diff``,
the ML Pipelines page's compare view and a replay's ``replay_matches``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: Metric values closer than this count as equal (JSON round trips of floats).
METRIC_TOLERANCE = 1e-12


def compare_records(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """How run ``b`` differs from run ``a``.

    Returns ``{"runs": [a_id, b_id], "config_version": [a, b], "stages": [...], "same": bool}``;
    each stage entry has ``stage``, ``status`` (``[a, b]``: ``computed``, ``cached``, ``failed``,
    ``skipped`` or ``absent``), ``config`` (``[{"key", "a", "b"}]`` for every differing
    leaf), ``artifacts`` (``[{"name", "a", "b", "same"}]`` by content digest), ``metrics``
    (``[{"name", "a", "b", "delta"}]`` for every metric, ``delta`` ``b - a`` where both exist)
    and ``same`` (config, digests and metrics all equal).
    """
    stages = _stage_order(a, b)
    entries = [_compare_stage(stage, a, b) for stage in stages]
    return {
        "runs": [a.get("execution_id"), b.get("execution_id")],
        "config_version": [a.get("config_version"), b.get("config_version")],
        "stages": entries,
        "same": all(entry["same"] for entry in entries),
    }


def output_differences(original: Mapping[str, Any], replay: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics and artifact digests in which ``replay`` differs from ``original``, by stage."""
    differences: dict[str, Any] = {}
    for entry in compare_records(original, replay)["stages"]:
        metrics = [m for m in entry["metrics"] if not _equal(m["a"], m["b"])]
        artifacts = [artifact for artifact in entry["artifacts"] if not artifact["same"]]
        if metrics or artifacts:
            differences[entry["stage"]] = {"metrics": metrics, "artifacts": artifacts}
    return differences


def _stage_order(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for record in (a, b):
        for key in ("stages_completed", "stages_failed", "stages_skipped"):
            for stage in record.get(key) or []:
                seen.setdefault(stage, None)
    return list(seen)


def _status(record: Mapping[str, Any], stage: str) -> str:
    if stage in (record.get("stages_cached") or []):
        return "cached"
    if stage in (record.get("stages_completed") or []):
        return "computed"
    if stage in (record.get("stages_failed") or []):
        return "failed"
    if stage in (record.get("stages_skipped") or []):
        return "skipped"
    return "absent"


def _compare_stage(stage: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    config_a = (a.get("configs") or {}).get(stage, {})
    config_b = (b.get("configs") or {}).get(stage, {})
    flat_a, flat_b = dict(_leaves(config_a)), dict(_leaves(config_b))
    config = [
        {"key": key, "a": flat_a.get(key), "b": flat_b.get(key)}
        for key in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(key, _MISSING) != flat_b.get(key, _MISSING)
    ]
    outputs_a = (a.get("outputs") or {}).get(stage) or {}
    outputs_b = (b.get("outputs") or {}).get(stage) or {}
    digests_a, digests_b = outputs_a.get("digests") or {}, outputs_b.get("digests") or {}
    artifacts = [
        {
            "name": name,
            "a": digests_a.get(name),
            "b": digests_b.get(name),
            "same": digests_a.get(name) is not None and digests_a.get(name) == digests_b.get(name),
        }
        for name in sorted(set(outputs_a.get("artifacts") or {}) | set(outputs_b.get("artifacts") or {}))
    ]
    metrics_a, metrics_b = outputs_a.get("metrics") or {}, outputs_b.get("metrics") or {}
    metrics = [
        {
            "name": name,
            "a": metrics_a.get(name),
            "b": metrics_b.get(name),
            "delta": _delta(metrics_a.get(name), metrics_b.get(name)),
        }
        for name in sorted(set(metrics_a) | set(metrics_b))
    ]
    same = (
        not config
        and all(artifact["same"] for artifact in artifacts)
        and all(_equal(metric["a"], metric["b"]) for metric in metrics)
    )
    return {
        "stage": stage,
        "status": [_status(a, stage), _status(b, stage)],
        "config": config,
        "artifacts": artifacts,
        "metrics": metrics,
        "same": same,
    }


_MISSING = object()


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.key, value)`` for every leaf of a config; lists are leaves."""
    if isinstance(value, Mapping) and value:
        for key, child in value.items():
            yield from _leaves(child, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix, value


def _delta(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(b) - float(a)
    return None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= METRIC_TOLERANCE * max(1.0, abs(float(a)))
    return bool(a == b)
