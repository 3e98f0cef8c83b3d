"""Where a stage's component runs when the spec gives it a ``runtime``.

* :mod:`~airflow_mlpipe.runtimes.kubernetes`: ``runtime.kubernetes``, a pod of its own (the
  task's ``executor_config`` for the KubernetesExecutor), built when the DAG is;
* :mod:`~airflow_mlpipe.runtimes.external_python`: ``runtime.python``, another interpreter that
  runs the component, started by the stage's task; :mod:`~airflow_mlpipe.runtimes.child` is what
  runs inside it (no Airflow needed there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the other interpreter of runtime.python imports this package without the spec layer
    from airflow_mlpipe.spec.runtime import StageRuntime


def task_arguments(runtime: StageRuntime | None) -> dict[str, Any]:
    """The ``ComponentOperator`` arguments for a stage's ``runtime`` (none without one).

    Raises :class:`~airflow_mlpipe.runtimes.kubernetes.RuntimeUnavailable` when the deployment
    cannot give the stage what it asks for.
    """
    if runtime is None:
        return {}
    arguments: dict[str, Any] = {}
    if runtime.python is not None:
        arguments["python"] = runtime.python
    if runtime.kubernetes is not None:
        from airflow_mlpipe.runtimes import kubernetes

        arguments.update(kubernetes.task_arguments(runtime.kubernetes))
    return arguments
