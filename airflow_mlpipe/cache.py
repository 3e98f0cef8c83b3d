"""The stage cache: outputs of earlier stage runs, found by fingerprint.

Entries live beside the artifacts, one JSON file per stage run that succeeded::

    <artifact_root>/<pipeline>/_cache/<stage>/<fingerprint>.json

so the cache works wherever the artifacts do (``file://``, ``s3://``) and every worker sees the
same entries. An entry names the run that computed the outputs and the outputs themselves (URIs,
metrics, digests); the artifacts stay where that run wrote them, in its try's own folder, which
nothing writes into again. An entry is written whole or not at all (a temporary name, then a
rename), so two runs storing the same fingerprint at once leave one valid entry.

A lookup is a miss, never a failure, when the entry is missing, older than the stage's
``cache_ttl``, unreadable or corrupt (with a warning), or when an artifact it names was deleted.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from airflow_mlpipe.artifacts import safe_segment, write_atomically
from airflow_mlpipe.contract import StageOutputs

CACHE_FOLDER = "_cache"
log = logging.getLogger(__name__)


class CacheEntry(BaseModel):
    """One cached stage run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str
    stage: str
    fingerprint: str
    run_id: str
    created_at: AwareDatetime
    outputs: StageOutputs


class StageCache:
    """The cache entries of one pipeline under an artifact root.

    :param artifact_root: ``[mlpipe] artifact_root`` (a local path or an ``ObjectStoragePath`` URI)
    :param pipeline: the pipeline's name
    """

    def __init__(self, artifact_root: str, pipeline: str) -> None:
        from airflow.sdk import ObjectStoragePath

        root = ObjectStoragePath(artifact_root if "://" in artifact_root else f"file://{artifact_root}")
        self.pipeline = pipeline
        self.folder = root / safe_segment(pipeline) / CACHE_FOLDER

    def _entry_path(self, stage: str, fingerprint: str) -> Any:
        return self.folder / safe_segment(stage) / f"{safe_segment(fingerprint)}.json"

    def lookup(self, stage: str, fingerprint: str, ttl: timedelta | None = None) -> CacheEntry | None:
        """The entry for ``fingerprint`` if it is usable now: fresh and with every artifact in place."""
        path = self._entry_path(stage, fingerprint)
        try:
            if not path.exists():
                return None
            entry = self._read(path)
        except (OSError, ValueError, ValidationError) as exc:
            log.warning(
                "cache miss: entry %s is unreadable or corrupt (%s: %s)", path, type(exc).__name__, exc
            )
            return None
        if entry.fingerprint != fingerprint or entry.stage != stage:
            log.warning("cache miss: entry %s is for another stage run; ignoring it", path)
            return None
        if ttl is not None and datetime.now(timezone.utc) - entry.created_at > ttl:
            log.info("cache miss: the entry from run %s is older than the cache_ttl (%s)", entry.run_id, ttl)
            return None
        missing = [name for name, uri in entry.outputs.artifacts.items() if not _exists(uri)]
        if missing:
            log.info(
                "cache miss: artifact(s) %s of run %s no longer exist; recomputing",
                ", ".join(missing),
                entry.run_id,
            )
            return None
        return entry

    def store(self, stage: str, fingerprint: str, run_id: str, outputs: StageOutputs) -> CacheEntry:
        """Record ``outputs`` of a successful stage run under ``fingerprint``."""
        entry = CacheEntry(
            pipeline=self.pipeline,
            stage=stage,
            fingerprint=fingerprint,
            run_id=run_id,
            created_at=datetime.now(timezone.utc).replace(microsecond=0),
            outputs=outputs,
        )
        path = self._entry_path(stage, fingerprint)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, entry.model_dump_json().encode())
        return entry

    def entries(self, stage: str | None = None) -> list[CacheEntry]:
        """Every readable entry (of ``stage``, when given), newest first; corrupt ones are skipped."""
        found = []
        for path in self._entry_files(stage):
            try:
                found.append(self._read(path))
            except (OSError, ValueError, ValidationError) as exc:
                log.warning("skipping the unreadable cache entry %s (%s)", path, exc)
        return sorted(found, key=lambda entry: entry.created_at, reverse=True)

    def clear(self, stage: str | None = None) -> int:
        """Delete the entries (of ``stage``, when given); returns how many. Artifacts stay."""
        paths = self._entry_files(stage)
        for path in paths:
            path.unlink()
        return len(paths)

    def _entry_files(self, stage: str | None) -> list[Any]:
        folders = [self.folder / safe_segment(stage)] if stage else self._stage_folders()
        files = []
        for folder in folders:
            if folder.exists():
                files += [path for path in folder.iterdir() if path.name.endswith(".json")]
        return files

    def _stage_folders(self) -> list[Any]:
        return [path for path in self.folder.iterdir() if path.is_dir()] if self.folder.exists() else []

    @staticmethod
    def _read(path: Any) -> CacheEntry:
        return CacheEntry.model_validate_json(path.read_bytes())


def _exists(uri: str) -> bool:
    from airflow.sdk import ObjectStoragePath

    try:
        return bool(ObjectStoragePath(uri).exists())
    except Exception:  # a URI that is not storage (a table name): it cannot be checked, so miss
        return False
