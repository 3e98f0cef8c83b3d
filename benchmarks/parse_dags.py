"""Parse cost: this project's specs vs hand-written Python DAGs vs dag-factory YAML, side by side.

Airflow re-parses every DAG file every 30 s, kills a file's parse after ``dagbag_import_timeout``
(30 s by default) and parses again on the worker at every task start, so parse time is what a
DAG factory's users feel first. For N pipelines of M stages (a chain of M stages, then the
``execution_record`` task that waits for all of them) this script generates three equivalent
dags folders:

* ``mlpipe``: one loader file and ``pipelines/NAME.yaml`` specs, built by ``build_dags``;
* ``handwritten``: one Python file per pipeline building the very same DAG (same operators and
  arguments, dependencies, schedule, default args, retries): the floor;
* ``dagfactory``: one ``load_yaml_dags`` loader file and one dag-factory YAML per pipeline, with
  the same operators (through ``bench_components.dagfactory_ops``, as YAML cannot spell a
  dataclass argument).

and measures, each in a fresh child process with its own Airflow home:

* ``warm``: ``DagBag`` loading the folder, with every contestant's modules imported first, so only
  the parse itself is timed (interleaved contestants, one child per measurement, a discarded
  warm-up round that also fills the OS cache and Python's bytecode cache);
* ``cold``: the dag-processor's parse of the file(s) (``airflow.dag_processing.processor
  ._parse_file``: DagBag plus serialisation) in a fresh process, first imports included;
* ``worker``: what a worker parses when it starts one task: the parsing context names the DAG
  and task (``_AIRFLOW_PARSING_CONTEXT_*``), the file is loaded as the task runner does
  (``BundleDagBag``, ``safe_mode=False``); timed at the smallest and the largest N.

plus each child's peak RSS. Before timing, one child checks the three folders hold equivalent DAGs.

    python benchmarks/parse_dags.py            # N in 10,100,1000; M in 5,20; 5 rounds (~20 min)
    python benchmarks/parse_dags.py --quick    # tiny sizes, one round (smoke test, make bench)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import benchlib

# dag-factory comes with the bench extra (pip install -e ".[bench]"); without it (as in CI's
# smoke test) the script runs the other two contestants.
HAVE_DAGFACTORY = importlib.util.find_spec("dagfactory") is not None
AVAILABLE = ("mlpipe", "handwritten", "dagfactory") if HAVE_DAGFACTORY else ("mlpipe", "handwritten")
CONTESTANTS = list(AVAILABLE)  # narrowed by --contestants
COMPONENT = "bench_components.engagement"
COMPONENT_CONFIG = {"window_days": 7}
OWNER = "bench-team"
SCHEDULE = "0 3 * * *"
NOTIFY = "bench-alerts@example.com"
VERSION = "1.0.0"
DEFAULT_TIMEOUT_S = 30.0  # Airflow's default [core] dagbag_import_timeout


def pipeline_name(i: int) -> str:
    return f"bench_p{i:04d}"


def stage_names(m: int) -> list[str]:
    return [f"stage_{j:02d}" for j in range(m)]


# --- generating the three folders ---------------------------------------------------------------


def write_mlpipe(folder: Path, n: int, m: int) -> None:
    specs = folder / "pipelines"
    specs.mkdir(parents=True)
    (folder / "mlpipe_loader.py").write_text(
        '"""Airflow DAGs for every spec in pipelines/."""\n\n'
        "from pathlib import Path\n\n"
        "from airflow_mlpipe.factory import build_dags\n\n"
        'globals().update(build_dags(Path(__file__).parent / "pipelines"))\n'
    )
    for i in range(n):
        name = pipeline_name(i)
        lines = [
            f"name: {name}",
            f"version: {VERSION}",
            "metadata:",
            f"  owner: {OWNER}",
            f"  description: Benchmark pipeline {i}",
            "  tags: [bench]",
            f'  schedule: "{SCHEDULE}"',
            f'  notify_on_failure: ["{NOTIFY}"]',
            "defaults:",
            "  retries: 1",
            "  retry_delay: 5m",
            "stages:",
        ]
        previous = None
        for stage in stage_names(m):
            lines += [
                f"  - name: {stage}",
                f"    component: {COMPONENT}",
                "    config:",
                *[f"      {key}: {value}" for key, value in COMPONENT_CONFIG.items()],
                f"    dependencies: [{previous or ''}]",
            ]
            previous = stage
        (specs / f"{name}.yaml").write_text("\n".join(lines) + "\n")


HANDWRITTEN_HEADER = '''\
"""Hand-written Airflow DAG {name}: the same DAG the factory builds from {name}.yaml."""

from datetime import datetime, timezone, timedelta
from types import MappingProxyType

from airflow.sdk import DAG, Param

from airflow_mlpipe.operators.component import ComponentOperator
from airflow_mlpipe.pipeline_run import PipelineRef
from airflow_mlpipe.operators.record import ExecutionRecordOperator

STAGES = {stages!r}
PIPELINE = PipelineRef(
    name="{name}",
    version="{version}",
    config_version="handwritten",
    environment="dev",
    sources=(__file__,),
    overridable=MappingProxyType({{stage: frozenset({{"window_days"}}) for stage in STAGES}}),
)

with DAG(
    dag_id="{name}",
    schedule="{schedule}",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    description="Benchmark pipeline {i}",
    tags=["bench", "mlpipe", "v{version}"],
    default_args={{"owner": "{owner}"}},
    params={{
        "overrides": Param({{}}, type="object", title="Config overrides"),
        "cache": Param(True, type="boolean", title="Use the stage cache"),
    }},
):
'''


def write_handwritten(folder: Path, n: int, m: int) -> None:
    folder.mkdir(parents=True)
    stages = stage_names(m)
    for i in range(n):
        name = pipeline_name(i)
        code = HANDWRITTEN_HEADER.format(
            name=name, version=VERSION, stages=stages, schedule=SCHEDULE, i=i, owner=OWNER
        )
        for stage in stages:
            code += (
                f"    {stage} = ComponentOperator(\n"
                f'        task_id="{stage}",\n'
                f'        component="{COMPONENT}",\n'
                f"        config={COMPONENT_CONFIG!r},\n"
                "        pipeline=PIPELINE,\n"
                "        cache=True,\n"
                "        retries=1,\n"
                "        retry_delay=timedelta(minutes=5),\n"
                "    )\n"
            )
        code += (
            "    execution_record = ExecutionRecordOperator(\n"
            '        task_id="execution_record",\n'
            "        pipeline=PIPELINE,\n"
            f'        notify_on_failure=["{NOTIFY}"],\n'
            "    )\n"
            f"    {' >> '.join(stages)}\n"
            f"    [{', '.join(stages)}] >> execution_record\n"
        )
        (folder / f"{name}.py").write_text(code)


def write_dagfactory(folder: Path, n: int, m: int) -> None:
    specs = folder / "specs"
    specs.mkdir(parents=True)
    (folder / "dagfactory_loader.py").write_text(
        '"""Airflow DAGs for every dag-factory YAML in specs/."""\n\n'
        "from pathlib import Path\n\n"
        "from dagfactory import load_yaml_dags\n\n"
        'SPECS = str(Path(__file__).parent / "specs")\n'
        "load_yaml_dags(globals_dict=globals(), dags_folder=SPECS, defaults_config_path=SPECS)\n"
    )
    stages = stage_names(m)
    for i in range(n):
        name = pipeline_name(i)
        pipeline = (
            f"{{name: {name}, version: {VERSION}, config_version: dagfactory, environment: dev, sources: [],"
            f" stages: [{', '.join(stages)}], overridable: [window_days]}}"
        )
        # What every task shares goes into default_args (Airflow hands those to any operator
        # argument of that name), as a dag-factory user would write it; the record task, which
        # never retries, overrides retries.
        lines = [
            f"{name}:",
            "  default_args:",
            f"    owner: {OWNER}",
            f"    pipeline: {pipeline}",
            "    retries: 1",
            "    retry_delay:",
            "      __type__: datetime.timedelta",
            "      minutes: 5",
            f'  schedule: "{SCHEDULE}"',
            "  start_date: 2024-01-01",
            "  catchup: false",
            f"  description: Benchmark pipeline {i}",
            f'  tags: [bench, mlpipe, "v{VERSION}"]',
            "  params:",
            "    overrides: {}",
            "    cache: true",
            "  tasks:",
        ]
        previous = None
        for stage in stages:
            lines += [
                f"    - task_id: {stage}",
                "      operator: bench_components.dagfactory_ops.YamlComponentOperator",
                f"      component: {COMPONENT}",
                f"      config: {{{', '.join(f'{k}: {v}' for k, v in COMPONENT_CONFIG.items())}}}",
                "      cache: true",
                f"      dependencies: [{previous or ''}]",
            ]
            previous = stage
        lines += [
            "    - task_id: execution_record",
            "      operator: bench_components.dagfactory_ops.YamlExecutionRecordOperator",
            "      retries: 0",
            f"      notify_on_failure: [{NOTIFY}]",
            f"      dependencies: [{', '.join(stages)}]",
        ]
        (specs / f"{name}.yaml").write_text("\n".join(lines) + "\n")


WRITERS = {"mlpipe": write_mlpipe, "handwritten": write_handwritten, "dagfactory": write_dagfactory}


def generate(root: Path, n: int, m: int, contestants: Sequence[str] = ()) -> dict[str, Path]:
    """The contestants' dags folders for N pipelines of M stages (created once under ``root``)."""
    folders = {}
    for contestant in contestants or CONTESTANTS:
        write = WRITERS[contestant]
        folder = root / f"n{n}-m{m}" / contestant
        if not folder.exists():
            write(folder, n, m)
        folders[contestant] = folder
    return folders


def dag_file(contestant: str, folder: Path, dag_id: str) -> Path:
    """The file the dag-processor or a worker parses to get ``dag_id``."""
    if contestant == "mlpipe":
        return folder / "mlpipe_loader.py"
    if contestant == "dagfactory":
        return folder / "dagfactory_loader.py"
    return folder / f"{dag_id}.py"


# --- children: what runs inside each measured process ------------------------------------------


def _warm_imports() -> None:
    """Import everything any contestant needs, so a warm measurement times the parse alone."""
    import airflow.providers.standard.operators.python
    import airflow.sdk  # noqa: F401
    import bench_components.dagfactory_ops  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    import airflow_mlpipe.components.features.user_engagement
    import airflow_mlpipe.factory  # noqa: F401

    if HAVE_DAGFACTORY:
        import dagfactory.dagbuilder  # noqa: F401


def _check_bag(bag: Any, expect_dags: int | None, expect_tasks: int | None) -> None:
    if bag.import_errors:
        raise SystemExit(f"import errors: {json.dumps(bag.import_errors)[:3000]}")
    tasks = sum(len(dag.tasks) for dag in bag.dags.values())
    if expect_dags is not None and len(bag.dags) != expect_dags:
        raise SystemExit(f"expected {expect_dags} DAGs, got {len(bag.dags)}")
    if expect_tasks is not None and tasks != expect_tasks:
        raise SystemExit(f"expected {expect_tasks} tasks, got {tasks}")


def child_warm(folder: str, n: int, m: int) -> None:
    _warm_imports()
    from airflow.dag_processing.dagbag import DagBag

    rss_before = benchlib.peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=folder)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    _check_bag(bag, n, n * (m + 1) if n else 0)
    slowest_file = max((stat.duration.total_seconds() for stat in bag.dagbag_stats), default=0.0)
    benchlib.emit(
        {"seconds": seconds, "cpu_s": cpu, "rss_before_mb": rss_before, "slowest_file_s": slowest_file}
    )


def child_cold(files: list[str], bundle: str, n: int, m: int) -> None:
    """The dag-processor's work: ``_parse_file`` (DagBag + serialisation) per file, cold imports."""
    started = time.perf_counter()
    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file

    imported = time.perf_counter() - started  # the processor manager has these before it forks
    log = structlog.get_logger("bench")
    dags = tasks = 0
    slowest = 0.0
    started, cpu_started = time.perf_counter(), time.process_time()
    for file in files:
        file_started = time.perf_counter()
        request = DagFileParseRequest(file=file, bundle_path=Path(bundle), bundle_name="bench")
        result = _parse_file(request, log)
        slowest = max(slowest, time.perf_counter() - file_started)
        if result is None or result.import_errors:
            raise SystemExit(f"parse of {file} failed: {result and result.import_errors}")
        dags += len(result.serialized_dags)
        tasks += sum(len(d.data["dag"]["tasks"]) for d in result.serialized_dags)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if dags != n or tasks != n * (m + 1):
        raise SystemExit(f"expected {n} DAGs / {n * (m + 1)} tasks, got {dags} / {tasks}")
    benchlib.emit({"seconds": seconds, "cpu_s": cpu, "airflow_import_s": imported, "slowest_file_s": slowest})


def child_worker(file: str, bundle: str, dag_id: str, task_id: str) -> None:
    """What the task runner parses before it runs ``task_id`` (parsing context set by the parent)."""
    started = time.perf_counter()
    from airflow.dag_processing.dagbag import BundleDagBag

    imported = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    bag = BundleDagBag(
        dag_folder=file, safe_mode=False, load_op_links=False, bundle_path=Path(bundle), bundle_name="bench"
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    _check_bag(bag, None, None)
    if task_id not in bag.dags[dag_id].task_dict:
        raise SystemExit(f"{dag_id}.{task_id} not found")
    benchlib.emit(
        {"seconds": seconds, "cpu_s": cpu, "airflow_import_s": imported, "dags_loaded": len(bag.dags)}
    )


def child_equivalence(folders: dict[str, str]) -> None:
    """Check the three folders hold the same DAGs: tasks, edges, operators, settings."""
    _warm_imports()
    from airflow.dag_processing.dagbag import DagBag

    def describe(dag: Any) -> dict[str, Any]:
        tasks = {}
        for task in dag.tasks:
            cls = type(task)
            base = next(c for c in cls.__mro__ if c.__module__.startswith("airflow_mlpipe"))
            tasks[task.task_id] = {
                "operator": base.__name__,
                "upstream": sorted(task.upstream_task_ids),
                "retries": task.retries,
                "retry_delay": str(task.retry_delay),
                "owner": task.owner,
                "trigger_rule": str(task.trigger_rule),
                "component": getattr(task, "component", None),
                "config": getattr(task, "config", None),
                "stages": list(task.pipeline.stages),
                "overridable": {stage: sorted(f) for stage, f in task.pipeline.overridable.items()},
                "cache": (getattr(task, "cache", None), getattr(task, "cache_ttl", None)),
                "pipeline": (task.pipeline.name, task.pipeline.version),
                "notify": getattr(task, "notify_on_failure", None),
            }
        return {
            "schedule": (str(dag.schedule), type(dag.timetable).__name__),
            "start_date": str(dag.start_date),
            "catchup": dag.catchup,
            "params": sorted(dag.params.keys()),
            "tags": sorted(set(dag.tags) - {"dagfactory"}),
            "tasks": tasks,
        }

    described = {}
    for contestant, folder in folders.items():
        bag = DagBag(dag_folder=folder)
        _check_bag(bag, None, None)
        described[contestant] = {dag_id: describe(dag) for dag_id, dag in sorted(bag.dags.items())}
    reference = described["handwritten"]
    for contestant, dags in described.items():
        if dags != reference:
            diff = next(
                (k, dags.get(k), reference.get(k)) for k in reference if dags.get(k) != reference.get(k)
            )
            raise SystemExit(f"{contestant} differs from handwritten: {json.dumps(diff, default=str)[:3000]}")
    benchlib.emit({"equivalent": True, "dags": len(reference)})


# --- the parent: rounds, statistics, tables ----------------------------------------------------


def run_warm(
    folders: dict[str, Path], n: int, m: int, rounds: int, slow_rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` interleaved rounds; dag-factory, minutes per run at N=1000, gets ``slow_rounds``."""
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTESTANTS}
    if rounds > 1:  # a discarded warm-up: Python's bytecode cache for the hand-written files
        benchlib.run_child(
            [__file__, "--child", "warm", str(folders["handwritten"]), str(n), str(m)], benchlib.airflow_env()
        )
    for round_no in range(rounds):
        for contestant in _order(round_no):
            if contestant == "dagfactory" and round_no >= slow_rounds:
                continue
            folder = str(folders[contestant])
            out = benchlib.run_child(
                [__file__, "--child", "warm", folder, str(n), str(m)], benchlib.airflow_env()
            )
            results[contestant].append(out)
        print(f"  warm N={n} M={m} round {round_no + 1}/{rounds} done", file=sys.stderr)
    return results


def _order(round_no: int) -> tuple[str, ...]:
    """The contestants in a rotated order, so none is always first (or last) in a round."""
    shift = round_no % len(CONTESTANTS)
    return (*CONTESTANTS[shift:], *CONTESTANTS[:shift])


def run_cold(
    folders: dict[str, Path], n: int, m: int, rounds: int, slow_rounds: int
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTESTANTS}
    for round_no in range(rounds):
        for contestant in _order(round_no):
            if contestant == "dagfactory" and round_no >= slow_rounds:
                continue
            folder = folders[contestant]
            files = (
                [str(p) for p in sorted(folder.glob("*.py"))]
                if contestant == "handwritten"
                else [str(dag_file(contestant, folder, ""))]
            )
            args = [__file__, "--child", "cold", json.dumps(files), str(folder), str(n), str(m)]
            results[contestant].append(benchlib.run_child(args, benchlib.airflow_env()))
        print(f"  cold N={n} M={m} round {round_no + 1}/{rounds} done", file=sys.stderr)
    return results


def run_worker(
    folders: dict[str, Path], n: int, rounds: int, slow_rounds: int
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTESTANTS}
    dag_id, task_id = pipeline_name(n - 1), "stage_00"
    context = {"_AIRFLOW_PARSING_CONTEXT_DAG_ID": dag_id, "_AIRFLOW_PARSING_CONTEXT_TASK_ID": task_id}
    for round_no in range(rounds):
        for contestant in _order(round_no):
            if contestant == "dagfactory" and round_no >= slow_rounds:
                continue
            folder = folders[contestant]
            file = dag_file(contestant, folder, dag_id)
            args = [__file__, "--child", "worker", str(file), str(folder), dag_id, task_id]
            results[contestant].append(benchlib.run_child(args, benchlib.airflow_env(**context)))
        print(f"  worker N={n} round {round_no + 1}/{rounds} done", file=sys.stderr)
    return results


def ratios(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str = "seconds") -> list[float]:
    """Per-round ratios a/b; both lists are in round order (one may stop early: slow rounds)."""
    return [x[key] / y[key] for x, y in zip(a, b, strict=False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    parser.add_argument("--n", type=int, nargs="+", help="pipelines per folder (default 10 100 1000)")
    parser.add_argument("--m", type=int, nargs="+", help="stages per pipeline (default 5 20)")
    parser.add_argument(
        "--sections", nargs="+", choices=["warm", "cold", "worker"], default=["warm", "cold", "worker"]
    )
    parser.add_argument("--rounds", type=int, help="warm rounds per size (default 5; 3 at N >= 1000)")
    parser.add_argument(
        "--cold-rounds", type=int, help="rounds of the cold-start and worker runs (default 3)"
    )
    parser.add_argument(
        "--slow-rounds",
        type=int,
        default=2,
        help="at N >= 1000, dag-factory (minutes per parse) runs only this many rounds (default 2; 1 cold)",
    )
    parser.add_argument("--contestants", nargs="+", choices=AVAILABLE, help="default: all installed")
    parser.add_argument("--workdir", help="where to generate the folders (default: a temporary dir)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "warm":
            child_warm(rest[0], int(rest[1]), int(rest[2]))
        elif kind == "cold":
            child_cold(json.loads(rest[0]), rest[1], int(rest[2]), int(rest[3]))
        elif kind == "worker":
            child_worker(*rest)
        elif kind == "equivalence":
            child_equivalence(json.loads(rest[0]))
        return 0

    if args.contestants:
        CONTESTANTS[:] = [c for c in AVAILABLE if c in args.contestants]
    ns = args.n or ([3] if args.quick else [10, 100, 1000])
    ms = args.m or ([2] if args.quick else [5, 20])
    cold_rounds = args.cold_rounds or (1 if args.quick else 3)
    worker_ns = sorted({min(ns), max(ns)})

    def rounds_for(n: int) -> int:
        return args.rounds or (1 if args.quick else 3 if n >= 1000 else 5)

    def slow_for(n: int, rounds: int, cold: bool = False) -> int:
        return rounds if n < 1000 else min(rounds, 1 if cold else args.slow_rounds)

    root = Path(args.workdir or tempfile.mkdtemp(prefix="mlpipe-bench-parse-"))
    info = benchlib.machine()
    benchlib.print_header("Parse benchmark", info)
    print(f"N={ns} M={ms}, sections {args.sections}; folders in {benchlib.shown(root)}\n")

    check = generate(root, 2, 3, AVAILABLE)
    out = benchlib.run_child(
        [__file__, "--child", "equivalence", json.dumps({c: str(p) for c, p in check.items()})],
        benchlib.airflow_env(),
    )
    print(f"Equivalence check: {out['dags']} DAGs identical in the folders of {', '.join(AVAILABLE)}\n")
    if not HAVE_DAGFACTORY:
        print('dag-factory is not installed (pip install -e ".[bench]"): that contestant is left out\n')

    raw: dict[str, Any] = {"machine": info, "warm": {}, "cold": {}, "worker": {}}
    if "warm" in args.sections:
        warm_rows, ratio_rows = [], []
        for m in ms:
            for n in ns:
                rounds = rounds_for(n)
                warm = run_warm(generate(root, n, m), n, m, rounds, slow_for(n, rounds))
                raw["warm"][f"{n}x{m}"] = warm
                for contestant in CONTESTANTS:
                    runs = warm[contestant]
                    warm_rows.append(
                        [
                            n,
                            m,
                            contestant,
                            len(runs),
                            benchlib.spread(r["seconds"] for r in runs),
                            benchlib.spread(r["cpu_s"] for r in runs),
                            benchlib.spread(r["cpu_s"] * 1000 / (n * (m + 1)) for r in runs),
                            benchlib.spread(r["peak_rss_mb"] for r in runs),
                            benchlib.spread(r["peak_rss_mb"] - r["rss_before_mb"] for r in runs),
                            "YES" if max(r["slowest_file_s"] for r in runs) > DEFAULT_TIMEOUT_S else "no",
                        ]
                    )
                mlpipe, hand, dagf = (warm.get(c, []) for c in ("mlpipe", "handwritten", "dagfactory"))
                ratio_rows.append(
                    [
                        n,
                        m,
                        benchlib.spread(ratios(mlpipe, hand, "cpu_s")),
                        benchlib.spread(ratios(dagf, mlpipe, "cpu_s")),
                        benchlib.spread(ratios(dagf, hand, "cpu_s")),
                        benchlib.spread(ratios(mlpipe, hand)),
                        benchlib.spread(ratios(dagf, mlpipe)),
                    ]
                )
        print("## Warm DagBag load of the whole folder (imports done first), median (min-max)\n")
        headers = ["N", "M", "contestant", "runs", "wall s", "CPU s", "CPU ms/task", "peak RSS MB"]
        print(benchlib.table([*headers, "RSS growth MB", "a file > 30 s"], warm_rows))
        print("\n## Ratios within a round, median (min-max); CPU time is the robust one on a busy machine\n")
        headers = ["N", "M", "CPU mlpipe / hand", "CPU dag-factory / mlpipe", "CPU dag-factory / hand"]
        print(benchlib.table([*headers, "wall mlpipe / hand", "wall dag-factory / mlpipe"], ratio_rows))

    if "cold" in args.sections:
        cold_rows = []
        m = max(ms)
        for n in sorted({min(ns), max(ns)}):
            cold = run_cold(generate(root, n, m), n, m, cold_rounds, slow_for(n, cold_rounds, cold=True))
            raw["cold"][f"{n}x{m}"] = cold
            for contestant in CONTESTANTS:
                runs = cold[contestant]
                cold_rows.append(
                    [
                        n,
                        m,
                        contestant,
                        len(runs),
                        benchlib.spread(r["wall_s"] for r in runs),
                        benchlib.spread(r["airflow_import_s"] for r in runs),
                        benchlib.spread(r["seconds"] for r in runs),
                        benchlib.spread(r["cpu_s"] for r in runs),
                        benchlib.spread(r["slowest_file_s"] for r in runs),
                        benchlib.spread(r["peak_rss_mb"] for r in runs),
                    ]
                )
        print("\n## Cold start: the dag-processor's parse (DagBag + serialisation) in a fresh process\n")
        headers = ["N", "M", "contestant", "runs", "process wall s", "airflow import s"]
        print(
            benchlib.table(
                [*headers, "parse+serialise s", "its CPU s", "slowest file s", "peak RSS MB"],
                cold_rows,
            )
        )

    if "worker" in args.sections:
        worker_rows = []
        m = max(ms)
        for n in worker_ns:
            worker = run_worker(generate(root, n, m), n, cold_rounds, slow_for(n, cold_rounds, cold=True))
            raw["worker"][f"{n}x{m}"] = worker
            for contestant in CONTESTANTS:
                runs = worker[contestant]
                worker_rows.append(
                    [
                        n,
                        m,
                        contestant,
                        len(runs),
                        benchlib.spread(r["wall_s"] for r in runs),
                        benchlib.spread(r["seconds"] for r in runs),
                        benchlib.spread(r["cpu_s"] * 1000 for r in runs),
                        f"{benchlib.median(r['dags_loaded'] for r in runs):.0f}",
                        benchlib.spread(r["peak_rss_mb"] for r in runs),
                    ]
                )
        print("\n## Worker: a fresh process parsing for one task start (parsing context set)\n")
        headers = [
            "N",
            "M",
            "contestant",
            "runs",
            "process wall s",
            "DAG file parse s",
            "its CPU ms",
            "DAGs built",
        ]
        print(benchlib.table([*headers, "peak RSS MB"], worker_rows))
    benchlib.save(args.json, "parse_dags", raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
