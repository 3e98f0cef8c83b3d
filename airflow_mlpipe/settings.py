"""The one place that reads the ``[mlpipe]`` section of Airflow's configuration.

Options are declared (with defaults and docs) in :mod:`airflow_mlpipe.provider`; Airflow reads
them from ``airflow.cfg`` or ``AIRFLOW__MLPIPE__<OPTION>`` environment variables. Reading them
is a local lookup: no metadata database, no Variables, no network, so it is safe at parse time.
"""

from __future__ import annotations

from typing import Any

SECTION = "mlpipe"

DEFAULTS: dict[str, str] = {
    "environment": "dev",
    "component_modules": "",
    "artifact_root": "file:///tmp/mlpipe/artifacts",
    "smtp_conn_id": "smtp_default",
    "spec_cache_dir": "",
    "mlflow_tracking_uri": "",
}


def _get(option: str) -> str:
    from airflow.configuration import conf

    value: Any = conf.get(SECTION, option, fallback=DEFAULTS[option])
    return str(value).strip()


def environment() -> str:
    """The environment whose overlays apply (``dev``, ``staging``, ``production``...)."""
    return _get("environment") or DEFAULTS["environment"]


def component_modules() -> tuple[str, ...]:
    """Module prefixes, besides the built-ins and entry points, that components may come from."""
    return tuple(prefix.strip() for prefix in _get("component_modules").split(",") if prefix.strip())


def artifact_root() -> str:
    """Where stages write artifacts: a local path or any fsspec URI Airflow supports."""
    return _get("artifact_root") or DEFAULTS["artifact_root"]


def smtp_conn_id() -> str:
    """The Airflow connection failure e-mails are sent through."""
    return _get("smtp_conn_id") or DEFAULTS["smtp_conn_id"]


def spec_cache_dir() -> str | None:
    """Where the factory keeps validated specs between parses; ``None`` when set to ``off``.

    Empty (the default) means ``$XDG_CACHE_HOME/airflow-mlpipe/specs`` (``~/.cache/...``).
    """
    value = _get("spec_cache_dir")
    if value.lower() == "off":
        return None
    if value:
        return value
    from airflow_mlpipe.spec.spec_cache import default_cache_dir

    return str(default_cache_dir())


def mlflow_tracking_uri() -> str:
    """The MLflow tracking server runs are logged to; empty means MLflow tracking is off.

    The option wins; left empty, MLflow's own ``MLFLOW_TRACKING_URI`` environment variable is
    honoured, so a worker already set up for MLflow needs nothing else.
    """
    import os

    return _get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI", "").strip()


def dag_ignore_file_syntax() -> str:
    """Airflow's ``[core] dag_ignore_file_syntax`` (``glob`` by default, or ``regexp``).

    The spec folder's ``.airflowignore`` files are read with the same syntax as the DAG files'.
    """
    from airflow.configuration import conf

    value = str(conf.get("core", "dag_ignore_file_syntax", fallback="glob")).strip().lower()
    return value or "glob"
