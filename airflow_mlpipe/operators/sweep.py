"""A swept stage as Airflow tasks: plan the variants, run each as a mapped task, pick the best.

A stage ``train`` with a ``sweep`` becomes::

    <upstream stages> >> train.plan >> train.variants[0..n-1] >> train >> <downstream stages>

* ``train.plan`` (:class:`SweepPlanOperator`) lists the variants at run time, so a trigger may
  replace the grid (``{"overrides": {"train": {"sweep": {"grid": {...}}}}}``): the mapped task
  is expanded from its XCom. It checks every variant's config before any of them runs.
* ``train.variants`` (:class:`SweepVariantOperator`, mapped with ``expand_kwargs``) is the
  stage's ``ComponentOperator`` once per variant: it retries and is cached on its own (the cache
  entry is the stage's, keyed by the variant's fingerprint), its map index is named after the
  variant (``factors=128, regularization=50``), and ``max_parallel`` bounds how many run at once.
  A variant that fails shows as failed in Airflow, after its retries.
* ``train`` (:class:`SweepSelectOperator`, trigger rule ``all_done``) reads each variant's
  result and returns the winner's as its own: downstream stages, the execution record, replay
  and diff see a plain stage that ran with the winner's config. It fails, quoting every
  variant's error, when no variant succeeded with the metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, TriggerRule
from pydantic import ValidationError

from airflow_mlpipe.operators.component import ComponentOperator, validation_summary
from airflow_mlpipe.pipeline_run import (
    ERROR_XCOM_KEY,
    OVERRIDES_PARAM,
    OverrideError,
    PipelineRef,
    StageResult,
    deep_merge,
    error_text,
    run_overrides,
)
from airflow_mlpipe.resolver import resolve_component
from airflow_mlpipe.spec.sweeps import SWEEP_OVERRIDE_KEY, Sweep, expand_variants, variant_label
from airflow_mlpipe.sweeps import (
    PLANNED_CONFIGS_XCOM_KEY,
    SWEEP_XCOM_KEY,
    SweepOutcome,
    VariantOutcome,
    failure_summary,
    plan_task_id,
    select_variant,
    variants_task_id,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class SweepPlanOperator(BaseOperator):
    """
    List a swept stage's variants for this run: the spec's, or the trigger's replacement.

    Returns ``[{"variant": {...}}, ...]``, the keyword arguments of each mapped variant task.
    Fails without retries, naming each bad variant, when a variant's config is invalid.

    :param stage: the swept stage's name
    :param component: the stage's component string
    :param config: the stage's config from the spec (templated)
    :param sweep: the stage's sweep from the spec
    :param pipeline: the pipeline this stage belongs to
    """

    template_fields: Sequence[str] = ("config",)
    template_fields_renderers = {"config": "json"}
    ui_color = "#eef6e8"

    def __init__(
        self,
        *,
        stage: str,
        component: str,
        config: dict[str, Any],
        sweep: Sweep,
        pipeline: PipelineRef,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 0)  # nothing here can succeed on a second try
        super().__init__(**kwargs)
        self.stage = stage
        self.component = component
        self.config = config
        self.sweep = sweep
        self.pipeline = pipeline

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowFailException
        from airflow.sdk.log import redact

        try:
            variants, configs = self._variants(context)
        except (OverrideError, ValueError) as exc:
            context["ti"].xcom_push(key=ERROR_XCOM_KEY, value=error_text(str(exc)))
            raise AirflowFailException(str(exc)) from None
        for index, variant in enumerate(variants):
            self.log.info("Variant %d: %s", index, variant_label(variant))
        # For the record: the config of a variant that fails before it returns one.
        context["ti"].xcom_push(key=PLANNED_CONFIGS_XCOM_KEY, value=redact(configs))
        return [{"variant": variant} for variant in variants]

    def _variants(self, context: Context) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        conf = getattr(context.get("dag_run"), "conf", None) or {}
        # Checks the whole run's overrides (a refused one fails here too), this stage's sweep included.
        config_override = run_overrides(conf, self.pipeline).get(self.stage, {})
        stage_override = (conf.get(OVERRIDES_PARAM) or {}).get(self.stage) or {}
        replacement = stage_override.get(SWEEP_OVERRIDE_KEY)
        if replacement:
            self.log.info("Trigger-time sweep: %s", replacement)
            variants = expand_variants(replacement.get("grid"), replacement.get("variants"))
        else:
            variants = self.sweep.expand()
        model = resolve_component(self.component).config_model
        fields = set(model.model_fields)
        base = deep_merge(self.config, config_override)
        problems = []
        configs = []
        for index, variant in enumerate(variants):
            unknown = sorted(set(variant) - fields)
            if unknown:
                problems.append(
                    f"variant {index} ({variant_label(variant)}): unknown config field(s) {unknown}"
                )
                continue
            try:
                configs.append(model.model_validate(deep_merge(base, variant)).model_dump(mode="json"))
            except ValidationError as exc:
                problems.append(f"variant {index} ({variant_label(variant)}):\n{validation_summary(exc)}")
        if problems:
            raise ValueError(f"invalid sweep for stage '{self.stage}':\n" + "\n".join(problems))
        return variants, configs


class SweepVariantOperator(ComponentOperator):
    """
    One variant of a swept stage: the stage's ``ComponentOperator`` with the variant's values
    laid over its config (after templates and trigger-time overrides).

    :param variant: the values this variant sets (from the plan task, via ``expand_kwargs``)
    :param input_from: the stage's dependencies, whose outputs it receives (its only upstream
        task is the plan)
    """

    ui_color = "#e8f4fd"

    def __init__(self, *, variant: dict[str, Any], input_from: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.variant = variant
        self.input_from = list(input_from)

    @property
    def variant_label(self) -> str:
        """How Airflow names this map index (``map_index_template``)."""
        return variant_label(self.variant)

    def config_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return deep_merge(overrides, self.variant)

    def input_stages(self) -> list[str]:
        return sorted(self.input_from)


class SweepSelectOperator(BaseOperator):
    """
    Pick the sweep's winner and return its result as the stage's own (the stage's task id).

    Leaves the :class:`~airflow_mlpipe.sweeps.SweepOutcome` (every variant's config, metrics,
    state and error, and the winner's index) under the XCom key ``mlpipe_sweep``.

    :param stage: the swept stage's name (this task's id)
    :param sweep: the stage's sweep from the spec (``select`` is read from it)
    """

    ui_color = "#e8f4fd"

    def __init__(self, *, sweep: Sweep, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.sweep = sweep

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        ti = context["ti"]
        stage = self.task_id
        plan = ti.xcom_pull(task_ids=plan_task_id(stage))
        if plan is None:
            error = ti.xcom_pull(task_ids=plan_task_id(stage), key=ERROR_XCOM_KEY)
            if not error:  # the plan never ran: an upstream stage failed
                raise AirflowSkipException(
                    f"the sweep of stage '{stage}' did not run (an upstream stage did not complete)"
                )
            ti.xcom_push(key=ERROR_XCOM_KEY, value=error_text(str(error)))
            raise AirflowFailException(str(error))
        indexes = list(range(len(plan)))
        results = ti.xcom_pull(task_ids=variants_task_id(stage), map_indexes=indexes) if indexes else []
        errors = (
            ti.xcom_pull(task_ids=variants_task_id(stage), key=ERROR_XCOM_KEY, map_indexes=indexes)
            if indexes
            else []
        )
        planned = ti.xcom_pull(task_ids=plan_task_id(stage), key=PLANNED_CONFIGS_XCOM_KEY) or []
        outcome = sweep_outcome(self.sweep, [entry["variant"] for entry in plan], planned, results, errors)
        ti.xcom_push(key=SWEEP_XCOM_KEY, value=outcome.model_dump(mode="json"))
        for index, variant in enumerate(outcome.variants):
            shown = variant.metrics.get(outcome.metric, variant.error or "-")
            self.log.info(
                "Variant %d (%s): %s, %s = %s", index, variant.label, variant.state, outcome.metric, shown
            )
        if outcome.selected is None:
            message = failure_summary(stage, outcome)
            ti.xcom_push(key=ERROR_XCOM_KEY, value=error_text(message))
            raise AirflowFailException(message)
        winner = StageResult.from_xcom(results[outcome.selected])
        self.log.info(
            "Selected variant %d (%s): %s = %s (%s)",
            outcome.selected,
            outcome.variants[outcome.selected].label,
            outcome.metric,
            winner.metrics[outcome.metric],
            outcome.mode,
        )
        return winner.model_dump(mode="json", exclude_none=True)


def sweep_outcome(
    sweep: Sweep,
    variants: Sequence[Mapping[str, Any]],
    planned_configs: Sequence[Mapping[str, Any]],
    results: Sequence[Any],
    errors: Sequence[Any],
) -> SweepOutcome:
    """The sweep's outcome from each variant's XCom (``None`` for one that failed) and error."""
    metric, mode = sweep.select.metric, sweep.select.mode
    outcomes = []
    for index, (variant, result, error) in enumerate(zip(variants, results, errors, strict=True)):
        if result is None:
            planned = planned_configs[index] if index < len(planned_configs) else {}
            outcomes.append(
                VariantOutcome(
                    label=variant_label(variant),
                    variant=dict(variant),
                    config=dict(planned),
                    state="failed",
                    error=str(error) if error else "failed without an error message (see its task log)",
                )
            )
            continue
        stage_result = StageResult.from_xcom(result)
        outcomes.append(
            VariantOutcome(
                label=variant_label(variant),
                variant=dict(variant),
                config=stage_result.config,
                metrics=stage_result.metrics,
                state="success",
                cached_from=stage_result.cached_from,
            )
        )
    selected = select_variant(
        [o.metrics.get(metric) if o.state == "success" else None for o in outcomes], mode
    )
    return SweepOutcome(metric=metric, mode=mode, selected=selected, variants=outcomes)


def add_sweep_tasks(
    *,
    stage: str,
    component: str,
    config: dict[str, Any],
    sweep: Sweep,
    dependencies: Sequence[str],
    pipeline: PipelineRef,
    cache: bool,
    cache_ttl: Any,
    outlets: list[Any],
    task_settings: Mapping[str, Any],
) -> tuple[BaseOperator, BaseOperator]:
    """The tasks of a swept stage, in the current DAG: ``(first, last)`` for wiring.

    ``task_settings`` (retries, retry_delay, execution_timeout, pool, queue, and the stage runtime's
    ``python`` or ``executor_config``) apply to each variant.
    """
    plan = SweepPlanOperator(
        task_id=plan_task_id(stage),
        stage=stage,
        component=component,
        config=config,
        sweep=sweep,
        pipeline=pipeline,
        doc_md=f"Lists the variants of stage `{stage}`'s sweep",
        **{k: v for k, v in task_settings.items() if k in ("pool", "queue")},
    )
    variants = SweepVariantOperator.partial(
        task_id=variants_task_id(stage),
        stage=stage,
        component=component,
        config=config,
        pipeline=pipeline,
        cache=cache,
        cache_ttl=cache_ttl,
        input_from=list(dependencies),
        map_index_template="{{ task.variant_label }}",
        max_active_tis_per_dagrun=sweep.max_parallel,
        doc_md=f"Component `{component}`, one mapped task instance per variant of the sweep",
        **task_settings,
    ).expand_kwargs(plan.output)
    select = SweepSelectOperator(
        task_id=stage,
        sweep=sweep,
        outlets=outlets,
        doc_md=f"Component `{component}`: the best variant of the sweep by "
        f"`{sweep.select.metric}` ({sweep.select.mode})",
    )
    variants >> select
    return plan, select
