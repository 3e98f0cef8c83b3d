"""What the Dockerfile installs: a built wheel carries the page's static files and the plugin's
``airflow.plugins`` entry point (an editable install in the test venv would not show a miss)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from airflow_processes import REPO


def test_wheel_ships_the_page_and_registers_the_plugin(tmp_path: Path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "airflow_mlpipe", source / "airflow_mlpipe", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(source),
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("airflow_mlpipe-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
    for static in ("index.html", "mlpipe.js", "mlpipe.css", "icon.svg"):
        assert f"airflow_mlpipe/plugin/static/{static}" in names
    assert "[airflow.plugins]\nmlpipe = airflow_mlpipe.plugin:MLPipePlugin" in entry_points
