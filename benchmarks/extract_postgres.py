"""Extract: the ``data.extract.database`` stage on PostgreSQL vs ``psql \\copy``, and its memory.

A ``user_events`` table (user_id, item_id, event_type, value, date) is generated in a scratch
schema of the local PostgreSQL with ``generate_series``. Then:

* **Stage time** (3M rows by default), alternating in each round:

  - the stage in a deployment (what the goal is set on): a two-stage pipeline, a no-op stage
    (``bench_components.noop``) then the extract (``SELECT user_id, ..., date FROM user_events``
    through the connection ``bench_pg``, ``batch_size`` 10000, Parquet zstd), triggered through
    the REST API of a running deployment: api-server, scheduler and dag-processor as processes,
    the LocalExecutor, a scratch PostgreSQL metadata database. Each task runs in a fresh
    supervised process that talks to the api-server over HTTP, as on any worker. A stage's time
    is its task log's "Stage 'x' finished in N s", and the extract's *net* time is the
    extract's minus the no-op stage's of the same run (the operator's own cost);
  - the same pipeline through ``airflow dags test`` (a fresh process per run), as measured
    before 2026-12-07. That command also runs the execution API server on a thread of the same
    process, which builds its routes while the first tasks run, so the extract's start-up
    competes with it for the GIL: about 0.6 s more than in a deployment (BENCHMARKS.md, 3.3);
  - the floor: ``psql -c "\\copy (SELECT ...) TO 'file.csv' CSV"``, the server's COPY protocol
    straight to a file: no Python, no types, no compression.

  - the component alone: ``run(config, context)`` in a fresh process with Airflow's plugins and
    the provider loaded first (as in a worker), timed around ``run`` only.

  The ratios net extract / psql and component / psql are taken within each round; medians over
  rounds. Beside the wall times: CPU seconds, of ``run()`` in the component's process (all its
  threads), of the ``psql`` process, and of the whole ``airflow dags test`` process tree (parse
  and start-up included, so only comparable with itself). On a shared 2-vCPU machine CPU time
  moves far less with the load than wall time does.
* **Before/after** (``--baseline TREE``): the stage (in a second deployment and through ``dags
  test``) and the component also run from another tree holding an ``airflow_mlpipe`` package
  (for example ``git archive`` of the commit before a change), put first on the children's
  ``PYTHONPATH``, in the same rounds, the order rotating.
* **Memory**: the component alone (``run(config, context)`` with a real ``ComponentContext``) in a
  fresh process per run at 1M, 2M and 4M rows, its peak RSS (``ru_maxrss``); it should stay
  flat, since the result streams through a bounded queue one batch at a time.

The schema and the deployments' metadata databases are dropped at the end.

    python benchmarks/extract_postgres.py            # 3M rows x 3 rounds; memory at 1M, 2M, 4M x 3
    python benchmarks/extract_postgres.py --rounds 5 --baseline /tmp/before-tree
    python benchmarks/extract_postgres.py --quick    # 20k rows, memory to 80k, one round
    python benchmarks/extract_postgres.py --no-deployment   # without the deployment (about 1 min less)
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import benchlib
import httpx

PG_URI = "postgresql://postgres@127.0.0.1:5432/test"
PSQL = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "test"]
COLUMNS = "user_id, item_id, event_type, value, date"


def psql(sql: str) -> None:
    result = subprocess.run([*PSQL, "-c", sql], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}\n{sql}")


def fill(schema: str, start: int, stop: int) -> None:
    """Rows ``start..stop-1`` of the synthetic event log (100k users, 20k items, ~100 days)."""
    psql(
        f"INSERT INTO {schema}.user_events "
        "SELECT 1 + (i * 2654435761) % 100000, 1 + (i * 40503) % 20000, "
        "(ARRAY['view','click','purchase'])[1 + (i * 31) % 3], ((i * 17) % 1000) / 10.0, "
        "timestamp '2024-01-01' + ((i * 7919) % 8640000) * interval '1 second' "
        f"FROM generate_series({start}::bigint, {stop - 1}::bigint) AS i; ANALYZE {schema}.user_events;"
    )


def run_with_rusage(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one child process, via wait4."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{command[0]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children so far (for the delta around one run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_s() -> float:
    """CPU seconds of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_env(env: dict[str, str], tree: str | None) -> dict[str, str]:
    """``env`` with ``tree``'s ``airflow_mlpipe`` first on ``PYTHONPATH`` (after benchmarks/)."""
    if tree:
        env = {
            **env,
            "PYTHONPATH": os.pathsep.join([str(benchlib.BENCH_DIR), tree, env.get("PYTHONPATH", "")]),
        }
    return env


def child_component(schema: str, batch_size: int, out_dir: str) -> None:
    """In a fresh process: run the component once, report time, rows and memory."""

    # What a worker has done before the component runs: load plugins; and the libraries run()
    # imports on first use, so the timed part is the extraction itself.
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

    from airflow_mlpipe.components.data.extract import database

    plugins = benchlib.load_airflow_plugins()
    context = benchlib.component_context("extract", out_dir)
    config = database.Config(
        query=f"SELECT {COLUMNS} FROM {schema}.user_events", conn_id="bench_pg", batch_size=batch_size
    )
    rss_before = benchlib.peak_rss_mb()
    cpu_before = self_cpu_s()
    started = time.perf_counter()
    result = database.run(config, context)
    seconds = time.perf_counter() - started
    cpu = self_cpu_s() - cpu_before
    size = Path(out_dir, database.FILE_NAME).stat().st_size
    benchlib.emit(
        {
            "seconds": seconds,
            "cpu_s": cpu,
            "rows": result["metrics"]["rows"],
            "rss_before_mb": rss_before,
            "bytes": size,
            "plugins_s": plugins,
        }
    )


def run_component(schema: str, batch_size: int, work: Path, tree: str | None = None) -> dict[str, Any]:
    out_dir = work / f"parquet-{uuid.uuid4().hex[:8]}"
    env = tree_env(benchlib.airflow_env(work / "airflow-home", AIRFLOW_CONN_BENCH_PG=PG_URI), tree)
    try:
        return benchlib.run_child([__file__, "--child", schema, str(batch_size), str(out_dir)], env)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def run_psql(schema: str, work: Path) -> dict[str, Any]:
    target = work / "copy.csv"
    sql = f"\\copy (SELECT {COLUMNS} FROM {schema}.user_events) TO '{target}' WITH (FORMAT csv)"
    wall, cpu, rss = run_with_rusage([*PSQL, "-c", sql])
    size = target.stat().st_size
    target.unlink()
    return {"seconds": wall, "cpu_s": cpu, "peak_rss_mb": rss, "bytes": size}


#: The operator's log line with a stage's time.
STAGE_TIME = re.compile(r"Stage '(\w+)' finished in ([\d.]+) s")

STAGE_SPEC = """\
name: bench_extract
version: 1.0.0
metadata:
  owner: bench
  schedule: null
stages:
  - name: noop
    component: bench_components.noop
    config: {{}}
  - name: extract
    component: data.extract.database
    config:
      query: "SELECT {columns} FROM {schema}.user_events"
      conn_id: bench_pg
      batch_size: {batch_size}
    dependencies: [noop]
"""


class StageRunner:
    """``airflow dags test`` of the no-op + extract pipeline in a sandbox; each run a fresh process."""

    def __init__(self, work: Path, schema: str, batch_size: int) -> None:
        from airflow_mlpipe.testing import AirflowSandbox

        self.specs = work / "specs"
        self.specs.mkdir()
        spec = STAGE_SPEC.format(columns=COLUMNS, schema=schema, batch_size=batch_size)
        (self.specs / "bench_extract.yaml").write_text(spec)
        env = {
            key: value
            for key, value in benchlib.airflow_env(work / "unused-home").items()
            if key.startswith("AIRFLOW__MLPIPE") or key in ("PYTHONPATH", "PYTHONWARNINGS")
        }
        env["AIRFLOW_CONN_BENCH_PG"] = PG_URI
        self.sandbox = AirflowSandbox(work / "sandbox", env=env).setup()

    def run(self, tree: str | None = None) -> dict[str, Any]:
        env = tree_env({"PYTHONPATH": self.sandbox.extra_env.get("PYTHONPATH", "")}, tree) if tree else None
        cpu_before = children_cpu_s()
        started = time.perf_counter()
        result = self.sandbox.run(self.specs, "bench_extract", env=env)
        wall = time.perf_counter() - started
        cpu = children_cpu_s() - cpu_before
        if result.state != "success":
            raise RuntimeError(f"the bench_extract run failed:\n{result.output[-4000:]}")
        times = {m.group(1): float(m.group(2)) for m in STAGE_TIME.finditer(result.output)}
        rows = re.search(r"Extracted (\d+) rows, \d+ columns", result.output)
        return {
            "extract_s": times["extract"],
            "noop_s": times["noop"],
            "net_s": times["extract"] - times["noop"],
            "rows": int(rows.group(1)) if rows else None,
            "wall_s": wall,
            "process_cpu_s": cpu,
        }


class DeploymentRunner:
    """The same pipeline in a running deployment, as a worker runs it.

    ``airflow dags test`` runs the tasks of a run in its own process *and* the execution API
    server on a thread of that process, which builds its routes while the first tasks run: the
    extract's imports and connection set-up compete with it for the GIL. Here the api-server, scheduler and
    dag-processor are processes of their own (LocalExecutor, a scratch PostgreSQL metadata
    database), and each task runs in a fresh supervised process that talks to the api-server
    over HTTP, as on any worker. Runs are triggered through the REST API; the stage times are
    read from the task logs.
    """

    DAG_ID = "bench_extract"

    def __init__(self, work: Path, specs: Path, tree: str | None = None) -> None:
        helpers = str(benchlib.REPO / "tests" / "deployment")
        if helpers not in sys.path:  # once, though a --baseline run makes two deployments
            sys.path.insert(0, helpers)
        import airflow_processes as deployment  # the deployment tests' process and REST helpers

        from airflow_mlpipe.testing.sandbox import LOADER

        root = work / f"deployment-{uuid.uuid4().hex[:8]}"
        dags = root / "dags"
        dags.mkdir(parents=True)
        (dags / "mlpipe_loader.py").write_text(LOADER.format(spec_folder=str(specs.resolve())))
        self.database = f"mlpipe_bench_{uuid.uuid4().hex[:10]}"
        port = deployment.free_port()
        base_url = f"http://127.0.0.1:{port}"
        bench_env = tree_env(benchlib.airflow_env(root / "airflow-home", AIRFLOW_CONN_BENCH_PG=PG_URI), tree)
        settings = {key: value for key, value in bench_env.items() if key.startswith("AIRFLOW")}
        settings.update(
            PYTHONPATH=bench_env["PYTHONPATH"],
            PYTHONWARNINGS="ignore",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.database}",
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base_url}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=deployment.write_passwords(
                root / "passwords.json", {"admin": "admin"}
            ),
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(root / "passwords.json"),
            AIRFLOW__API__BASE_URL=base_url,
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__SECRET_KEY=uuid.uuid4().hex,
            AIRFLOW__API_AUTH__JWT_SECRET=uuid.uuid4().hex,
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",  # the stage-time lines are INFO
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(deployment.free_port()),
            AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
            # Parsed once: no re-parse of the folder competes with the measured runs.
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="3600",
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3600",
            AIRFLOW__MLPIPE__ARTIFACT_ROOT=f"file://{root / 'artifacts'}",
        )
        self.processes = deployment.AirflowProcesses(deployment.clean_environment(**settings), root / "logs")
        psql(f'CREATE DATABASE "{self.database}"')
        try:
            self.processes.run("db", "migrate", timeout=300)
            self.processes.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port))
            self.processes.start("scheduler", "scheduler")
            self.processes.start("dag-processor", "dag-processor")

            def api_up() -> bool:
                self.processes.check_alive()
                return httpx.get(f"{base_url}/api/v2/version", timeout=5).status_code == 200

            deployment.wait_until(api_up, 180, "the api-server")
            self.api = deployment.AirflowApi(base_url, "admin", "admin-password")

            def parsed() -> bool:
                self.processes.check_alive()
                return self.DAG_ID in {dag["dag_id"] for dag in self.api.get("/api/v2/dags")["dags"]}

            deployment.wait_until(parsed, 180, "the dag-processor to parse the spec", interval=2)
            self.api.set_paused(self.DAG_ID, False)
        except BaseException:
            self.close()
            raise

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        run_id = self.api.trigger(self.DAG_ID)
        state = self.api.wait_for_run(self.DAG_ID, run_id, timeout=600)["state"]
        wall = time.perf_counter() - started
        if state != "success":
            states = self.api.task_states(self.DAG_ID, run_id)
            raise RuntimeError(
                f"the deployment's run failed: {states}\n{self.processes.log_tail('scheduler')}"
            )
        times = {}
        for task in ("noop", "extract"):
            match = STAGE_TIME.search(self.api.task_log(self.DAG_ID, run_id, task))
            if match is None:
                raise RuntimeError(f"no stage time in the log of task {task} of run {run_id}")
            times[task] = float(match.group(2))
        rows = self.api.xcom(self.DAG_ID, run_id, "extract")["metrics"]["rows"]
        return {
            "extract_s": times["extract"],
            "noop_s": times["noop"],
            "net_s": times["extract"] - times["noop"],
            "rows": int(rows),
            "wall_s": wall,
        }

    def close(self) -> None:
        self.processes.stop()
        psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


#: How each way of running the pipeline is named in the table.
RUN_BY = {"deployment": "in a deployment (LocalExecutor)", "dags test": "in `airflow dags test`"}


def stage_rows(
    runs: list[dict[str, Any]], rows: int, run_by: str, label: str, cpu: str = "-"
) -> list[list[Any]]:
    """Table rows of the runs of one kind (``RUN_BY``): the extract stage, the no-op stage, the net."""
    return [
        [
            f"extract stage {RUN_BY[run_by]} (task log){label}",
            len(runs),
            benchlib.spread(r["extract_s"] for r in runs),
            benchlib.spread(rows / r["extract_s"] for r in runs),
            cpu,
        ],
        [f"no-op stage, same run{label}", len(runs), benchlib.spread(r["noop_s"] for r in runs), "-", "-"],
        [
            f"**{run_by}: extract net of the no-op stage**{label}",
            len(runs),
            benchlib.spread(r["net_s"] for r in runs),
            benchlib.spread(rows / r["net_s"] for r in runs),
            "-",
        ],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k rows, memory to 80k, one round")
    parser.add_argument("--rows", type=int, help="rows for the stage-time rounds (default 3,000,000)")
    parser.add_argument(
        "--memory-rows", type=int, nargs="+", help="table sizes of the memory runs (1M 2M 4M)"
    )
    parser.add_argument("--batch-size", type=int, default=10_000, help="the component's batch_size (10000)")
    parser.add_argument("--rounds", type=int, help="stage-time rounds (default 3)")
    parser.add_argument("--memory-runs", type=int, help="runs per memory size (default 3)")
    parser.add_argument(
        "--baseline", help="tree with the 'before' airflow_mlpipe, run in the same rounds (default: none)"
    )
    parser.add_argument(
        "--no-deployment",
        action="store_true",
        help="leave out the stage in a running deployment (api-server, scheduler, LocalExecutor)",
    )
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_component(args.child[0], int(args.child[1]), args.child[2])
        return 0

    rows = args.rows or (20_000 if args.quick else 3_000_000)
    memory_sizes = sorted(
        args.memory_rows or ([20_000, 40_000, 80_000] if args.quick else [1_000_000, 2_000_000, 4_000_000])
    )
    rounds = args.rounds or (1 if args.quick else 3)
    if args.baseline and not (Path(args.baseline) / "airflow_mlpipe" / "__init__.py").is_file():
        parser.error(f"{args.baseline} holds no airflow_mlpipe package")
    baseline = str(Path(args.baseline).resolve()) if args.baseline else None
    memory_runs = args.memory_runs or (1 if args.quick else 3)
    info = benchlib.machine()
    benchlib.print_header("Extract benchmark", info)
    schema = f"mlpipe_bench_{uuid.uuid4().hex[:10]}"
    work = Path(tempfile.mkdtemp(prefix="mlpipe-bench-extract-"))
    print(
        f"stage time at {rows} rows, {rounds} rounds; memory at {memory_sizes} rows x {memory_runs}; "
        f"batch_size {args.batch_size}; table {schema}.user_events"
    )
    print(f"baseline: {benchlib.shown(baseline)}\n" if baseline else "")

    raw: dict[str, Any] = {
        "machine": info,
        "rows": rows,
        "batch_size": args.batch_size,
        "baseline": benchlib.shown(baseline) if baseline else None,
        "runs": {},
    }
    memory: dict[int, list[dict[str, Any]]] = {}
    results: dict[str, list[dict[str, Any]]] = {
        name: []
        for name in (
            "deployment",
            "stage",
            "psql",
            "component",
            "deployment_baseline",
            "stage_baseline",
            "component_baseline",
        )
    }
    stage, floor, alone = results["stage"], results["psql"], results["component"]
    deployments: dict[str, DeploymentRunner] = {}
    try:
        psql(
            f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.user_events (user_id integer NOT NULL, "
            "item_id integer NOT NULL, event_type text NOT NULL, value double precision NOT NULL, "
            "date timestamp NOT NULL)"
        )
        runner = StageRunner(work, schema, args.batch_size)
        if not args.no_deployment:
            deployments["deployment"] = DeploymentRunner(work, runner.specs)
            if baseline:
                deployments["deployment_baseline"] = DeploymentRunner(work, runner.specs, baseline)
        filled = 0
        # Grow the table once: the memory sizes below the stage-time size, then those rounds, then the rest.
        for size in sorted({*memory_sizes, rows}):
            fill(schema, filled, size)
            filled = size
            if size in memory_sizes:
                memory[size] = [run_component(schema, args.batch_size, work) for _ in range(memory_runs)]
                print(f"  memory at {size} rows done", file=sys.stderr)
            if size == rows:
                contestants = {
                    **{name: deployed.run for name, deployed in deployments.items()},
                    "stage": runner.run,
                    "psql": lambda: run_psql(schema, work),
                    "component": lambda: run_component(schema, args.batch_size, work),
                }
                if baseline:
                    contestants["stage_baseline"] = lambda: runner.run(baseline)
                    contestants["component_baseline"] = lambda: run_component(
                        schema, args.batch_size, work, baseline
                    )
                names = list(contestants)
                for round_no in range(rounds):
                    shift = round_no % len(names)
                    for name in names[shift:] + names[:shift]:
                        results[name].append(contestants[name]())
                    print(
                        f"  round {round_no + 1}/{rounds} done, load {os.getloadavg()[0]:.1f}",
                        file=sys.stderr,
                    )
        staged = [
            r
            for name in ("deployment", "deployment_baseline", "stage", "stage_baseline")
            for r in results[name]
        ]
        bad = [r["rows"] for r in staged if r["rows"] != rows] + [
            r["rows"] for size, runs in memory.items() for r in runs if r["rows"] != size
        ]
        if bad:
            raise RuntimeError(f"the extract returned {bad} rows, not the table's")
        raw["runs"] = {**results, "memory": {str(k): v for k, v in memory.items()}}
        raw["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        for deployed in deployments.values():
            deployed.close()
        psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(work, ignore_errors=True)

    print(f"load average at the end: {raw['loadavg_end']}\n")
    print(f"## Throughput: the extract stage on {rows} rows vs psql, median (min-max)\n")
    versions = [("", "")] + ([("_baseline", " (baseline)")] if baseline else [])
    table_rows = []
    for suffix, label in versions:
        if results["deployment" + suffix]:
            table_rows += stage_rows(results["deployment" + suffix], rows, "deployment", label)
    for suffix, label in versions:
        stages, components = results["stage" + suffix], results["component" + suffix]
        cpu = benchlib.spread(r["process_cpu_s"] for r in stages) + " (dags test process)"
        table_rows += [
            *stage_rows(stages, rows, "dags test", label, cpu),
            [
                f"component alone, fresh process (run() only){label}",
                len(components),
                benchlib.spread(r["seconds"] for r in components),
                benchlib.spread(rows / r["seconds"] for r in components),
                benchlib.spread(r.get("cpu_s") for r in components),
            ],
        ]
    table_rows.append(
        [
            "psql \\copy -> CSV (floor)",
            len(floor),
            benchlib.spread(r["seconds"] for r in floor),
            benchlib.spread(rows / r["seconds"] for r in floor),
            benchlib.spread(r["cpu_s"] for r in floor),
        ]
    )
    print(benchlib.table(["extract", "runs", "seconds", "rows/s", "CPU s"], table_rows))
    print()
    for suffix, label in versions:
        stages, components = results["stage" + suffix], results["component" + suffix]
        if results["deployment" + suffix]:
            ratio = [
                d["net_s"] / f["seconds"] for d, f in zip(results["deployment" + suffix], floor, strict=True)
            ]
            goal = " (goal <= 1.5, aim 1.0)" if not suffix else ""
            print(
                f"deployment: extract net / psql time, within a round{label}: {benchlib.spread(ratio)}{goal}"
            )
        ratio = [s["net_s"] / f["seconds"] for s, f in zip(stages, floor, strict=True)]
        print(f"dags test: extract net / psql time, within a round{label}: {benchlib.spread(ratio)}")
        ratio_alone = [c["seconds"] / f["seconds"] for c, f in zip(components, floor, strict=True)]
        print(f"component alone / psql time, within a round{label}: {benchlib.spread(ratio_alone)}")
        cpu_ratio = [c["cpu_s"] / f["cpu_s"] for c, f in zip(components, floor, strict=True) if "cpu_s" in c]
        print(f"component run() CPU / psql process CPU, within a round{label}: {benchlib.spread(cpu_ratio)}")
    if baseline:
        after_before = [
            a["net_s"] / b["net_s"] for a, b in zip(stage, results["stage_baseline"], strict=True)
        ]
        print(f"dags test: extract net, after / baseline, within a round: {benchlib.spread(after_before)}")
        if results["deployment_baseline"]:
            after_before = [
                a["net_s"] / b["net_s"]
                for a, b in zip(results["deployment"], results["deployment_baseline"], strict=True)
            ]
            print(
                f"deployment: extract net, after / baseline, within a round: {benchlib.spread(after_before)}"
            )
        cpu_after_before = [
            a["cpu_s"] / b["cpu_s"]
            for a, b in zip(alone, results["component_baseline"], strict=True)
            if "cpu_s" in b
        ]
        print(f"component run() CPU, after / baseline, within a round: {benchlib.spread(cpu_after_before)}")
    print(f"\n## Memory of the component alone at batch_size {args.batch_size}, median (min-max)\n")
    base_rows = memory_sizes[0]
    base = benchlib.median(r["peak_rss_mb"] for r in memory[base_rows])
    memory_table = [
        [
            n,
            len(runs),
            benchlib.spread(r["seconds"] for r in runs),
            benchlib.spread(n / r["seconds"] for r in runs),
            benchlib.fmt(benchlib.median(r["bytes"] for r in runs) / 2**20),
            benchlib.spread(r["peak_rss_mb"] for r in runs),
            benchlib.spread(r["peak_rss_mb"] - r["rss_before_mb"] for r in runs),
            benchlib.fmt(benchlib.median(r["peak_rss_mb"] for r in runs) / base),
        ]
        for n, runs in sorted(memory.items())
    ]
    headers = [
        "rows",
        "runs",
        "seconds",
        "rows/s",
        "file MB",
        "peak RSS MB",
        "RSS growth during run MB",
        f"peak / at {base_rows}",
    ]
    print(benchlib.table(headers, memory_table))
    benchlib.save(args.json, "extract_postgres", raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
