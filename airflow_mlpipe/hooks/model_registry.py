"""``ModelRegistryHook``: immutable, numbered model versions in a file or object-store registry.

The registry is a folder tree under any URI Airflow's ``ObjectStoragePath`` handles (``file://``,
``s3://`` through an Airflow connection...)::

    <registry>/<model_name>/versions/<N>/_claim.<token>  one registration's bid for number N
    <registry>/<model_name>/versions/<N>/_claim          the winner: which run owns version N
    <registry>/<model_name>/versions/<N>/artifacts/...   copies of the registered artifacts
    <registry>/<model_name>/versions/<N>/metadata.json   provenance, metrics and thresholds
    <registry>/<model_name>/versions/<N>/_COMPLETE       written last: the version is complete
    <registry>/<model_name>/runs/<hash>.json             which version a pipeline run owns
    <registry>/<model_name>/aliases/<alias>.json         e.g. production -> version N

How versions stay unique and complete:

* A version number is claimed by *bidding* (:meth:`ModelRegistryHook.bid`): write a new object
  ``_claim.<random token>`` in ``versions/<N>/``, then list that folder. The bid wins only if the
  listing shows nothing but itself; a losing bid is withdrawn, a winning one is kept for ever.
  Two bids cannot both win: the one listed later was written after the earlier listing (or that
  listing would have shown it), so it sees the earlier bid, which a winner never removes. This
  needs only that a listing shows every object written before it started, which local
  filesystems, S3 (strongly consistent since 2020), GCS and Azure Blob all guarantee. It does
  **not** rely on exclusive-create (``"xb"``, an ``If-None-Match`` conditional PUT on object
  stores): that check is not atomic in every S3 implementation (moto's server lets two racing
  writers both succeed) and some S3-compatible stores ignore it, which would silently give one
  number to two runs.
* A bid that meets only other bids (all maybe losing at the same moment) is withdrawn and
  retried after a random back-off; a number that already has an owner, a version or a stale bid
  (a registration that died mid-bid) is skipped. Numbers therefore increase and are never
  reused; under contention or after a crash a number can be left unused.
* The winner records its number in ``runs/<hash of the run key>.json``, so a retry of the same
  pipeline run finds its version with one read and finishes it if the first try died half-way,
  instead of registering a second version (:meth:`ModelRegistryHook.claim_version`).
* Readers only consider versions with ``_COMPLETE``, which is written after every artifact and
  the metadata, so a half-written version is never visible (:meth:`ModelRegistryHook.list_versions`).
  Listings and reads bypass fsspec's listing cache, so another process's writes are seen at once.
* :meth:`ModelRegistryHook.promote` writes the alias file with
  :func:`airflow_mlpipe.artifacts.write_atomically` (a temporary file, then an atomic rename
  locally or a server-side move on object stores): readers see the old or the new alias, never a
  mix. An alias never moves back to an older version than the one it points to (a late retry,
  or the slower of two concurrent registrations, leaves it alone); the check and the write are
  two steps, so two promotions finishing at the same instant can still leave the older one.

The hook takes the registry URI and, for object stores, the Airflow connection (``conn_id``)
that ``ObjectStoragePath`` authenticates with; nothing is read or written until a method is
called, so building one costs nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import random
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from airflow.sdk import BaseHook

from airflow_mlpipe.artifacts import write_atomically

CLAIM = "_claim"
BID_PREFIX = "_claim."
COMPLETE = "_COMPLETE"
METADATA = "metadata.json"
RUNS = "runs"
ALIASES = "aliases"
DEFAULT_ALIAS = "production"
#: How often a number seen with only other bids is bid for again before moving on to the next.
SAME_NUMBER_BIDS = 6
#: Model, alias and artifact names: they become file names in the registry.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

BidOutcome = Literal["won", "taken", "contended"]


def registry_uri(value: str) -> str:
    """``value`` as a registry URI: an absolute path means ``file://``; anything else needs a scheme."""
    value = value.strip()
    if value.startswith("/"):
        return f"file://{value}"
    if not _SCHEME.match(value):
        raise ValueError(f"'{value}' is not a URI; write e.g. file:///srv/models or s3://bucket/models")
    return value


def check_name(value: str, what: str = "name") -> str:
    """``value`` if it can be a file name in the registry; ValueError naming ``what`` otherwise."""
    if not NAME_PATTERN.match(value):
        raise ValueError(
            f"{what} '{value}' must be letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Claim:
    """A version number owned by one run: ``complete`` when an earlier try already finished it."""

    version: int
    path: Any  # ObjectStoragePath of versions/<N>
    complete: bool


class ModelRegistryHook(BaseHook):
    """
    Read and write a model registry: claim version numbers, store versions, move aliases.

    :param registry: the registry's root URI (``file:///srv/models``, ``s3://models/acme/``; an
        absolute path means ``file://``)
    :param conn_id: the Airflow connection of the registry's object store (e.g. ``aws_default``);
        None for local registries or URIs that carry their connection (``s3://conn@bucket/...``)
    """

    conn_name_attr = "conn_id"
    hook_name = "ML model registry (airflow-mlpipe)"

    def __init__(self, registry: str, conn_id: str | None = None) -> None:
        super().__init__()
        self.registry = registry_uri(registry)
        self.conn_id = conn_id

    def __repr__(self) -> str:
        return f"ModelRegistryHook(registry={self.registry!r}, conn_id={self.conn_id!r})"

    def get_conn(self) -> Any:
        """The registry root as an ``ObjectStoragePath`` (its ``fs`` is the fsspec filesystem)."""
        return self._path(self.registry)

    # -- where things are --------------------------------------------------------------------

    def model_uri(self, model_name: str) -> str:
        """The URI of a model's folder (also the URI of its Airflow Asset)."""
        return f"{self.registry.rstrip('/')}/{model_name}"

    def model_path(self, model_name: str) -> Any:
        return self._path(self.model_uri(check_name(model_name, "model name")))

    def version_path(self, model_name: str, version: int) -> Any:
        return self.model_path(model_name) / "versions" / str(version)

    # -- reading -----------------------------------------------------------------------------

    def list_versions(self, model_name: str) -> list[int]:
        """Complete versions of ``model_name``, oldest first (half-written ones are not listed)."""
        root = self.model_path(model_name)
        return [n for n in self._version_numbers(root) if self._exists(_version_dir(root, n) / COMPLETE)]

    def read_metadata(self, model_name: str, version: int) -> dict[str, Any]:
        """The metadata of a complete version; FileNotFoundError for a missing or partial one."""
        version_dir = self.version_path(model_name, version)
        metadata = self._read_json(version_dir / METADATA) if self._exists(version_dir / COMPLETE) else None
        if metadata is None:
            raise FileNotFoundError(f"{model_name} has no complete version {version} in {self.registry}")
        return metadata

    def read_alias(self, model_name: str, alias: str = DEFAULT_ALIAS) -> dict[str, Any] | None:
        """What ``alias`` points to (``{"version": N, "uri": ...}``), or None if it was never set."""
        return self._read_json(self.model_path(model_name) / ALIASES / f"{check_name(alias, 'alias')}.json")

    # -- registering -------------------------------------------------------------------------

    def claim_version(self, model_name: str, run_key: Mapping[str, str], max_attempts: int = 1000) -> Claim:
        """The version this run owns: the one an earlier try of it claimed, or a newly won number.

        ``run_key`` identifies the registration (e.g. ``{"pipeline": ..., "run_id": ...}``; run
        ids are unique per DAG only, and one model may be registered by several pipelines).
        """
        model_root = self.model_path(model_name)
        key = dict(run_key)
        marker = _run_marker(model_root, key)
        owned = self._read_json(marker)
        if owned is not None and {name: owned.get(name) for name in key} == key:
            number = int(owned["version"])
            version_dir = _version_dir(model_root, number)
            complete = self._exists(version_dir / COMPLETE)
            if not complete:
                self.log.info("Resuming version %d, claimed by an earlier try of this run", number)
                self._write(version_dir / CLAIM, json.dumps({**key, "version": number}).encode())
            return Claim(number, version_dir, complete)

        candidate = max(self._version_numbers(model_root), default=0) + 1
        bids_on_candidate = 0
        for _ in range(max_attempts):
            version_dir = _version_dir(model_root, candidate)
            started = time.monotonic()
            outcome, rivals = self.bid(version_dir, key)
            if outcome == "won":
                record = json.dumps({**key, "version": candidate, "claimed_at": _now()}).encode()
                self._mkdir(model_root / RUNS)
                self._write(marker, record)  # first: from now on a retry of this run resumes this version
                self._write(version_dir / CLAIM, record)  # tells other bidders at once that N is taken
                self.log.info("Claimed version %d", candidate)
                return Claim(candidate, version_dir, False)
            bids_on_candidate += 1
            if outcome == "taken" or bids_on_candidate >= SAME_NUMBER_BIDS:
                self.log.info("Version %d was claimed concurrently; trying the next number", candidate)
                # Jump past every number in use: under contention others may be ahead already.
                candidate = max([candidate, *self._version_numbers(model_root)]) + 1
                bids_on_candidate = 0
            else:
                self.log.info("Version %d is being bid for concurrently; bidding again", candidate)
                # Random back-off (full jitter) in units of one bid's duration, for as many slots
                # as there are bidders, doubling each time: the bidders soon stop colliding.
                slot = time.monotonic() - started
                time.sleep(random.uniform(0, min(5.0, slot * (rivals + 1) * 2 ** (bids_on_candidate - 1))))
        raise RuntimeError(f"could not claim a version of {model_root} in {max_attempts} attempts")

    def bid(self, version_dir: Any, run_key: Mapping[str, str]) -> tuple[BidOutcome, int]:
        """Bid for the number of ``version_dir`` (see the module doc).

        Returns the outcome (``won``; ``taken``: someone owns the number or left something there;
        ``contended``: only other bids, which may all be losing) and how many other entries there are.
        """
        token = uuid.uuid4().hex
        bid = version_dir / f"{BID_PREFIX}{token}"
        self._mkdir(version_dir)
        self._write(bid, json.dumps({**run_key, "token": token, "bid_at": _now()}).encode())
        # The listing starts after the bid is stored (the write has returned): see the module doc.
        others = [name for name in self._children(version_dir) if name != bid.name]
        if not others:
            return "won", 0  # and the bid stays: it is what makes every later bid for this number lose
        with contextlib.suppress(FileNotFoundError):
            bid.fs.rm_file(bid.path)  # withdraw, so that the number can still be won
        contended = all(name.startswith(BID_PREFIX) for name in others)
        return ("contended" if contended else "taken"), len(others)

    def write_version(
        self,
        model_name: str,
        claim: Claim,
        artifacts: Mapping[str, str],
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Copy ``artifacts`` (name -> URI) into the claimed version, then its metadata, then
        ``_COMPLETE``: in that order, so readers that wait for ``_COMPLETE`` never see a partial
        version. ``metadata`` (provenance, metrics...) is stored with the version's own fields."""
        from airflow.sdk import ObjectStoragePath

        copied: dict[str, str] = {}
        for name, uri in artifacts.items():
            source = ObjectStoragePath(uri)
            relative = f"artifacts/{check_name(name, 'artifact name')}{source.suffix}"
            self._copy(source, claim.path / relative)
            copied[name] = relative
            self.log.info("Copied %s (%s) into version %d", name, uri, claim.version)
        record = {
            **metadata,
            "model_name": model_name,
            "version": claim.version,
            "uri": str(claim.path),
            "artifacts": copied,
            "source_artifacts": dict(artifacts),
            "created_at": _now(),
        }
        self._write(claim.path / METADATA, json.dumps(record, indent=2, sort_keys=True).encode())
        complete = {"version": claim.version, "completed_at": _now()}
        self._write(claim.path / COMPLETE, json.dumps(complete).encode())
        self.log.info("Version %d of %s is complete: %s", claim.version, model_name, claim.path)
        return record

    def promote(
        self, model_name: str, alias: str, version: int, details: Mapping[str, Any] | None = None
    ) -> bool:
        """Point ``alias`` at ``version`` unless it already names a newer one; whether it moved.

        ``details`` (who promoted: pipeline, run id...) is stored in the alias file.
        """
        aliases = self.model_path(model_name) / ALIASES
        current = self.read_alias(model_name, alias)
        if current is not None and current.get("version", 0) > version:
            # A retry of an old run, or the slower of two concurrent registrations, must not take
            # the alias back from a newer version.
            self.log.info(
                "Not promoting: %s already points to the newer version %s", alias, current["version"]
            )
            return False
        self._mkdir(aliases)
        record = {
            "alias": alias,
            "version": version,
            "uri": str(self.version_path(model_name, version)),
            **dict(details or {}),
            "promoted_at": _now(),
        }
        write_atomically(aliases / f"{alias}.json", json.dumps(record, indent=2).encode())
        self.log.info("Promoted: %s now points to version %d", alias, version)
        return True

    # -- storage primitives ------------------------------------------------------------------
    #
    # Reads go around fsspec's listing cache (s3fs keeps one per process): another process may
    # have written since, and the bidding protocol is only sound on a fresh listing.

    def _path(self, uri: str) -> Any:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(uri, conn_id=self.conn_id) if self.conn_id else ObjectStoragePath(uri)

    def _children(self, folder: Any) -> list[str]:
        """Names in ``folder`` as the store has them now ([] if there is no such folder)."""
        folder.fs.invalidate_cache(folder.path)
        try:
            entries = folder.fs.ls(folder.path, detail=False)
        except FileNotFoundError:
            return []
        names = (str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        return [name for name in names if name]

    def _version_numbers(self, model_root: Any) -> list[int]:
        return sorted(int(name) for name in self._children(model_root / "versions") if name.isdigit())

    def _exists(self, path: Any) -> bool:
        path.fs.invalidate_cache(path.path)
        return bool(path.fs.exists(path.path))

    def _read_json(self, path: Any) -> dict[str, Any] | None:
        """The JSON object at ``path`` read in one request (None if there is none)."""
        path.fs.invalidate_cache(path.path)
        try:
            data = path.fs.cat_file(path.path)
        except FileNotFoundError:
            return None
        value = json.loads(data)
        return value if isinstance(value, dict) else None

    def _write(self, path: Any, data: bytes) -> None:
        """Write a small object in one put (local: one write of a new or truncated file)."""
        path.fs.pipe_file(path.path, data)

    def _mkdir(self, folder: Any) -> None:
        """Create a folder where folders exist (object stores have none: keys just have prefixes)."""
        if folder.protocol in ("file", "local"):
            folder.mkdir(parents=True, exist_ok=True)

    def _copy(self, source: Any, target: Any) -> None:
        """Copy a file or a folder tree, streaming, possibly between different filesystems."""
        if source.is_dir():
            for child in source.rglob("*"):
                if child.is_file():
                    self._copy(child, target / str(child.relative_to(source)))
            return
        self._mkdir(target.parent)
        with source.open("rb") as reader, target.open("wb") as writer:
            shutil.copyfileobj(reader, writer, length=8 * 1024 * 1024)


def _version_dir(model_root: Any, version: int) -> Any:
    return model_root / "versions" / str(version)


def _run_marker(model_root: Any, key: Mapping[str, str]) -> Any:
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:32]
    return model_root / RUNS / f"{digest}.json"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()
