"""``runtime.python``: the ComponentOperator runs the component in a second, real interpreter.

The fixture makes a virtual environment of its own, with no Airflow in it: airflow-mlpipe
installed from a wheel built from this checkout (``--no-deps``), pydantic and its dependencies at
the versions this environment has (so pip takes them from its cache), and this directory's
fixture components on its path (a ``.pth`` file). A second environment has nothing at all.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlpipe.operators.component import ComponentOperator
from airflow_mlpipe.pipeline_run import ERROR_XCOM_KEY, PipelineRef
from airflow_mlpipe.runtimes.external_python import ExternalRuntimeError

from .conftest import FIXTURE_PACKAGES, RunTask, TaskInstanceStub

REPO = Path(__file__).resolve().parents[2]
#: What airflow-mlpipe imports in the other interpreter (pydantic and what pydantic needs).
CHILD_PACKAGES = ("pydantic", "pydantic-core", "typing-extensions", "annotated-types", "typing-inspection")


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _importable(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def lean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter with airflow-mlpipe, pydantic and the fixture components; no Airflow."""
    root = tmp_path_factory.mktemp("lean-venv")
    python = _venv(root / "venv")
    # Built from a copy: a build in the checkout would leave build/ and egg-info there.
    source, wheels = root / "source", root / "wheels"
    shutil.copytree(
        REPO / "airflow_mlpipe", source / "airflow_mlpipe", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    # Without PYTHONPATH: pip would see this checkout's airflow_mlpipe as installed there.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # This environment's setuptools when it has the build requirements (fast, offline), else pip's
    # isolated build.
    isolation = ["--no-build-isolation"] if _importable("setuptools", "wheel") else []
    build = [*pip, "wheel", "--no-deps", *isolation, "--wheel-dir", str(wheels), str(source)]
    subprocess.run(build, check=True, cwd=root, env=env, capture_output=True)
    pinned = [f"{name}=={importlib.metadata.version(name)}" for name in CHILD_PACKAGES]
    install = [
        *pip,
        "--python",
        str(python),
        "install",
        "--no-deps",
        *map(str, wheels.glob("*.whl")),
        *pinned,
    ]
    subprocess.run(install, check=True, cwd=root, env=env)
    (_site_packages(python) / "mlpipe_fixture_components.pth").write_text(f"{FIXTURE_PACKAGES}\n")
    return python


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter with nothing installed."""
    return _venv(tmp_path_factory.mktemp("bare-venv") / "venv")


def build(stages: dict[str, tuple[str, str | None]]) -> dict[str, ComponentOperator]:
    """Stages ``name -> (component, python)``, chained in order."""
    ref = PipelineRef(
        name="ops",
        version="1.0.0",
        config_version="abc",
        environment="test",
        sources=(),
        overridable=MappingProxyType({stage: frozenset() for stage in stages}),
    )
    with DAG("ops", schedule=None):
        tasks = [
            ComponentOperator(
                task_id=name,
                component=component,
                config={"message": "templated {{ run_id }}"} if component.endswith("probe") else {},
                pipeline=ref,
                python=None if python is None else str(python),
            )
            for name, (component, python) in stages.items()
        ]
        for upstream, downstream in itertools.pairwise(tasks):
            upstream >> downstream
    return {task.task_id: task for task in tasks}


def test_the_component_runs_in_the_other_interpreter_with_config_context_and_inputs(
    run_task: RunTask, lean_python: Path, operator_env: Path, capfd: pytest.CaptureFixture[str]
):
    tasks = build({"make": ("mlpipe_op_steps.writer", None), "probe": ("mlpipe_op_steps.probe", lean_python)})
    ti = TaskInstanceStub(dag_id="ops", run_id="manual__1")
    made = run_task(tasks["make"], ti)

    capfd.readouterr()
    result = run_task(tasks["probe"], ti, conf={"label": "x"})
    log = capfd.readouterr().out

    # Outputs come back (the artifact as a URI, a digest computed by the task) ...
    probe_uri = result["artifacts"]["probe"]
    assert probe_uri.startswith(f"file://{operator_env}/ops/")
    assert result["digests"]["probe"].startswith("sha256:")
    # ... from the other interpreter, where Airflow is not installed.
    assert result["metrics"] == {"airflow_importable": 0.0}
    seen = json.loads(Path(probe_uri.removeprefix("file://")).read_text())
    assert Path(seen["executable"]).parent == lean_python.parent
    # The templated config, the upstream artifacts and the run's context went in.
    assert seen["message"] == "templated manual__1"
    assert seen["inputs"] == {"make": made["artifacts"]}
    assert seen["run_id"] == "manual__1"
    assert seen["conf"] == {"label": "x"}
    # Its output streamed into the task log, line by line.
    assert "a line the component printed" in log
    assert f"probe running in {seen['executable']}" in log


def test_a_crash_in_the_other_interpreter_is_a_stage_error_with_its_traceback_in_the_log(
    run_task: RunTask, lean_python: Path, capfd: pytest.CaptureFixture[str]
):
    tasks = build({"crash": ("mlpipe_op_steps.crash", lean_python)})
    ti = TaskInstanceStub(dag_id="ops", run_id="manual__1")

    with pytest.raises(ExternalRuntimeError, match="the loss diverged at epoch 3"):
        run_task(tasks["crash"], ti)

    error = ti.xcoms[("crash", ERROR_XCOM_KEY)]
    assert "failed in" in error and "RuntimeError: the loss diverged at epoch 3" in error
    log = capfd.readouterr().out
    assert "about to diverge" in log
    assert "Traceback (most recent call last)" in log


def test_a_library_missing_in_the_other_interpreter_fails_without_retries_naming_it(
    run_task: RunTask, lean_python: Path
):
    tasks = build({"numbers": ("mlpipe_op_steps.needs_numpy", lean_python)})
    ti = TaskInstanceStub(dag_id="ops", run_id="manual__1")

    with pytest.raises(AirflowFailException, match="the module 'numpy' is not installed there"):
        run_task(tasks["numbers"], ti)


def test_an_interpreter_without_airflow_mlpipe_fails_without_retries_saying_what_to_install(
    run_task: RunTask, bare_python: Path
):
    tasks = build({"probe": ("mlpipe_op_steps.probe", bare_python)})
    ti = TaskInstanceStub(dag_id="ops", run_id="manual__1")

    with pytest.raises(AirflowFailException) as caught:
        run_task(tasks["probe"], ti)

    assert "airflow-mlpipe is not installed there" in str(caught.value)
    assert f"{bare_python} -m pip install airflow-mlpipe" in str(caught.value)


def test_an_interpreter_that_does_not_exist_fails_without_retries(run_task: RunTask, tmp_path: Path):
    tasks = build({"probe": ("mlpipe_op_steps.probe", tmp_path / "nope" / "bin" / "python")})
    ti = TaskInstanceStub(dag_id="ops", run_id="manual__1")

    with pytest.raises(AirflowFailException, match="is not an executable interpreter on this worker"):
        run_task(tasks["probe"], ti)
    assert not os.path.exists(tmp_path / "nope")
