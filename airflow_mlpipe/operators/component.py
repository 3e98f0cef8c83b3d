"""``ComponentOperator``: runs one pipeline stage by handing its config to a component."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from pydantic import ValidationError

from airflow_mlpipe import settings
from airflow_mlpipe.approvals import is_approval_task
from airflow_mlpipe.artifacts import stage_artifact_dir
from airflow_mlpipe.cache import StageCache
from airflow_mlpipe.contract import ComponentContext, ContractError, StageOutputs
from airflow_mlpipe.digests import artifact_digest
from airflow_mlpipe.fingerprints import stage_fingerprint
from airflow_mlpipe.pipeline_run import (
    ERROR_XCOM_KEY,
    OverrideError,
    PipelineRef,
    StageResult,
    cache_wanted,
    deep_merge,
    error_text,
    resolve_git_commit,
    run_overrides,
)
from airflow_mlpipe.resolver import resolve_component
from airflow_mlpipe.runner import run_stage
from airflow_mlpipe.runtimes.external_python import run_external

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class ComponentOperator(BaseOperator):
    """
    Run one pipeline stage: resolve its component, validate and template its config, call ``run``.

    The component is resolved at execute time (parsing only checked that it exists and is
    allowed). ``config`` is a template field, so ``"{{ data_interval_start }}"`` works anywhere in
    it. Trigger-time overrides from the run's conf are applied after templating and validated
    with the component's ``Config`` like the rest. The return value (the XCom) holds artifact
    URIs and metrics only; data moves between stages as artifacts in object storage.

    :param component: the component string, e.g. ``data.extract.database``
    :param config: the stage's config from the spec (templated)
    :param pipeline: the pipeline this stage belongs to (with each stage's overridable fields)
    :param cache: look the stage's fingerprint up in the stage cache before running, and store
        its outputs after (unless the run's conf says ``{"cache": false}``)
    :param cache_ttl: how old a cache entry may be to count; ``None``: any age
    :param stage: the stage this task runs, when its task id is not the stage's name (a sweep's
        variants); names its overrides, its cache entries and ``context.stage``
    :param python: run the component in this interpreter (``runtime.python``); ``None``: here
    """

    template_fields: Sequence[str] = ("config",)
    template_fields_renderers = {"config": "json"}
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        component: str,
        config: dict[str, Any],
        pipeline: PipelineRef,
        cache: bool = False,
        cache_ttl: timedelta | None = None,
        stage: str | None = None,
        python: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stage = stage or self.task_id
        self.component = component
        self.config = config
        self.pipeline = pipeline
        self.cache = cache
        self.cache_ttl = cache_ttl
        self.python = python
        # What execute read and returned, kept for the OpenLineage methods (called after it).
        self.stage_inputs: dict[str, StageOutputs] | None = None
        self.stage_result: StageResult | None = None

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        import jinja2
        from airflow.sdk.exceptions import AirflowFailException

        try:
            super().render_template_fields(context, jinja_env)
        except Exception as exc:
            # Rendering runs before execute: record the error here, or the execution record and
            # the failure e-mail would not say why the stage failed.
            message = f"the config of stage '{self.stage}' failed to render: {type(exc).__name__}: {exc}"
            context["ti"].xcom_push(key=ERROR_XCOM_KEY, value=error_text(message))
            if isinstance(exc, jinja2.TemplateError):
                # The template and the run's context are fixed, so a retry would fail the same way.
                raise AirflowFailException(message) from None
            raise  # e.g. a Variable or connection that is missing now may exist on the retry

    def execute(self, context: Context) -> dict[str, Any]:
        started = time.monotonic()
        # CPU time beside wall time: on a busy worker, waiting for a core inflates only the latter.
        cpu_started = time.process_time()
        try:
            result = self._run_component(context)
        except Exception as exc:
            # The execution record and the failure e-mail quote this.
            context["ti"].xcom_push(key=ERROR_XCOM_KEY, value=error_text(f"{type(exc).__name__}: {exc}"))
            raise
        self.stage_result = result
        self.log.info(
            "Stage '%s' finished in %.2f s (CPU %.2f s)",
            self.stage,
            time.monotonic() - started,
            time.process_time() - cpu_started,
        )
        return result.model_dump(mode="json", exclude_none=True)

    def _run_component(self, context: Context) -> StageResult:
        from airflow.sdk.exceptions import AirflowFailException
        from airflow.sdk.log import redact

        component = resolve_component(self.component)
        self.log.info("Component: %s (%s)", self.component, component.module.__name__)
        try:
            # Every stage checks the whole run's overrides, so a refused one fails the first stage.
            conf = getattr(context.get("dag_run"), "conf", None)
            overrides = self.config_overrides(run_overrides(conf, self.pipeline).get(self.stage, {}))
        except OverrideError as exc:
            raise AirflowFailException(str(exc)) from None
        if overrides:
            self.log.info("Trigger-time overrides: %s", _as_json(redact(overrides)))
        raw_config = deep_merge(self.config, overrides)
        try:
            config = component.config_model.model_validate(raw_config)
        except ValidationError as exc:
            # Retrying cannot fix a bad config: fail without retries. The error leaves out the
            # input values: a templated secret that fails validation must not reach the record.
            raise AirflowFailException(
                f"invalid config for stage '{self.stage}':\n{validation_summary(exc)}"
            ) from None
        self.log.info("Config: %s", _as_json(redact(config.model_dump(mode="json"))))

        ti = context["ti"]
        inputs = {
            upstream: StageResult.from_xcom(ti.xcom_pull(task_ids=upstream)).outputs
            for upstream in self.input_stages()
        }
        self.stage_inputs = inputs
        for upstream, upstream_outputs in inputs.items():
            self.log.info("Input from '%s': %s", upstream, _as_json(upstream_outputs.to_dict()))

        resolved = config.model_dump(mode="json")
        fingerprint = stage_fingerprint(component, resolved, inputs)
        self.log.info("Fingerprint: %s", fingerprint)
        provenance = {"fingerprint": fingerprint, "config": redact(resolved)}
        root = settings.artifact_root()
        cache = StageCache(root, self.pipeline.name) if self.cache else None
        if cache is not None and self._cache_wanted(conf):
            hit = cache.lookup(self.stage, fingerprint, self.cache_ttl)
            if hit is not None:
                self.log.info("cache hit: fingerprint %s from run %s", fingerprint, hit.run_id)
                return StageResult(**hit.outputs.to_dict(), cached_from=hit.run_id, **provenance)
            self.log.info("cache miss: fingerprint %s", fingerprint)

        # A mapped task's instances (a sweep's variants) each write into a folder of their own.
        map_index = getattr(ti, "map_index", -1)
        folder = self.task_id if map_index is None or map_index < 0 else f"{self.task_id}.{map_index}"
        artifact_dir = stage_artifact_dir(root, self.pipeline.name, ti.run_id, folder, ti.try_number)
        if artifact_dir.exists():
            # Only when the same try runs again (``airflow tasks test``): start it clean.
            artifact_dir.rmdir(recursive=True)
        artifact_dir.mkdir(parents=True, exist_ok=True)
        self.log.info("Artifact dir: %s", artifact_dir)

        component_context = ComponentContext(
            pipeline=self.pipeline.name,
            pipeline_version=self.pipeline.version,
            config_version=self.pipeline.config_version,
            environment=self.pipeline.environment,
            stage=self.stage,
            run_id=ti.run_id,
            git_commit=resolve_git_commit(context, self.pipeline.sources),
            inputs=inputs,
            artifact_dir=artifact_dir,
            airflow_context=context,
            log=self.log,  # type: ignore[arg-type]
            outlet_events=context.get("outlet_events"),
        )
        try:
            if self.python is not None:
                prefixes = settings.component_modules()
                outputs = run_external(self.python, component, config, component_context, prefixes)
            else:
                outputs = run_stage(component, config, component_context)
        except ContractError as exc:
            raise AirflowFailException(f"stage '{self.stage}': {exc}") from None
        outputs = outputs.with_digests(self._digests(outputs))
        for name, uri in outputs.artifacts.items():
            self.log.info("Artifact %s: %s (%s)", name, uri, outputs.digests.get(name, "no digest"))
        for name, value in outputs.metrics.items():
            self.log.info("Metric %s = %s", name, value)
        if cache is not None:  # a run with the cache off still refreshes the entry
            self._store(cache, outputs, fingerprint, ti.run_id)
        return StageResult(**outputs.to_dict(), **provenance)

    # The OpenLineage provider's listener calls these (only when OpenLineage is on), after
    # execute for the last two: they build the events from what execute kept, recomputing nothing.
    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        from airflow_mlpipe.lineage import stage_lineage

        return stage_lineage(self.pipeline, self.stage, self.component)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from airflow_mlpipe.lineage import stage_lineage

        return stage_lineage(
            self.pipeline, self.stage, self.component, self.stage_inputs, self.stage_result, self.log
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        from airflow_mlpipe.lineage import stage_lineage

        return stage_lineage(self.pipeline, self.stage, self.component, self.stage_inputs)

    def config_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """What is laid over the rendered config: the run's overrides of this stage (checked)."""
        return overrides

    def input_stages(self) -> list[str]:
        """The stages whose outputs this one receives: its upstream tasks but a gate's approval."""
        return sorted(task_id for task_id in self.upstream_task_ids if not is_approval_task(task_id))

    def _cache_wanted(self, conf: Mapping[str, Any] | None) -> bool:
        """Whether this run may take the stage's outputs from the cache."""
        if cache_wanted(conf):
            return True
        self.log.info("cache: off for this run (conf 'cache': false); recomputing")
        return False

    def _store(self, cache: StageCache, outputs: StageOutputs, fingerprint: str, run_id: str) -> None:
        try:
            cache.store(self.stage, fingerprint, run_id, outputs)
        except Exception:
            # The stage succeeded; a cache that cannot be written only costs a later recompute.
            self.log.warning("Could not store the cache entry for fingerprint %s", fingerprint, exc_info=True)
        else:
            self.log.info("cache: stored fingerprint %s", fingerprint)

    def _digests(self, outputs: StageOutputs) -> dict[str, str]:
        """Content digests of the stage's artifacts; one that cannot be read has none."""
        digests = {}
        for name, uri in outputs.artifacts.items():
            try:
                digests[name] = artifact_digest(uri)
            except Exception as exc:  # a URI that is not a readable file or folder (a table, say)
                self.log.warning("No digest for artifact %s (%s): %s: %s", name, uri, type(exc).__name__, exc)
        return digests


def validation_summary(exc: ValidationError) -> str:
    """pydantic's errors as ``field: message`` lines, without the offending input values."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        field = ".".join(str(part) for part in error["loc"]) or "config"
        lines.append(f"  {field}: {error['msg']}")
    return "\n".join(lines)


def _as_json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)
