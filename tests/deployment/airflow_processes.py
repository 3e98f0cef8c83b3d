"""Real Airflow components as processes, for the deployment tests.

``AirflowProcesses`` starts ``airflow <component>`` commands of this Python environment, each in
its own process group with its output in a log file, and stops every group it started (TERM,
then KILL). ``AirflowApi`` talks to the api-server's REST API v2 (and the plugin's API) with a
JWT from ``POST /auth/token``, as any client would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
T = TypeVar("T")


def require_service(config: Any, name: str, host: str, port: int) -> None:
    """``tests/conftest.py``'s ``require_service``: skip when absent, fail under ``CI=true``."""
    conftest = config.pluginmanager.get_plugin(str(REPO / "tests" / "conftest.py"))
    conftest.require_service(name, host, port)


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` unless ``condition``; under ``CI=true`` fail instead."""
    import pytest

    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must provide it")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 1.0) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (httpx.HTTPError, OSError) as exc:  # a server still starting up
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any Airflow settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(extra)
    return env


@dataclass
class AirflowProcesses:
    """Airflow commands started as process groups, logging to ``log_dir``; ``stop()`` ends them all."""

    env: dict[str, str]
    log_dir: Path
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` command to completion; raise with its output if it fails and ``check``."""
        result = subprocess.run(
            [AIRFLOW, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
            )
        return result

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [AIRFLOW, *args],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() reaches its children too
            )
        self.started[name] = process
        return process

    @property
    def cwd(self) -> Path:
        # Not the checkout: its airflow_mlpipe.egg-info on sys.path would make Airflow see the
        # package's entry points twice (and report the plugin as registered twice).
        return self.log_dir.parent

    def check_alive(self) -> None:
        for name, process in self.started.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"'airflow {name}' exited with {process.returncode}:\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def stop(self, grace: float = 20) -> None:
        """TERM every process group started here, then KILL what is left after ``grace`` seconds."""
        for process in self.started.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.started.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.started.values():
            _signal_group(process, signal.SIGKILL)  # also reaches task processes left behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.started.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


class AirflowApi:
    """A REST API v2 client authenticated with a JWT, like any external client."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.token = self.login(username, password)
        self.client = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    def login(self, username: str, password: str) -> str:
        response = httpx.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=60
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def status(self, path: str) -> int:
        return self.client.get(path).status_code

    def set_paused(self, dag_id: str, paused: bool) -> None:
        response = self.client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": paused})
        response.raise_for_status()

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a run as the UI's trigger form does: with the current time as its logical date.

        (A run without a logical date has no ``ds`` in its template context.)
        """
        logical_date = datetime.now(UTC).isoformat()
        response = self.client.post(
            f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": dict(conf or {})}
        )
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        """Wait until the run finishes (success or failed) and return it."""
        return wait_until(
            lambda: (run := self.dag_run(dag_id, run_id))["state"] in ("success", "failed") and run,
            timeout,
            f"run {run_id} of {dag_id} to finish",
            interval=2,
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        data = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in data["task_instances"]}

    def task_path(self, dag_id: str, run_id: str, task_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.get(f"{self.task_path(dag_id, run_id, task_id)}/xcomEntries/{key}")
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        data = self.get(f"{self.task_path(dag_id, run_id, task_id)}/logs/{try_number}", full_content="true")
        lines = []
        for item in data["content"]:
            if isinstance(item, dict):
                extra = {k: v for k, v in item.items() if k not in ("event", "timestamp", "level", "logger")}
                lines.append(f"{item.get('event', '')} {extra if extra else ''}".rstrip())
            else:
                lines.append(str(item))
        return "\n".join(lines)


def write_passwords(path: Path, users: Mapping[str, str]) -> str:
    """A SimpleAuthManager passwords file; returns ``[core] simple_auth_manager_users``."""
    path.write_text(json.dumps({name: f"{name}-password" for name in users}))
    return ",".join(f"{name}:{role}" for name, role in users.items())


def copy_dags(target: Path, extra_specs: Mapping[str, str] | None = None) -> Path:
    """This repo's ``dags/`` (loader and specs), plus ``extra_specs`` (file name -> YAML), as a git repo."""
    import shutil

    shutil.copytree(REPO / "dags", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name, text in (extra_specs or {}).items():
        (target / "pipelines" / name).write_text(text)
    git = ["git", "-C", str(target), "-c", "user.name=mlpipe-tests", "-c", "user.email=tests@example.com"]
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "dags for the deployment tests"], check=True)
    return target


def head_commit(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
