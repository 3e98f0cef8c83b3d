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

:func:`publish` and :func:`write_atomically` put a file in place so that readers see either no
file (or the previous one) or the complete new one, on local disks and object stores alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
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


def _is_local(path: Any) -> bool:
    return path.protocol in ("file", "local")


def open_for_writing(path: Any) -> Any:
    """``path`` (an ``ObjectStoragePath``) opened for writing bytes.

    A local file is opened directly: the first ``ObjectStoragePath.open`` of a process has Airflow
    import every installed provider's filesystem module (about 0.1 s, more with the Amazon
    provider), which a file on the worker's own disk does not need.
    """
    if _is_local(path):
        return open(path.path, "wb")  # the caller closes it, as with path.open
    return path.open("wb")


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
