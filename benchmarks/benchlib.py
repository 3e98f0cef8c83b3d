"""Shared helpers for the benchmark scripts: child processes, statistics, tables, machine facts.

Every measurement runs in a fresh child Python process (``run_child``) with its own throw-away
Airflow home, so one measurement's imports, caches and memory never leak into the next, and the
child's peak RSS (``ru_maxrss``) belongs to that measurement alone. A child reports one JSON
object on its last line of stdout.

Other people use this machine too, so absolute times drift: scripts interleave the contestants
round by round, compute ratios within a round, and report medians with their spread.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
RESULT_MARKER = "BENCH-RESULT "


def airflow_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a child: a temporary Airflow home, no examples, no telemetry.

    ``benchmarks/`` is on ``PYTHONPATH`` (for ``bench_components``) and allowed as a component
    prefix, and any parsing context inherited from a caller is removed.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "_AIRFLOW_PARSING_CONTEXT"))
    }
    home = home or Path(tempfile.mkdtemp(prefix="mlpipe-bench-home-"))
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
            "AIRFLOW__MLPIPE__COMPONENT_MODULES": "bench_components",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_NO_ANALYTICS": "true",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.update(extra)
    return env


def component_context(
    stage: str,
    out_dir: str | Path,
    inputs: Mapping[str, Any] | None = None,
    *,
    run_id: str = "bench",
    pipeline: str = "bench",
) -> Any:
    """A ``ComponentContext`` to call one component's ``run`` outside Airflow, its artifacts in
    ``out_dir`` (created); ``inputs`` maps upstream stages to their outputs (dicts are fine)."""
    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.contract import ComponentContext

    artifact_dir = ObjectStoragePath(f"file://{out_dir}")
    artifact_dir.mkdir(parents=True, exist_ok=True)
    return ComponentContext(
        pipeline=pipeline,
        pipeline_version="1.0.0",
        config_version="bench",
        environment="bench",
        stage=stage,
        run_id=run_id,
        git_commit="bench",
        inputs=inputs or {},
        artifact_dir=artifact_dir,
        log=logging.getLogger(f"bench.{stage}"),
    )


def emit(result: Mapping[str, Any]) -> None:
    """In a child: report ``result`` (plus the peak RSS so far) to the parent."""
    payload = {**result, "peak_rss_mb": peak_rss_mb()}
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(payload) + "\n")
    sys.stdout.flush()


def load_airflow_plugins() -> float:
    """Load Airflow's plugins now, as a task runner does before ``execute``; return the seconds taken.

    The first read or write through an ``ObjectStoragePath`` asks for the hook-lineage collector,
    which loads every plugin (entry points included: dag-factory's, from the bench extra, takes
    about 1.5 s to import). A worker has done this before the task runs, so children that time a
    component do it first, outside the timed part, and report it separately.
    """
    import time

    from airflow.sdk.lineage import get_hook_lineage_collector

    started = time.perf_counter()
    get_hook_lineage_collector()
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(
    args: Sequence[str], env: Mapping[str, str], timeout: float = 1800, cwd: Path | None = None
) -> dict[str, Any]:
    """Run ``python ARGS`` and return the JSON it emitted, plus ``wall_s`` (the whole process)."""
    started = _now()
    proc = subprocess.run(
        [PYTHON, *args],
        env=dict(env),
        cwd=str(cwd or REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = _now() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"child {' '.join(args)} failed with exit code {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    result = json.loads(lines[-1][len(RESULT_MARKER) :])
    result["wall_s"] = wall
    return result


def _now() -> float:
    import time

    return time.perf_counter()


# --- statistics -------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    data = [v for v in values if v is not None]
    return statistics.median(data) if data else float("nan")


def spread(values: Iterable[float]) -> str:
    """``median (min-max)`` of a sample, formatted for a table cell."""
    data = [v for v in values if v is not None]
    if not data:
        return "-"
    if len(data) == 1:
        return fmt(data[0])
    return f"{fmt(statistics.median(data))} ({fmt(min(data))}-{fmt(max(data))})"


def fmt(value: float) -> str:
    """Three significant digits, without scientific notation for everyday magnitudes."""
    if value != value:  # NaN
        return "nan"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (what BENCHMARKS.md shows) with aligned columns."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


# --- reporting --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Date, hardware and the versions that matter, for the header of every result."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for dist in (
        "apache-airflow",
        "airflow-mlpipe",
        "dag-factory",
        "implicit",
        "pydantic",
        "PyYAML",
        "pyarrow",
        "numpy",
        "scipy",
        "SQLAlchemy",
        "psycopg",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    git = {}
    for key, command in (
        ("commit", ["git", "rev-parse", "--short", "HEAD"]),
        ("package_changes", ["git", "status", "--porcelain", "--", "airflow_mlpipe"]),
    ):
        try:
            out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False).stdout
        except OSError:
            out = ""
        git[key] = out
    import importlib.util

    spec = importlib.util.find_spec("airflow_mlpipe")
    package = str(Path(spec.origin).parent) if spec and spec.origin else "-"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "airflow_mlpipe_from": shown(package),
        "git_commit": git["commit"].strip() or "-",
        "package_uncommitted": [line[3:] for line in git["package_changes"].splitlines() if line.strip()],
        "nproc": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "cpu": cpu,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": versions,
    }


def shown(path: object) -> str:
    """``path`` as printed in results: relative to the repo or the temp dir, so no machine's layout shows."""
    text = str(path)
    for root, name in ((str(REPO), "."), (tempfile.gettempdir(), "$TMPDIR")):
        if text == root or text.startswith(root + os.sep):
            return name + text[len(root) :]
    return text


def print_header(title: str, info: Mapping[str, Any]) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    print(f"# {title}")
    print(
        f"{info['date']} | {info['nproc']} CPUs ({info['cpu']}), {info['ram_gb']} GB RAM, "
        f"load {info['loadavg']} | Python {info['python']} | {versions}"
    )
    dirty = ", ".join(info["package_uncommitted"])
    print(
        f"git {info['git_commit']}"
        + (f" + uncommitted changes in {dirty}" if dirty else "")
        + f"; airflow_mlpipe imported from {shown(info['airflow_mlpipe_from'])}"
    )


def save(path: str | None, name: str, data: Mapping[str, Any]) -> None:
    """Write the raw results as JSON when ``--json PATH`` was given."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"benchmark": name, **data}, indent=2, default=str) + "\n")
    print(f"\nraw results: {target}")
