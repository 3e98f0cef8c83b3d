"""The safe, located YAML reader: syntax errors, refused content, limits, and value locations."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlpipe_spec_testing import VALID, load, only_problem, problems_of, where, write

from airflow_mlpipe.spec import reader
from airflow_mlpipe.spec.errors import SpecError
from airflow_mlpipe.spec.reader import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    LocatedDict,
    LocatedList,
    parse_yaml,
)


def parse_problem(text: str | bytes, file: str = "spec.yaml"):
    with pytest.raises(SpecError) as info:
        parse_yaml(text, file)
    assert len(info.value.problems) == 1, info.value.format()
    return info.value.problems[0]


# --- syntax ------------------------------------------------------------------------------------


def test_unclosed_flow_sequence_reports_line_and_column_of_the_break(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "name: demo\nversion: [1.0.0\nmetadata: x\n")
    assert where(problem) == ("demo.yaml", 3, 9)
    assert problem.message.startswith("YAML syntax error: ")
    assert "did not find expected ',' or ']'" in problem.message


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [("name: [", 1, 8), ("name: demo\nversion: [", 2, 11), ("name: demo\nversion: [\n", 3, 1)],
)
def test_error_at_the_end_of_the_file_points_inside_the_file(text: str, line: int, column: int) -> None:
    # libyaml puts the end of a file without a final line break on a line after the last one.
    problem = parse_problem(text)
    assert problem.location is not None
    assert (problem.location.line, problem.location.column) == (line, column)


def test_empty_value_at_the_end_of_the_file_is_located_inside_the_file() -> None:
    data = parse_yaml("name: demo\n? owner", "f.yaml")
    assert data == {"name": "demo", "owner": None}
    assert str(data.value_locations["owner"]) == "f.yaml:2:8"


def test_colon_inside_plain_value_suggests_quoting(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "name: demo\ndescription: see: here\n")
    assert where(problem) == ("demo.yaml", 2, 17)
    assert "mapping values are not allowed" in problem.message
    assert "quote values that contain ': '" in problem.suggestion


def test_second_document_suggests_removing_the_separator(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "name: demo\n---\nname: other\n")
    assert where(problem) == ("demo.yaml", 2, 1)
    assert "expected a single document" in problem.message
    assert "remove the extra '---'" in problem.suggestion


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        pytest.param("name: demo\nversion: 1.0.0\nmetadata:\n\towner: me\n", 4, 1, id="tab-indented-key"),
        pytest.param("name: demo\nmetadata:\n  tags:\n\t- ml\n", 4, 1, id="tab-indented-item"),
        pytest.param("metadata:\n  owner: a\n\tb\n", 3, 1, id="tab-in-plain-scalar"),
    ],
)
def test_tab_indentation_is_a_syntax_error_that_says_use_spaces(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", line, column)
    assert problem.message.startswith("YAML syntax error")
    assert problem.suggestion == "YAML indents with spaces, not tabs: replace the tab with spaces"


def test_tab_inside_a_quoted_value_is_fine() -> None:
    assert parse_yaml('query: "a\tb"\n', "spec.yaml") == {"query": "a\tb"}


# --- encoding, emptiness, shape ----------------------------------------------------------------


def test_non_utf8_byte_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    text = b"name: demo\nversion: 1.0.0\nmetadata:\n  owner: J\xe9r\xf4me\n"
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 4, 11)
    assert problem.message == "byte 0xe9 is not valid UTF-8"
    assert problem.suggestion == "save the file as UTF-8"


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.yaml", b"\xef\xbb\xbf" + VALID.encode())
    assert load(path).name == "demo"


def test_control_character_is_reported_where_it_is(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "name: demo\nowner: \u00e9t\u00e9 \x07bell\n")
    assert where(problem) == ("demo.yaml", 2, 12)
    assert "control characters are not allowed" in problem.message
    assert "#x0007" in problem.message


def test_lone_surrogate_in_text_is_reported_not_raised() -> None:
    problem = parse_problem("owner: \ud800\n")
    assert problem.location is not None
    assert (problem.location.line, problem.location.column) == (1, 8)
    assert "not valid UTF-8" in problem.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n", "\ufeff"])
def test_empty_file_is_reported_with_a_starting_point(tmp_path: Path, text: str) -> None:
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 1, 1)
    assert problem.message == "the file is empty"
    assert "mlpipe new NAME" in problem.suggestion


@pytest.mark.parametrize("text", ["null\n", "---\n", "~\n"])
def test_null_document_is_not_a_spec(tmp_path: Path, text: str) -> None:
    # An explicit (or implied) null is a value, not an empty file: it is the wrong top-level type.
    problem = only_problem(tmp_path, text)
    assert "this file holds a single NoneType value" in problem.message


@pytest.mark.parametrize(
    ("text", "kind", "line", "column"),
    [
        ("- name: demo\n- version: 1.0.0\n", "a list", 1, 1),
        ("# a comment first\n\n  - a\n  - b\n", "a list", 3, 3),
        ("just a string\n", "a single str value", 1, 1),
        ("42\n", "a single int value", 1, 1),
        ("2024-01-01\n", "a single date value", 1, 1),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str, line: int, column: int) -> None:
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", line, column)
    assert problem.message == (
        f"a spec must be a mapping with name, version, metadata and stages; this file holds {kind}"
    )
    assert "mlpipe new NAME" in problem.suggestion


def test_unreadable_file_is_a_located_problem(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "missing.yaml")
    assert len(problems) == 1
    assert where(problems[0]) == ("missing.yaml", 1, 1)
    assert problems[0].message.startswith("cannot read the file: ")


# --- limits ------------------------------------------------------------------------------------


def test_file_over_one_mebibyte_is_refused_before_parsing(tmp_path: Path, monkeypatch) -> None:
    composed: list[str] = []
    monkeypatch.setattr(reader.yaml, "compose", lambda *a, **k: composed.append("x"))
    text = VALID + "# " + "x" * MAX_FILE_BYTES + "\n"
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 1, 1)
    size = len(text.encode())
    assert problem.message == f"the file is {size} bytes; specs are limited to {MAX_FILE_BYTES} bytes"
    assert "split the pipeline" in problem.suggestion
    assert composed == []  # refused on size alone


def test_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    head = VALID + "# "
    text = head + "x" * (MAX_FILE_BYTES - len(head.encode()) - 1) + "\n"
    assert len(text.encode()) == MAX_FILE_BYTES
    path = write(tmp_path, "demo.yaml", text.encode())
    assert load(path).name == "demo"


def test_size_limit_counts_bytes_not_characters() -> None:
    text = "a: " + "\u00e9" * (MAX_FILE_BYTES // 2) + "\n"  # fewer characters than the limit
    problem = parse_problem(text)
    assert problem.message.startswith(f"the file is {len(text.encode())} bytes")


def test_nesting_up_to_the_limit_is_read() -> None:
    # The top mapping's value is at depth 1; each '[' adds one.
    text = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert isinstance(parse_yaml(text, "spec.yaml")["a"], LocatedList)


def test_nesting_past_the_limit_is_refused_at_the_deepest_node() -> None:
    text = "a: " + "[" * 70 + "]" * 70 + "\n"
    problem = parse_problem(text)
    assert problem.message == f"the document is nested more than {MAX_DEPTH} levels deep"
    assert problem.location is not None
    # depth 65 is the 65th '[' (column 3 + 65), on line 1
    assert (problem.location.line, problem.location.column) == (1, 3 + MAX_DEPTH + 1)


def test_deep_block_nesting_is_refused_with_the_line_of_the_deepest_key() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "leaf: 1\n"
    problem = parse_problem(text)
    assert problem.message == f"the document is nested more than {MAX_DEPTH} levels deep"
    assert problem.location is not None
    # k0 (line 1) holds depth 1; the mapping at depth 65 starts at key k64 on line 65, column 129
    assert (problem.location.line, problem.location.column) == (65, 129)
    assert problem.field.startswith("k0.k1.k2.")


def test_extreme_flow_nesting_is_refused_like_any_deep_document() -> None:
    # libyaml >= 0.2.6 refuses it while scanning ahead; older ones leave it to our event count.
    problem = parse_problem("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert problem.message == f"the document is nested more than {MAX_DEPTH} levels deep"
    assert problem.location is not None and problem.location.line == 1


def test_nesting_is_refused_before_any_node_is_composed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Composing recurses in C (a segfault, not an exception, past the C stack): a too-deep
    # document must never reach it. 200 levels stay under libyaml's own limit of 1000.
    def compose(*args: object, **kwargs: object) -> None:
        raise AssertionError("yaml.compose ran on a document nested too deeply")

    monkeypatch.setattr(reader.yaml, "compose", compose)
    problem = parse_problem("stages:\n" + "- " * 200 + "x\n")
    assert problem.message == f"the document is nested more than {MAX_DEPTH} levels deep"
    # The value of 'stages' is depth 1, so the 65th '- ' (column 129) opens depth 65.
    assert problem.location is not None
    assert (problem.location.line, problem.location.column) == (2, 2 * (MAX_DEPTH + 1) - 1)
    assert problem.field == "stages" + "[0]" * MAX_DEPTH


def test_a_30000_deep_spec_is_refused_in_a_process_that_exits_normally(tmp_path: Path) -> None:
    # In a subprocess: with libyaml 0.2.5 (PyYAML <= 6.0.3 wheels) composing this overflowed the
    # C stack, and a segfault must fail this test rather than kill pytest.
    spec = tmp_path / "deep.yaml"
    spec.write_text("stages: " + "[" * 30_000 + "]" * 30_000 + "\n")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "airflow_mlpipe.cli", "validate", str(spec), "--env", "dev"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert f"{spec}:1:" in result.stdout
    assert f"the document is nested more than {MAX_DEPTH} levels deep" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "{b: " * 70 + "1" + "}" * 70 + "\n",
        "".join("  " * i + f"k{i}:\n" for i in range(70)) + "  " * 70 + "leaf: 1\n",
        "top:\n" + "- " * 70 + "x\n",
        "m: &m {x: 1}\nd:\n" + "".join("  " * i + "- <<: [*m]\n" + "  " * i + "  k:\n" for i in range(40)),
        "a: [" * 1 + "[" * 62 + "{k: v}" + "]" * 63 + "\n",  # exactly at the limit: no problem
    ],
)
def test_the_event_count_and_the_builder_refuse_alike(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The event pass reports what the node builder would have (message, line, column, field)."""
    outcomes = []
    for pre_pass in (True, False):
        if not pre_pass:
            monkeypatch.setattr(reader, "_check_nesting", lambda text, file: None)
        try:
            reader.parse_yaml(text, "spec.yaml")
        except SpecError as exc:
            outcomes.append([(p.message, p.location, p.field) for p in exc.problems])
        else:
            outcomes.append([])
    assert outcomes[0] == outcomes[1]


def _billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        ref = f"*l{level - 1}"
        lines.append(f"l{level}: &l{level} [{', '.join([ref] * 9)}]")
    return "\n".join(lines) + "\n"


class _Unbounded(Exception):
    """Raised by the counting builder when the budget is not enforced (instead of expanding 9**10 values)."""


def test_alias_bomb_is_refused_after_a_bounded_number_of_values(tmp_path: Path, monkeypatch) -> None:
    built = 0
    original = reader._Builder.build

    def counting_build(self, *args, **kwargs):
        nonlocal built
        built += 1
        if built > 2 * MAX_VALUES:
            raise _Unbounded
        return original(self, *args, **kwargs)

    monkeypatch.setattr(reader._Builder, "build", counting_build)
    try:
        problem = only_problem(tmp_path, _billion_laughs())  # 9**10 values if expanded
    except _Unbounded:
        # (not failing inside the builder: pytest would print the node graph of every frame)
        problem = None
    assert problem is not None, "the value budget was not enforced"
    assert problem.message == f"the document expands to more than {MAX_VALUES} values"
    assert "billion laughs" in problem.suggestion
    assert where(problem)[:2] == ("demo.yaml", 1)  # the budget ran out expanding l0's items
    assert re.fullmatch(r"l\d(\[\d\])+", problem.field), problem.field  # e.g. l4[5][5][7][4][5]
    assert built == MAX_VALUES + 1  # failed fast: stopped at the budget, expanded nothing more


def test_moderate_alias_reuse_is_allowed() -> None:
    data = parse_yaml("base: &b {epochs: 3, rate: 0.1}\nother: *b\n", "spec.yaml")
    assert data["other"] == {"epochs": 3, "rate": 0.1}


def test_recursive_alias_is_refused_as_too_deep() -> None:
    problem = parse_problem("a: &a [*a]\n")
    assert problem.message == f"the document is nested more than {MAX_DEPTH} levels deep"


# --- refused tags ------------------------------------------------------------------------------


def test_python_object_apply_tag_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    document = f"name: demo\nversion: !!python/object/apply:builtins.open ['{marker}', 'w']\n"
    # The same document really would create the marker under an unsafe loader ...
    yaml.unsafe_load(document.replace(str(marker), str(tmp_path / "control"))).get("version").close()
    assert (tmp_path / "control").exists()
    # ... but the spec reader refuses the tag before constructing anything.
    problem = only_problem(tmp_path, document)
    assert where(problem) == ("demo.yaml", 2, 10)
    assert problem.field == "version"
    assert problem.message == "the tag '!!python/object/apply:builtins.open' is not allowed"
    assert "remove the tag" in problem.suggestion
    assert not marker.exists()


def test_os_system_tag_is_refused_without_running_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    problem = only_problem(
        tmp_path, f"name: demo\nmetadata:\n  owner: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    assert where(problem) == ("demo.yaml", 3, 10)
    assert problem.field == "metadata.owner"
    assert problem.message == "the tag '!!python/object/apply:os.system' is not allowed"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/name:os.system", "!!python/name:os.system"),
        ("!!python/object/new:os.system [echo]", "!!python/object/new:os.system"),
        ("!!python/tuple [1, 2]", "!!python/tuple"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!omap [a: 1]", "!!omap"),
        ("!custom thing", "!custom"),
        ("!!python/object:collections.OrderedDict {a: 1}", "!!python/object:collections.OrderedDict"),
    ],
)
def test_any_tag_outside_the_core_schema_is_refused(value: str, tag: str) -> None:
    problem = parse_problem(f"stages:\n  - config: {value}\n")
    assert problem.message == f"the tag '{tag}' is not allowed"
    assert problem.field == "stages[0].config"
    assert problem.location is not None
    assert (problem.location.line, problem.location.column) == (2, 13)


def test_core_schema_tags_are_allowed() -> None:
    data = parse_yaml("a: !!str 123\nb: !!int '7'\nc: !!float '1.5'\nd: !!map {x: 1}\ne: !!seq [1]\n", "f")
    assert data == {"a": "123", "b": 7, "c": 1.5, "d": {"x": 1}, "e": [1]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!bool maybe", "invalid value 'maybe': not a valid !!bool"),
        ("!!int ''", "invalid value '': not a valid !!int"),
        ("!!float ''", "invalid value '': not a valid !!float"),
        ("!!timestamp soon", "invalid value 'soon': not a valid !!timestamp"),
        ("!!int ten", "invalid value 'ten': invalid literal for int() with base 10: 'ten'"),
        ("2024-13-45", "invalid value '2024-13-45': month must be in 1..12"),
    ],
)
def test_scalar_that_cannot_be_constructed_is_a_located_problem(value: str, message: str) -> None:
    problem = parse_problem(f"name: demo\nstart: {value}\n")
    assert problem.message == message
    assert problem.field == "start"
    assert problem.location is not None
    assert (problem.location.line, problem.location.column) == (2, 8)


# --- duplicate keys and odd keys ---------------------------------------------------------------


def test_duplicate_top_level_key_names_both_lines(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, "name: demo\nversion: 1.0.0\nversion: 1.0.1\n")
    assert where(problem) == ("demo.yaml", 3, 1)
    assert problem.field == "version"
    assert problem.message == "duplicate key 'version' (first written at line 2)"
    assert "YAML keeps only the last" in problem.suggestion


def test_duplicate_key_inside_a_stage_config_has_its_field_path(tmp_path: Path) -> None:
    text = VALID.replace("      rate: 0.5\n", "      rate: 0.5\n      epochs: 4\n")
    problem = only_problem(tmp_path, text)
    assert where(problem) == ("demo.yaml", 22, 7)
    assert problem.field == "stages[1].config.epochs"
    assert problem.message == "duplicate key 'epochs' (first written at line 20)"


def test_non_scalar_key_is_refused() -> None:
    problem = parse_problem("name: demo\n? [a, b]\n: value\n")
    assert problem.message == "mapping keys must be plain scalars, not lists or mappings"
    assert problem.location is not None
    assert (problem.location.line, problem.location.column) == (2, 3)


def test_merge_key_merges_and_explicit_keys_win() -> None:
    data = parse_yaml("base: &b {epochs: 3, rate: 0.1}\nstage:\n  <<: *b\n  rate: 0.5\n", "spec.yaml")
    assert data["stage"] == {"rate": 0.5, "epochs": 3}
    # The merged value keeps the location where it was written (the anchor, line 1).
    assert data["stage"].value_locations["epochs"].line == 1
    assert data["stage"].value_locations["rate"].line == 4


def test_merge_key_of_a_scalar_is_refused() -> None:
    problem = parse_problem("stage:\n  <<: 5\n")
    assert problem.message == "'<<' merges mappings only"


# --- located data ------------------------------------------------------------------------------


def test_located_data_remembers_file_line_and_column_of_keys_values_and_items() -> None:
    data = parse_yaml("name: demo\nmetadata:\n  owner: me\n  tags: [a, b]\nlist:\n  - x\n  - y\n", "f.yaml")
    assert isinstance(data, LocatedDict)
    assert data == {"name": "demo", "metadata": {"owner": "me", "tags": ["a", "b"]}, "list": ["x", "y"]}
    assert str(data.location) == "f.yaml:1:1"
    assert str(data.key_locations["metadata"]) == "f.yaml:2:1"
    assert str(data.value_locations["metadata"]) == "f.yaml:3:3"
    assert str(data["metadata"].value_locations["owner"]) == "f.yaml:3:10"
    tags = data["metadata"]["tags"]
    assert isinstance(tags, LocatedList)
    assert [str(loc) for loc in tags.item_locations] == ["f.yaml:4:10", "f.yaml:4:13"]
    assert [str(loc) for loc in data["list"].item_locations] == ["f.yaml:6:5", "f.yaml:7:5"]


def test_yaml_scalars_keep_their_types() -> None:
    data = parse_yaml("a: 1\nb: 1.5\nc: true\nd: null\ne: 2024-01-01\nf: '1'\ng: ~\n", "f")
    assert [type(data[k]).__name__ for k in "abcdefg"] == [
        "int",
        "float",
        "bool",
        "NoneType",
        "date",
        "str",
        "NoneType",
    ]


def test_reader_uses_libyaml() -> None:
    assert reader._Loader is yaml.CSafeLoader
