"""The benchmark scripts still run: each in its quickest mode, as a subprocess.

Nothing here is timed or compared: benchmark numbers come from full runs on a quiet machine (see
BENCHMARKS.md). This only catches scripts broken by a change in the package or in Airflow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"

# script, arguments, text its result must contain
SCRIPTS = [
    ("parse_dags.py", ["--quick"], "## DagBag load of the whole folder"),
    ("parse_ab.py", ["--quick"], "B / A within a round"),
    ("stage_overhead.py", ["--quick"], "## Per-task run time"),
    ("profile_stage.py", ["--quick", "mlpipe_noop"], "# Phases of mlpipe_noop"),
    ("extract_postgres.py", ["--quick"], "## Throughput"),
    ("train_evaluate.py", ["--quick"], "## Training on"),
    ("recommenders.py", ["--quick"], "## Test split"),
    ("validate_spec.py", ["--quick"], "valid spec (dev)"),
    ("stage_cache.py", ["--quick"], "## The extract alone: ADBC vs DB-API"),
    ("scale_footprint.py", ["--quick"], "## XCom per run"),
    ("scale.py", ["--quick"], "## Stages at scale"),
    ("profile_scale_stage.py", ["train", "--quick"], "## Phases"),
]


@pytest.mark.parametrize(("script", "args", "marker"), SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_benchmark_script_runs(
    script: str, args: list[str], marker: str, request: pytest.FixtureRequest
) -> None:
    path = BENCHMARKS / script
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    if script == "extract_postgres.py":
        conftest = request.config.pluginmanager.get_plugin(str(REPO / "tests" / "conftest.py"))
        conftest.require_service("PostgreSQL", "127.0.0.1", 5432)
    result = subprocess.run(
        [sys.executable, str(path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert marker in result.stdout, output[-5000:]
    if script != "validate_spec.py":  # that one prints aligned text, not a Markdown table
        assert "| ---" in result.stdout, output[-5000:]
