"""The ML Pipelines page for Airflow's plugins folder.

With airflow-mlpipe installed (pip), Airflow already loads the plugin through the package's
``airflow.plugins`` entry point, and this file adds nothing: Airflow registers a plugin name only
once and reports a second registration as a plugin import error, so the class is exported here
only when no installed distribution provides the entry point (e.g. the package is on PYTHONPATH
without its metadata). Either way the UI shows one "ML Pipelines" entry.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import airflow_mlpipe.plugin as _mlpipe_plugin

if not any(ep.value.startswith("airflow_mlpipe.plugin") for ep in entry_points(group="airflow.plugins")):

    class MLPipePlugin(_mlpipe_plugin.MLPipePlugin):
        """The ML Pipelines plugin, loaded from the plugins folder."""
