"""Where stages keep their artifacts: ``<artifact_root>/<pipeline>/<run_id>/<stage>/``.

The root is ``[mlpipe] artifact_root``: a local path or any URI Airflow's ``ObjectStoragePath``
supports (``s3://conn_id@bucket/prefix`` uses that Airflow connection).
"""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_segment(value: str) -> str:
    """A path segment that cannot escape its parent (no separators, no '..', no oddities)."""
    segment = _UNSAFE.sub("_", value).strip("._") or "_"
    return segment


def stage_artifact_dir(root: str, pipeline: str, run_id: str, stage: str) -> Any:
    """The ``ObjectStoragePath`` for one stage of one run (not created here)."""
    from airflow.sdk import ObjectStoragePath

    base = ObjectStoragePath(root if "://" in root else f"file://{root}")
    return base / safe_segment(pipeline) / safe_segment(run_id) / safe_segment(stage)
