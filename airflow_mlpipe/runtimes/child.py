"""What runs inside the interpreter of ``runtime.python``: one component, under the contract.

Started by :mod:`airflow_mlpipe.runtimes.external_python` as ``PYTHON -c BOOTSTRAP REQUEST
RESULT``. It reads the request (component, config, inputs, artifact folder, the stage's context),
runs the component through :func:`airflow_mlpipe.runner.run_stage` (so the extra, the required
inputs and the declared outputs are checked there, where the libraries are) and writes the
outputs, or the error, to the result file. The component's log lines go to stderr, which the
stage's task streams into its log.

Nothing here needs Airflow: the interpreter needs airflow-mlpipe (``pip install --no-deps`` is
enough: pydantic and pyarrow are what it imports) and the component's own libraries. With
Airflow's Task SDK installed there too, ``context.artifact_dir`` is an ``ObjectStoragePath`` and
object-store artifact roots work; without it, the artifact root must be a local path
(``file://``) and ``artifact_dir`` is a ``pathlib.Path``.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

#: Python that the stage's task runs with ``-c``: a missing airflow-mlpipe becomes a result that
#: says so, instead of a traceback the task would have to parse.
BOOTSTRAP = """\
import json, sys
try:
    from airflow_mlpipe.runtimes import child
except ImportError as exc:
    with open(sys.argv[2], "w") as result:
        json.dump({"error": {"type": "MissingPackage", "module": exc.name, "message": str(exc)}}, result)
    sys.exit(3)
sys.exit(child.main(sys.argv[1], sys.argv[2]))
"""


def main(request_path: str, result_path: str) -> int:
    """Run the requested component; write ``{"outputs": ...}`` or ``{"error": ...}``; 0 on success."""
    import airflow_mlpipe

    request = json.loads(Path(request_path).read_text())
    log = _stage_log(request["stage"])
    try:
        outputs = _run(request, log)
    except ImportError as exc:
        # A library the component needs is missing in this interpreter.
        traceback.print_exc(file=sys.stderr)
        _write(result_path, {"error": {"type": "MissingPackage", "module": exc.name, "message": str(exc)}})
        return 3
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        error = {"type": type(exc).__name__, "message": str(exc), "contract": _is_contract_error(exc)}
        _write(result_path, {"error": error, "version": airflow_mlpipe.__version__})
        return 1
    _write(result_path, {"outputs": outputs, "version": airflow_mlpipe.__version__})
    return 0


def _run(request: dict[str, Any], log: logging.Logger) -> dict[str, Any]:
    from airflow_mlpipe.contract import ComponentContext
    from airflow_mlpipe.resolver import resolve_component
    from airflow_mlpipe.runner import run_stage

    component = resolve_component(request["component"], tuple(request["component_modules"]))
    config = component.config_model.model_validate(request["config"])
    context = ComponentContext(
        pipeline=request["pipeline"],
        pipeline_version=request["pipeline_version"],
        config_version=request["config_version"],
        environment=request["environment"],
        stage=request["stage"],
        run_id=request["run_id"],
        git_commit=request["git_commit"],
        inputs=request["inputs"],
        artifact_dir=artifact_dir(request["artifact_dir"]),
        airflow_context=request["airflow_context"],
        log=log,
    )
    log.info("Running %s in %s (Python %s)", request["component"], sys.executable, sys.version.split()[0])
    outputs = run_stage(component, config, context).to_dict()
    # A pathlib artifact_dir gives plain paths; every other stage reads URIs.
    artifacts = outputs.get("artifacts", {})
    outputs["artifacts"] = {
        name: f"file://{uri}" if uri.startswith("/") else uri for name, uri in artifacts.items()
    }
    return outputs


def artifact_dir(uri: str) -> Any:
    """The stage's artifact folder: an ``ObjectStoragePath`` where Airflow is installed, else a local path."""
    try:
        from airflow.sdk import ObjectStoragePath
    except ImportError:
        if uri.startswith("file://"):
            return Path(uri.removeprefix("file://"))
        raise RuntimeError(
            f"the artifact root {uri.split('://')[0]}:// needs Airflow's object storage in this "
            "interpreter: install apache-airflow-task-sdk and the provider of that store there, "
            "or use a file:// artifact root"
        ) from None
    return ObjectStoragePath(uri)


def _stage_log(stage: str) -> logging.Logger:
    log = logging.getLogger(f"airflow_mlpipe.stage.{stage}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def _is_contract_error(exc: Exception) -> bool:
    from airflow_mlpipe.contract import ContractError
    from airflow_mlpipe.resolver import ComponentError

    return isinstance(exc, ContractError | ComponentError)


def _write(path: str, value: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(value, default=str))
