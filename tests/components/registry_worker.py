"""Register models from a separate process, for the registry's cross-process concurrency tests.

``python registry_worker.py '<json>'`` with ``upstream`` (the evaluation stage's outputs),
``ready`` (a file path) and ``jobs``: a list of ``{"config": registry.Config fields, "run_ids":
[...], "go": path, "result": path}``. The worker imports everything and touches each registry and
artifact once (first uses are slow: Airflow loads its providers' filesystems), creates ``ready``,
then for each job waits until ``go`` exists (so that all workers start registering at the same
moment), registers one version per run id and writes ``[{"run_id": ..., "version": ...}, ...]``
to ``result``. (Files, not stdout: Airflow logs to stdout.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time


def _wait_for(path: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.001)


def main(arguments: dict) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.components.registry import register_model as registry
    from airflow_mlpipe.contract import ComponentContext, StageOutputs

    upstream = StageOutputs(**arguments["upstream"])
    for uri in upstream.artifacts.values():
        with ObjectStoragePath(uri).open("rb") as artifact:
            artifact.read(1)
    configs = [registry.Config(**job["config"]) for job in arguments["jobs"]]
    for config in configs:
        registry.list_versions(config.registry, config.model_name or "demo", config.conn_id)
    with open(arguments["ready"], "w"):
        pass

    log = logging.getLogger(f"registry_worker.{os.getpid()}")
    for job, config in zip(arguments["jobs"], configs, strict=True):
        _wait_for(job["go"])
        results = []
        for run_id in job["run_ids"]:
            context = ComponentContext(
                pipeline="demo",
                pipeline_version="1.0.0",
                config_version="cfg-test",
                environment="test",
                stage="register",
                run_id=run_id,
                git_commit="0123abcd",
                inputs={"evaluate": upstream},
                artifact_dir=None,
                log=log,
            )
            outputs = registry.run(config, context)
            results.append({"run_id": run_id, "version": int(outputs["metrics"]["version"])})
        with open(job["result"] + ".tmp", "w") as out:
            json.dump(results, out)
        os.replace(job["result"] + ".tmp", job["result"])


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
