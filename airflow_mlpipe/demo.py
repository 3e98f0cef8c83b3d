"""``make demo``: the reference pipeline end to end on an embedded SQLite database.

Sets up an Airflow home under ``.demo/`` (SQLite metadata database), generates synthetic
``user_events`` into ``.demo/analytics.db`` behind the ``analytics_db`` connection, runs
``recommender_training`` from ``dags/pipelines`` with ``airflow dags test``, and prints the
execution record, the sweep's variants, the metrics against their thresholds and where the model
was registered.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

PIPELINE = "recommender_training"
#: The environment whose overlay points the demo at ``--registry``.
DEMO_ENVIRONMENT = "demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_mlpipe.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="where the demo keeps its state")
    parser.add_argument("--specs", type=Path, default=Path("dags/pipelines"), help="folder with the specs")
    parser.add_argument("--registry", help="register the model here instead of the spec's registry")
    args = parser.parse_args(argv)

    from airflow_mlpipe.demo_data import generate_user_events
    from airflow_mlpipe.testing.sandbox import AirflowSandbox

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "analytics.db"
    print(f"==> Generating synthetic user_events into {database}")
    generate_user_events(database)
    print(f"==> Preparing an Airflow home on SQLite in {workdir / 'airflow'}")
    env = {"AIRFLOW_CONN_ANALYTICS_DB": f"sqlite:///{database}"}
    specs = args.specs.resolve()
    if args.registry:
        # A trigger may not change a registry: the demo writes an overlay, as a spec author would.
        specs = _specs_with_registry(specs, workdir / "pipelines", args.registry)
        env["AIRFLOW__MLPIPE__ENVIRONMENT"] = DEMO_ENVIRONMENT
    sandbox = AirflowSandbox(workdir / "airflow", env=env)
    sandbox.setup()
    print(f"==> Running {PIPELINE} with 'airflow dags test' (all five stages, then the execution record)")
    run = sandbox.run(specs, PIPELINE)
    (workdir / "last_run.log").write_text(run.output)
    if run.record is None:
        print(run.output[-5000:], file=sys.stderr)
        print(f"The run ended {run.state} without an execution record; log: {workdir / 'last_run.log'}")
        return 1
    report(run.record)
    print(f"\nRun {run.run_id} ended: {run.state}. Full log: {workdir / 'last_run.log'}")
    return 0 if run.state == "success" else 1


def _specs_with_registry(source: Path, target: Path, registry: str) -> Path:
    """A copy of the spec folder with an overlay for ``DEMO_ENVIRONMENT`` that sets the registry."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    overlay = {"stages": [{"name": "register", "config": {"registry": registry}}]}
    # JSON is YAML: no quoting rules to get wrong for the URI.
    (target / f"{PIPELINE}.{DEMO_ENVIRONMENT}.yaml").write_text(json.dumps(overlay) + "\n")
    return target


def report(record: dict[str, Any]) -> None:
    print("\n--- Execution record (XCom of task 'execution_record') ---")
    print(json.dumps(record, indent=2))
    for stage, sweep in (record.get("sweeps") or {}).items():
        print(f"\n--- Sweep of {stage}: {sweep['mode']} {sweep['metric']} wins ---")
        for index, variant in enumerate(sweep["variants"]):
            value = (variant.get("metrics") or {}).get(sweep["metric"])
            mark = "  <- selected" if index == sweep["selected"] else ""
            print(f"{variant['label']:<44}{_fmt(value):>10}  {variant['state']}{mark}")
    metrics = record["outputs"].get("evaluate", {}).get("metrics", {})
    if metrics:
        print("\n--- Metrics against thresholds ---")
        print(f"{'metric':<14}{'model':>10}{'baseline':>10}{'threshold':>11}  result")
        quality = [key for key in metrics if "." not in key and ("@" in key or key == "coverage")]
        for name in sorted(quality):
            threshold = metrics.get(f"threshold.{name}")
            passed = metrics.get(f"passed.{name}")
            result = "-" if passed is None else ("PASS" if passed == 1.0 else "FAIL")
            baseline = metrics.get(f"baseline.{name}")
            print(f"{name:<14}{metrics[name]:>10.4f}{_fmt(baseline):>10}{_fmt(threshold):>11}  {result}")
        print(f"all_metrics_passed: {metrics.get('all_metrics_passed') == 1.0}")
    register = record["outputs"].get("register")
    if register:
        version = int(register["metrics"].get("version", 0))
        promoted = register["metrics"].get("promoted") == 1.0
        print(f"\nModel registered as version {version} at {register['artifacts'].get('version')}")
        print("Promoted to 'production'." if promoted else "Not promoted: 'production' is unchanged.")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
