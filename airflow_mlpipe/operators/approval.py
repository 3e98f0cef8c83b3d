"""``StageApprovalOperator``: Airflow's ``ApprovalOperator`` in front of a gated pipeline stage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from airflow_mlpipe.approvals import DECISION_XCOM_KEY, decision_from_response, request_body, request_subject
from airflow_mlpipe.pipeline_run import PipelineRef

if TYPE_CHECKING:
    from airflow.sdk import Context


class StageApprovalOperator(ApprovalOperator):
    """
    Ask a person whether a stage may run; reject (or a timeout) skips it and what follows.

    The request is written when the task runs, so it can show the upstream stages' metrics of
    this run. The task then waits in Airflow's ``awaiting_input`` state (no worker slot, no
    triggerer) until someone answers in the UI or through the REST API, or ``response_timeout``
    passes: then the default, ``Reject``, applies. It pushes the decision
    (:class:`~airflow_mlpipe.approvals.ApprovalDecision`) as the XCom ``mlpipe_approval``, which
    the execution record reads.

    :param stage: the gated stage (this task's only downstream)
    :param component: the gated stage's component, shown in the request
    :param pipeline: the pipeline the stage belongs to
    :param upstream_stages: the stages whose metrics the request shows (the gated stage's dependencies)
    :param response_timeout: how long to wait for an answer; ``None`` waits as long as it takes
    """

    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        stage: str,
        component: str,
        pipeline: PipelineRef,
        upstream_stages: Sequence[str] = (),
        response_timeout: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)  # a retry would ask the question again
        super().__init__(
            subject=request_subject(pipeline.name, pipeline.version, stage),
            defaults=[self.REJECT] if response_timeout else None,
            response_timeout=response_timeout,
            **kwargs,
        )
        self.stage = stage
        self.component = component
        self.pipeline = pipeline
        self.upstream_stages = list(upstream_stages)

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        upstream = {stage: ti.xcom_pull(task_ids=stage) or {} for stage in self.upstream_stages}
        self.body = request_body(
            pipeline=self.pipeline.name,
            version=self.pipeline.version,
            config_version=self.pipeline.config_version,
            environment=self.pipeline.environment,
            run_id=ti.run_id,
            stage=self.stage,
            component=self.component,
            upstream=upstream,
            timeout=_duration_text(self.response_timeout),
        )
        self.log.info("Asking for approval of stage '%s':\n%s", self.stage, self.body)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" not in event:  # a timeout without defaults; not built here, fails as Airflow's does
            decision = decision_from_response(event, self.APPROVE)
            # Pushed first: on Reject, the skip of the downstream stage ends the task without a
            # return value.
            context["ti"].xcom_push(key=DECISION_XCOM_KEY, value=decision.model_dump(mode="json"))
            self.log.info(
                "Stage '%s' %s by %s at %s%s",
                self.stage,
                "approved" if decision.approved else "rejected",
                decision.by or "nobody",
                decision.at,
                " (no answer in time: the default applies)" if decision.timed_out else "",
            )
        return super().execute_complete(context, event)


def _duration_text(value: timedelta | None) -> str | None:
    if value is None:
        return None
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
