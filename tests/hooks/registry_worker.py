"""Register model versions from a separate process, for the hook's cross-process concurrency test.

``python registry_worker.py '<json>'`` with ``artifacts`` (name -> URI), ``ready`` (a file path)
and ``jobs``: a list of ``{"registry": uri, "conn_id": ..., "model": name, "run_ids": [...],
"go": path, "result": path}``. The worker imports everything and touches each registry and
artifact once (first uses are slow: Airflow loads its providers' filesystems), creates ``ready``,
then for each job waits until ``go`` exists (so that all workers start registering at the same
moment), claims and writes one version per run id with :class:`ModelRegistryHook` and writes
``[{"run_id": ..., "version": ...}, ...]`` to ``result``. (Files, not stdout: Airflow logs to
stdout.)
"""

from __future__ import annotations

import json
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

    from airflow_mlpipe.hooks.model_registry import ModelRegistryHook

    for uri in arguments["artifacts"].values():
        with ObjectStoragePath(uri).open("rb") as artifact:
            artifact.read(1)
    hooks = [ModelRegistryHook(job["registry"], conn_id=job["conn_id"]) for job in arguments["jobs"]]
    for hook, job in zip(hooks, arguments["jobs"], strict=True):
        hook.list_versions(job["model"])
    with open(arguments["ready"], "w"):
        pass

    for hook, job in zip(hooks, arguments["jobs"], strict=True):
        _wait_for(job["go"])
        results = []
        for run_id in job["run_ids"]:
            claim = hook.claim_version(job["model"], {"pipeline": "demo", "run_id": run_id})
            hook.write_version(job["model"], claim, arguments["artifacts"], {"run_id": run_id})
            results.append({"run_id": run_id, "version": claim.version})
        with open(job["result"] + ".tmp", "w") as out:
            json.dump(results, out)
        os.replace(job["result"] + ".tmp", job["result"])


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
