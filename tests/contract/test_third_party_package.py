"""A component package from outside this repository, written from the README, in a real pipeline.

The package (``third_party_pkg/``: its own ``pyproject.toml``, entry points in the
``airflow_mlpipe.components`` group) is built and installed into a folder of its own, then found
only through its entry points: by ``mlpipe validate``, by its own tests (the authoring kit), and by
Airflow running the pipeline with ``airflow dags test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent / "third_party_pkg"

SPEC = """\
name: acme_clicks
version: 0.3.0
metadata:
  owner: acme-recs
  description: Sums clicks with ACME's own components
  schedule: null
stages:
  - name: make
    component: acme.make_table
    config: {users: 3, items_per_user: 2}
    dependencies: []
  - name: summarise
    component: acme.summarise
    config: {}
    dependencies: [make]
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed (no dependencies: airflow-mlpipe is already here) into its own folder."""
    target = tmp_path_factory.mktemp("acme-site")
    build = tmp_path_factory.mktemp("acme-build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PACKAGE),
        ],
        check=True,
        cwd=build,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert list(target.glob("acme_recs_components-*.dist-info"))
    return target


def _env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_validate_finds_the_components_through_their_entry_points(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "acme_clicks.yaml").write_text(SPEC)
    broken = SPEC.replace("dependencies: [make]", "dependencies: []")
    (tmp_path / "acme_broken.yaml").write_text(broken.replace("name: acme_clicks", "name: acme_broken"))

    result = subprocess.run(
        [str(Path(sys.executable).with_name("mlpipe")), "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, **_env(installed)},
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "acme_clicks.yaml" not in output  # the well-wired spec is valid
    # The declared I/O: 'summarise' requires a 'table' that no upstream of it produces.
    assert "acme_broken.yaml" in output and "stages[summarise].dependencies" in output
    assert "Traceback" not in output


def test_its_own_tests_pass_with_the_authoring_kit(installed: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE / "tests")],
        capture_output=True,
        text=True,
        env={**os.environ, **_env(installed)},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_runs_in_a_real_pipeline(installed: Path, tmp_path: Path, mlpipe_sandbox) -> None:
    specs = tmp_path / "pipelines"
    specs.mkdir()
    (specs / "acme_clicks.yaml").write_text(SPEC)

    run = mlpipe_sandbox.run(
        specs, "acme_clicks", conf={"overrides": {"make": {"users": 4}}}, env=_env(installed)
    )

    assert run.state == "success", run.output[-4000:]
    record = run.record
    assert record["stages_completed"] == ["make", "summarise"]
    assert record["outputs"]["make"]["metrics"] == {"rows": 8.0}
    # users 0-3 x items 0-1, clicks = user + item + 1: 8 x 1 + 2 x (0+1+2+3) + 4 x (0+1) = 24
    assert record["outputs"]["summarise"]["metrics"] == {"clicks": 24.0, "upstream_rows": 8.0}
    summary = Path(record["outputs"]["summarise"]["artifacts"]["summary"].removeprefix("file://"))
    assert textwrap.dedent(summary.read_text()).startswith('{"pipeline": "acme_clicks"')


def test_mypy_checks_a_component_module_against_the_protocol(tmp_path: Path) -> None:
    source = PACKAGE / "src" / "acme_recs_components"
    (tmp_path / "not_a_component.py").write_text("LABEL = 'no Config, no run'\n")
    (tmp_path / "check_good.py").write_text(
        "from acme_recs_components import make_table, summarise\n"
        "from airflow_mlpipe.contract import ComponentModule\n\n"
        "components: list[ComponentModule] = [make_table, summarise]\n"
    )
    (tmp_path / "check_bad.py").write_text(
        "import not_a_component\n"
        "from airflow_mlpipe.contract import ComponentModule\n\n"
        "component: ComponentModule = not_a_component\n"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--follow-imports=silent",
            "--no-incremental",
            "check_good.py",
            "check_bad.py",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": os.pathsep.join([str(repo), str(source.parent)])},
        check=False,
    )

    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout + result.stderr
    assert errors[0].startswith("check_bad.py:4:") and '"ComponentModule"' in errors[0]
