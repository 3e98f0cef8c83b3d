"""Parse cost: this project's specs vs hand-written Python DAGs vs dag-factory YAML, side by side.

Airflow re-parses every DAG file every 30 s, kills a file's parse after ``dagbag_import_timeout``
(30 s by default) and parses again on the worker at every task start, so parse time is what a
DAG factory's users feel first. For N pipelines of M stages (a chain of M stages, then the
``execution_record`` task that waits for all of them; same schedule, owner, tags, params,
retries and failure e-mail address everywhere) this script generates three dags folders:

* ``mlpipe``: one loader file and ``pipelines/NAME.yaml`` specs, built by ``build_dags``;
* ``handwritten``: what a team writes without a factory: one Python file per pipeline with
  ``PythonOperator`` tasks calling the team's functions (``bench_components.handwritten_tasks``);
* ``dagfactory``: one ``load_yaml_dags`` loader file and one dag-factory 1.1.0 YAML per pipeline,
  running the same components through the project's operators
  (``bench_components.dagfactory_ops``, as YAML cannot spell a dataclass argument).

and measures them the way a dag-processor meets the folder:

* ``dagbag``: a ``DagBag`` load of the whole folder in a fresh process, where ``airflow.sdk``, the
  standard provider's ``PythonOperator`` and ``DagBag`` are imported before the clock starts, but
  not ``airflow_mlpipe`` or ``dagfactory``: the processor imports those when it parses the loader
  file, so their import is part of the cost. Contestants interleaved round by round (rotating
  order), one process per measurement, after a discarded warm-up round (bytecode and OS caches,
  and the spec cache). ``mlpipe`` is the steady state, with the validated-spec cache of earlier
  parses; ``mlpipe_nocache`` (``[mlpipe] spec_cache_dir = off``) is a first parse after a change
  to every spec;
* ``cold``: the dag-processor's parse (``airflow.dag_processing.processor._parse_file``: DagBag
  plus serialisation) of the mlpipe loader file vs the whole hand-written folder (its files one
  after another in one process), first imports included, at the largest size;
* ``worker``: what a worker parses when it starts one task: the parsing context names the DAG
  and task (``_AIRFLOW_PARSING_CONTEXT_*``), the file is loaded as the task runner does
  (``BundleDagBag``, ``safe_mode=False``).

plus each child's peak RSS. Before timing, one child checks the folders hold the same pipelines.

    python benchmarks/parse_dags.py            # 300x10 and 1000x20, 5 rounds (3 at 1000x20)
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
# smoke test) the script runs the other contestants.
HAVE_DAGFACTORY = importlib.util.find_spec("dagfactory") is not None
# contestant -> the folder it parses; both mlpipe contestants parse the same specs.
FOLDER_OF = {
    "mlpipe": "mlpipe",
    "mlpipe_nocache": "mlpipe",
    "handwritten": "handwritten",
    "dagfactory": "dagfactory",
}
AVAILABLE = tuple(c for c in FOLDER_OF if c != "dagfactory" or HAVE_DAGFACTORY)
CONTESTANTS = list(AVAILABLE)  # narrowed by --contestants
DEFAULT_SIZES = ("300x10", "1000x20")
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
"""Hand-written Airflow DAG {name}: the pipeline of {name}.yaml, written as PythonOperator tasks."""

from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from bench_components.handwritten_tasks import execution_record, run_stage

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
    """What a team writes without a factory: one Python file per pipeline, PythonOperator tasks."""
    folder.mkdir(parents=True)
    stages = stage_names(m)
    for i in range(n):
        name = pipeline_name(i)
        code = HANDWRITTEN_HEADER.format(name=name, version=VERSION, schedule=SCHEDULE, i=i, owner=OWNER)
        for stage in stages:
            code += (
                f"    {stage} = PythonOperator(\n"
                f'        task_id="{stage}",\n'
                "        python_callable=run_stage,\n"
                f'        op_kwargs={{"config": {COMPONENT_CONFIG!r}}},\n'
                "        retries=1,\n"
                "        retry_delay=timedelta(minutes=5),\n"
                "    )\n"
            )
        code += (
            "    record = PythonOperator(\n"
            '        task_id="execution_record",\n'
            "        python_callable=execution_record,\n"
            f'        op_kwargs={{"notify_on_failure": ["{NOTIFY}"]}},\n'
            '        trigger_rule="all_done",\n'
            "    )\n"
            f"    {' >> '.join(stages)}\n"
            f"    [{', '.join(stages)}] >> record\n"
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
    """Each contestant's dags folder for N pipelines of M stages (written once under ``root``)."""
    folders = {}
    for contestant in contestants or CONTESTANTS:
        kind = FOLDER_OF[contestant]
        folder = root / f"n{n}-m{m}" / kind
        if not folder.exists():
            WRITERS[kind](folder, n, m)
        folders[contestant] = folder
    return folders


def dag_file(contestant: str, folder: Path, dag_id: str) -> Path:
    """The file the dag-processor or a worker parses to get ``dag_id``."""
    kind = FOLDER_OF[contestant]
    if kind == "mlpipe":
        return folder / "mlpipe_loader.py"
    if kind == "dagfactory":
        return folder / "dagfactory_loader.py"
    return folder / f"{dag_id}.py"


def child_env(contestant: str, root: Path, **extra: str) -> dict[str, str]:
    """A child's environment: ``mlpipe`` keeps its spec cache under ``root``, the others none."""
    cache = str(root / "spec-cache") if contestant == "mlpipe" else "off"
    return benchlib.airflow_env(AIRFLOW__MLPIPE__SPEC_CACHE_DIR=cache, **extra)


# --- children: what runs inside each measured process ------------------------------------------


def _processor_imports() -> None:
    """What a dag-processor has imported before it parses a file: Airflow, not the factories."""
    import airflow.providers.standard.operators.python
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401


def _check_bag(bag: Any, expect_dags: int | None, expect_tasks: int | None) -> None:
    if bag.import_errors:
        raise SystemExit(f"import errors: {json.dumps(bag.import_errors)[:3000]}")
    tasks = sum(len(dag.tasks) for dag in bag.dags.values())
    if expect_dags is not None and len(bag.dags) != expect_dags:
        raise SystemExit(f"expected {expect_dags} DAGs, got {len(bag.dags)}")
    if expect_tasks is not None and tasks != expect_tasks:
        raise SystemExit(f"expected {expect_tasks} tasks, got {tasks}")


def child_dagbag(folder: str, n: int, m: int) -> None:
    _processor_imports()
    from airflow.dag_processing.dagbag import DagBag

    # Airflow's config itself loads the package's provider info and settings; nothing else.
    early = [
        name
        for name in ("airflow_mlpipe.factory", "airflow_mlpipe.spec", "dagfactory")
        if name in sys.modules
    ]
    if early:
        raise SystemExit(f"imported before the clock started: {early}")
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
    """Check the folders hold the same pipelines: tasks, edges, settings, configs, e-mail."""
    _processor_imports()
    from airflow.dag_processing.dagbag import DagBag

    def argument(task: Any, name: str) -> Any:
        """An operator's ``config`` or ``notify_on_failure``; a PythonOperator's op_kwargs hold them."""
        return getattr(task, name, None) or getattr(task, "op_kwargs", {}).get(name)

    def describe(dag: Any) -> dict[str, Any]:
        tasks = {
            task.task_id: {
                "upstream": sorted(task.upstream_task_ids),
                "retries": task.retries,
                "retry_delay": str(task.retry_delay),
                "owner": task.owner,
                "trigger_rule": str(task.trigger_rule),
                "config": argument(task, "config"),
                "notify": argument(task, "notify_on_failure"),
            }
            for task in dag.tasks
        }
        return {
            "schedule": (str(dag.schedule), type(dag.timetable).__name__),
            "start_date": str(dag.start_date),
            "catchup": dag.catchup,
            "description": dag.description,
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


def _order(round_no: int) -> tuple[str, ...]:
    """The contestants in a rotated order, so none is always first (or last) in a round."""
    shift = round_no % len(CONTESTANTS)
    return (*CONTESTANTS[shift:], *CONTESTANTS[:shift])


def run_rounds(
    rounds: int, slow_rounds: int, label: str, child_args: Any, env: Any, warm_up: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` interleaved rounds of ``child_args(contestant)``; dag-factory gets ``slow_rounds``.

    The warm-up round is discarded: it compiles the hand-written files' bytecode, fills the OS
    file cache and the mlpipe spec cache, as a running deployment has them.
    """
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTESTANTS}
    if warm_up:
        for contestant in CONTESTANTS:
            if contestant != "dagfactory":
                benchlib.run_child(child_args(contestant), env(contestant))
    for round_no in range(rounds):
        for contestant in _order(round_no):
            if contestant == "dagfactory" and round_no >= slow_rounds:
                continue
            results[contestant].append(benchlib.run_child(child_args(contestant), env(contestant)))
        print(f"  {label} round {round_no + 1}/{rounds} done", file=sys.stderr)
    return results


def ratios(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str = "seconds") -> list[float]:
    """Per-round ratios a/b; both lists are in round order (one may stop early: slow rounds)."""
    return [x[key] / y[key] for x, y in zip(a, b, strict=False)]


def parse_size(text: str) -> tuple[int, int]:
    n, _, m = text.lower().partition("x")
    return int(n), int(m)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    parser.add_argument(
        "--sizes", nargs="+", help=f"NxM: N pipelines of M stages (default {' '.join(DEFAULT_SIZES)})"
    )
    parser.add_argument(
        "--sections", nargs="+", choices=["dagbag", "cold", "worker"], default=["dagbag", "cold", "worker"]
    )
    parser.add_argument("--rounds", type=int, help="DagBag rounds per size (default 5; 3 at N >= 1000)")
    parser.add_argument("--cold-rounds", type=int, help="rounds of the cold and worker runs (default 3)")
    parser.add_argument(
        "--slow-rounds",
        type=int,
        default=2,
        help="at N >= 1000, dag-factory (tens of seconds per parse) runs only this many rounds (default 2)",
    )
    parser.add_argument("--contestants", nargs="+", choices=AVAILABLE, help="default: all installed")
    parser.add_argument("--workdir", help="where to generate the folders (default: a temporary dir)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "dagbag":
            child_dagbag(rest[0], int(rest[1]), int(rest[2]))
        elif kind == "cold":
            child_cold(json.loads(rest[0]), rest[1], int(rest[2]), int(rest[3]))
        elif kind == "worker":
            child_worker(*rest)
        elif kind == "equivalence":
            child_equivalence(json.loads(rest[0]))
        return 0

    if args.contestants:
        CONTESTANTS[:] = [c for c in AVAILABLE if c in args.contestants]
    sizes = [parse_size(s) for s in args.sizes or (["3x2"] if args.quick else DEFAULT_SIZES)]
    largest = max(sizes)
    cold_rounds = args.cold_rounds or (1 if args.quick else 3)

    def rounds_for(n: int) -> int:
        return args.rounds or (1 if args.quick else 3 if n >= 1000 else 5)

    def slow_for(n: int, rounds: int) -> int:
        return rounds if n < 1000 else min(rounds, args.slow_rounds)

    root = Path(args.workdir or tempfile.mkdtemp(prefix="mlpipe-bench-parse-"))
    info = benchlib.machine()
    benchlib.print_header("Parse benchmark", info)
    print(f"sizes {', '.join(f'{n}x{m}' for n, m in sizes)}, sections {args.sections}; ", end="")
    print(f"folders in {benchlib.shown(root)}\n")

    check = generate(root, 2, 3, [c for c in AVAILABLE if c != "mlpipe_nocache"])
    out = benchlib.run_child(
        [__file__, "--child", "equivalence", json.dumps({c: str(p) for c, p in check.items()})],
        child_env("mlpipe_nocache", root),
    )
    print(f"Equivalence check: {out['dags']} pipelines the same in the folders of {', '.join(check)}\n")
    if not HAVE_DAGFACTORY:
        print('dag-factory is not installed (pip install -e ".[bench]"): that contestant is left out\n')

    raw: dict[str, Any] = {"machine": info, "dagbag": {}, "cold": {}, "worker": {}}
    if "dagbag" in args.sections:
        rows, ratio_rows = [], []
        for n, m in sizes:
            folders = generate(root, n, m)
            rounds = rounds_for(n)
            results = run_rounds(
                rounds,
                slow_for(n, rounds),
                f"dagbag {n}x{m}",
                lambda c, folders=folders, n=n, m=m: [
                    __file__,
                    "--child",
                    "dagbag",
                    str(folders[c]),
                    str(n),
                    str(m),
                ],
                lambda c: child_env(c, root),
                warm_up=rounds > 1,
            )
            raw["dagbag"][f"{n}x{m}"] = results
            for contestant in CONTESTANTS:
                runs = results[contestant]
                rows.append(
                    [
                        f"{n}x{m}",
                        contestant,
                        len(runs),
                        benchlib.spread(r["seconds"] for r in runs),
                        benchlib.spread(r["cpu_s"] for r in runs),
                        benchlib.spread(r["cpu_s"] * 1000 / (n * (m + 1)) for r in runs),
                        benchlib.spread(r["peak_rss_mb"] for r in runs),
                        "YES" if max(r["slowest_file_s"] for r in runs) > DEFAULT_TIMEOUT_S else "no",
                    ]
                )
            mlpipe, nocache, hand, dagf = (
                results.get(c, []) for c in ("mlpipe", "mlpipe_nocache", "handwritten", "dagfactory")
            )
            ratio_rows.append(
                [
                    f"{n}x{m}",
                    benchlib.spread(ratios(mlpipe, hand)),
                    benchlib.spread(ratios(nocache, hand)),
                    benchlib.spread(ratios(dagf, mlpipe)),
                    benchlib.spread(ratios(mlpipe, hand, "cpu_s")),
                    benchlib.spread(ratios(nocache, hand, "cpu_s")),
                    benchlib.spread(ratios(dagf, mlpipe, "cpu_s")),
                ]
            )
        print("## DagBag load of the whole folder, fresh process, factory imports timed; median (min-max)\n")
        headers = [
            "size",
            "contestant",
            "runs",
            "wall s",
            "CPU s",
            "CPU ms/task",
            "peak RSS MB",
            "a file > 30 s",
        ]
        print(benchlib.table(headers, rows))
        print("\n## Ratios within a round, median (min-max)\n")
        headers = ["size", "mlpipe / hand", "mlpipe_nocache / hand", "dag-factory / mlpipe"]
        print(
            benchlib.table(
                [*headers, "CPU mlpipe / hand", "CPU nocache / hand", "CPU dag-factory / mlpipe"], ratio_rows
            )
        )

    n, m = largest
    sizes_measured = sizes if "dagbag" in args.sections else []
    if "cold" in args.sections:
        folders = generate(root, n, m)

        def cold_args(contestant: str) -> list[str]:
            folder = folders[contestant]
            files = (
                [str(p) for p in sorted(folder.glob("*.py"))]
                if contestant == "handwritten"
                else [str(dag_file(contestant, folder, ""))]
            )
            return [__file__, "--child", "cold", json.dumps(files), str(folder), str(n), str(m)]

        cold = run_rounds(
            cold_rounds,
            slow_for(n, min(cold_rounds, 1)),
            f"cold {n}x{m}",
            cold_args,
            lambda c: child_env(c, root),
            warm_up=cold_rounds > 1 and (n, m) not in sizes_measured,  # the DagBag rounds warmed up
        )
        raw["cold"][f"{n}x{m}"] = cold
        rows = []
        for contestant in CONTESTANTS:
            runs = cold[contestant]
            rows.append(
                [
                    f"{n}x{m}",
                    contestant,
                    len(runs),
                    benchlib.spread(r["airflow_import_s"] for r in runs),
                    benchlib.spread(r["seconds"] for r in runs),
                    benchlib.spread(r["cpu_s"] for r in runs),
                    benchlib.spread(r["slowest_file_s"] for r in runs),
                    benchlib.spread(ratios(runs, cold["handwritten"])),
                    benchlib.spread(ratios(runs, cold["handwritten"], "cpu_s")),
                    benchlib.spread(r["peak_rss_mb"] for r in runs),
                ]
            )
        print("\n## Cold: the dag-processor's parse (DagBag + serialisation) in a fresh process\n")
        headers = ["size", "contestant", "runs", "airflow import s", "parse+serialise s", "its CPU s"]
        print(benchlib.table([*headers, "slowest file s", "/ hand", "CPU / hand", "peak RSS MB"], rows))

    if "worker" in args.sections:
        folders = generate(root, n, m)
        dag_id, task_id = pipeline_name(n - 1), "stage_00"
        context = {"_AIRFLOW_PARSING_CONTEXT_DAG_ID": dag_id, "_AIRFLOW_PARSING_CONTEXT_TASK_ID": task_id}
        worker = run_rounds(
            cold_rounds,
            slow_for(n, min(cold_rounds, 1)),
            f"worker {n}x{m}",
            lambda c: [
                __file__,
                "--child",
                "worker",
                str(dag_file(c, folders[c], dag_id)),
                str(folders[c]),
                dag_id,
                task_id,
            ],
            lambda c: child_env(c, root, **context),
            warm_up=False,
        )
        raw["worker"][f"{n}x{m}"] = worker
        rows = []
        for contestant in CONTESTANTS:
            runs = worker[contestant]
            rows.append(
                [
                    f"{n}x{m}",
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
        headers = ["size", "contestant", "runs", "process wall s", "DAG file parse s", "its CPU ms"]
        print(benchlib.table([*headers, "DAGs built", "peak RSS MB"], rows))
    benchlib.save(args.json, "parse_dags", raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
