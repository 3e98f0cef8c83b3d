"""The "ML Pipelines" page: an Airflow 3 UI plugin for pipelines built from specs.

Airflow loads :class:`MLPipePlugin` through the ``airflow.plugins`` entry point this package
declares (deployments without the package's metadata can use ``plugins/mlpipe_plugin.py``).
It adds

* a FastAPI app mounted on the api-server under :data:`URL_PREFIX` (``/mlpipe``) that serves the
  page (``/mlpipe/``), its static files and a JSON API (``/mlpipe/api/pipelines``...), each data
  route behind Airflow's own authentication and per-DAG authorization
  (:mod:`airflow_mlpipe.plugin.app`);
* an external view in the UI's navigation ("ML Pipelines") that shows the page inside Airflow.

Every Airflow process loads plugins, each task's too, and only the api-server mounts the app, so
importing this module imports neither FastAPI nor Airflow's API: the app is built on first use.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload
from urllib.parse import urlparse

from airflow.plugins_manager import AirflowPlugin

__all__ = ["PLUGIN_NAME", "URL_PREFIX", "MLPipePlugin"]

PLUGIN_NAME = "mlpipe"
URL_PREFIX = "/mlpipe"
VIEW_NAME = "ML Pipelines"


def _base_path() -> str:
    """The path part of ``[api] base_url`` (empty unless Airflow is served under a sub-path)."""
    from airflow.configuration import conf

    return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def external_view() -> dict[str, Any]:
    """The UI navigation entry: the page, embedded by the Airflow UI at ``/plugin/mlpipe``."""
    page = f"{_base_path()}{URL_PREFIX}/"
    return {
        "name": VIEW_NAME,
        "href": page,
        "url_route": PLUGIN_NAME,
        "destination": "nav",
        "nav_top_level": True,
        "icon": f"{page}static/icon.svg",
    }


class _LazyFastAPIApps(Sequence[dict[str, Any]]):
    """``fastapi_apps`` whose app is created when Airflow first reads it (in the api-server)."""

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] | None = None

    def _load(self) -> list[dict[str, Any]]:
        if self._apps is None:
            from airflow_mlpipe.plugin.app import create_app

            self._apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": VIEW_NAME}]
        return self._apps

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        return self._load()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


class MLPipePlugin(AirflowPlugin):
    """Registers the ML Pipelines page (FastAPI app + UI navigation entry) with Airflow."""

    name = PLUGIN_NAME
    fastapi_apps = _LazyFastAPIApps()  # type: ignore[assignment]  # a read-only list, built lazily
    external_views = [external_view()]
