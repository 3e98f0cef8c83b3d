"""A throw-away Airflow home for running pipelines end to end in tests.

Each run uses the real ``airflow dags test`` command in a subprocess, against a SQLite metadata
database created once per sandbox, so the test process's own Airflow configuration is untouched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_mlpipe.record import RECORD_TASK_ID

LOADER = """\
from airflow_mlpipe.factory import build_dags

globals().update(build_dags({spec_folder!r}))
"""


@dataclass
class PipelineRun:
    """The outcome of one ``airflow dags test`` run."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]
    record: dict[str, Any] | None
    output: str = field(repr=False)


class AirflowSandbox:
    """An Airflow home with a migrated SQLite database under ``root``."""

    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.home = root / "airflow-home"
        self.artifact_root = root / "artifacts"
        self.database = self.home / "airflow.db"
        self.extra_env = dict(env or {})
        self._runs = 0

    def environment(self, dags_folder: Path | None = None, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.database}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or self.root / "dags"),
                "AIRFLOW__MLPIPE__ARTIFACT_ROOT": f"file://{self.artifact_root}",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            }
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def airflow(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``airflow`` command of this Python environment."""
        command = [str(Path(sys.executable).with_name("airflow")), *args]
        return subprocess.run(
            command,
            env=dict(env or self.environment()),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def setup(self) -> AirflowSandbox:
        """Create the Airflow home and its database (a few seconds, once per sandbox)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.root / "dags").mkdir(exist_ok=True)
        result = self.airflow("db", "migrate")
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")
        return self

    def dags_folder(self, spec_folder: Path) -> Path:
        """A fresh dags folder whose loader reads the specs in place (so their git commit counts)."""
        self._runs += 1
        folder = self.root / f"dags-{self._runs}"
        folder.mkdir()
        (folder / "mlpipe_loader.py").write_text(LOADER.format(spec_folder=str(Path(spec_folder).resolve())))
        return folder

    def run(
        self,
        spec_folder: Path,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
    ) -> PipelineRun:
        """Run the pipeline ``dag_id`` from the specs in ``spec_folder`` once, to completion."""
        folder = self.dags_folder(spec_folder)
        args = ["dags", "test", dag_id]
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        result = self.airflow(*args, env=self.environment(folder, **dict(env or {})), timeout=timeout)
        output = result.stdout + result.stderr
        run_id, state = self._latest_run(dag_id)
        if run_id is None:
            raise RuntimeError(f"'airflow dags test {dag_id}' created no run:\n{output[-5000:]}")
        return PipelineRun(
            dag_id=dag_id,
            run_id=run_id,
            state=state,
            task_states=self._task_states(dag_id, run_id),
            record=self.xcom(dag_id, run_id, RECORD_TASK_ID),
            output=output,
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """An XCom value of a finished run, read from the sandbox's own database."""
        with self._connect() as db:
            row = db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ?",
                (dag_id, run_id, task_id, key),
            ).fetchone()
        if row is None:
            return None
        value = json.loads(row[0]) if isinstance(row[0], str | bytes) else row[0]
        return json.loads(value) if isinstance(value, str) else value

    def _latest_run(self, dag_id: str) -> tuple[str | None, str]:
        with self._connect() as db:
            row = db.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
        return (row[0], row[1]) if row else (None, "")

    def _task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
            ).fetchall()
        return {task_id: state for task_id, state in rows}

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.database)
