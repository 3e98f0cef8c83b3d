"""registry.register_model: version numbering, idempotent retries, concurrency, promotion, visibility.

Most tests run twice: on a ``file://`` registry and on an ``s3://`` one served by moto on loopback
through an Airflow ``aws`` connection (see conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from airflow_mlpipe.components.registry import register_model as registry

MODEL = "recommender"


@dataclass
class Store:
    """A registry root on one kind of storage."""

    kind: str
    registry: str
    conn_id: str | None

    def config(self, **overrides: Any) -> registry.Config:
        return registry.Config(registry=self.registry, model_name=MODEL, conn_id=self.conn_id, **overrides)

    def path(self, *parts: str) -> Any:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath("/".join([self.registry, MODEL, *parts]), conn_id=self.conn_id)

    def versions(self) -> list[int]:
        return registry.list_versions(self.registry, MODEL, self.conn_id)

    def metadata(self, version: int) -> dict:
        return registry.read_metadata(self.registry, MODEL, version, self.conn_id)

    def alias(self, name: str = "production") -> dict | None:
        return registry.read_alias(self.registry, MODEL, name, self.conn_id)

    def names(self, *parts: str) -> list[str]:
        """What the folder holds, straight from the store."""
        return sorted(registry._children(self.path(*parts)))


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path) -> Store:
    if request.param == "file":
        return Store("file", f"file://{tmp_path}/registry", None)
    bucket = request.getfixturevalue("s3_bucket")
    return Store("s3", f"s3://{bucket}/registry", request.getfixturevalue("s3_conn_id"))


@pytest.fixture
def s3_store(s3_bucket, s3_conn_id) -> Store:
    return Store("s3", f"s3://{s3_bucket}/registry", s3_conn_id)


@pytest.fixture
def evaluated(tmp_path: Path):
    """Upstream outputs like evaluation.recommender's: model artifacts, a report and metrics."""

    def make(passed: float = 1.0) -> dict:
        source = tmp_path / "evaluate-outputs"
        source.mkdir(exist_ok=True)
        (source / "model.npz").write_bytes(b"factors" * 1000)
        (source / "user_index.parquet").write_bytes(b"users")
        (source / "report.json").write_text(json.dumps({"recall@10": 0.3}))
        return {
            "evaluate": {
                "artifacts": {
                    "model": f"file://{source}/model.npz",
                    "user_index": f"file://{source}/user_index.parquet",
                    "report": f"file://{source}/report.json",
                },
                "metrics": {
                    "recall@10": 0.3,
                    "threshold.recall@10": 0.15,
                    "passed.recall@10": passed,
                    "all_metrics_passed": passed,
                },
            }
        }

    return make


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


# -- numbering, retries, concurrency ---------------------------------------------------------


def test_versions_increase_and_hold_copies_and_metadata(store, make_context, evaluated):
    config = store.config()
    first = registry.run(config, make_context("register", evaluated(), run_id="run-1"))
    second = registry.run(config, make_context("register", evaluated(), run_id="run-2"))

    assert (first["metrics"]["version"], second["metrics"]["version"]) == (1, 2)
    assert store.versions() == [1, 2]
    metadata = store.metadata(2)
    assert metadata["run_id"] == "run-2"
    assert metadata["pipeline"] == "demo"
    assert metadata["git_commit"] == "0123abcd"
    assert metadata["config_version"] == "cfg-test"
    assert metadata["metrics"]["recall@10"] == 0.3
    assert metadata["thresholds"] == {"recall@10": 0.15}
    assert set(metadata["artifacts"]) == {"model", "user_index", "report"}
    version_dir = store.path("versions", "2")
    assert (version_dir / metadata["artifacts"]["model"]).read_bytes() == b"factors" * 1000
    assert second["artifacts"]["version"] == metadata["uri"] == str(version_dir)
    if store.kind == "s3":  # the URI carries the connection, so downstream readers can open it
        from airflow.sdk import ObjectStoragePath

        assert second["artifacts"]["version"].startswith(f"s3://{store.conn_id}@")
        downstream = ObjectStoragePath(second["artifacts"]["version"]) / metadata["artifacts"]["model"]
        assert downstream.read_bytes() == b"factors" * 1000
    # one bid (the winner's), the owner record, the copies, the metadata, the completion mark
    names = store.names("versions", "2")
    bids = [name for name in names if name.startswith("_claim.")]
    assert len(bids) == 1
    assert sorted(set(names) - set(bids)) == ["_COMPLETE", "_claim", "artifacts", "metadata.json"]
    assert len(store.names("runs")) == 2  # one marker per registered run


def test_a_retried_run_does_not_register_a_second_version(store, make_context, evaluated):
    config = store.config()
    first = registry.run(config, make_context("register", evaluated(), run_id="run-1"))
    retry = registry.run(config, make_context("register", evaluated(), run_id="run-1"))

    assert retry["metrics"]["version"] == first["metrics"]["version"] == 1
    assert retry["metrics"]["reused"] == 1.0
    assert store.versions() == [1]
    assert store.names("versions") == ["1"]
    # the same run id from another pipeline is another registration
    other = registry.run(config, make_context("register", evaluated(), run_id="run-1", pipeline="other"))
    assert other["metrics"]["version"] == 2


def test_concurrent_registrations_get_unique_versions(store, make_context, evaluated):
    config = store.config()
    upstream = evaluated()
    count = 12 if store.kind == "file" else 8  # each S3 registration costs ~20 requests to moto
    contexts = [make_context("register", upstream, run_id=f"run-{i}") for i in range(count)]

    results, errors = _in_threads(lambda context: registry.run(config, context), contexts)

    assert not errors
    versions = [result["metrics"]["version"] for result in results]
    assert len(versions) == len(set(versions)) == count
    assert sorted(versions) == store.versions()
    owners = {store.metadata(v)["run_id"] for v in versions}
    assert owners == {f"run-{i}" for i in range(count)}
    # a retry of a run, after the storm, finds its own version
    by_run = {store.metadata(v)["run_id"]: v for v in versions}
    retried = registry.run(config, make_context("register", upstream, run_id="run-7"))
    assert (retried["metrics"]["version"], retried["metrics"]["reused"]) == (by_run["run-7"], 1.0)


def test_bids_alone_keep_versions_unique(store, make_context, evaluated, monkeypatch, caplog):
    # Every registration sees an empty registry, as racers that all list before anyone bids
    # would: only the bid-then-list claim can keep them apart.
    monkeypatch.setattr(registry, "_version_numbers", lambda model_root: [])
    config = store.config()
    versions = [
        registry.run(config, make_context("register", evaluated(), run_id=f"run-{i}"))["metrics"]["version"]
        for i in range(4)
    ]
    assert versions == [1, 2, 3, 4]
    assert caplog.text.count("claimed concurrently") == 0 + 1 + 2 + 3
    monkeypatch.undo()
    assert store.versions() == [1, 2, 3, 4]


def test_simultaneous_bids_both_lose_then_one_wins(store, make_context, evaluated, monkeypatch, caplog):
    # The worst interleaving: both registrations pick version 1, and both bids are stored before
    # either lists the folder. Neither may take the number (a protocol that trusted its own
    # write, or checked before writing, would hand version 1 to both): both withdraw and bid
    # again, and then one of them wins.
    bid, children = registry._bid, registry._children
    both_picked, both_bid, both_listed = threading.Barrier(2), threading.Barrier(2), threading.Barrier(2)
    first = threading.local()

    def bid_together(version_dir, key):
        if version_dir.name == "1" and not getattr(first, "bid", False):
            first.bid = True
            both_picked.wait(timeout=30)
        return bid(version_dir, key)

    def list_after_both_bids(folder):
        if folder.name == "1" and not getattr(first, "listed", False):
            first.listed = True
            both_bid.wait(timeout=30)
            names = children(folder)
            both_listed.wait(timeout=30)  # and neither withdraws before both have listed
            return names
        return children(folder)

    monkeypatch.setattr(registry, "_bid", bid_together)
    monkeypatch.setattr(registry, "_children", list_after_both_bids)
    config = store.config()
    results, errors = _in_threads(
        lambda run_id: registry.run(config, make_context("register", evaluated(), run_id=run_id)),
        ["run-a", "run-b"],
    )

    assert not errors
    assert caplog.text.count("Version 1 is being bid for concurrently") >= 2  # both lost round one
    versions = sorted(result["metrics"]["version"] for result in results)
    assert versions == [1, 2]
    monkeypatch.undo()
    assert store.versions() == [1, 2]
    assert {store.metadata(1)["run_id"], store.metadata(2)["run_id"]} == {"run-a", "run-b"}
    # the losing bids were withdrawn: one bid (the winner's) per number
    for number in ("1", "2"):
        assert len([n for n in store.names("versions", number) if n.startswith("_claim.")]) == 1


def test_a_stale_bid_is_bid_against_a_few_times_then_skipped(
    store, make_context, evaluated, monkeypatch, caplog
):
    # A registration that died between its bid and its listing leaves a bid behind. Nobody can
    # take that number any more (its bidder might have won it): the others move on, safely.
    config = store.config()
    registry.run(config, make_context("register", evaluated(), run_id="run-1"))
    stale = store.path("versions", "2", "_claim.deadbeef")
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b'{"pipeline": "demo", "run_id": "crashed"}')

    # Usually the next registration simply starts past the highest number in use...
    assert (
        registry.run(config, make_context("register", evaluated(), run_id="run-2"))["metrics"]["version"] == 3
    )
    # ...but one that picked the number before the bid appeared bids against it a few times.
    monkeypatch.setattr(registry, "_version_numbers", lambda model_root: [1])
    started = time.monotonic()
    result = registry.run(config, make_context("register", evaluated(), run_id="run-4"))
    assert time.monotonic() - started < 20
    assert caplog.text.count("Version 2 is being bid for concurrently") == registry.SAME_NUMBER_BIDS - 1
    assert caplog.text.count("Version 2 was claimed concurrently") == 1
    assert result["metrics"]["version"] == 3 + 1
    monkeypatch.undo()
    assert store.versions() == [1, 3, 4]
    assert store.names("versions", "2") == ["_claim.deadbeef"]  # left alone


def test_a_store_ignoring_exclusive_create_cannot_duplicate_versions(
    s3_store, make_context, evaluated, monkeypatch
):
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
        monkeypatch.setattr(registry, "_version_numbers", lambda model_root: [])
        config = s3_store.config()
        versions = [
            registry.run(config, make_context("register", evaluated(), run_id=f"run-{i}"))["metrics"][
                "version"
            ]
            for i in range(3)
        ]
    finally:
        fs.s3.meta.events.unregister("before-parameter-build.s3.PutObject", unique_id="mlpipe-no-xb")
    assert versions == [1, 2, 3]
    assert conditional == []  # and the registry does not even ask for conditional writes


def _register_in_processes(stores: list[Store], upstream: dict, tmp_path: Path, workers: int, each: int):
    """For each store in turn: ``workers`` processes, released together, each registering ``each``
    runs. The same processes serve every store (starting one costs seconds of imports)."""
    worker = Path(__file__).with_name("registry_worker.py")
    jobs = [
        [
            {
                "config": {"registry": store.registry, "model_name": MODEL, "conn_id": store.conn_id},
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
        arguments = {"upstream": upstream["evaluate"], "ready": str(tmp_path / f"ready-{w}"), "jobs": jobs[w]}
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


def test_concurrent_registrations_from_separate_processes(tmp_path, s3_store, make_context, evaluated):
    # Separate processes share no fsspec cache and no GIL: only the store keeps them apart.
    local = Store("file", f"file://{tmp_path}/registry", None)
    upstream = evaluated()
    for store in (local, s3_store):
        registry.run(store.config(), make_context("register", upstream, run_id="before"))

    outcomes = _register_in_processes([local, s3_store], upstream, tmp_path, workers=2, each=6)

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


def test_a_half_written_version_is_invisible_and_a_retry_finishes_it(
    store, make_context, evaluated, monkeypatch
):
    config = store.config()
    registry.run(config, make_context("register", evaluated(), run_id="run-1"))

    copy = registry._copy
    copies = []

    def crash_on_second_copy(source, target):
        copies.append(source)
        if len(copies) == 2:
            raise OSError("worker lost")
        copy(source, target)

    monkeypatch.setattr(registry, "_copy", crash_on_second_copy)
    with pytest.raises(OSError, match="worker lost"):
        registry.run(config, make_context("register", evaluated(), run_id="run-2"))
    monkeypatch.setattr(registry, "_copy", copy)

    assert "_claim" in store.names("versions", "2")  # claimed, one artifact copied
    assert store.names("versions", "2", "artifacts") == ["model.npz"]
    assert store.versions() == [1]
    with pytest.raises(FileNotFoundError):
        store.metadata(2)
    assert store.alias()["version"] == 1

    # A different run skips the claimed number; the retry of run-2 finishes version 2.
    third = registry.run(config, make_context("register", evaluated(), run_id="run-3"))
    retry = registry.run(config, make_context("register", evaluated(), run_id="run-2"))
    assert (third["metrics"]["version"], retry["metrics"]["version"]) == (3, 2)
    assert retry["metrics"]["reused"] == 0.0
    assert store.versions() == [1, 2, 3]
    assert store.metadata(2)["run_id"] == "run-2"
    # the late retry of run-2 does not take the alias back from version 3
    assert store.alias()["version"] == 3


def test_the_object_store_failing_half_way_leaves_no_visible_version(s3_store, make_context, evaluated):
    # The failure comes from the storage itself: the S3 client refuses every PUT of an artifact
    # after the first, as a store going away mid-registration would.
    config = s3_store.config(promote_if="always")
    registry.run(config, make_context("register", evaluated(), run_id="run-1"))
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
            registry.run(config, make_context("register", evaluated(), run_id="run-2"))
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
    retry = registry.run(config, make_context("register", evaluated(), run_id="run-2"))
    assert (retry["metrics"]["version"], retry["metrics"]["reused"], retry["metrics"]["promoted"]) == (
        2,
        0.0,
        1.0,
    )
    again = registry.run(config, make_context("register", evaluated(), run_id="run-2"))
    assert (again["metrics"]["version"], again["metrics"]["reused"]) == (2, 1.0)
    assert s3_store.versions() == [1, 2]
    assert s3_store.names("versions") == ["1", "2"]
    assert s3_store.alias()["version"] == 2
    metadata = s3_store.metadata(2)
    assert metadata["run_id"] == "run-2"
    for relative in metadata["artifacts"].values():
        assert s3_store.path("versions", "2", relative).exists()


def test_readers_never_see_a_partial_version_or_alias(store, make_context, evaluated):
    # A reader polls while registrations run: every version it lists must be readable in full,
    # and the alias must always name a complete version.
    config = store.config(promote_if="always")
    upstream = evaluated()
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
        contexts = [make_context("register", upstream, run_id=f"run-{i}") for i in range(6)]
        _, errors = _in_threads(lambda context: registry.run(config, context), contexts)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not errors
    assert problems == []
    assert observed, "the reader never saw the alias"
    assert len(store.versions()) == 6


# -- promotion ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("promote_if", "passed", "promoted"),
    [
        ("all_metrics_passed", 1.0, True),
        ("all_metrics_passed", 0.0, False),
        ("always", 0.0, True),
        ("never", 1.0, False),
    ],
)
def test_the_alias_moves_only_when_promote_if_holds(
    store, make_context, evaluated, promote_if, passed, promoted
):
    baseline = registry.run(
        store.config(promote_if="always"), make_context("register", evaluated(), run_id="r1")
    )
    assert store.alias()["version"] == 1

    result = registry.run(
        store.config(promote_if=promote_if), make_context("register", evaluated(passed), run_id="r2")
    )
    alias = store.alias()
    assert result["metrics"]["promoted"] == float(promoted)
    assert alias["version"] == (2 if promoted else baseline["metrics"]["version"])
    assert alias["uri"] == str(store.path("versions", str(alias["version"])))
    # no temporary alias files are left behind
    assert store.names("aliases") == ["production.json"]


def test_a_late_retry_does_not_take_the_alias_back(store, make_context, evaluated):
    config = store.config(promote_if="always")
    registry.run(config, make_context("register", evaluated(), run_id="old"))
    registry.run(config, make_context("register", evaluated(), run_id="new"))
    retry = registry.run(config, make_context("register", evaluated(), run_id="old"))
    assert (retry["metrics"]["version"], retry["metrics"]["promoted"]) == (1, 0.0)
    assert store.alias()["version"] == 2


def test_the_slower_of_two_registrations_does_not_take_the_alias_back(
    store, make_context, evaluated, monkeypatch
):
    # "slow" claims version 1; while it copies, "fast" registers and promotes version 2. When
    # "slow" finishes, version 1 is older than what the alias names: it stays on version 2.
    config = store.config(promote_if="always")
    write_version = registry._write_version

    def slow_write(version, version_dir, model_name, artifacts, context):
        if context.run_id == "slow":
            fast = registry.run(config, make_context("register", evaluated(), run_id="fast"))
            assert fast["metrics"]["version"] == 2
        return write_version(version, version_dir, model_name, artifacts, context)

    monkeypatch.setattr(registry, "_write_version", slow_write)
    slow = registry.run(config, make_context("register", evaluated(), run_id="slow"))
    assert (slow["metrics"]["version"], slow["metrics"]["promoted"]) == (1, 0.0)
    assert store.alias()["version"] == 2
    assert store.versions() == [1, 2]


def test_all_metrics_passed_needs_the_evaluation_metric(tmp_path, make_context, evaluated):
    upstream = evaluated()
    del upstream["evaluate"]["metrics"]["all_metrics_passed"]
    config = registry.Config(registry=f"file://{tmp_path}/registry", model_name=MODEL)
    with pytest.raises(ValueError, match="no 'all_metrics_passed' metric"):
        registry.run(config, make_context("register", upstream))
    assert not (tmp_path / "registry").exists()  # refused before claiming anything


def test_asset_event_carries_version_metrics_and_promotion(tmp_path, make_context, evaluated):
    config = registry.Config(registry=f"file://{tmp_path}/registry/")
    (asset,) = registry.assets(config, "demo")
    assert asset.uri == f"file://{tmp_path}/registry/demo"

    events: defaultdict = defaultdict(SimpleNamespace)
    result = registry.run(config, make_context("register", evaluated(), outlet_events=events))
    assert list(events) == [asset]
    assert events[asset].extra == {
        "version": 1,
        "metrics": evaluated()["evaluate"]["metrics"],
        "promoted": True,
    }
    assert result["artifacts"]["version"].startswith(asset.uri)


def test_config_validation():
    assert registry.Config(registry="/srv/models").registry == "file:///srv/models"
    with pytest.raises(ValidationError, match="is not a URI"):
        registry.Config(registry="models/acme")
    with pytest.raises(ValidationError, match="must be letters"):
        registry.Config(registry="s3://models/acme/", model_name="../escape")
    with pytest.raises(ValidationError):
        registry.Config(registry="s3://models/acme/", promote_if="sometimes")
