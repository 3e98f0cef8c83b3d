"""The project's operators with YAML-friendly arguments, for the dag-factory contestant.

dag-factory passes a task's YAML keys to the operator as keyword arguments, and YAML cannot
spell the ``PipelineRef`` dataclass the operators take. These subclasses accept it as a mapping
(with the pipeline's ``stages`` and the ``overridable`` fields every stage shares),
so the dag-factory DAGs hold exactly the same operators, arguments and dependencies as the
factory's and the hand-written ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from airflow_mlpipe.operators.component import ComponentOperator
from airflow_mlpipe.operators.record import ExecutionRecordOperator
from airflow_mlpipe.pipeline_run import PipelineRef


def _ref(pipeline: Mapping[str, Any]) -> PipelineRef:
    fields = {key: value for key, value in pipeline.items() if key not in ("stages", "overridable")}
    allowed = frozenset(pipeline.get("overridable", ()))
    overridable = MappingProxyType({stage: allowed for stage in pipeline.get("stages", ())})
    return PipelineRef(
        **{**fields, "sources": tuple(pipeline.get("sources", ())), "overridable": overridable}
    )


class YamlComponentOperator(ComponentOperator):
    """``ComponentOperator`` taking ``pipeline`` as a mapping."""

    def __init__(self, *, pipeline: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(pipeline=_ref(pipeline), **kwargs)


class YamlExecutionRecordOperator(ExecutionRecordOperator):
    """``ExecutionRecordOperator`` taking ``pipeline`` as a mapping."""

    def __init__(self, *, pipeline: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(pipeline=_ref(pipeline), **kwargs)
