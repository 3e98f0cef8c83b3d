"""ModelRegistryHook: version numbering, idempotent claims, concurrency, visibility, the alias.

Most tests run twice: on a ``file://`` registry and on an ``s3://`` one served by moto on loopback
through an Airflow ``aws`` connection (see conftest.py). Registrations here use the hook as the
``registry.register_model`` component does: claim, write the version, promote.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_mlpipe.hooks import model_registry
from airflow_mlpipe.hooks.model_registry import ModelRegistryHook

MODEL = "recommender"


@dataclass
class Registered:
    version: int
    reused: bool
    promoted: bool


@dataclass
class Store:
    """A registry root on one kind of storage, and the source artifacts to register."""

    kind: str
    registry: str
    conn_id: str | None
    artifacts: dict[str, str]

    def hook(self) -> ModelRegistryHook:
        return ModelRegistryHook(self.registry, conn_id=self.conn_id)

    def register(self, run_id: str, *, pipeline: str = "demo", promote: bool = True) -> Registered:
        """One registration, as the component makes it."""
        hook = self.hook()
        claim = hook.claim_version(MODEL, {"pipeline": pipeline, "run_id": run_id})
        if not claim.complete:
            provenance = {"pipeline": pipeline, "run_id": run_id, "metrics": {"recall@10": 0.3}}
            hook.write_version(MODEL, claim, self.artifacts, provenance)
        promoted = promote and hook.promote(MODEL, "production", claim.version, {"run_id": run_id})
        return Registered(claim.version, claim.complete, promoted)

    def path(self, *parts: str) -> Any:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath("/".join([self.registry, MODEL, *parts]), conn_id=self.conn_id)

    def versions(self) -> list[int]:
        return self.hook().list_versions(MODEL)

    def metadata(self, version: int) -> dict:
        return self.hook().read_metadata(MODEL, version)

    def alias(self, name: str = "production") -> dict | None:
        return self.hook().read_alias(MODEL, name)

    def names(self, *parts: str) -> list[str]:
        """What the folder holds, straight from the store."""
        return sorted(self.hook()._children(self.path(*parts)))


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, source_artifacts) -> Store:
    if request.param == "file":
        return Store("file", f"file://{tmp_path}/registry", None, source_artifacts)
    bucket = request.getfixturevalue("s3_bucket")
    return Store("s3", f"s3://{bucket}/registry", request.getfixturevalue("s3_conn_id"), source_artifacts)


@pytest.fixture
def s3_store(s3_bucket, s3_conn_id, source_artifacts) -> Store:
    return Store("s3", f"s3://{s3_bucket}/registry", s3_conn_id, source_artifacts)


def _in_threads(function, arguments: list) -> tuple[list, list[BaseException]]:
    """Call ``function`` on each argument in its own thread, all released at once."""
    results: list = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(arguments))

    def call(argument) -> None:
        try:
            start.wait()
            results.append(function(argument))
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a registration hung"
    return results, errors


# -- the hook itself ---------------------------------------------------------------------------


def test_the_hook_is_an_airflow_hook_that_touches_nothing_until_used(tmp_path):
    from airflow.sdk import BaseHook

    hook = ModelRegistryHook(str(tmp_path / "registry"), conn_id=None)
    assert isinstance(hook, BaseHook)
    assert hook.registry == f"file://{tmp_path}/registry"  # an absolute path means file://
    assert hook.model_uri("churn") == f"file://{tmp_path}/registry/churn"
    assert not (tmp_path / "registry").exists()
    assert hook.list_versions("churn") == [] and hook.read_alias("churn") is None
    assert not (tmp_path / "registry").exists()  # reading an empty registry creates nothing
    with pytest.raises(ValueError, match="is not a URI"):
        ModelRegistryHook("models/acme")
    with pytest.raises(ValueError, match=r"model name '\.\./escape'"):
        hook.list_versions("../escape")
    with pytest.raises(ValueError, match="alias 'a/b'"):
        hook.read_alias("churn", "a/b")


def test_the_hook_opens_object_stores_through_its_connection(s3_store):
    hook = s3_store.hook()
    assert hook.get_conn().fs.__class__.__name__ == "S3FileSystem"
    registered = s3_store.register("run-1")
    # the version URI carries the connection, so downstream readers can open it
    uri = s3_store.metadata(registered.version)["uri"]
    assert uri.startswith(f"s3://{s3_store.conn_id}@")
    from airflow.sdk import ObjectStoragePath

    assert (ObjectStoragePath(uri) / "artifacts" / "model.npz").read_bytes() == b"factors" * 1000


# -- numbering, retries, concurrency ---------------------------------------------------------


def test_versions_increase_and_hold_copies_and_metadata(store):
    first, second = store.register("run-1"), store.register("run-2")

    assert (first.version, second.version) == (1, 2)
    assert store.versions() == [1, 2]
    metadata = store.metadata(2)
    assert (metadata["run_id"], metadata["model_name"], metadata["version"]) == ("run-2", MODEL, 2)
    assert metadata["metrics"] == {"recall@10": 0.3}  # what the caller passed is kept
    assert metadata["source_artifacts"] == store.artifacts
    assert set(metadata["artifacts"]) == {"model", "user_index", "report"}
    version_dir = store.path("versions", "2")
    assert metadata["uri"] == str(version_dir)
    assert (version_dir / metadata["artifacts"]["model"]).read_bytes() == b"factors" * 1000
    # one bid (the winner's), the owner record, the copies, the metadata, the completion mark
    names = store.names("versions", "2")
    bids = [name for name in names if name.startswith("_claim.")]
    assert len(bids) == 1
    assert sorted(set(names) - set(bids)) == ["_COMPLETE", "_claim", "artifacts", "metadata.json"]
    assert len(store.names("runs")) == 2  # one marker per registered run


def test_a_retried_run_finds_its_version_instead_of_claiming_another(store):
    first = store.register("run-1")
    retry = store.register("run-1")

    assert retry.version == first.version == 1
    assert (first.reused, retry.reused) == (False, True)
    assert store.versions() == [1]
    assert store.names("versions") == ["1"]
    # the same run id from another pipeline is another registration
    assert store.register("run-1", pipeline="other").version == 2


def test_concurrent_registrations_get_unique_versions(store):
    count = 12 if store.kind == "file" else 8  # each S3 registration costs ~20 requests to moto
    results, errors = _in_threads(store.register, [f"run-{i}" for i in range(count)])

    assert not errors
    versions = [result.version for result in results]
    assert len(versions) == len(set(versions)) == count
    assert sorted(versions) == store.versions()
    owners = {store.metadata(v)["run_id"] for v in versions}
    assert owners == {f"run-{i}" for i in range(count)}
    # a retry of a run, after the storm, finds its own version
    by_run = {store.metadata(v)["run_id"]: v for v in versions}
    retried = store.register("run-7")
    assert (retried.version, retried.reused) == (by_run["run-7"], True)


def test_bids_alone_keep_versions_unique(store, monkeypatch, hook_log):
    # Every registration sees an empty registry, as racers that all list before anyone bids
    # would: only the bid-then-list claim can keep them apart.
    monkeypatch.setattr(ModelRegistryHook, "_version_numbers", lambda self, model_root: [])
    versions = [store.register(f"run-{i}").version for i in range(4)]
    assert versions == [1, 2, 3, 4]
    assert hook_log.text.count("claimed concurrently") == 0 + 1 + 2 + 3
    monkeypatch.undo()
    assert store.versions() == [1, 2, 3, 4]


def test_simultaneous_bids_both_lose_then_one_wins(store, monkeypatch, hook_log):
    # The worst interleaving: both registrations pick version 1, and both bids are stored before
    # either lists the folder. Neither may take the number (a protocol that trusted its own
    # write, or checked before writing, would hand version 1 to both): both withdraw and bid
    # again, and then one of them wins.
    bid, children = ModelRegistryHook.bid, ModelRegistryHook._children
    both_picked, both_bid, both_listed = threading.Barrier(2), threading.Barrier(2), threading.Barrier(2)
    first = threading.local()

    def bid_together(self, version_dir, key):
        if version_dir.name == "1" and not getattr(first, "bid", False):
            first.bid = True
            both_picked.wait(timeout=30)
        return bid(self, version_dir, key)

    def list_after_both_bids(self, folder):
        if folder.name == "1" and not getattr(first, "listed", False):
            first.listed = True
            both_bid.wait(timeout=30)
            names = children(self, folder)
            both_listed.wait(timeout=30)  # and neither withdraws before both have listed
            return names
        return children(self, folder)

    monkeypatch.setattr(ModelRegistryHook, "bid", bid_together)
    monkeypatch.setattr(ModelRegistryHook, "_children", list_after_both_bids)
    results, errors = _in_threads(store.register, ["run-a", "run-b"])

    assert not errors
    assert hook_log.text.count("Version 1 is being bid for concurrently") >= 2  # both lost round one
    assert sorted(result.version for result in results) == [1, 2]
    monkeypatch.undo()
    assert store.versions() == [1, 2]
    assert {store.metadata(1)["run_id"], store.metadata(2)["run_id"]} == {"run-a", "run-b"}
    # the losing bids were withdrawn: one bid (the winner's) per number
    for number in ("1", "2"):
        assert len([n for n in store.names("versions", number) if n.startswith("_claim.")]) == 1


def test_a_stale_bid_is_bid_against_a_few_times_then_skipped(store, monkeypatch, hook_log):
    # A registration that died between its bid and its listing leaves a bid behind. Nobody can
    # take that number any more (its bidder might have won it): the others move on, safely.
    store.register("run-1")
    stale = store.path("versions", "2", "_claim.deadbeef")
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b'{"pipeline": "demo", "run_id": "crashed"}')

    # Usually the next registration simply starts past the highest number in use...
    assert store.register("run-2").version == 3
    # ...but one that picked the number before the bid appeared bids against it a few times.
    monkeypatch.setattr(ModelRegistryHook, "_version_numbers", lambda self, model_root: [1])
    result = store.register("run-4")
    rebids = model_registry.SAME_NUMBER_BIDS - 1
    assert hook_log.text.count("Version 2 is being bid for concurrently") == rebids
    assert hook_log.text.count("Version 2 was claimed concurrently") == 1
    assert result.version == 3 + 1
    monkeypatch.undo()
    assert store.versions() == [1, 3, 4]
    assert store.names("versions", "2") == ["_claim.deadbeef"]  # left alone


def test_a_store_ignoring_exclusive_create_cannot_duplicate_versions(s3_store, monkeypatch):
    # Some S3-compatible stores ignore If-None-Match (and moto's check is not atomic): with
    # exclusive create ("xb") as the only guard, every racer below would get version 1.
    fs = s3_store.path().fs
    fs.ls(s3_store.registry.removeprefix("s3://").split("/")[0])  # the client exists from here on
    conditional: list[str] = []

    def ignore_if_none_match(params, **kwargs):
        if params.pop("IfNoneMatch", None) is not None:
            conditional.append(params["Key"])

    fs.s3.meta.events.register_first(
        "before-parameter-build.s3.PutObject", ignore_if_none_match, unique_id="mlpipe-no-xb"
    )
    try:
        monkeypatch.setattr(ModelRegistryHook, "_version_numbers", lambda self, model_root: [])
        versions = [s3_store.register(f"run-{i}").version for i in range(3)]
    finally:
        fs.s3.meta.events.unregister("before-parameter-build.s3.PutObject", unique_id="mlpipe-no-xb")
    assert versions == [1, 2, 3]
    assert conditional == []  # and the registry does not even ask for conditional writes


def _register_in_processes(stores: list[Store], tmp_path: Path, workers: int, each: int):
    """For each store in turn: ``workers`` processes, released together, each registering ``each``
    runs. The same processes serve every store (starting one costs seconds of imports)."""
    worker = Path(__file__).with_name("registry_worker.py")
    jobs = [
        [
            {
                "registry": store.registry,
                "conn_id": store.conn_id,
                "model": MODEL,
                "run_ids": [f"proc-{w}-run-{i}" for i in range(each)],
                "go": str(tmp_path / f"go-{s}"),
                "result": str(tmp_path / f"result-{s}-{w}.json"),
            }
            for s, store in enumerate(stores)
        ]
        for w in range(workers)
    ]
    processes = []
    for w in range(workers):
        arguments = {"artifacts": stores[0].artifacts, "ready": str(tmp_path / f"ready-{w}"), "jobs": jobs[w]}
        with (tmp_path / f"worker-{w}.log").open("w") as log:
            command = [sys.executable, str(worker), json.dumps(arguments)]
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    def wait_for(files: list[Path], what: str) -> None:
        deadline = time.monotonic() + 120
        while not all(file.exists() for file in files):
            for w, process in enumerate(processes):
                log = (tmp_path / f"worker-{w}.log").read_text()[-4000:]
                assert process.poll() in (None, 0), f"worker {w} failed:\n{log}"
            assert time.monotonic() < deadline, f"workers took over 2 minutes to {what}"
            time.sleep(0.02)

    try:
        wait_for([tmp_path / f"ready-{w}" for w in range(workers)], "start")
        by_store = []
        for s in range(len(stores)):
            (tmp_path / f"go-{s}").touch()
            results = [Path(jobs[w][s]["result"]) for w in range(workers)]
            wait_for(results, "register")
            by_store.append([entry for result in results for entry in json.loads(result.read_text())])
        for process in processes:
            assert process.wait(timeout=60) == 0
        return by_store
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_concurrent_registrations_from_separate_processes(tmp_path, s3_store, source_artifacts):
    # Separate processes share no fsspec cache and no GIL: only the store keeps them apart.
    local = Store("file", f"file://{tmp_path}/registry", None, source_artifacts)
    for store in (local, s3_store):
        store.register("before")

    outcomes = _register_in_processes([local, s3_store], tmp_path, workers=2, each=6)

    for store, results in zip((local, s3_store), outcomes, strict=True):
        versions = [result["version"] for result in results]
        assert len(results) == 12
        assert len(set(versions)) == 12, f"{store.kind}: a version was handed out twice: {sorted(versions)}"
        assert min(versions) >= 2  # version 1 was taken before
        assert store.versions() == sorted([1, *versions])  # nothing lost, nothing extra
        for result in results:
            assert store.metadata(result["version"])["run_id"] == result["run_id"]
        # every number that was used has exactly one bid left, the winner's
        for number in store.names("versions"):
            assert len([n for n in store.names("versions", number) if n.startswith("_claim.")]) == 1


# -- half-written versions and storage failures ---------------------------------------------


def test_a_half_written_version_is_invisible_and_a_retry_finishes_it(store, monkeypatch):
    store.register("run-1")

    copy = ModelRegistryHook._copy
    copies = []

    def crash_on_second_copy(self, source, target):
        copies.append(source)
        if len(copies) == 2:
            raise OSError("worker lost")
        copy(self, source, target)

    monkeypatch.setattr(ModelRegistryHook, "_copy", crash_on_second_copy)
    with pytest.raises(OSError, match="worker lost"):
        store.register("run-2")
    monkeypatch.setattr(ModelRegistryHook, "_copy", copy)

    assert "_claim" in store.names("versions", "2")  # claimed, one artifact copied
    assert store.names("versions", "2", "artifacts") == ["model.npz"]
    assert store.versions() == [1]
    with pytest.raises(FileNotFoundError):
        store.metadata(2)
    assert store.alias()["version"] == 1

    # A different run skips the claimed number; the retry of run-2 finishes version 2.
    third = store.register("run-3")
    retry = store.register("run-2")
    assert (third.version, retry.version, retry.reused) == (3, 2, False)
    assert store.versions() == [1, 2, 3]
    assert store.metadata(2)["run_id"] == "run-2"
    # the late retry of run-2 does not take the alias back from version 3
    assert retry.promoted is False and store.alias()["version"] == 3


def test_the_object_store_failing_half_way_leaves_no_visible_version(s3_store):
    # The failure comes from the storage itself: the S3 client refuses every PUT of an artifact
    # after the first, as a store going away mid-registration would.
    s3_store.register("run-1")
    fs = s3_store.path().fs
    artifact_puts: list[str] = []

    def fail_after_first_artifact(params, **kwargs):
        if "/artifacts/" in params.get("Key", ""):
            artifact_puts.append(params["Key"])
            if len(artifact_puts) >= 2:
                raise OSError("injected: S3 unavailable")

    events = ("before-parameter-build.s3.PutObject", "before-parameter-build.s3.CreateMultipartUpload")
    for event in events:
        fs.s3.meta.events.register_first(event, fail_after_first_artifact, unique_id="mlpipe-fault")
    try:
        with pytest.raises(OSError, match="S3 unavailable"):
            s3_store.register("run-2")
    finally:
        for event in events:
            fs.s3.meta.events.unregister(event, unique_id="mlpipe-fault")

    # readers see only version 1, the alias did not move, no metadata of version 2 is readable
    assert len(artifact_puts) == 2
    assert s3_store.versions() == [1]
    assert s3_store.alias()["version"] == 1
    with pytest.raises(FileNotFoundError):
        s3_store.metadata(2)
    assert "_COMPLETE" not in s3_store.names("versions", "2")
    assert "metadata.json" not in s3_store.names("versions", "2")

    # the retry of the same run completes version 2, once
    retry = s3_store.register("run-2")
    assert (retry.version, retry.reused, retry.promoted) == (2, False, True)
    again = s3_store.register("run-2")
    assert (again.version, again.reused) == (2, True)
    assert s3_store.versions() == [1, 2]
    assert s3_store.names("versions") == ["1", "2"]
    assert s3_store.alias()["version"] == 2
    metadata = s3_store.metadata(2)
    assert metadata["run_id"] == "run-2"
    for relative in metadata["artifacts"].values():
        assert s3_store.path("versions", "2", relative).exists()


def test_readers_never_see_a_partial_version_or_alias(store):
    # A reader polls while registrations run: every version it lists must be readable in full,
    # and the alias must always name a complete version.
    stop = threading.Event()
    problems: list[str] = []
    observed: list[int] = []

    def read_continuously() -> None:
        while not stop.is_set():
            try:
                for version in store.versions():
                    metadata = store.metadata(version)
                    for relative in metadata["artifacts"].values():
                        if not store.path("versions", str(version), relative).exists():
                            problems.append(f"version {version} is listed but lacks {relative}")
                alias = store.alias()
                if alias is not None:
                    observed.append(alias["version"])
                    if alias["version"] not in store.versions():
                        problems.append(f"the alias names the incomplete version {alias['version']}")
            except Exception as exc:
                problems.append(f"{type(exc).__name__}: {exc}")

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        _, errors = _in_threads(store.register, [f"run-{i}" for i in range(6)])
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not errors
    assert problems == []
    assert observed, "the reader never saw the alias"
    assert len(store.versions()) == 6


# -- the alias -------------------------------------------------------------------------------


def test_promotion_replaces_the_alias_in_one_step_and_leaves_no_temporary_file(store):
    store.register("run-1")
    store.register("run-2")
    alias = store.alias()
    assert (alias["alias"], alias["version"], alias["run_id"]) == ("production", 2, "run-2")
    assert alias["uri"] == str(store.path("versions", "2"))
    assert store.names("aliases") == ["production.json"]
    # an alias that was never set reads as None; another alias is independent
    assert store.alias("staging") is None
    assert store.hook().promote(MODEL, "staging", 1) is True
    assert (store.alias("staging")["version"], store.alias()["version"]) == (1, 2)


def test_the_alias_never_moves_back_to_an_older_version(store):
    store.register("old")
    store.register("new")
    retry = store.register("old")  # a late retry of the older run
    assert (retry.version, retry.reused, retry.promoted) == (1, True, False)
    assert store.alias()["version"] == 2
    assert store.hook().promote(MODEL, "production", 1) is False
    assert store.alias()["version"] == 2


def test_a_failed_alias_publish_leaves_the_old_alias_and_no_temporary_file(store, monkeypatch):
    from airflow_mlpipe import artifacts

    store.register("run-1")

    def storage_gone(partial, target):
        assert partial.name.startswith(".production.json.") and partial.exists()  # written in full
        raise OSError("storage unavailable")

    monkeypatch.setattr(artifacts, "publish", storage_gone)  # the rename / server-side move
    with pytest.raises(OSError, match="storage unavailable"):
        store.register("run-2")
    monkeypatch.undo()
    assert store.alias()["version"] == 1
    assert store.names("aliases") == ["production.json"]  # the temporary file was removed
