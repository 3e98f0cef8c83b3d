"""Real Airflow components as processes, for the deployment tests.

``AirflowProcesses`` starts ``airflow <component>`` commands of this Python environment, each in
its own process group with its output in a log file, and stops every group it started (TERM,
then KILL). ``AirflowApi`` talks to the api-server's REST API v2 (and the plugin's API) with a
JWT from ``POST /auth/token``, as any client would. ``celery_cluster`` runs the docker-compose
topology as processes on PostgreSQL and Redis, for the end-to-end and fault tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import psutil

from airflow_mlpipe.testing.smtp import SmtpSink

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379
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

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``airflow ARGS`` as ``name``; ``env`` adds to (or overrides) the shared environment."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [AIRFLOW, *args],
                env={**self.env, **(env or {})},
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

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` and every process under it at once, as a lost node would."""
        process = self.started.pop(name)
        below = _descendants(process)
        _signal_group(process, signal.SIGKILL)
        _kill_all(below)
        process.wait(timeout=30)

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def stop(self, grace: float = 20) -> None:
        """TERM every process group started here, then KILL what is left after ``grace`` seconds."""
        below = [child for process in self.started.values() for child in _descendants(process)]
        for process in self.started.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.started.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.started.values():
            _signal_group(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        _kill_all(below)  # task processes left behind
        self.started.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _descendants(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """Every process under ``process``, including those in process groups of their own.

    The Task SDK runs each task in a new process group, which a signal to the worker's group
    does not reach; once its supervisor is gone the task is no longer under the worker either.
    """
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.kill()  # psutil checks the pid still names the same process


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

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        response = self.client.post(path, json=dict(body))
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
        logical_date = datetime.now(timezone.utc).isoformat()
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

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.get(self.task_path(dag_id, run_id, task_id))

    def clear_task_instances(
        self, dag_id: str, run_id: str, task_ids: list[str], include_downstream: bool = True
    ) -> set[str]:
        """Clear tasks of one run, whatever their state, so they run again; returns the cleared ids."""
        body = {
            "dag_run_id": run_id,
            "task_ids": task_ids,
            "include_downstream": include_downstream,
            "only_failed": False,
            "dry_run": False,
        }
        cleared = self.post(f"/api/v2/dags/{dag_id}/clearTaskInstances", body)
        return {ti["task_id"] for ti in cleared["task_instances"]}

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


#: ``[core] hostname_callable`` of the cluster: a worker's name (``MLPIPE_TEST_WORKER_NAME``) as the
#: hostname its task instances report, so that the REST API tells the workers apart.
HOSTNAME_CALLABLE = "mlpipe_worker_name.worker_name"
WORKER_FIXTURE = Path(__file__).resolve().parent / "worker_fixture"


@dataclass
class CeleryCluster:
    """api-server, scheduler, dag-processor and Celery workers on PostgreSQL and Redis."""

    api: AirflowApi
    processes: AirflowProcesses
    smtp: SmtpSink
    root: Path
    dags: Path
    queue: str

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    def start_worker(self, name: str, queue: str | None = None) -> subprocess.Popen[bytes]:
        """A Celery worker on ``queue`` (default: the cluster's) with a disk of its own.

        The worker's temporary folder and its copy of the dags folder are its own, as on a
        machine of its own: nothing it writes locally is seen by another worker.
        """
        local = self.worker_disk(name)
        dags = local / "dags"
        if not dags.exists():
            shutil.copytree(self.dags, dags, symlinks=True)
        (local / "tmp").mkdir(parents=True, exist_ok=True)
        env = {
            "TMPDIR": str(local / "tmp"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "MLPIPE_TEST_WORKER_NAME": name,
        }
        return self.processes.start(name, *celery_worker_args(name, queue or self.queue), env=env)

    def worker_disk(self, name: str) -> Path:
        """The folder standing for worker ``name``'s local disk."""
        return self.root / "workers" / name

    def explain(self, dag_id: str, run_id: str) -> str:
        """The run's task states, the failed tasks' logs and the scheduler's log, for a failed assertion."""
        states = self.api.task_states(dag_id, run_id)
        logs = "\n".join(
            f"--- {task} ---\n{self.api.task_log(dag_id, run_id, task)[-2000:]}"
            for task, state in states.items()
            if state == "failed"
        )
        scheduler = self.processes.log_tail("scheduler", 2000)
        return f"task states: {states}\n{logs}\n--- scheduler ---\n{scheduler}"


@contextlib.contextmanager
def celery_cluster(
    config: Any,
    root: Path,
    specs: Mapping[str, str],
    dag_ids: set[str],
    env: Mapping[str, str] | None = None,
    users: Mapping[str, str] | None = None,
    queues: Mapping[str, str] | None = None,
) -> Iterator[CeleryCluster]:
    """The compose topology as processes over a copy of ``dags/`` plus ``specs``, on a fresh database.

    Yields once the api-server answers and ``dag_ids`` are parsed; ``env`` adds or overrides
    settings, ``users`` adds SimpleAuthManager users (name -> role) beside ``admin``, ``queues``
    adds Celery workers (name -> queue) beside ``celery-worker`` on the default queue. Each
    worker has a local disk of its own (:meth:`CeleryCluster.start_worker`). Skips (fails under
    ``CI=true``) without PostgreSQL, Redis or the Celery provider.
    Stops every process group, drops the database and this cluster's broker keys on exit.
    """
    require_service(config, "PostgreSQL", PG_HOST, PG_PORT)
    require_service(config, "Redis", PG_HOST, REDIS_PORT)
    require(
        importlib.util.find_spec("airflow.providers.celery") is not None,
        "apache-airflow-providers-celery is not installed (pip install -e '.[dev]')",
    )
    suffix = uuid.uuid4().hex[:10]
    database, queue, redis_db = f"mlpipe_e2e_{suffix}", f"mlpipe_e2e_{suffix}", 1 + int(suffix, 16) % 15
    dags = copy_dags(root / "dags", specs)
    api_port = free_port()
    base_url = f"http://127.0.0.1:{api_port}"
    smtp = SmtpSink()
    users_setting = write_passwords(root / "passwords.json", {"admin": "admin", **(users or {})})
    pg = f"postgres@{PG_HOST}:{PG_PORT}/{database}"
    processes = AirflowProcesses(
        clean_environment(
            AIRFLOW_HOME=str(root / "airflow-home"),
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://{pg}",
            AIRFLOW__CELERY__BROKER_URL=f"redis://{PG_HOST}:{REDIS_PORT}/{redis_db}",
            AIRFLOW__CELERY__RESULT_BACKEND=f"db+postgresql://{pg}",
            AIRFLOW__CELERY__WORKER_CONCURRENCY="2",
            AIRFLOW__OPERATORS__DEFAULT_QUEUE=queue,  # no other worker on this broker takes our tasks
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base_url}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=users_setting,
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(root / "passwords.json"),
            AIRFLOW__API__BASE_URL=base_url,
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__SECRET_KEY=uuid.uuid4().hex,
            AIRFLOW__API_AUTH__JWT_SECRET=uuid.uuid4().hex,
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__MLPIPE__ARTIFACT_ROOT=f"file://{root / 'artifacts'}",
            # Every key of this cluster on the shared Redis carries its name: queues called
            # 'gpu' in two clusters at once stay apart.
            AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX=f"{queue}:",
            AIRFLOW__CORE__HOSTNAME_CALLABLE=HOSTNAME_CALLABLE,
            **smtp.connection_env(),
        )
        | dict(env or {}),  # the caller's settings win
        root / "logs",
    )
    # The hostname callable's module, whatever PYTHONPATH ``env`` set.
    path = processes.env.get("PYTHONPATH")
    processes.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WORKER_FIXTURE), path]))
    admin = _admin_connection()
    admin.cursor().execute(f'CREATE DATABASE "{database}"')
    smtp.controller.start()
    try:
        processes.run("db", "migrate", timeout=240)
        processes.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port))
        processes.start("scheduler", "scheduler")
        processes.start("dag-processor", "dag-processor")
        cluster = CeleryCluster(None, processes, smtp, root, dags, queue)  # type: ignore[arg-type]
        cluster.start_worker("celery-worker")
        for name, worker_queue in (queues or {}).items():
            cluster.start_worker(name, worker_queue)

        def api_up() -> bool:
            processes.check_alive()
            return httpx.get(f"{base_url}/api/v2/version", timeout=5).status_code == 200

        wait_until(api_up, 120, "the api-server")
        cluster_api = cluster.api = AirflowApi(base_url, "admin", "admin-password")

        def dags_parsed() -> bool:
            processes.check_alive()
            ids = {dag["dag_id"] for dag in cluster_api.get("/api/v2/dags", limit=100)["dags"]}
            return dag_ids <= ids

        wait_until(dags_parsed, 120, "the dag-processor to parse the specs", interval=2)
        yield cluster
    finally:
        processes.stop()
        smtp.controller.stop()
        _drop_broker_keys(redis_db, queue)
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def celery_worker_args(name: str, queue: str) -> list[str]:
    """``airflow celery worker`` on this cluster's queue, named ``name`` among the broker's workers."""
    return ["celery", "worker", "--concurrency", "2", "--queues", queue, "--celery-hostname", f"{name}@%h"]


def _admin_connection() -> Any:
    import psycopg2

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres")
    connection.autocommit = True
    return connection


def _drop_broker_keys(redis_db: int, queue: str) -> None:
    """Remove this cluster's Celery queue from the shared Redis (other keys are not ours to touch).

    Also the unacknowledged deliveries to it, which a killed worker leaves in kombu's ``unacked``.
    """
    try:
        import redis

        client = redis.Redis(host=PG_HOST, port=REDIS_PORT, db=redis_db)
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        for tag, delivery in client.hscan_iter("unacked"):
            if queue.encode() in delivery:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    except Exception:  # cleanup only
        pass


@dataclass
class E2eStorage:
    """The S3 buckets of the Celery deployment, as their client sees them."""

    client: Any
    artifacts: str
    registry: str

    @property
    def registry_uri(self) -> str:
        return f"s3://{self.registry}/models"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def versions(self) -> list[str]:
        """The registered versions of recommender_training (those whose _COMPLETE is written)."""
        prefix = "models/recommender_training/versions/"
        return sorted(
            key.removeprefix(prefix).split("/")[0]
            for key in self.keys(self.registry, prefix)
            if key.endswith("/_COMPLETE")
        )
