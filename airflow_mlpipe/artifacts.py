"""Where stages keep their artifacts: ``<artifact_root>/<pipeline>/<run_id>/<stage>/``.

The root is ``[mlpipe] artifact_root``: a local path or any URI Airflow's ``ObjectStoragePath``
supports (``s3://conn_id@bucket/prefix`` uses that Airflow connection).

:func:`publish` and :func:`write_atomically` put a file in place so that readers see either no
file (or the previous one) or the complete new one, on local disks and object stores alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
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


def _is_local(path: Any) -> bool:
    return path.protocol in ("file", "local")


def publish(partial: Any, target: Any) -> None:
    """Give the finished file ``partial`` its final name ``target`` (both ``ObjectStoragePath``).

    Locally an atomic rename; on object stores a server-side move (a copy, which creates the
    target object all at once, then the partial object is deleted). Readers of ``target`` never
    see a partly written file. Both paths must be on the same store.
    """
    if _is_local(partial) and _is_local(target):
        os.replace(partial.path, target.path)  # atomic on POSIX and Windows
    else:
        partial.fs.mv(partial.path, target.path)


def write_atomically(target: Any, data: bytes) -> None:
    """Replace ``target`` with ``data``: written under a temporary name beside it, then published.

    The temporary name is unique, so concurrent writers never write into each other's file; the
    last one published wins. A local target's folder must exist.
    """
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.partial"
    temporary.fs.pipe_file(temporary.path, data)
    try:
        publish(temporary, target)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters more
            temporary.fs.rm_file(temporary.path)
        raise
