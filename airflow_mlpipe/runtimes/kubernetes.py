"""``runtime.kubernetes``: the stage's task as a pod of its own under the KubernetesExecutor.

The spec's values become the task's ``executor_config={"pod_override": V1Pod(...)}``, built with
the Kubernetes client's models, which is what the KubernetesExecutor merges into the pod of its
``pod_template_file`` (the provider's ``PodGenerator.reconcile_pods``): the ``base`` container gets
the image, requests and limits (``gpu`` as ``nvidia.com/gpu``) and environment from Secrets; the
pod gets the node selector, tolerations and service account. What the spec leaves out stays as
the template has it.

Which executor runs the stage: ``runtime.kubernetes.executor`` when the spec names one; else,
when ``[core] executor`` lists several executors and one of them is the KubernetesExecutor, that
one (Airflow's per-task ``executor``); else the default executor, which must then be the
KubernetesExecutor for the pod override to mean anything. Reading ``[core] executor`` is a local
configuration lookup, allowed at parse time.
"""

from __future__ import annotations

from typing import Any

from airflow_mlpipe.spec.runtime import GPU_RESOURCE, KUBERNETES_EXTRA, KubernetesRuntime

#: The container the KubernetesExecutor runs the task in (the provider's ``base`` container).
BASE_CONTAINER = "base"
KUBERNETES_EXECUTOR = "KubernetesExecutor"


class RuntimeUnavailable(Exception):
    """The spec asks for a runtime this Airflow deployment cannot give it."""


def pod_override(runtime: KubernetesRuntime) -> Any:
    """The ``V1Pod`` that the KubernetesExecutor merges into its pod template for this stage."""
    try:
        from kubernetes.client import models as k8s
    except ImportError:
        raise RuntimeUnavailable(
            "runtime.kubernetes needs the Kubernetes client where the DAG is built: "
            f'pip install "airflow-mlpipe[{KUBERNETES_EXTRA}]"'
        ) from None

    resources = None
    if runtime.resources is not None:
        amounts = {
            name: value
            for name, value in (
                ("cpu", runtime.resources.cpu),
                ("memory", runtime.resources.memory),
                (GPU_RESOURCE, None if runtime.resources.gpu is None else str(runtime.resources.gpu)),
            )
            if value is not None
        }
        # Requests equal to limits: the scheduler places the pod where all of it fits, and the
        # stage cannot be squeezed by its neighbours (Kubernetes' "Guaranteed" class when both
        # cpu and memory are given). GPUs cannot be overcommitted anyway.
        resources = k8s.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))
    env = [
        k8s.V1EnvVar(
            name=name,
            value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name=source.secret, key=source.key)
            ),
        )
        for name, source in runtime.secret_env.items()
    ]
    env_from = [
        k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name)) for name in runtime.env_from_secrets
    ]
    container = k8s.V1Container(
        name=BASE_CONTAINER,
        image=runtime.image,
        resources=resources,
        env=env or None,
        env_from=env_from or None,
    )
    tolerations = [
        k8s.V1Toleration(
            key=toleration.key,
            operator=toleration.operator,
            value=toleration.value,
            effect=toleration.effect,
            toleration_seconds=toleration.toleration_seconds,
        )
        for toleration in runtime.tolerations
    ]
    spec = k8s.V1PodSpec(
        containers=[container],
        node_selector=dict(runtime.node_selector) or None,
        tolerations=tolerations or None,
        service_account_name=runtime.service_account,
    )
    return k8s.V1Pod(spec=spec)


def configured_executors(setting: str) -> list[str]:
    """The executors of a ``[core] executor`` value (``CeleryExecutor,KubernetesExecutor``),
    with aliases (``gpu:path.to.Executor``) kept as written."""
    return [part.strip() for part in setting.split(",") if part.strip()]


def stage_executor(runtime: KubernetesRuntime, executor_setting: str) -> str | None:
    """The per-task ``executor`` for the stage, or ``None`` for the deployment's default.

    Raises :class:`RuntimeUnavailable` when the spec names an executor the deployment lacks.
    """
    executors = configured_executors(executor_setting)
    names = {name for entry in executors for name in _names_of(entry)}
    if runtime.executor is not None:
        if runtime.executor not in names:
            raise RuntimeUnavailable(
                f"runtime.kubernetes.executor '{runtime.executor}' is not one of the executors this "
                f"deployment configures ([core] executor = {executor_setting or '(default)'})"
            )
        return runtime.executor
    if len(executors) < 2:
        return None  # one executor: every task runs on it
    for entry in executors:
        if any(name.endswith(KUBERNETES_EXECUTOR) for name in _names_of(entry)):
            return _names_of(entry)[0]
    return None


def _names_of(entry: str) -> list[str]:
    """The names a task may use for one ``[core] executor`` entry: its alias, else its name or path."""
    alias, _, path = entry.rpartition(":")
    names = [alias] if alias else []
    names.append(path)
    if "." in path:
        names.append(path.rsplit(".", 1)[1])  # a module path's class name
    return names


def task_arguments(runtime: KubernetesRuntime) -> dict[str, Any]:
    """The task arguments for ``runtime.kubernetes``: ``executor_config`` and maybe ``executor``."""
    from airflow.configuration import conf

    arguments: dict[str, Any] = {"executor_config": {"pod_override": pod_override(runtime)}}
    executor = stage_executor(runtime, str(conf.get("core", "executor", fallback="")))
    if executor is not None:
        arguments["executor"] = executor
    return arguments
