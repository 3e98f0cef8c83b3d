"""Where stages keep their artifacts: ``<artifact_root>/<pipeline>/<run folder>/<stage>/<try>/``.

Every try writes into a folder of its own, never touched again once the try ends: a stale try of a
lost worker, still running, cannot write into what a later try (or anything pointing at its
outputs) reads.

The run folder is the run id made safe for a path, plus a short hash of the exact run id
(``manual__2024-06-01T03_00_00_00_00-1a2b3c4d5e``): readable, and never shared by two runs whose
ids differ only in characters a path cannot hold (``:`` and ``_``, say), so a triggerer who picks
a run id cannot empty another run's outputs.

The root is ``[mlpipe] artifact_root``: a local path or any URI Airflow's ``ObjectStoragePath``
supports (``s3://conn_id@bucket/prefix`` uses that Airflow connection).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Run ids are free text up to 250 characters; the readable part of the folder name is capped.
_RUN_PREFIX_LENGTH = 100


def safe_segment(value: str) -> str:
    """A path segment that cannot escape its parent (no separators, no '..', no oddities)."""
    segment = _UNSAFE.sub("_", value).strip("._") or "_"
    return segment


def run_folder(run_id: str) -> str:
    """The run's folder name: a readable prefix of the run id and a hash of all of it."""
    digest = hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{safe_segment(run_id)[:_RUN_PREFIX_LENGTH]}-{digest}"


def stage_artifact_dir(root: str, pipeline: str, run_id: str, stage: str, try_number: int) -> Any:
    """The ``ObjectStoragePath`` for one try of one stage of one run (not created here)."""
    from airflow.sdk import ObjectStoragePath

    base = ObjectStoragePath(root if "://" in root else f"file://{root}")
    return base / safe_segment(pipeline) / run_folder(run_id) / safe_segment(stage) / str(int(try_number))
