"""Finding spec files: ``NAME.yaml`` and its ``NAME.ENV.yaml`` overlays under a folder.

The walk honours ``.airflowignore`` files the way Airflow's own DAG-file walker does
(``airflow._shared.module_loading.file_discovery.find_path_from_directory`` in Airflow 3.3): an
ignore file applies to its folder and every folder below it, folders it ignores are not entered,
and the pattern syntax is ``[core] dag_ignore_file_syntax``:

* ``glob`` (Airflow's default): gitignore patterns; a pattern with a ``/`` at the start or in the
  middle is relative to the ignore file's folder, one without matches a name at any level below
  it; a trailing ``/`` matches folders only; ``!pattern`` re-includes, the last match wins;
* ``regexp``: each line is a regular expression searched in the path relative to the folder
  being loaded; any match ignores the file or folder.

``#`` starts a comment in both. Nothing here imports Airflow: the syntax is a parameter, and
``airflow_mlpipe.settings.dag_ignore_file_syntax`` reads Airflow's setting for the DAG factory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from airflow_mlpipe.spec.errors import Location, Problem

SPEC_SUFFIXES = (".yaml", ".yml")
IGNORE_FILE_NAME = ".airflowignore"
#: Airflow's default for ``[core] dag_ignore_file_syntax``.
DEFAULT_IGNORE_FILE_SYNTAX = "glob"
IGNORE_FILE_SYNTAXES = ("glob", "regexp")
_COMMENT = re.compile(r"\s*#.*")  # Airflow's: a '#' anywhere starts a comment


@dataclass(frozen=True)
class SpecFiles:
    """A spec file and the overlays found beside it, by environment."""

    name: str
    base: Path
    overlays: dict[str, Path] = field(default_factory=dict)

    def files_for(self, environment: str) -> list[Path]:
        overlay = self.overlays.get(environment)
        return [self.base, overlay] if overlay else [self.base]


@dataclass
class Discovery:
    """What a walk of a spec folder found.

    ``specs`` maps each pipeline name to its spec files (more than one is an error the loader
    reports); ``problems`` are errors by pipeline name (an overlay without a base); ``warnings``
    are problems of ``.airflowignore`` files (a pattern that does not compile), which are skipped
    as Airflow skips them; ``ignored`` lists the YAML files an ignore file excluded.
    """

    specs: dict[str, list[SpecFiles]] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def discover_specs(
    folder: str | os.PathLike[str],
    only: str | None = None,
    *,
    ignore_file_syntax: str | Callable[[], str] = DEFAULT_IGNORE_FILE_SYNTAX,
) -> Discovery:
    """Find ``NAME.yaml`` files and their ``NAME.ENV.yaml`` overlays under ``folder``, recursively.

    Hidden (``.name``) and private (``_name``) folders are skipped, and so is whatever an
    ``.airflowignore`` excludes (see the module docstring). ``only`` keeps just that pipeline.
    ``ignore_file_syntax`` may be a function returning it, called only if there is an ignore
    file (reading Airflow's configuration takes the CLI seconds).
    """
    syntax = _Syntax(ignore_file_syntax)
    found = Discovery()
    bases: dict[Path, SpecFiles] = {}
    overlays: list[tuple[Path, str, str]] = []
    for directory, filenames in _walk(Path(folder), syntax, found):
        for filename in filenames:
            name, _, environment = os.path.splitext(filename)[0].partition(".")
            if only is not None and name != only:
                continue
            path = directory / filename
            if environment:
                overlays.append((path, name, environment))
            else:
                bases[path] = SpecFiles(name, path)
    for path, name, environment in overlays:
        base = next((b for b in bases.values() if b.name == name and b.base.parent == path.parent), None)
        if base is None:
            found.problems.setdefault(name, []).append(
                Problem(
                    f"overlay for environment '{environment}' has no base spec "
                    f"'{name}{path.suffix}' beside it",
                    Location(str(path), 1, 1),
                    suggestion=f"create {name}.yaml next to it, or rename the overlay to NAME.ENV.yaml",
                )
            )
        else:
            base.overlays[environment] = path
    for files in bases.values():
        found.specs.setdefault(files.name, []).append(files)
    return found


def overlay_path(path: Path, environment: str) -> Path | None:
    """The ``environment`` overlay beside the spec ``path``, if there is one."""
    # Either suffix, as load_folder pairs them (NAME.yml with NAME.ENV.yaml); the base's first.
    for suffix in sorted(SPEC_SUFFIXES, key=lambda s: s != path.suffix):
        candidate = path.with_name(f"{path.stem}.{environment}{suffix}")
        if candidate.is_file():
            return candidate
    return None


# --- .airflowignore ----------------------------------------------------------------------------


class _Syntax:
    """The ignore file syntax, asked for (and checked) when the first ignore file is read."""

    def __init__(self, source: str | Callable[[], str]) -> None:
        self._source = source
        self._value: str | None = None
        if isinstance(source, str):
            self.get()  # a bad value is the caller's mistake: say so even without ignore files

    def get(self) -> str:
        if self._value is None:
            value = self._source if isinstance(self._source, str) else self._source()
            value = value or DEFAULT_IGNORE_FILE_SYNTAX  # as Airflow reads an empty setting
            if value not in IGNORE_FILE_SYNTAXES:
                raise ValueError(
                    f"unsupported ignore file syntax {value!r}: "
                    f"[core] dag_ignore_file_syntax is one of {', '.join(IGNORE_FILE_SYNTAXES)}"
                )
            self._value = value
        return self._value


class _Rule(NamedTuple):
    """One ignore pattern: a compiled regexp (``regexp``) or gitignore pattern (``glob``)."""

    pattern: Any  # re.Pattern (regexp) or a pathspec gitignore pattern (glob)
    relative_to: Path | None  # glob: the ignore file's folder for anchored patterns, else None
    dir_only: bool


def _walk(root: Path, syntax_of: _Syntax, found: Discovery) -> Iterator[tuple[Path, list[str]]]:
    """Each folder under ``root`` with its spec file names, leaving out what is ignored."""
    rules_by_dir: dict[Path, list[_Rule]] = {}
    syntax = DEFAULT_IGNORE_FILE_SYNTAX
    for directory, subdirectories, filenames in os.walk(root):
        here = Path(directory)
        rules = rules_by_dir.pop(here, [])
        if IGNORE_FILE_NAME in filenames:
            syntax = syntax_of.get()
            rules = rules + _read_ignore_file(here / IGNORE_FILE_NAME, syntax, found)
        kept = sorted(d for d in subdirectories if not d.startswith((".", "_")))
        if rules:
            kept = [d for d in kept if not _ignored(here / d, True, rules, root, syntax)]
        subdirectories[:] = kept
        for subdirectory in kept:
            rules_by_dir[here / subdirectory] = rules
        specs = []
        for filename in sorted(filenames):
            if os.path.splitext(filename)[1] not in SPEC_SUFFIXES or filename.startswith("."):
                continue
            if rules and _ignored(here / filename, False, rules, root, syntax):
                found.ignored.append(here / filename)
                continue
            specs.append(filename)
        yield here, specs


def _read_ignore_file(path: Path, syntax: str, found: Discovery) -> list[_Rule]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        found.warnings.append(
            Problem(
                f"cannot read the ignore file: {exc.strerror}", Location(str(path), 1, 1), severity="warning"
            )
        )
        return []
    rules = []
    # Split on '\n' only, as Airflow does: the line numbers below are the editor's.
    for number, line in enumerate(text.split("\n"), start=1):
        pattern = _COMMENT.sub("", line)
        if not pattern:
            continue
        try:
            rule = _compile(pattern, path, syntax)
        except (re.error, ValueError) as exc:
            found.warnings.append(
                Problem(
                    f"the {syntax} pattern {pattern!r} does not compile ({exc}); it is skipped",
                    Location(str(path), number, 1),
                    suggestion="Airflow skips it too; fix or remove the line",
                    severity="warning",
                )
            )
            continue
        if rule is not None:
            rules.append(rule)
    return rules


def _compile(pattern: str, ignore_file: Path, syntax: str) -> _Rule | None:
    if syntax == "regexp":
        return _Rule(re.compile(pattern), None, False)
    if pattern.strip() == "/":
        return None  # matches nothing in gitignore (Airflow logs and skips it)
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    raw = pattern.lstrip("!")
    dir_only = raw.rstrip() != raw.rstrip().rstrip("/")
    return _Rule(_gitignore_pattern(pattern), ignore_file.parent if anchored else None, dir_only)


def _gitignore_pattern(pattern: str) -> Any:
    # pathspec comes with Airflow (which uses it for the same files). 1.x renamed the class
    # Airflow 3.3 uses (GitWildMatchPattern, now a deprecated alias of GitIgnoreSpecPattern).
    try:
        from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern as Pattern
    except ImportError:  # pathspec < 1.0
        from pathspec.patterns import GitWildMatchPattern as Pattern
    return Pattern(pattern)


def _ignored(path: Path, is_dir: bool, rules: list[_Rule], root: Path, syntax: str) -> bool:
    if syntax == "regexp":
        relative = str(path.relative_to(root))
        return any(rule.pattern.search(relative) is not None for rule in rules)
    matched = False
    for rule in rules:  # the last matching pattern decides, so '!keep.yaml' can re-include
        if rule.dir_only and not is_dir:
            continue
        relative = path.relative_to(rule.relative_to).as_posix() if rule.relative_to else path.name
        if is_dir:
            relative += "/"
        if rule.pattern.include is not None and rule.pattern.match_file(relative) is not None:
            matched = rule.pattern.include
    return bool(matched)
