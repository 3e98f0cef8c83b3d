"""The stage cache in real in-process runs (``airflow dags test``): what is reused, what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

SPEC = """\
name: cached
version: 1.0.0
metadata:
  owner: team-cache
  schedule: null
defaults: {cache: true}
stages:
  - name: first
    component: mlpipe_test_steps.steps
    config: {value: 1, label: fixed}
  - name: second
    component: mlpipe_test_steps.steps
    config: {value: 2}
    dependencies: [first]
  - name: third
    component: mlpipe_test_steps.steps
    config: {value: 3}
    dependencies: [second]
"""


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "cached.yaml").write_text(SPEC)
    return folder


def ran(run, stage: str) -> bool:
    """Whether the stage's component ran in this run (its own progress line is in the log)."""
    return f"steps progress: stage {stage} starting" in run.output


def test_reruns_reuse_what_did_not_change_and_recompute_the_rest(mlpipe_sandbox, specs, subprocess_env):
    first = mlpipe_sandbox.run(specs, "cached", env=subprocess_env)
    assert first.state == "success", first.output[-3000:]
    assert first.record["stages_cached"] == [] and all(ran(first, s) for s in ("first", "second", "third"))

    # Unchanged: every stage from the cache, no component runs.
    again = mlpipe_sandbox.run(specs, "cached", env=subprocess_env)
    assert again.record["stages_cached"] == ["first", "second", "third"]
    assert again.record["cached_from"] == dict.fromkeys(["first", "second", "third"], first.run_id)
    assert not any(ran(again, s) for s in ("first", "second", "third"))
    assert (
        f"cache hit: fingerprint {first.record['fingerprints']['second']} from run {first.run_id}"
        in again.output
    )
    assert again.record["outputs"] == first.record["outputs"]

    # An override of 'second' recomputes it and what depends on it, nothing upstream.
    changed = mlpipe_sandbox.run(
        specs, "cached", conf={"overrides": {"second": {"value": 20}}}, env=subprocess_env
    )
    assert changed.record["stages_cached"] == ["first"]
    assert not ran(changed, "first") and ran(changed, "second") and ran(changed, "third")

    # {"cache": false} recomputes everything.
    uncached = mlpipe_sandbox.run(specs, "cached", conf={"cache": False}, env=subprocess_env)
    assert uncached.record["stages_cached"] == []
    assert all(ran(uncached, s) for s in ("first", "second", "third"))

    # A deleted artifact is a miss, never a failure: 'first' runs again; its bytes are the same,
    # so what follows it is still taken from the cache.
    Path(uncached.record["outputs"]["first"]["artifacts"]["out"].removeprefix("file://")).unlink()
    Path(first.record["outputs"]["first"]["artifacts"]["out"].removeprefix("file://")).unlink()
    healed = mlpipe_sandbox.run(specs, "cached", env=subprocess_env)
    assert healed.state == "success", healed.output[-3000:]
    assert ran(healed, "first") and not ran(healed, "second")
    assert healed.record["stages_cached"] == ["second", "third"]


def test_two_concurrent_runs_of_one_pipeline_leave_one_valid_entry_per_stage(
    tmp_path: Path, specs: Path, subprocess_env
) -> None:
    """Two deployments (own Airflow home and database) share one artifact root and run the
    same pipeline at the same moment: both succeed, and each stage keeps one valid entry."""
    from concurrent.futures import ThreadPoolExecutor

    from airflow_mlpipe.cache import StageCache
    from airflow_mlpipe.testing.sandbox import AirflowSandbox

    shared_root = tmp_path / "shared-artifacts"
    env = {**subprocess_env, "AIRFLOW__MLPIPE__ARTIFACT_ROOT": f"file://{shared_root}"}
    sandboxes = [AirflowSandbox(tmp_path / name, env=env).setup() for name in ("a", "b")]
    with ThreadPoolExecutor(len(sandboxes)) as pool:
        runs = list(pool.map(lambda sandbox: sandbox.run(specs, "cached"), sandboxes))

    for run in runs:
        assert run.state == "success", run.output[-3000:]
    cache = StageCache(f"file://{shared_root}", "cached")
    for stage in ("first", "second", "third"):
        [entry] = cache.entries(stage)
        fingerprints = {run.record["fingerprints"][stage] for run in runs}
        assert fingerprints == {entry.fingerprint}, "both runs computed the same fingerprint"
        assert entry.run_id in {run.run_id for run in runs}
        assert cache.lookup(stage, entry.fingerprint) == entry
    folder = shared_root / "cached" / "_cache"
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == sorted(
        f"{cache.entries(stage)[0].fingerprint}.json" for stage in ("first", "second", "third")
    ), "no temporary or half-written files are left in the index"
