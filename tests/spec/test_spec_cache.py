"""The validated-spec cache: a hit is the pipeline validation would give, and never a stale one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlpipe_spec_testing import MODULES, VALID, edit, write

from airflow_mlpipe.spec import FolderResult, load_folder, loader
from airflow_mlpipe.spec.spec_cache import SpecCache, open_spec_cache

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files validated (not read from the cache), in order."""
    seen: list[str] = []
    validate = loader.validate_spec

    def counting(data, files, component_modules=None):  # type: ignore[no-untyped-def]
        seen.append(files.base.name)
        return validate(data, files, component_modules)

    monkeypatch.setattr(loader, "validate_spec", counting)
    return seen


def cached_load(folder: Path, cache: SpecCache | None, environment: str = "dev") -> FolderResult:
    return load_folder(folder, environment, component_modules=MODULES, cache=cache)


def spec_cache(tmp_path: Path) -> SpecCache:
    cache = open_spec_cache(tmp_path / "cache")
    assert cache is not None
    return cache


def test_unchanged_spec_is_read_from_the_cache_and_equals_a_validated_one(
    tmp_path: Path, validations: list[str]
) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "demo.yaml", VALID)
    write(folder, "demo.production.yaml", "metadata:\n  owner: prod-team\n")
    cache = spec_cache(tmp_path)
    first = cached_load(folder, cache, "production")
    second = cached_load(folder, cache, "production")
    assert validations == ["demo.yaml"]  # the second load validated nothing
    uncached = cached_load(folder, None, "production").pipelines["demo"]
    for pipeline in (first.pipelines["demo"], second.pipelines["demo"]):
        assert pipeline == uncached
        assert pipeline.metadata.owner == "prod-team"
        assert (pipeline.environment, pipeline.sources) == (uncached.environment, uncached.sources)
        assert pipeline.config_version == uncached.config_version
        assert pipeline.to_execution_format() == uncached.to_execution_format()


def test_edited_spec_is_validated_again(tmp_path: Path, validations: list[str]) -> None:
    folder = tmp_path / "pipelines"
    path = write(folder, "demo.yaml", VALID)
    cache = spec_cache(tmp_path)
    cached_load(folder, cache)
    path.write_text(edit(VALID, "epochs: 3", "epochs: 4"))
    assert cached_load(folder, cache).pipelines["demo"].stage("train").config["epochs"] == 4
    path.write_text(edit(VALID, "epochs: 3", "epochs: many"))  # now invalid for the component
    result = cached_load(folder, cache)
    assert "demo" in result.errors and "demo" not in result.pipelines
    path.write_text(VALID)  # back to the first version: valid again, as validated the first time
    assert cached_load(folder, cache).pipelines["demo"].stage("train").config["epochs"] == 3
    assert validations == ["demo.yaml"] * 4


def test_edited_or_added_overlay_is_validated_again(tmp_path: Path, validations: list[str]) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "demo.yaml", VALID)
    cache = spec_cache(tmp_path)
    assert cached_load(folder, cache, "staging").pipelines["demo"].metadata.owner == "ml-team"
    overlay = write(folder, "demo.staging.yaml", "metadata:\n  owner: staging-team\n")
    assert cached_load(folder, cache, "staging").pipelines["demo"].metadata.owner == "staging-team"
    overlay.write_text("metadata:\n  owner: other-team\n")
    assert cached_load(folder, cache, "staging").pipelines["demo"].metadata.owner == "other-team"
    overlay.unlink()
    assert cached_load(folder, cache, "staging").pipelines["demo"].metadata.owner == "ml-team"
    # Each environment has its own entry: dev was never loaded, so it is validated once too.
    assert cached_load(folder, cache, "dev").pipelines["demo"].environment == "dev"
    assert len(validations) == 5


def test_broken_spec_is_never_cached(tmp_path: Path, validations: list[str]) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "demo.yaml", edit(VALID, "epochs: 3", "epochs: many"))
    cache = spec_cache(tmp_path)
    for _ in range(2):
        assert "demo" in cached_load(folder, cache).errors
    assert validations == ["demo.yaml", "demo.yaml"]
    assert not list((tmp_path / "cache").glob("*.pkl"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # truncated
        lambda raw: raw[:90] + b"\x00garbage" + raw[98:],  # bytes flipped inside the pickle
        lambda raw: b"",  # empty
        lambda raw: b"not a cache entry at all",
    ],
    ids=["truncated", "garbled", "empty", "foreign"],
)
def test_corrupt_entry_is_ignored_and_replaced(tmp_path: Path, validations: list[str], damage) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "pipelines"
    write(folder, "demo.yaml", VALID)
    cache = spec_cache(tmp_path)
    expected = cached_load(folder, cache).pipelines["demo"]
    (entry,) = (tmp_path / "cache").glob("*.pkl")
    entry.write_bytes(damage(entry.read_bytes()))
    assert cached_load(folder, cache).pipelines["demo"] == expected
    assert cached_load(folder, cache).pipelines["demo"] == expected
    assert validations == ["demo.yaml", "demo.yaml"]  # validated again once, then cached again


def test_cache_directory_others_may_write_to_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert open_spec_cache(shared) is None
    private = open_spec_cache(tmp_path / "new" / "cache")
    assert private is not None
    assert (tmp_path / "new" / "cache").stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_unwritable_cache_location_means_no_cache(tmp_path: Path) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        assert open_spec_cache(readonly / "cache") is None
    finally:
        readonly.chmod(0o700)


def test_read_only_dags_folder_is_fine(tmp_path: Path, validations: list[str]) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "demo.yaml", VALID)
    folder.chmod(0o500)
    try:
        cache = spec_cache(tmp_path)
        cached_load(folder, cache)
        assert "demo" in cached_load(folder, cache).pipelines
        assert validations == ["demo.yaml"]
    finally:
        folder.chmod(0o700)


COMPONENT = """\
from pydantic import BaseModel


class Config(BaseModel):
    epochs: int = 1{extra}


def run(config, context):
    return {{}}
"""

LOAD_SCRIPT = """\
import json, sys
from pathlib import Path
from airflow_mlpipe.spec import load_folder, loader
from airflow_mlpipe.spec.spec_cache import open_spec_cache

validated = []
validate = loader.validate_spec
loader.validate_spec = lambda data, files, modules=None: validated.append(1) or validate(data, files, modules)
result = load_folder(
    Path(sys.argv[1]), "dev", component_modules=("cachecomp",), cache=open_spec_cache(sys.argv[2])
)
found = {"valid": sorted(result.pipelines), "errors": sorted(result.errors)}
print(json.dumps({**found, "validated": len(validated)}))
"""


def test_edited_component_module_is_validated_again(tmp_path: Path) -> None:
    """Each load is a fresh process, as each dag-processor parse is."""
    packages = tmp_path / "packages"
    component = write(packages / "cachecomp", "step.py", COMPONENT.format(extra=""))
    write(packages / "cachecomp", "__init__.py", "")
    folder = tmp_path / "pipelines"
    write(
        folder,
        "demo.yaml",
        """\
        name: demo
        version: 1.0.0
        metadata: {owner: ml-team}
        stages:
          - name: train
            component: cachecomp.step
            config: {epochs: 3}
        """,
    )
    script = write(tmp_path, "load.py", LOAD_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(packages), str(REPO)])}

    def load_in_fresh_process() -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, str(script), str(folder), str(tmp_path / "cache")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert load_in_fresh_process() == {"valid": ["demo"], "errors": [], "validated": 1}
    assert load_in_fresh_process() == {"valid": ["demo"], "errors": [], "validated": 0}
    # The component now requires a field the spec does not set: the cached pipeline is stale.
    component.write_text(textwrap.dedent(COMPONENT.format(extra="\n    rate: float")))
    assert load_in_fresh_process() == {"valid": [], "errors": ["demo"], "validated": 1}
    component.write_text(textwrap.dedent(COMPONENT.format(extra="\n    rate: float = 0.1")))
    assert load_in_fresh_process() == {"valid": ["demo"], "errors": [], "validated": 1}
    assert load_in_fresh_process() == {"valid": ["demo"], "errors": [], "validated": 0}
