"""Property-based tests: whatever the input, loading ends in a Pipeline or a located SpecError.

Nothing else may escape (no KeyError, TypeError, RecursionError...), every problem points at a
real place in one of the files read, and every example finishes within the deadline.
"""

from __future__ import annotations

import copy
import re
import string
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mlpipe_spec_testing import SOURCE, STEPS, VALID, load

from airflow_mlpipe.spec import Pipeline, SpecError
from airflow_mlpipe.spec.overlays import merge_overlay
from airflow_mlpipe.spec.reader import LocatedDict, parse_yaml

FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=2),  # generous: other test suites may share the CPUs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FEWER = settings(FUZZ, max_examples=100)

_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _lines(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", "replace").removeprefix("\ufeff")
    return _LINE_BREAK.split(text)


def check_outcome(base: Path, overlay: Path | None = None, environment: str = "dev") -> Pipeline | None:
    """Load ``base``; the only acceptable outcomes are a usable Pipeline or a located SpecError."""
    files = {str(base): base.read_bytes()}
    if overlay is not None:
        files[str(overlay)] = overlay.read_bytes()
    try:
        pipeline = load(base, environment)
    except SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            location = problem.location
            assert location is not None, problem
            assert location.file in files, problem
            assert location.line >= 1 and location.column >= 1, problem
            lines = _lines(files[location.file])
            assert location.line <= len(lines), (problem, len(lines))
            assert problem.message
            assert problem.format().startswith(str(location))
        return None
    assert isinstance(pipeline, Pipeline)
    pipeline.to_execution_format()
    assert len(pipeline.config_version) == 12
    reloaded = Pipeline.model_validate(yaml.safe_load(pipeline.to_yaml()))
    assert reloaded.config_version == pipeline.config_version
    return pipeline


def write_bytes(folder: Path, name: str, raw: bytes) -> Path:
    path = folder / name
    path.write_bytes(raw)
    return path


# --- arbitrary text ----------------------------------------------------------------------------

TOKENS = [
    # spec words and values
    "name", "version", "metadata", "owner", "stages", "defaults", "component", "config", "dependencies",
    "epochs", "rate", "retries", "retry_delay", "schedule", "notify_on_failure", "start_date", "remove",
    "demo", "extract", "train", "1.0.0", "1.0", "v1.0.0", SOURCE, STEPS, "os.system", "data.extract.databse",
    # YAML structure
    ": ", ":", "\n", "\n  ", "\n    ", "  ", "- ", "-", "[", "]", "{", "}", ", ", "'", '"', "&a ", "*a",
    "<<: ", "? ", "|\n", ">-\n", "#", " # c", "\t", "---\n", "...\n", "%YAML 1.1\n",
    # tags and odd scalars
    "!!str ", "!!int ", "!!bool ", "!!float ", "!!timestamp ", "!!null ", "!!binary ",
    "!!python/name:os.system ", "!custom ", "!<tag:yaml.org,2002:str> ", "null", "~", "true", "no",
    "2024-01-01", "2024-13-45", "0x1F", "0o17", ".inf", ".nan", "-1", "1e999", "{{ ds }}", "@daily",
    "0 3 * * *", "a@example.com",
    # awkward characters
    "\ufeff", "\x00", "\x07", "\x85", "\u2028", "\r", "\r\n", "é", "\\", "%", "@", "`",
]  # fmt: skip

yamlish_text = st.lists(st.sampled_from(TOKENS), max_size=80).map("".join)


@FUZZ
@given(text=yamlish_text)
def test_yamlish_text_loads_or_fails_with_located_problems(workdir: Path, text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    check_outcome(write_bytes(workdir, "demo.yaml", raw))


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_unicode_text_loads_or_fails_with_located_problems(workdir: Path, text: str) -> None:
    check_outcome(write_bytes(workdir, "demo.yaml", text.encode("utf-8", "surrogatepass")))


@FEWER
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_load_or_fail_with_located_problems(workdir: Path, raw: bytes) -> None:
    check_outcome(write_bytes(workdir, "demo.yaml", raw))


@FEWER
@given(text=st.text(max_size=300))
def test_parse_yaml_of_any_text_returns_data_or_raises_spec_error(text: str) -> None:
    try:
        parse_yaml(text, "any.yaml")
    except SpecError as exc:
        assert all(p.location is not None and p.location.line >= 1 for p in exc.problems)


# --- arbitrary data dumped to YAML -------------------------------------------------------------

SPEC_KEYS = [
    "name", "version", "metadata", "owner", "stages", "defaults", "component", "config",
    "dependencies", "epochs", "rate", "options", "depth", "retries", "remove", "schedule", "tags",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["demo", "extract", "train", "1.0.0", SOURCE, STEPS, "{{ ds }}", "5m", "@daily", "a@b.co"]
    ),
    st.dates(min_value=date(1, 1, 1)),
    st.datetimes(),
)
keys = st.one_of(
    st.sampled_from(SPEC_KEYS),
    st.text(max_size=10),
    st.integers(-5, 5),
    st.booleans(),
    st.none(),
    st.floats(),
    st.dates(min_value=date(1, 1, 1)),
)
nested = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=15,
)
replacements = st.one_of(scalars, scalars, nested)  # mostly small values when mutating


def dump(data: Any, flow: bool | None = False) -> bytes:
    text = yaml.dump(
        data, Dumper=yaml.CSafeDumper, allow_unicode=True, default_flow_style=flow, sort_keys=False
    )
    return text.encode()


@FUZZ
@given(data=nested, flow=st.sampled_from([False, True, None]))
def test_arbitrary_nested_data_loads_or_fails_with_located_problems(
    workdir: Path, data: Any, flow: bool | None
) -> None:
    check_outcome(write_bytes(workdir, "demo.yaml", dump(data, flow)))


# --- mutations of a valid spec -----------------------------------------------------------------

BASE_DATA = yaml.safe_load(VALID)


def _containers(node: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every mapping and list in ``node``."""
    found = []
    if isinstance(node, dict | list):
        found.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            found += _containers(value, (*path, key))
    return found


def _at(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(BASE_DATA)
    for _ in range(draw(st.integers(1, 3))):
        target = _at(data, draw(st.sampled_from(_containers(data))))
        operation = draw(st.sampled_from(["delete", "replace", "insert", "typo", "duplicate", "swap"]))
        if isinstance(target, dict):
            if not target or operation == "insert":
                target[draw(keys)] = draw(replacements)
                continue
            key = draw(st.sampled_from(sorted(target, key=repr)))
            if operation == "delete":
                del target[key]
            elif operation == "typo" and isinstance(key, str) and key:
                position = draw(st.integers(0, len(key) - 1))
                typo = key[:position] + draw(st.sampled_from(string.ascii_lowercase)) + key[position + 1 :]
                target[typo] = target.pop(key)
            else:
                target[key] = draw(replacements) if operation != "duplicate" else target[key]
        else:
            if not target or operation == "insert":
                target.append(draw(replacements))
                continue
            index = draw(st.integers(0, len(target) - 1))
            if operation == "delete":
                del target[index]
            elif operation == "duplicate":
                target.append(copy.deepcopy(target[index]))
            elif operation == "swap":
                target.reverse()
            else:
                target[index] = draw(replacements)
    return data


@FUZZ
@given(data=mutated_specs(), flow=st.sampled_from([False, True]))
def test_mutated_valid_spec_loads_or_fails_with_located_problems(
    workdir: Path, data: Any, flow: bool
) -> None:
    check_outcome(write_bytes(workdir, "demo.yaml", dump(data, flow)))


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(VALID)), st.integers(0, 3), st.sampled_from(TOKENS)),
        min_size=1,
        max_size=4,
    )
)
def test_text_edits_of_a_valid_spec_load_or_fail_with_located_problems(
    workdir: Path, edits: list[tuple[int, int, str]]
) -> None:
    text = VALID
    for position, removed, inserted in edits:
        position = min(position, len(text))
        text = text[:position] + inserted + text[position + removed :]
    check_outcome(write_bytes(workdir, "demo.yaml", text.encode("utf-8", "surrogatepass")))


@FEWER
@given(
    indent=st.integers(2, 9),
    width=st.integers(20, 200),
    flow=st.sampled_from([False, True, None]),
    sort_keys=st.booleans(),
    explicit_start=st.booleans(),
    canonical=st.booleans(),
)
def test_config_version_survives_any_yaml_formatting(
    workdir: Path,
    indent: int,
    width: int,
    flow: bool | None,
    sort_keys: bool,
    explicit_start: bool,
    canonical: bool,
) -> None:
    text = yaml.safe_dump(
        BASE_DATA,
        indent=indent,
        width=width,
        default_flow_style=flow,
        sort_keys=sort_keys,
        explicit_start=explicit_start,
        canonical=canonical,
    )
    pipeline = check_outcome(write_bytes(workdir, "demo.yaml", text.encode()))
    assert pipeline is not None
    assert pipeline.config_version == _valid_version(workdir)


_VERSION: dict[str, str] = {}


def _valid_version(workdir: Path) -> str:
    if "valid" not in _VERSION:
        folder = workdir / "valid"
        folder.mkdir(exist_ok=True)
        _VERSION["valid"] = load(write_bytes(folder, "demo.yaml", VALID.encode())).config_version
    return _VERSION["valid"]


# --- overlays ----------------------------------------------------------------------------------

stage_overlays = st.lists(
    st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["extract", "train", "publish", "trian"]), scalars)},
        optional={
            "remove": st.one_of(st.booleans(), scalars),
            "component": st.sampled_from([SOURCE, STEPS, "os.system", "nope"]),
            "config": st.one_of(
                st.dictionaries(st.sampled_from(["epochs", "rate", "table", "x"]), scalars), nested
            ),
            "dependencies": st.one_of(
                st.lists(st.sampled_from(["extract", "train", "publish", "zzz"])), nested
            ),
            "retries": scalars,
        },
    ),
    max_size=4,
)
overlays = st.one_of(
    nested,
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["demo", "other"]),
            "metadata": st.one_of(
                st.dictionaries(st.sampled_from(["owner", "tags", "schedule"]), scalars), nested
            ),
            "defaults": nested,
            "stages": st.one_of(stage_overlays, nested),
        },
    ),
)


@FUZZ
@given(overlay=overlays, flow=st.sampled_from([False, True]))
def test_any_overlay_loads_or_fails_with_problems_in_the_two_files(
    workdir: Path, overlay: Any, flow: bool
) -> None:
    folder = workdir / "overlay"
    folder.mkdir(exist_ok=True)
    base = write_bytes(folder, "demo.yaml", VALID.encode())
    overlay_path = write_bytes(folder, "demo.prod.yaml", dump(overlay, flow))
    check_outcome(base, overlay_path, "prod")


@FUZZ
@given(base=nested, overlay=nested)
def test_merging_random_mappings_returns_data_or_raises_spec_error(base: Any, overlay: Any) -> None:
    located_base = parse_yaml(dump(base), "base.yaml")
    located_overlay = parse_yaml(dump(overlay), "base.prod.yaml")
    try:
        merged = merge_overlay(located_base, located_overlay, "base.prod.yaml")
    except SpecError as exc:
        for problem in exc.problems:
            assert problem.location is not None and problem.location.file == "base.prod.yaml"
            assert problem.location.line >= 1
        return
    if isinstance(located_base, LocatedDict):
        assert isinstance(merged, LocatedDict)
        assert set(located_base) | set(located_overlay) == set(merged)
        for key in merged:
            assert merged.value_locations[key].file in ("base.yaml", "base.prod.yaml")


@FEWER
@given(overlay=st.dictionaries(st.sampled_from(["owner", "description", "tags"]), st.text(max_size=10)))
def test_overlay_values_win_over_base_values(overlay: dict[str, str]) -> None:
    assume(overlay)
    base = parse_yaml(VALID, "demo.yaml")
    merged = merge_overlay(base, parse_yaml(dump({"metadata": overlay}), "demo.prod.yaml"), "demo.prod.yaml")
    for key, value in overlay.items():
        assert merged["metadata"][key] == value
        assert merged["metadata"].value_locations[key].file == "demo.prod.yaml"
    for key in set(base["metadata"]) - set(overlay):
        assert merged["metadata"][key] == base["metadata"][key]
        assert merged["metadata"].value_locations[key].file == "demo.yaml"
