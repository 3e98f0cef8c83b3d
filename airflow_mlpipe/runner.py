"""Running one stage's component under the contract, with or without Airflow around it.

The ``ComponentOperator`` and ``airflow_mlpipe.testing.run_component`` both call
:func:`run_stage`, so a component behaves the same in a unit test as in a pipeline.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from airflow_mlpipe.contract import ComponentContext, ContractError, StageOutputs
from airflow_mlpipe.resolver import Component


def run_stage(component: Component, config: BaseModel, context: ComponentContext) -> StageOutputs:
    """Call ``component.run`` and check what goes in and what comes out against its declarations.

    Raises :class:`ContractError` (before ``run``) when the component's extra is not installed or
    the upstream stages lack an artifact it requires, and (after ``run``) when it returned
    something other than artifacts and metrics, or less than it declared it produces.
    """
    extra = component.extra
    missing_modules = extra.missing_modules() if extra else []
    if extra and missing_modules:
        raise ContractError(
            f"component '{component.name}' needs the '{extra.name}' extra "
            f"(missing: {', '.join(missing_modules)}); install it with: {extra.install_command}"
        )
    requires = component.requires(config)
    missing_inputs = requires.missing_from(context.inputs) if requires else []
    if missing_inputs:
        available = {stage: sorted(outputs.artifacts) for stage, outputs in context.inputs.items()}
        raise ContractError(
            f"component '{component.name}' requires the upstream artifact(s) "
            f"{', '.join(repr(name) for name in missing_inputs)}, which no upstream stage "
            f"returned (upstream artifacts: {available or 'no upstream stages'})"
        )
    result = component.run(config, context)
    return check_outputs(component, config, result)


def check_outputs(component: Component, config: BaseModel, result: Any) -> StageOutputs:
    """``result`` as :class:`StageOutputs`, if it has the contract's shape and what was declared."""
    try:
        outputs = StageOutputs.validate(result)
    except ValidationError as exc:
        raise ContractError(
            f"component '{component.name}' returned {result!r}; expected "
            f"{{'artifacts': {{name: uri}}, 'metrics': {{name: number}}}}:\n{exc}"
        ) from None
    if outputs.digests:
        raise ContractError(
            f"component '{component.name}' returned 'digests'; run() returns artifacts and "
            "metrics, and the operator computes the artifacts' digests"
        )
    produces = component.produces(config)
    missing = produces.missing_from(outputs) if produces else []
    if missing:
        raise ContractError(
            f"component '{component.name}' declares that it produces {', '.join(missing)}, "
            "but its run() did not return them"
        )
    return outputs
