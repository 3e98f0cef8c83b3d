"""Where a stage's time goes: ``airflow dags test`` in-process, with timers around the task runner's phases.

A sampling profile of a 50 ms task is mostly noise, so this wraps the task runner's phases
(``_prepare``: render templates and store rendered fields; ``_execute_task``; ``_push_xcom_if_needed``;
``finalize``) and the parts of ``ComponentOperator`` (component resolution, artifact directory,
git commit, the component itself) with ``perf_counter`` timers, runs one DAG of
``stage_overhead.py`` through the real ``airflow dags test`` in this process, and prints the
median time of each phase per task, leaving out the first task (it starts the in-process API).

    python benchmarks/profile_stage.py mlpipe_noop
    python benchmarks/profile_stage.py bare_noop
    python benchmarks/profile_stage.py --quick mlpipe_noop    # 3 tasks (smoke test)
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import benchlib

TIMINGS: dict[str, list[float]] = defaultdict(list)


def timed(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` by a wrapper that records its duration under ``label``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMINGS[label].append(time.perf_counter() - started)

    setattr(owner, name, wrapper)


def instrument() -> None:
    from airflow.sdk.execution_time import task_runner

    import airflow_mlpipe.operators.component as component_operator

    for name in (
        "_prepare",
        "_execute_task",
        "_push_xcom_if_needed",
        "finalize",
        "_run_task_and_map_outcome",
    ):
        timed(task_runner, name, f"task_runner.{name}")
    timed(task_runner.RuntimeTaskInstance, "xcom_pull", "RuntimeTaskInstance.xcom_pull")
    for name in (
        "resolve_component",
        "run_overrides",
        "stage_fingerprint",
        "stage_artifact_dir",
        "resolve_git_commit",
    ):
        timed(component_operator, name, f"component.{name}")
    timed(component_operator.ComponentOperator, "execute", "ComponentOperator.execute")
    timed(component_operator.ComponentOperator, "_run_component", "ComponentOperator._run_component")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dag_id", choices=["mlpipe_noop", "bare_noop", "bare_xcom"])
    parser.add_argument("--quick", action="store_true", help="3 tasks (smoke test)")
    parser.add_argument("--tasks", type=int, help="tasks per DAG (default 21)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    k = args.tasks or (3 if args.quick else 21)

    if args.child is None:
        # Set up a sandbox, then re-run this script in it (Airflow reads its config at import).
        import subprocess

        from stage_overhead import write_dags

        from airflow_mlpipe.testing.sandbox import AirflowSandbox

        root = Path(tempfile.mkdtemp(prefix="mlpipe-bench-profile-"))
        env = benchlib.airflow_env(root / "airflow-home")
        extra = {
            key: env[key] for key in ("PYTHONPATH", "AIRFLOW__MLPIPE__COMPONENT_MODULES", "DO_NOT_TRACK")
        }
        sandbox = AirflowSandbox(root, env=extra).setup()
        folder = write_dags(root, k)
        child_env = sandbox.environment(folder, AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING")
        command = [sys.executable, __file__, args.dag_id, "--tasks", str(k), "--child", str(root)]
        return subprocess.run(command, env=child_env, check=False).returncode

    instrument()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "dags", "test", args.dag_id]
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)  # the task logs
    try:
        airflow_main()
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        os.dup2(saved, 1)
    rows = []
    for label, values in TIMINGS.items():
        kept = values[1:] if len(values) > 1 else values  # the first task also starts the API
        rows.append(
            [label, len(values), benchlib.fmt(statistics.median(kept) * 1000), benchlib.fmt(sum(kept))]
        )
    print(f"# Phases of {args.dag_id} ({k} tasks), first task left out\n")
    print(benchlib.table(["phase", "calls", "median ms", "total s"], sorted(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
