"""Discovery of spec files: ``.airflowignore`` read the way Airflow's DAG-file walker reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlpipe_spec_testing import MODULES, VALID, edit, write

from airflow_mlpipe.spec import FolderResult, discover_specs, load_folder

BROKEN = "name: [unclosed\n"


def valid(name: str) -> str:
    return edit(VALID, "name: demo", f"name: {name}")


def load(folder: Path, syntax: str = "glob", only: str | None = None) -> FolderResult:
    return load_folder(folder, "dev", only=only, component_modules=MODULES, ignore_file_syntax=syntax)


def names(folder: Path, syntax: str = "glob") -> list[str]:
    return sorted(discover_specs(folder, ignore_file_syntax=syntax).specs)


def test_an_ignored_broken_spec_produces_no_error(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", valid("good"))
    write(tmp_path, "scratch.yaml", BROKEN)
    assert set(load(tmp_path).errors) == {"scratch"}

    write(tmp_path, ".airflowignore", "scratch.yaml\n")
    result = load(tmp_path)
    assert result.errors == {}
    assert list(result.pipelines) == ["good"]


def test_glob_pattern_without_slash_matches_names_at_any_depth(tmp_path: Path) -> None:
    write(tmp_path, ".airflowignore", "draft_*  # work in progress\n")
    for path in ("a.yaml", "draft_b.yaml", "team/draft_c.yaml", "team/d.yaml", "draft_dir/e.yaml"):
        write(tmp_path, path, valid(Path(path).stem))
    assert names(tmp_path) == ["a", "d"]


def test_glob_pattern_with_slash_is_relative_to_its_ignore_file(tmp_path: Path) -> None:
    write(tmp_path, "team/.airflowignore", "/old.yaml\nlegacy/*.yaml\n")
    for path in ("old.yaml", "team/old.yaml", "team/sub/old.yaml", "team/legacy/x.yaml", "legacy/y.yaml"):
        write(tmp_path, path, valid(Path(path).stem))
    found = discover_specs(tmp_path)
    # '/old.yaml' is team/old.yaml only; 'legacy/*.yaml' is team/legacy/ only.
    assert sorted(str(f.base.relative_to(tmp_path)) for files in found.specs.values() for f in files) == [
        "legacy/y.yaml",
        "old.yaml",
        "team/sub/old.yaml",
    ]
    assert sorted(str(p.relative_to(tmp_path)) for p in found.ignored) == [
        "team/legacy/x.yaml",
        "team/old.yaml",
    ]


def test_glob_negation_reincludes_and_the_last_match_wins(tmp_path: Path) -> None:
    write(tmp_path, ".airflowignore", "*.yaml\n!keep*.yaml\nkeep_not.yaml\n")
    for name in ("a", "keep_me", "keep_not"):
        write(tmp_path, f"{name}.yaml", valid(name))
    assert names(tmp_path) == ["keep_me"]


def test_glob_trailing_slash_matches_folders_only(tmp_path: Path) -> None:
    write(tmp_path, ".airflowignore", "archive/\n")
    write(tmp_path, "archive/old.yaml", valid("old"))
    write(tmp_path, "kept/archive.yaml", valid("archive"))  # a file called like the folder stays
    assert names(tmp_path) == ["archive"]


def test_ignore_file_in_a_subfolder_applies_below_it_only(tmp_path: Path) -> None:
    write(tmp_path, "team_a/.airflowignore", "*.yaml\n")
    write(tmp_path, "team_a/x.yaml", valid("x"))
    write(tmp_path, "team_a/nested/y.yaml", valid("y"))
    write(tmp_path, "team_b/z.yaml", valid("z"))
    write(tmp_path, "w.yaml", valid("w"))
    assert names(tmp_path) == ["w", "z"]


def test_rules_of_a_parent_and_a_child_ignore_file_add_up(tmp_path: Path) -> None:
    write(tmp_path, ".airflowignore", "a_*\n")
    write(tmp_path, "sub/.airflowignore", "b_*\n")
    for path in ("a_1.yaml", "b_1.yaml", "sub/a_2.yaml", "sub/b_2.yaml", "sub/c_2.yaml"):
        write(tmp_path, path, valid(Path(path).stem))
    assert names(tmp_path) == ["b_1", "c_2"]


def test_regexp_patterns_search_the_path_relative_to_the_folder(tmp_path: Path) -> None:
    write(tmp_path, ".airflowignore", r"^experiments/" + "\n" + r"_v\d+\.yaml$" + "\n")
    for path in ("experiments/a.yaml", "b_v2.yaml", "c.yaml", "team/experiments/d.yaml", "team/e_v10.yaml"):
        write(tmp_path, path, valid(Path(path).stem))
    assert names(tmp_path, "regexp") == ["c", "d"]
    # The same file read as glob means something else (no file is called like these patterns).
    assert names(tmp_path, "glob") == ["a", "b_v2", "c", "d", "e_v10"]


def test_regexp_rules_of_a_subfolder_still_match_from_the_top_folder(tmp_path: Path) -> None:
    # As in Airflow: every regexp is searched in the path relative to the walk's root.
    write(tmp_path, "team/.airflowignore", "^team/skip\n")
    write(tmp_path, "team/skip.yaml", valid("skip"))
    write(tmp_path, "team/keep.yaml", valid("keep"))
    assert names(tmp_path, "regexp") == ["keep"]


def test_an_invalid_pattern_is_skipped_with_a_located_warning(tmp_path: Path) -> None:
    write(tmp_path, ".airflowignore", "# comment\nscratch.yaml\n(unclosed\n")
    write(tmp_path, "scratch.yaml", BROKEN)
    write(tmp_path, "good.yaml", valid("good"))
    result = load(tmp_path, "regexp")
    assert list(result.pipelines) == ["good"] and result.errors == {}
    [warning] = result.warnings[str(tmp_path / ".airflowignore")]
    assert warning.severity == "warning"
    assert (warning.location.line, warning.location.column) == (3, 1)  # type: ignore[union-attr]
    assert "'(unclosed' does not compile" in warning.message


def test_only_honours_the_ignore_file_too(tmp_path: Path) -> None:
    write(tmp_path, ".airflowignore", "scratch.yaml\n")
    write(tmp_path, "scratch.yaml", BROKEN)
    result = load(tmp_path, only="scratch")
    assert result.pipelines == {} and result.errors == {}


def test_an_ignored_overlay_is_not_applied_and_not_an_error(tmp_path: Path) -> None:
    write(tmp_path, ".airflowignore", "*.prod.yaml\n")
    write(tmp_path, "demo.yaml", VALID)
    write(tmp_path, "demo.prod.yaml", "defaults: {retries: 9}\n")
    write(tmp_path, "orphan.prod.yaml", "defaults: {retries: 9}\n")
    [files] = discover_specs(tmp_path).specs["demo"]
    assert files.overlays == {}
    assert load_folder(tmp_path, "prod", component_modules=MODULES).errors == {}


def test_the_syntax_is_asked_for_only_when_there_is_an_ignore_file(tmp_path: Path) -> None:
    asked: list[str] = []

    def syntax() -> str:
        asked.append("asked")
        return "regexp"

    write(tmp_path, "a.yaml", valid("a"))
    discover_specs(tmp_path, ignore_file_syntax=syntax)
    assert asked == []
    write(tmp_path, "sub/.airflowignore", "^sub/\n")
    write(tmp_path, "sub/b.yaml", valid("b"))
    assert sorted(discover_specs(tmp_path, ignore_file_syntax=syntax).specs) == ["a"]
    assert asked == ["asked"]


def test_an_unsupported_syntax_is_refused_like_airflow_does(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported ignore file syntax 'fnmatch'"):
        discover_specs(tmp_path, ignore_file_syntax="fnmatch")
    # Empty means Airflow's default, glob.
    write(tmp_path, ".airflowignore", "a.yaml\n")
    write(tmp_path, "a.yaml", valid("a"))
    assert names(tmp_path, "") == []


TREE = (
    "a.yaml",
    "draft_a.yaml",
    "keep_draft.yaml",
    "team/b.yaml",
    "team/draft_b.yaml",
    "team/old/c.yaml",
    "team/sub/old.yaml",
    "archive/d.yaml",
    "x/archive/e.yaml",
    "x/archive.yaml",
    "exp/f_v1.yaml",
    "exp/g.yaml",
)
IGNORE_FILES = {
    "glob": {
        ".airflowignore": "draft_*\n!keep_draft.yaml\narchive/\n",
        "team/.airflowignore": "/old/\nsub/old.yaml\n",
        "exp/.airflowignore": "*_v[0-9].yaml\n",
    },
    "regexp": {
        ".airflowignore": "draft_\n^archive\n",
        "team/.airflowignore": "old\n",
        "exp/.airflowignore": r"_v\d" + "\n",
    },
}


@pytest.mark.parametrize("syntax", ["glob", "regexp"])
def test_the_same_files_as_airflows_own_walker(tmp_path: Path, syntax: str) -> None:
    from airflow._shared.module_loading.file_discovery import find_path_from_directory

    for path in TREE:
        write(tmp_path, path, valid(Path(path).stem))
    for path, text in IGNORE_FILES[syntax].items():
        write(tmp_path, path, text)

    airflow_found = {
        Path(p) for p in find_path_from_directory(tmp_path, ".airflowignore", syntax) if p.endswith(".yaml")
    }
    found = discover_specs(tmp_path, ignore_file_syntax=syntax)
    ours = {f.base for files in found.specs.values() for f in files}
    assert ours == airflow_found
    assert 0 < len(ours) < len(TREE)  # the patterns did ignore something, and not everything
