"""Register the evaluated model as a new immutable version in a file or object-store registry.

Layout under ``registry`` (any URI Airflow's ObjectStoragePath handles: ``file://``, ``s3://``
with ``conn_id``...)::

    <registry>/<model_name>/versions/<N>/_claim.<token>  one registration's bid for number N
    <registry>/<model_name>/versions/<N>/_claim          the winner: which run owns version N
    <registry>/<model_name>/versions/<N>/artifacts/...   copies of the upstream model artifacts
    <registry>/<model_name>/versions/<N>/metadata.json   provenance, metrics and thresholds
    <registry>/<model_name>/versions/<N>/_COMPLETE       written last: the version is complete
    <registry>/<model_name>/runs/<hash>.json             which version a pipeline run owns
    <registry>/<model_name>/aliases/<alias>.json         e.g. production -> version N

How versions stay unique and complete:

* A version number is claimed by *bidding*: write a new object ``_claim.<random token>`` in
  ``versions/<N>/``, then list that folder. The bid wins only if the listing shows nothing but
  itself; a losing bid is withdrawn, a winning one is kept for ever. Two bids cannot both win:
  the one listed later was written after the earlier listing (or that listing would have shown
  it), so it sees the earlier bid, which a winner never removes. This needs only that a listing
  shows every object written before it started, which local filesystems, S3 (strongly
  consistent since 2020), GCS and Azure Blob all guarantee. It does **not** rely on
  exclusive-create (``"xb"``, an ``If-None-Match`` conditional PUT on object stores): that check
  is not atomic in every S3 implementation (moto's server lets two racing writers both succeed)
  and some S3-compatible stores ignore it, which would silently give one number to two runs.
* A bid that meets only other bids (all maybe losing at the same moment) is withdrawn and
  retried after a random back-off; a number that already has an owner, a version or a stale bid
  (a registration that died mid-bid) is skipped. Numbers therefore increase and are never
  reused; under contention or after a crash a number can be left unused.
* The winner records its number in ``runs/<hash of pipeline and run id>.json``, so a retry of the
  same pipeline run finds its version with one read and finishes it if the first try died
  half-way, instead of registering a second version.
* Readers only consider versions with ``_COMPLETE``, which is written after every artifact and
  the metadata, so a half-written version is never visible (see :func:`list_versions`). Listings
  and reads bypass fsspec's listing cache, so another process's writes are seen at once.
* Promotion writes the alias file in one step: through a temporary file and an atomic rename
  on local filesystems, a single-object put (atomic by itself) on object stores. Readers see the
  old or the new alias, never a mix. An alias never moves back to an older version than the one
  it points to (a late retry, or the slower of two concurrent registrations, leaves it alone);
  the check and the write are two steps, so two promotions finishing at the same instant can
  still leave the older one in place.

``promote_if`` decides promotion: ``all_metrics_passed`` (the upstream metric of
``evaluation.recommender`` is 1.0), ``always`` or ``never``. The stage updates the Airflow Asset
``<registry>/<model_name>`` with ``{"version", "metrics", "promoted"}`` as event extra.

Artifacts: ``version`` (URI of the version folder). Metrics: ``version``, ``promoted``,
``reused`` (1.0 when a retry found this run's version already registered).
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
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from airflow_mlpipe.contract import ComponentContext

CLAIM = "_claim"
BID_PREFIX = "_claim."
COMPLETE = "_COMPLETE"
METADATA = "metadata.json"
RUNS = "runs"
#: How often a number seen with only other bids is bid for again before moving on to the next.
SAME_NUMBER_BIDS = 6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class Config(BaseModel):
    """Configuration of ``registry.register_model``."""

    model_config = ConfigDict(extra="forbid")

    registry: str = Field(
        description="Registry root URI, e.g. file:///srv/models or s3://models/acme/ (an absolute path means file://)"
    )
    model_name: str | None = Field(
        default=None, description="Name of the model in the registry; default the pipeline name"
    )
    promote_if: Literal["all_metrics_passed", "always", "never"] = Field(
        default="all_metrics_passed",
        description="When to point the alias at the new version: all_metrics_passed, always or never",
    )
    alias: str = Field(default="production", description="Alias that promotion moves")
    conn_id: str | None = Field(
        default=None, description="Airflow connection for the registry's object store (e.g. aws_default)"
    )
    artifacts: list[str] | None = Field(
        default=None, description="Upstream artifacts to copy into the version; default all of them"
    )
    max_claim_attempts: int = Field(
        default=1000, gt=0, description="Version numbers to try before giving up under heavy contention"
    )

    @field_validator("registry")
    @classmethod
    def _registry_uri(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("/"):
            return f"file://{value}"
        if not _SCHEME.match(value):
            raise ValueError(f"'{value}' is not a URI; write e.g. file:///srv/models or s3://bucket/models")
        return value

    @field_validator("model_name", "alias")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                f"'{value}' must be letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value


def model_uri(config: Config, pipeline: str) -> str:
    """The URI of the model's folder in the registry (also the URI of its Airflow Asset)."""
    return f"{config.registry.rstrip('/')}/{config.model_name or pipeline}"


def assets(config: Config, pipeline: str) -> list[Asset]:
    """The model's Asset, updated by every registration (declared at parse time, no I/O)."""
    from airflow.sdk import Asset

    uri = model_uri(config, pipeline)
    return [Asset(uri=uri, name=uri, group="model")]


def run(config: Config, context: ComponentContext) -> Mapping[str, Any]:
    """Claim a version (or find this run's), copy artifacts, write metadata, complete, maybe promote."""
    log = context.log
    model_name = config.model_name or context.pipeline
    if not _NAME.match(model_name):
        raise ValueError(f"the pipeline name '{model_name}' cannot be a model name; set model_name")
    upstream = context.input()
    if config.promote_if == "all_metrics_passed" and "all_metrics_passed" not in upstream.metrics:
        raise ValueError(
            "promote_if is all_metrics_passed but the upstream stage has no 'all_metrics_passed' metric; "
            "register the output of evaluation.recommender, or set promote_if to always or never"
        )
    selected = _selected_artifacts(config, upstream.artifacts)
    model_root = _path(model_uri(config, context.pipeline), config.conn_id)
    log.info("Registering %s (%s) from run %s", model_name, model_root, context.run_id)

    version, version_dir, complete = _claim_version(model_root, context, config.max_claim_attempts)
    if complete:
        log.info("Run %s already registered version %d; not creating another", context.run_id, version)
        metadata = _read_json(version_dir / METADATA) or {}
    else:
        metadata = _write_version(version, version_dir, model_name, selected, context)

    promote = {
        "always": True,
        "never": False,
        "all_metrics_passed": upstream.metrics.get("all_metrics_passed") == 1.0,
    }[config.promote_if]
    current = _read_json(model_root / "aliases" / f"{config.alias}.json")
    if promote and current is not None and current.get("version", 0) > version:
        # A retry of an old run, or the slower of two concurrent registrations, must not take the
        # alias back from a newer version.
        log.info("Not promoting: %s already points to the newer version %s", config.alias, current["version"])
        promote = False
    if promote:
        _write_alias(model_root, config.alias, version, version_dir, context)
        log.info("Promoted: %s now points to version %d", config.alias, version)
    else:
        log.info("Not promoted (promote_if=%s); %s unchanged", config.promote_if, config.alias)

    if context.outlet_events is not None:
        for asset in assets(config, context.pipeline):
            context.outlet_events[asset].extra = {
                "version": version,
                "metrics": metadata.get("metrics", {}),
                "promoted": promote,
            }
    return {
        "artifacts": {"version": str(version_dir)},
        "metrics": {"version": version, "promoted": float(promote), "reused": float(complete)},
    }


# -- reading the registry ---------------------------------------------------------------------


def list_versions(registry: str, model_name: str, conn_id: str | None = None) -> list[int]:
    """Complete versions of ``model_name``, oldest first (half-written ones are not listed)."""
    root = _path(f"{registry.rstrip('/')}/{model_name}", conn_id)
    return [number for number in _version_numbers(root) if _exists(_version_dir(root, number) / COMPLETE)]


def read_metadata(registry: str, model_name: str, version: int, conn_id: str | None = None) -> dict[str, Any]:
    """The metadata of a complete version; raise FileNotFoundError for a missing or partial one."""
    version_dir = _version_dir(_path(f"{registry.rstrip('/')}/{model_name}", conn_id), version)
    metadata = _read_json(version_dir / METADATA) if _exists(version_dir / COMPLETE) else None
    if metadata is None:
        raise FileNotFoundError(f"{model_name} has no complete version {version} in {registry}")
    return metadata


def read_alias(
    registry: str, model_name: str, alias: str = "production", conn_id: str | None = None
) -> dict[str, Any] | None:
    """What ``alias`` points to (``{"version": N, "uri": ...}``), or None if it was never set."""
    return _read_json(_path(f"{registry.rstrip('/')}/{model_name}", conn_id) / "aliases" / f"{alias}.json")


# -- internals ---------------------------------------------------------------------------------
#
# Reads go around fsspec's listing cache (s3fs keeps one per process): another process may have
# written since, and the bidding protocol is only sound on a fresh listing.


def _path(uri: str, conn_id: str | None) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri, conn_id=conn_id) if conn_id else ObjectStoragePath(uri)


def _children(folder: Any) -> list[str]:
    """Names in ``folder`` as the store has them now ([] if there is no such folder)."""
    folder.fs.invalidate_cache(folder.path)
    try:
        entries = folder.fs.ls(folder.path, detail=False)
    except FileNotFoundError:
        return []
    names = (str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)
    return [name for name in names if name]


def _exists(path: Any) -> bool:
    path.fs.invalidate_cache(path.path)
    return bool(path.fs.exists(path.path))


def _read_json(path: Any) -> dict[str, Any] | None:
    """The JSON object at ``path`` read in one request (None if there is none)."""
    path.fs.invalidate_cache(path.path)
    try:
        data = path.fs.cat_file(path.path)
    except FileNotFoundError:
        return None
    value = json.loads(data)
    return value if isinstance(value, dict) else None


def _write(path: Any, data: bytes) -> None:
    """Write a small object in one put (local: one write of a new or truncated file)."""
    path.fs.pipe_file(path.path, data)


def _is_local(path: Any) -> bool:
    return path.protocol in ("file", "local")


def _mkdir(folder: Any) -> None:
    """Create a folder where folders exist (object stores have none: keys just have prefixes)."""
    if _is_local(folder):
        folder.mkdir(parents=True, exist_ok=True)


def _version_dir(model_root: Any, version: int) -> Any:
    return model_root / "versions" / str(version)


def _version_numbers(model_root: Any) -> list[int]:
    return sorted(int(name) for name in _children(model_root / "versions") if name.isdigit())


def _selected_artifacts(config: Config, artifacts: Mapping[str, str]) -> dict[str, str]:
    if config.artifacts is None:
        selected = dict(artifacts)
    else:
        missing = [name for name in config.artifacts if name not in artifacts]
        if missing:
            raise ValueError(
                f"the upstream stage has no artifact(s) {missing} (it has: {', '.join(artifacts) or 'none'})"
            )
        selected = {name: artifacts[name] for name in config.artifacts}
    if not selected:
        raise ValueError("the upstream stage passed no artifacts: there is no model to register")
    for name in selected:
        if not _NAME.match(name):
            raise ValueError(f"artifact name '{name}' cannot be a file name in the registry")
    return selected


def _run_key(context: ComponentContext) -> dict[str, str]:
    # run ids are unique per DAG only, and one model may be registered by several pipelines.
    return {"pipeline": context.pipeline, "run_id": context.run_id}


def _run_marker(model_root: Any, key: Mapping[str, str]) -> Any:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return model_root / RUNS / f"{digest}.json"


def _claim_version(model_root: Any, context: ComponentContext, max_attempts: int) -> tuple[int, Any, bool]:
    """This run's version (if an earlier try claimed one) or a newly claimed one.

    Returns (version, its folder, whether it is already complete).
    """
    key = _run_key(context)
    marker = _run_marker(model_root, key)
    owned = _read_json(marker)
    if owned is not None and {"pipeline": owned.get("pipeline"), "run_id": owned.get("run_id")} == key:
        number = int(owned["version"])
        version_dir = _version_dir(model_root, number)
        complete = _exists(version_dir / COMPLETE)
        if not complete:
            context.log.info("Resuming version %d, claimed by an earlier try of this run", number)
            _write(version_dir / CLAIM, json.dumps({**key, "version": number}).encode())
        return number, version_dir, complete

    candidate = max(_version_numbers(model_root), default=0) + 1
    bids_on_candidate = 0
    for _ in range(max_attempts):
        version_dir = _version_dir(model_root, candidate)
        started = time.monotonic()
        outcome, rivals = _bid(version_dir, key)
        if outcome == "won":
            record = json.dumps({**key, "version": candidate, "claimed_at": _now()}).encode()
            _mkdir(model_root / RUNS)
            _write(marker, record)  # first: from now on a retry of this run resumes this version
            _write(version_dir / CLAIM, record)  # tells other bidders at once that N is taken
            context.log.info("Claimed version %d", candidate)
            return candidate, version_dir, False
        bids_on_candidate += 1
        if outcome == "taken" or bids_on_candidate >= SAME_NUMBER_BIDS:
            context.log.info("Version %d was claimed concurrently; trying the next number", candidate)
            # Jump past every number in use: under contention others may be ahead already.
            candidate = max([candidate, *_version_numbers(model_root)]) + 1
            bids_on_candidate = 0
        else:
            context.log.info("Version %d is being bid for concurrently; bidding again", candidate)
            # Random back-off (full jitter) in units of one bid's duration, for as many slots as
            # there are bidders, doubling each time: the bidders soon stop colliding.
            slot = time.monotonic() - started
            time.sleep(random.uniform(0, min(5.0, slot * (rivals + 1) * 2 ** (bids_on_candidate - 1))))
    raise RuntimeError(f"could not claim a version of {model_root} in {max_attempts} attempts")


def _bid(version_dir: Any, key: Mapping[str, str]) -> tuple[Literal["won", "taken", "contended"], int]:
    """Bid for the number of ``version_dir``.

    Returns the outcome (``won``; ``taken``: someone owns the number or left something there;
    ``contended``: only other bids, which may all be losing) and how many other entries there are.
    """
    token = uuid.uuid4().hex
    bid = version_dir / f"{BID_PREFIX}{token}"
    _mkdir(version_dir)
    _write(bid, json.dumps({**key, "token": token, "bid_at": _now()}).encode())
    # The listing starts after the bid is stored (the write has returned): see the module doc.
    others = [name for name in _children(version_dir) if name != bid.name]
    if not others:
        return "won", 0  # and the bid stays: it is what makes every later bid for this number lose
    with contextlib.suppress(FileNotFoundError):
        bid.fs.rm_file(bid.path)  # withdraw, so that the number can still be won
    contended = all(name.startswith(BID_PREFIX) for name in others)
    return ("contended" if contended else "taken"), len(others)


def _write_version(
    version: int,
    version_dir: Any,
    model_name: str,
    artifacts: Mapping[str, str],
    context: ComponentContext,
) -> dict[str, Any]:
    """Copy the artifacts, then the metadata, then ``_COMPLETE``: in that order, so readers that
    wait for ``_COMPLETE`` never see a partial version."""
    from airflow.sdk import ObjectStoragePath

    upstream = context.input()
    copied: dict[str, str] = {}
    for name, uri in artifacts.items():
        source = ObjectStoragePath(uri)
        relative = f"artifacts/{name}{source.suffix}"
        _copy(source, version_dir / relative)
        copied[name] = relative
        context.log.info("Copied %s (%s) into version %d", name, uri, version)
    metrics = dict(upstream.metrics)
    metadata = {
        "model_name": model_name,
        "version": version,
        "uri": str(version_dir),
        "pipeline": context.pipeline,
        "pipeline_version": context.pipeline_version,
        "config_version": context.config_version,
        "environment": context.environment,
        "git_commit": context.git_commit,
        "run_id": context.run_id,
        "stage": context.stage,
        "metrics": metrics,
        "thresholds": {
            name.removeprefix("threshold."): value
            for name, value in metrics.items()
            if name.startswith("threshold.")
        },
        "artifacts": copied,
        "source_artifacts": dict(artifacts),
        "created_at": _now(),
    }
    _write(version_dir / METADATA, json.dumps(metadata, indent=2, sort_keys=True).encode())
    _write(version_dir / COMPLETE, json.dumps({"version": version, "completed_at": _now()}).encode())
    context.log.info("Version %d of %s is complete: %s", version, model_name, version_dir)
    return metadata


def _copy(source: Any, target: Any) -> None:
    """Copy a file or a folder tree, streaming, possibly between different filesystems."""
    if source.is_dir():
        for child in source.rglob("*"):
            if child.is_file():
                _copy(child, target / str(child.relative_to(source)))
        return
    _mkdir(target.parent)
    with source.open("rb") as reader, target.open("wb") as writer:
        shutil.copyfileobj(reader, writer, length=8 * 1024 * 1024)


def _write_alias(
    model_root: Any, alias: str, version: int, version_dir: Any, context: ComponentContext
) -> None:
    aliases = model_root / "aliases"
    _mkdir(aliases)
    record = {
        "alias": alias,
        "version": version,
        "uri": str(version_dir),
        "pipeline": context.pipeline,
        "run_id": context.run_id,
        "promoted_at": _now(),
    }
    _atomic_write(aliases / f"{alias}.json", json.dumps(record, indent=2).encode())


def _atomic_write(target: Any, data: bytes) -> None:
    """Replace ``target`` so readers see the old or the new content, never a mix."""
    import os

    if _is_local(target):
        temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary.path, target.path)  # atomic rename on POSIX and Windows
    else:
        _write(target, data)  # one PUT: object stores publish an object all at once


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()
