"""The human approval gate before a stage: its task, its request, and the decision in the record.

A stage with ``approval: {required: true, timeout: 3d}`` gets a task ``<stage>.approval`` (a
:class:`~airflow_mlpipe.operators.approval.StageApprovalOperator`, Airflow's human-in-the-loop
``ApprovalOperator``) between its dependencies and itself. The task asks, in the Airflow UI's
Required Actions and through the REST API's ``hitlDetails``, whether the stage may run, showing
the pipeline, version, run and the upstream stages' metrics against their thresholds. Approve:
the stage runs. Reject, or no answer within ``timeout``: the stage and every stage after it are
skipped, and the execution record says who decided and when (``approvals``).

Pure functions and models; the operator lives in :mod:`airflow_mlpipe.operators.approval`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

#: Appended to a stage name for its approval task; stage names hold no dots, so it never collides.
APPROVAL_TASK_SUFFIX = ".approval"
#: The XCom key of an approval task's decision.
DECISION_XCOM_KEY = "mlpipe_approval"
_THRESHOLD = "threshold."
_PASSED = "passed."


class ApprovalDecision(BaseModel):
    """What the person asked decided about a gated stage (the record's ``approvals[stage]``)."""

    model_config = ConfigDict(extra="forbid")

    approved: bool
    by: str | None = Field(None, description="the user who answered; None when the request timed out")
    at: AwareDatetime | None = Field(None, description="when the answer (or the timeout) came")
    timed_out: bool = Field(False, description="nobody answered within the stage's approval timeout")


def approval_task_id(stage: str) -> str:
    return f"{stage}{APPROVAL_TASK_SUFFIX}"


def is_approval_task(task_id: str) -> bool:
    return task_id.endswith(APPROVAL_TASK_SUFFIX)


def decision_from_response(response: Mapping[str, Any], approve_option: str) -> ApprovalDecision:
    """The decision in a human-in-the-loop response event (``chosen_options``, ``responded_at``...)."""
    user = response.get("responded_by_user")
    name = (user.get("name") or user.get("id")) if isinstance(user, Mapping) else user
    responded_at = response.get("responded_at")
    if isinstance(responded_at, str):
        responded_at = datetime.fromisoformat(responded_at)
    return ApprovalDecision(
        approved=approve_option in (response.get("chosen_options") or ()),
        by=str(name) if name else None,
        at=responded_at,
        timed_out=bool(response.get("timedout")),
    )


def request_subject(pipeline: str, version: str, stage: str) -> str:
    return f"Approve stage '{stage}' of {pipeline} {version}?"


def request_body(
    *,
    pipeline: str,
    version: str,
    config_version: str,
    environment: str,
    run_id: str,
    stage: str,
    component: str,
    upstream: Mapping[str, Mapping[str, Any]],
    timeout: str | None,
) -> str:
    """The request's Markdown: the run, and each upstream stage's metrics against its thresholds.

    ``upstream`` maps each upstream stage to its XCom (``metrics`` and the resolved ``config``).
    A metric has a threshold when the stage reported ``threshold.<metric>`` (as
    ``evaluation.recommender`` does) or its config has ``thresholds: {<metric>: value}``.
    """
    lines = [
        f"Stage **{stage}** (`{component}`) of pipeline **{pipeline}** waits for approval before it runs.",
        "",
        "| | |",
        "| --- | --- |",
        f"| pipeline | `{pipeline}` |",
        f"| version | `{version}` |",
        f"| config version | `{config_version}` |",
        f"| environment | `{environment}` |",
        f"| run | `{run_id}` |",
        "",
    ]
    rows = [row for name, result in upstream.items() for row in _metric_rows(name, result)]
    if rows:
        lines += [
            "| stage | metric | value | threshold | result |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    else:
        lines += ["The upstream stages reported no metrics.", ""]
    lines.append(
        "**Approve** runs the stage; **Reject** skips it and every stage after it."
        + (f" No answer within {timeout} rejects." if timeout else "")
    )
    return "\n".join(lines)


def _metric_rows(stage: str, result: Mapping[str, Any]) -> list[str]:
    metrics = result.get("metrics") or {}
    config = result.get("config") or {}
    thresholds = config.get("thresholds")
    configured: Mapping[str, Any] = thresholds if isinstance(thresholds, Mapping) else {}
    rows = []
    for name, value in sorted(metrics.items()):
        if name.startswith((_THRESHOLD, _PASSED)):
            continue  # shown beside their metric
        threshold = metrics.get(f"{_THRESHOLD}{name}", configured.get(name))
        passed = metrics.get(f"{_PASSED}{name}")
        if passed is None and _is_number(threshold) and _is_number(value):
            passed = value >= threshold
        result_text = "-" if passed is None else ("PASS" if passed else "**FAIL**")
        rows.append(
            f"| {stage} | {name} | {_number(value)} | "
            f"{'-' if threshold is None else _number(threshold)} | {result_text} |"
        )
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def recorded_decisions(ti: Any, stages: list[str], task_ids: set[str]) -> dict[str, ApprovalDecision]:
    """Each gated stage's decision, from its approval task's XCom (absent while none was made)."""
    decisions = {}
    for stage in stages:
        task_id = approval_task_id(stage)
        if task_id not in task_ids:
            continue
        value = ti.xcom_pull(task_ids=task_id, key=DECISION_XCOM_KEY)
        if isinstance(value, Mapping):
            decisions[stage] = ApprovalDecision.model_validate(value)
    return decisions


def declined_stages(dag: Any, decisions: Mapping[str, ApprovalDecision]) -> set[str]:
    """The stages a rejection (or timeout) skipped: each declined stage and everything after it."""
    declined: set[str] = set()
    for stage, decision in decisions.items():
        if not decision.approved:
            declined |= {stage, *dag.get_task(stage).get_flat_relative_ids(upstream=False)}
    return declined
