"""``mlpipe``: validate, render and scaffold pipeline specs; list components; print the schema;
look at past runs (``diff``), replay one (``replay``) and manage the stage cache (``cache``).

User mistakes end as messages and an exit code, never as a traceback: 1 for an invalid spec (or
a replay refused because the spec changed), 2 for an unknown pipeline, run or record, or a
metadata database that cannot be read.
"""

from __future__ import annotations

import argparse
import functools
import json
import keyword
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.history import HistoryError
from airflow_mlpipe.spec import IGNORE_FILE_SYNTAXES, Location, Problem, SpecError

if TYPE_CHECKING:
    from airflow_mlpipe.resolver import Component
    from airflow_mlpipe.spec import Pipeline

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_NOT_FOUND = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SpecError as exc:
        _print_problems(exc.problems)
        return EXIT_INVALID
    except HistoryError as exc:
        hint = f"; {exc.hint}" if exc.hint else ""
        print(f"mlpipe: {exc.message}{hint}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except BrokenPipeError:  # e.g. `mlpipe components | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep Python from failing at exit
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    try:
        from rich_argparse import RichHelpFormatter as formatter
    except ImportError:  # pragma: no cover
        formatter = argparse.HelpFormatter  # type: ignore[misc,assignment]

    parser = argparse.ArgumentParser(
        prog="mlpipe", description="Work with airflow-mlpipe pipeline specs.", formatter_class=formatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check spec files or folders; exit 1 on any problem",
        description="Check specs (files or folders, recursively). Each spec is checked for the chosen "
        "environment and for every environment it has an overlay for.",
        formatter_class=formatter,
    )
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    validate.add_argument("--env", help="environment to check (default: [mlpipe] environment)")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.add_argument(
        "--ignore-file-syntax",
        choices=IGNORE_FILE_SYNTAXES,
        help="pattern syntax of .airflowignore files (default: Airflow's [core] dag_ignore_file_syntax)",
    )
    validate.set_defaults(handler=_validate)

    render = commands.add_parser(
        "render",
        help="print a spec's execution format as JSON",
        description="Print the execution format of a spec, with each stage's effective 'overridable' "
        "fields (the config fields a trigger may override).",
        formatter_class=formatter,
    )
    render.add_argument("spec", type=Path, metavar="SPEC")
    render.add_argument("--env", help="environment whose overlay applies (default: [mlpipe] environment)")
    render.add_argument(
        "--explain",
        action="store_true",
        help="show which file and line each value came from (and where each 'overridable' did)",
    )
    render.set_defaults(handler=_render)

    schema = commands.add_parser("schema", help="print the JSON Schema of specs", formatter_class=formatter)
    schema.add_argument("--output", type=Path, help="write to this file instead of stdout")
    schema.set_defaults(handler=_schema)

    components = commands.add_parser(
        "components",
        help="list components, or show one's config and declarations",
        formatter_class=formatter,
    )
    components.add_argument("name", nargs="?", help="a component to describe, e.g. data.extract.database")
    components.set_defaults(handler=_components)

    new = commands.add_parser(
        "new",
        help="scaffold a spec file NAME.yaml, or a component with its test",
        description="Scaffold a pipeline spec (mlpipe new NAME) or a component module with its unit "
        "test (mlpipe new --component NAME; a dotted NAME such as acme_ml.components.churn creates "
        "the package folders).",
        formatter_class=formatter,
    )
    new.add_argument("name", nargs="?", help="pipeline name: lowercase letters, digits and underscores")
    new.add_argument(
        "--component", metavar="NAME", help="scaffold the component module NAME.py and test_NAME.py instead"
    )
    new.add_argument("--dir", type=Path, default=Path("."), help="folder to write in (default: .)")
    new.add_argument("--force", action="store_true", help="overwrite existing files")
    new.set_defaults(handler=_new)

    _add_run_commands(commands, formatter)
    return parser


def _add_run_commands(commands: Any, formatter: Any) -> None:
    """``cache``, ``diff`` and ``replay``: the commands that read runs, records and cache entries."""
    cache = commands.add_parser(
        "cache",
        help="list or clear a pipeline's stage cache entries",
        description="The stage cache entries of a pipeline under [mlpipe] artifact_root.",
        formatter_class=formatter,
    )
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    cache_list = cache_commands.add_parser(
        "list", help="each entry: stage, fingerprint, run that computed it, created at, artifacts"
    )
    cache_list.add_argument("pipeline", metavar="PIPELINE")
    cache_list.add_argument("--stage", metavar="NAME", help="only this stage's entries")
    cache_list.add_argument("--format", choices=("text", "json"), default="text")
    cache_list.set_defaults(handler=_cache_list)
    cache_clear = cache_commands.add_parser(
        "clear", help="delete the entries (the artifacts stay); prints how many were removed"
    )
    cache_clear.add_argument("pipeline", metavar="PIPELINE")
    cache_clear.add_argument("--stage", metavar="NAME", help="only this stage's entries")
    cache_clear.set_defaults(handler=_cache_clear)

    diff = commands.add_parser(
        "diff",
        help="compare two runs' execution records stage by stage",
        description="Config differences, cached or recomputed stages, artifact digests and metric "
        "deltas between two runs, read from Airflow's metadata database.",
        formatter_class=formatter,
    )
    diff.add_argument("pipeline", metavar="PIPELINE")
    diff.add_argument("run_a", metavar="RUN_A")
    diff.add_argument("run_b", metavar="RUN_B")
    diff.add_argument("--format", choices=("text", "json"), default="text")
    diff.set_defaults(handler=_diff)

    replay = commands.add_parser(
        "replay",
        help="run a pipeline again with a recorded run's overrides and no cache",
        description="Create a new run with the recorded run's overrides, the stage cache off and "
        "'replay_of' set, so its execution record says whether every metric and artifact digest "
        "matched. Refused (exit 1) when the pipeline's config_version changed since that run.",
        formatter_class=formatter,
    )
    replay.add_argument("pipeline", metavar="PIPELINE")
    replay.add_argument("run_id", metavar="RUN_ID")
    replay.add_argument(
        "--local",
        action="store_true",
        help="run it in this process, as 'airflow dags test' does, and print whether it matched",
    )
    replay.add_argument(
        "--allow-changed", action="store_true", help="replay even if the spec changed since the run"
    )
    replay.set_defaults(handler=_replay)


def _validate(args: argparse.Namespace) -> int:
    from airflow_mlpipe.spec import discover_specs, load_folder

    environment = args.env or _default_environment()
    syntax = args.ignore_file_syntax or _airflow_ignore_file_syntax
    problems: list[Problem] = []
    warnings: list[Problem] = []
    valid: list[str] = []
    for path in args.paths:
        if not path.exists():
            problems.append(Problem("no such file or folder", Location(str(path), 1, 1)))
            continue
        folder, only = (path, None) if path.is_dir() else (path.parent, path.stem.partition(".")[0])
        try:
            found = discover_specs(folder, only=only, ignore_file_syntax=syntax)
        except ValueError as exc:  # [core] dag_ignore_file_syntax is neither glob nor regexp
            problems.append(
                Problem(str(exc), Location(str(path), 1, 1), suggestion="set it to glob or regexp")
            )
            continue
        if not path.is_dir() and path in found.ignored:
            warnings.append(
                Problem(
                    "this spec is excluded by an .airflowignore, so the DAG factory never loads it; "
                    "not checked",
                    Location(str(path), 1, 1),
                    suggestion="remove the pattern that matches it to load it",
                    severity="warning",
                )
            )
        specs = found.specs
        environments = {environment} | {env for files in specs.values() for f in files for env in f.overlays}
        loaded: set[str] = set()
        failed: set[str] = set()
        for env in sorted(environments):
            result = load_folder(folder, env, only=only, ignore_file_syntax=syntax)
            loaded |= set(result.pipelines)
            failed |= set(result.errors)
            for error in result.errors.values():
                problems += error.problems
            for spec_warnings in result.warnings.values():
                warnings += spec_warnings
        valid += sorted(loaded - failed)
    problems = list(dict.fromkeys(problems))  # the base's problems repeat for each environment
    warnings = list(dict.fromkeys(warnings))
    if args.format == "json":
        report = {
            "valid": valid,
            "problems": [p.to_dict() for p in problems],
            "warnings": [w.to_dict() for w in warnings],
        }
        print(json.dumps(report, indent=2))
    else:
        _print_problems(problems + warnings)
        if not problems:
            counted = f", {len(warnings)} warning(s)" if warnings else ""
            print(f"{len(valid)} spec(s) valid{counted}")
    return EXIT_INVALID if problems else EXIT_OK


@functools.lru_cache(maxsize=1)
def _airflow_ignore_file_syntax() -> str:
    # Asked only when a folder has an .airflowignore: importing Airflow's configuration takes seconds.
    from airflow_mlpipe import settings

    return settings.dag_ignore_file_syntax()


def _render(args: argparse.Namespace) -> int:
    from airflow_mlpipe.spec import LocatedDict, load_pipeline, read_spec_file

    environment = args.env or _default_environment()
    if not args.spec.is_file():
        raise SpecError([Problem("no such spec file", Location(str(args.spec), 1, 1))])
    pipeline = load_pipeline(args.spec, environment)
    for warning in pipeline.warnings:  # on stderr: stdout stays the JSON
        print(warning.format(), file=sys.stderr)
    overridable = _effective_overridable(pipeline)
    if not args.explain:
        rendered = pipeline.to_execution_format()
        for stage in rendered["stages"]:
            stage["overridable"] = overridable[stage["name"]][0]
        print(json.dumps(rendered, indent=2, default=str))
        return EXIT_OK
    data = read_spec_file(args.spec, environment)
    for field, value, location in _leaves(data, ""):
        if not _OVERRIDABLE_LEAF.match(field):  # shown below, as the effective list
            print(f"{field} = {json.dumps(value, default=str)}    # {location}")
    stages = {s.get("name"): s for s in data.get("stages", []) if isinstance(s, LocatedDict)}
    for name, (fields, component) in overridable.items():
        located = stages.get(name)
        written = located.value_locations.get("overridable") if located is not None else None
        source = str(written) if written else f"component default ({component})"
        print(f"stages[{name}].overridable = {json.dumps(fields)}    # {source}")
    return EXIT_OK


_OVERRIDABLE_LEAF = re.compile(r"^stages\[[^\]]*\]\.overridable(\[\d+\])?$")


def _effective_overridable(pipeline: Pipeline) -> dict[str, tuple[list[str], str]]:
    """Each stage's effective ``overridable`` fields (sorted) and its component's name."""
    from airflow_mlpipe.resolver import resolve_component
    from airflow_mlpipe.spec import stage_overridable

    effective = {}
    for stage in pipeline.stages:
        component = resolve_component(stage.component)  # resolved already, while validating
        effective[stage.name] = (sorted(stage_overridable(stage, component)), stage.component)
    return effective


def _leaves(node: Any, path: str) -> Iterator[tuple[str, Any, Location]]:
    """Every scalar value of located data with its field path and where it was written."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if isinstance(value, dict | list) and value:
                yield from _leaves(value, child)
            else:
                yield child, value, node.value_locations[key]  # type: ignore[attr-defined]
    elif isinstance(node, list):
        for index, value in enumerate(node):
            name = value.get("name") if isinstance(value, dict) else None
            child = f"{path}[{name}]" if isinstance(name, str) else f"{path}[{index}]"
            if isinstance(value, dict | list) and value:
                yield from _leaves(value, child)
            else:
                yield child, value, node.item_locations[index]  # type: ignore[attr-defined]


def _schema(args: argparse.Namespace) -> int:
    from airflow_mlpipe.spec import builtin_component_schemas, pipeline_schema

    text = json.dumps(pipeline_schema(builtin_component_schemas()), indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _components(args: argparse.Namespace) -> int:
    from airflow_mlpipe.contract import overridable_fields
    from airflow_mlpipe.resolver import ComponentError, available_components, resolve_component

    if args.name is None:
        for name in available_components():
            summary = resolve_component(name, ()).doc.splitlines()
            print(f"{name:<32} {summary[0] if summary else ''}")
        return EXIT_OK
    try:
        component = resolve_component(args.name)
    except ComponentError as exc:
        print(f"mlpipe: {exc.message}", file=sys.stderr)
        if exc.suggestion:
            print(f"    hint: {exc.suggestion}", file=sys.stderr)
        return EXIT_INVALID
    print(f"{component.name}  ({component.module.__name__})\n")
    print(component.doc or "(no description)")
    overridable = overridable_fields(component.config_model)
    print("\nconfig:")
    for field_name, info in component.config_model.model_fields.items():
        default = (
            "required" if info.is_required() else f"default {info.get_default(call_default_factory=True)!r}"
        )
        marks = f"{default}, overridable" if field_name in overridable else default
        print(f"  {field_name} ({marks}): {info.description or ''}")
    print(f"\noverridable at trigger time: {', '.join(sorted(overridable)) or 'none'}")
    print("    (a stage's 'overridable' list in the spec replaces this)")
    for line in _declarations(component):
        print(line)
    print("\nJSON Schema of config:")
    print(json.dumps(component.config_model.model_json_schema(), indent=2))
    return EXIT_OK


def _declarations(component: Component) -> list[str]:
    """``produces``, ``requires`` and ``extra`` of a component, for ``mlpipe components NAME``."""
    lines = []
    for attribute in ("produces", "requires"):
        declared = getattr(component.module, attribute, None)
        if declared is None:
            text = "not declared"
        elif callable(declared):
            text = f"depends on the stage's config ({attribute}(config))"
        else:
            parts = [f"artifacts {', '.join(declared.artifacts) or 'none'}"]
            if attribute == "produces":
                parts.append(f"metrics {', '.join(declared.metrics) or 'none'}")
            text = "; ".join(parts)
        lines.append(f"{attribute}: {text}")
    extra = component.extra
    if extra is None:
        lines.append("extra: none (needs only airflow-mlpipe's own dependencies)")
    else:
        missing = extra.missing_modules()
        state = f"missing here: {', '.join(missing)}" if missing else "installed"
        lines.append(
            f"extra: {extra.name} (modules {', '.join(extra.modules)}; {state}); {extra.install_command}"
        )
    return ["", *lines]


_TEMPLATE = """\
# yaml-language-server: $schema={schema}
name: {name}
version: 0.1.0
metadata:
  owner: my-team
  description: What this pipeline does, in one line
  tags: []
  schedule: null            # cron ("0 3 * * *"), a preset (@daily), or null for manual runs
  notify_on_failure: []     # e-mail addresses told once per failed run
stages:
  - name: extract
    component: data.extract.database
    config:
      query: "SELECT * FROM user_events WHERE date > :cutoff"
      conn_id: analytics_db
      parameters:
        cutoff: "{{{{ macros.ds_add(dag_run.run_after | ds, -90) }}}}"
    dependencies: []
"""


_COMPONENT_TEMPLATE = '''\
"""{title}: reads the upstream stage's table and writes a summary of it.

Replace this with one line on what the component does: ``mlpipe components {name}`` shows it.

A stage uses it with ``component: {name}``; its ``config`` is checked against :class:`Config`
when the spec is validated (so keep this module's imports light: heavy ones go inside ``run``).
``requires`` and ``produces`` tell ``mlpipe validate`` how stages must be wired, and every run
is checked against them.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_mlpipe.contract import ComponentContext, Produces, Requires

#: The upstream artifact ``run`` reads: a stage using this component must depend on one producing it.
requires = Requires(artifacts=("table",))
#: What ``run`` always returns; a run that returns less fails.
produces = Produces(artifacts=("summary",), metrics=("rows", "flagged"))


class Config(BaseModel):
    """The stage's ``config``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    column: str = Field("score", description="the column of the table to summarise")
    threshold: float = Field(
        0.5,
        description="rows whose column is at least this are flagged",
        # A trigger may override it ({{"overrides": {{"STAGE": {{"threshold": 0.7}}}}}}); a stage's
        # 'overridable' list in the spec replaces these marks.
        json_schema_extra={{"overridable": True}},
    )


def run(config: Config, context: ComponentContext) -> dict[str, Any]:
    """Summarise the upstream ``table`` artifact (JSON rows) into ``summary.json``."""
    from airflow.sdk import ObjectStoragePath  # heavy imports stay inside run()

    table = context.input_artifacts("table", hint="depend on a stage that produces 'table'")["table"]
    rows = json.loads(ObjectStoragePath(table).read_text())
    flagged = [row for row in rows if float(row[config.column]) >= config.threshold]
    context.log.info("%d of %d rows flagged", len(flagged), len(rows))

    summary = context.artifact_dir / "summary.json"  # this run's and stage's own folder
    summary.write_text(json.dumps({{"column": config.column, "flagged": len(flagged), "rows": len(rows)}}))
    return {{
        "artifacts": {{"summary": str(summary)}},
        "metrics": {{"rows": len(rows), "flagged": len(flagged)}},
    }}
'''

_COMPONENT_TEST_TEMPLATE = '''\
"""Unit tests of {name}: run with a real ComponentContext, no Airflow processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import {name} as component
from airflow_mlpipe.contract import ComponentModule
from airflow_mlpipe.testing import run_component

# mypy checks the module against the component contract.
_contract: ComponentModule = component


def test_flags_rows_at_or_above_the_threshold(tmp_path: Path) -> None:
    table = tmp_path / "table.json"
    table.write_text(json.dumps([{{"score": 0.9}}, {{"score": 0.2}}, {{"score": 0.5}}]))

    outputs = run_component(
        component,
        {{"threshold": 0.5}},
        inputs={{"upstream": {{"artifacts": {{"table": f"file://{{table}}"}}}}}},
        artifact_dir=tmp_path / "out",
    )

    assert outputs.metrics == {{"rows": 3.0, "flagged": 2.0}}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == {{"column": "score", "flagged": 2, "rows": 3}}


def test_an_unknown_config_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="threshhold"):
        run_component(component, {{"threshhold": 0.5}})
'''


def _new(args: argparse.Namespace) -> int:
    from airflow_mlpipe.spec import NAME_PATTERN, SCHEMA_ID

    if (args.name is None) == (args.component is None):
        print("mlpipe: give a pipeline NAME or --component NAME (one of them)", file=sys.stderr)
        return EXIT_INVALID
    if args.component is not None:
        return _new_component(args.component, args.dir, args.force)
    if not re.match(NAME_PATTERN, args.name):
        print(
            f"mlpipe: '{args.name}' is not a valid pipeline name: use lowercase letters, digits and "
            "underscores, starting with a letter",
            file=sys.stderr,
        )
        return EXIT_INVALID
    path = args.dir / f"{args.name}.yaml"
    if path.exists() and not args.force:
        print(f"mlpipe: {path} exists; pass --force to overwrite it", file=sys.stderr)
        return EXIT_INVALID
    args.dir.mkdir(parents=True, exist_ok=True)
    path.write_text(_TEMPLATE.format(name=args.name, schema=SCHEMA_ID.replace("/blob/", "/raw/")))
    print(f"wrote {path}; check it with: mlpipe validate {path}")
    return EXIT_OK


def _new_component(name: str, folder: Path, force: bool) -> int:
    parts = name.split(".")
    bad = [p for p in parts if not p.isidentifier() or keyword.iskeyword(p) or p.startswith("_")]
    if bad or not all(p.isascii() for p in parts):
        print(
            f"mlpipe: '{name}' is not a module path: use dotted Python identifiers that do not start "
            "with '_' (e.g. acme_ml.components.churn)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    package = folder.joinpath(*parts[:-1])
    module, test = package / f"{parts[-1]}.py", package / f"test_{parts[-1]}.py"
    existing = [p for p in (module, test) if p.exists()]
    if existing and not force:
        print(f"mlpipe: {', '.join(map(str, existing))} exists; pass --force to overwrite", file=sys.stderr)
        return EXIT_INVALID
    package.mkdir(parents=True, exist_ok=True)
    for depth in range(1, len(parts)):  # the packages of a dotted name, without touching existing ones
        init = folder.joinpath(*parts[:depth], "__init__.py")
        if not init.exists():
            init.write_text(f'"""The {".".join(parts[:depth])} package."""\n')
    module.write_text(_COMPONENT_TEMPLATE.format(name=name, title=parts[-1].replace("_", " ").capitalize()))
    test.write_text(_COMPONENT_TEST_TEMPLATE.format(name=name, module=parts[-1]))
    prefix = ".".join(parts[:-1]) or name
    print(f"wrote {module} and {test}")
    print(
        f"use it in a spec as 'component: {name}' once '{prefix}' is in [mlpipe] component_modules "
        "(or registered as an airflow_mlpipe.components entry point)"
    )
    return EXIT_OK


def _cache_entries(pipeline: str, stage: str | None) -> tuple[Any, list[Any]]:
    """The pipeline's stage cache and its entries; an unknown pipeline is a :class:`HistoryError`."""
    from airflow_mlpipe import settings
    from airflow_mlpipe.cache import StageCache
    from airflow_mlpipe.history import load_airflow_configuration, metadata_session, pipeline_exists

    load_airflow_configuration()
    root = settings.artifact_root()
    cache = StageCache(root, pipeline)
    try:
        known = cache.folder.exists()
    except Exception as exc:  # an s3:// root without credentials, a missing filesystem provider
        raise HistoryError(
            f"cannot read the stage cache under {root}: {type(exc).__name__}: {exc}",
            hint="check [mlpipe] artifact_root and its connection",
        ) from None
    if not known:
        # No entry was ever stored: fine for a pipeline Airflow knows, a typo otherwise.
        with metadata_session() as session:
            if not pipeline_exists(session, pipeline):
                from airflow_mlpipe.history import require_pipeline

                require_pipeline(session, pipeline)
        return cache, []
    return cache, cache.entries(stage)


def _cache_list(args: argparse.Namespace) -> int:
    _, entries = _cache_entries(args.pipeline, args.stage)
    if args.format == "json":
        print(json.dumps([entry.model_dump(mode="json") for entry in entries], indent=2))
        return EXIT_OK
    if not entries:
        where = f" of stage '{args.stage}'" if args.stage else ""
        print(f"no cache entries{where} for pipeline '{args.pipeline}'")
        return EXIT_OK
    rows = [
        (
            entry.stage,
            entry.fingerprint[:12],
            entry.run_id,
            entry.created_at.isoformat(),
            ", ".join(f"{name}={uri}" for name, uri in sorted(entry.outputs.artifacts.items())) or "-",
        )
        for entry in entries
    ]
    _print_table(("stage", "fingerprint", "run", "created at", "artifacts"), rows)
    return EXIT_OK


def _cache_clear(args: argparse.Namespace) -> int:
    cache, _ = _cache_entries(args.pipeline, None)
    removed = cache.clear(args.stage) if cache.folder.exists() else 0
    where = f" of stage '{args.stage}'" if args.stage else ""
    print(
        f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}{where} of pipeline '{args.pipeline}'"
    )
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from airflow_mlpipe.compare import compare_records
    from airflow_mlpipe.history import load_airflow_configuration, metadata_session, read_record

    load_airflow_configuration()
    with metadata_session() as session:
        record_a = read_record(session, args.pipeline, args.run_a)
        record_b = read_record(session, args.pipeline, args.run_b)
    comparison = compare_records(record_a, record_b)
    if args.format == "json":
        print(json.dumps(comparison, indent=2, default=str))
        return EXIT_OK
    for line in _diff_lines(comparison, record_a, record_b):
        print(line)
    return EXIT_OK


def _diff_lines(comparison: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> Iterator[str]:
    """``mlpipe diff`` as text: per stage, its status in each run, config, artifacts and metrics."""
    run_a, run_b = comparison["runs"]
    yield f"A: {run_a}"
    yield f"B: {run_b}"
    version_a, version_b = comparison["config_version"]
    same_version = "same" if version_a == version_b else "differs"
    yield f"config_version: {version_a} -> {version_b} ({same_version})"
    for entry in comparison["stages"]:
        stage = entry["stage"]
        status_a, status_b = (
            _status_text(status, record, stage)
            for status, record in zip(entry["status"], (a, b), strict=True)
        )
        verdict = "same" if entry["same"] else "differs"
        yield ""
        yield f"stage {stage}: {verdict}  (A: {status_a}; B: {status_b})"
        for change in entry["config"]:
            yield f"  config {change['key']}: {_value(change['a'])} -> {_value(change['b'])}"
        for artifact in entry["artifacts"]:
            if artifact["same"]:
                yield f"  artifact {artifact['name']}: same digest {_short(artifact['a'])}"
            else:
                digests = f"{_short(artifact['a'])} -> {_short(artifact['b'])}"
                yield f"  artifact {artifact['name']}: digests differ {digests}"
        for metric in entry["metrics"]:
            delta = metric["delta"]
            delta_text = f" ({delta:+.6g})" if delta is not None else ""
            yield f"  metric {metric['name']}: {_value(metric['a'])} -> {_value(metric['b'])}{delta_text}"
    yield ""
    yield "runs are the same" if comparison["same"] else "runs differ"


def _status_text(status: str, record: dict[str, Any], stage: str) -> str:
    if status == "cached":
        origin = (record.get("cached_from") or {}).get(stage)
        return f"cached from {origin}" if origin else "cached"
    return "recomputed" if status == "computed" else status


def _value(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value, default=str)


def _short(digest: Any) -> str:
    if not isinstance(digest, str):
        return "(none)"
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}" if hexdigest else digest[:19]


def _replay(args: argparse.Namespace) -> int:
    from airflow_mlpipe.history import (
        load_airflow_configuration,
        metadata_session,
        read_record,
        read_run_after,
        serialized_spec,
    )
    from airflow_mlpipe.pipeline_run import CACHE_PARAM, OVERRIDES_PARAM, REPLAY_PARAM

    load_airflow_configuration()
    with metadata_session() as session:
        record = read_record(session, args.pipeline, args.run_id)
        # Templates see the run's run_after (the reference extract's cutoff, features' window end):
        # the replay gets the original's, so it reads the same data.
        run_after = read_run_after(session, args.pipeline, args.run_id)
        current = None if args.local else serialized_spec(session, args.pipeline)
    dag = _bagged_dag(args.pipeline) if args.local else None
    if dag is not None:
        from airflow_mlpipe.history import spec_from_doc_md

        current = spec_from_doc_md(dag.doc_md)
    if current is None:
        raise HistoryError(
            f"pipeline '{args.pipeline}' has no valid spec now (its DAG is a placeholder, or not one the "
            "mlpipe factory built)",
            hint=f"run 'mlpipe validate' on the spec of '{args.pipeline}'",
        )
    overrides = dict(record.get(OVERRIDES_PARAM) or {})
    recorded_version = record.get("config_version")
    if current.config_version != recorded_version:
        changes = spec_changes(record, current, overrides)
        stream = sys.stdout
        print(
            f"the spec of '{args.pipeline}' changed since run '{args.run_id}': config_version "
            f"{recorded_version} (recorded) -> {current.config_version} (current)",
            file=stream,
        )
        for line in changes or ["  no stage config differs: the change is in metadata, defaults or wiring"]:
            print(line, file=stream)
        if not args.allow_changed:
            print(
                f"mlpipe: not replaying '{args.run_id}': the spec changed (see above); pass --allow-changed "
                "to replay it with the current spec",
                file=sys.stderr,
            )
            return EXIT_INVALID
        print("replaying with the current spec (--allow-changed)")
    conf = {OVERRIDES_PARAM: overrides, CACHE_PARAM: False, REPLAY_PARAM: args.run_id}
    if dag is None:
        return _trigger_replay(args.pipeline, conf, run_after)
    return _local_replay(dag, args.pipeline, conf, run_after)


def _bagged_dag(pipeline: str) -> Any:
    """The DAG as the dags folder builds it now (and stored, like ``airflow dags test`` does)."""
    from airflow.exceptions import AirflowException
    from airflow.utils.cli import get_bagged_dag

    try:
        return get_bagged_dag(bundle_names=None, dag_id=pipeline)
    except AirflowException:
        raise HistoryError(
            f"unknown pipeline '{pipeline}': the dags folder builds no DAG of that id",
            hint="check the name and [core] dags_folder (AIRFLOW__CORE__DAGS_FOLDER); 'mlpipe validate' "
            "shows spec problems",
        ) from None


def _trigger_replay(pipeline: str, conf: dict[str, Any], run_after: Any) -> int:
    """A new run, created the way ``airflow dags trigger`` creates one; prints its run id.

    Due at the original's ``run_after`` (so its data interval and templates match), with a run id
    and logical date of its own (a run id made from ``run_after`` would be the original's).
    """
    from airflow._shared.timezones import timezone
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import AirflowException
    from airflow.models.dagrun import DagRun
    from airflow.utils.platform import getuser
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    from airflow_mlpipe.history import metadata_session

    try:
        user: str | None = getuser()
    except Exception:  # no user name from the OS: trigger without one, as 'airflow dags trigger' does
        user = None
    with metadata_session() as session:
        try:
            now = timezone.utcnow()
            run = trigger_dag(
                dag_id=pipeline,
                triggered_by=DagRunTriggeredByType.CLI,
                triggering_user_name=user,
                conf=conf,
                run_after=run_after,
                logical_date=now,
                run_id=DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=now, run_after=now),
                replace_microseconds=False,
                session=session,
            )
        except (AirflowException, ValueError) as exc:
            raise HistoryError(f"cannot trigger '{pipeline}': {exc}") from None
        if run is None:
            raise HistoryError(f"cannot trigger '{pipeline}': Airflow created no run")
        run_id = run.run_id
    print(run_id)
    return EXIT_OK


def _local_replay(dag: Any, pipeline: str, conf: dict[str, Any], run_after: Any) -> int:
    """Run the replay in this process, as ``airflow dags test`` does, and report whether it matched.

    A logical date of its own (``dag.test`` clears the task instances of the one it is given), due
    a microsecond after the original's ``run_after``: ``dag.test`` names the run after its
    ``run_after``, so the original's exact value would be the original's run id. Templates that
    use the run's date or time to the second (the reference pipeline's) see the same values.
    """
    from datetime import timedelta

    from airflow._shared.timezones import timezone

    from airflow_mlpipe.history import metadata_session, read_record

    due = run_after + timedelta(microseconds=1)
    run = dag.test(logical_date=timezone.utcnow(), run_after=due, run_conf=conf)
    run_id = run.run_id
    with metadata_session() as session:
        record = read_record(session, pipeline, run_id)
    state = getattr(run.state, "value", run.state)
    print(f"replay run: {run_id} (state: {state})")
    print(f"replay_of: {record.get('replay_of')}")
    matches = bool(record.get("replay_matches"))
    print(f"replay_matches: {str(matches).lower()}")
    for stage, differences in (record.get("replay_differences") or {}).items():
        for metric in differences.get("metrics", []):
            print(f"  {stage}: metric {metric['name']}: {_value(metric['a'])} -> {_value(metric['b'])}")
        for artifact in differences.get("artifacts", []):
            print(
                f"  {stage}: artifact {artifact['name']}: {_short(artifact['a'])} -> {_short(artifact['b'])}"
            )
    return EXIT_OK if matches and state == "success" else EXIT_INVALID


def spec_changes(record: dict[str, Any], current: Any, overrides: dict[str, Any]) -> list[str]:
    """How the current spec's stage configs differ from the configs a run recorded.

    The current config gets the recorded run's overrides (a replay applies them again) and its
    component's defaults (the record has them filled in). Values that are templates in the spec
    are rendered per run, and values the record masked are secrets: neither can be compared.
    """
    from airflow_mlpipe.compare import compare_records

    recorded_configs = record.get("configs") or {}
    current_configs = {
        stage: _with_defaults(facts["component"], _merged(facts["config"], overrides.get(stage)))
        for stage, facts in current.stages.items()
    }
    recorded_stages = {
        stage
        for key in ("stages_completed", "stages_failed", "stages_skipped")
        for stage in record.get(key) or []
    } | set(recorded_configs)
    lines = [
        f"  stage {stage}: not in the current spec"
        for stage in sorted(recorded_stages - set(current_configs))
    ]
    lines += [
        f"  stage {stage}: new in the current spec"
        for stage in current_configs
        if stage not in recorded_stages
    ]
    shared = [stage for stage in current_configs if stage in recorded_configs]
    comparison = compare_records(
        {"configs": recorded_configs, "stages_completed": shared},
        {"configs": current_configs, "stages_completed": shared},
    )
    for entry in comparison["stages"]:
        for change in entry["config"]:
            if _is_template(change["b"]) or change["a"] == "***":
                continue
            lines.append(
                f"  stage {entry['stage']}: {change['key']}: {_value(change['a'])} (recorded) -> "
                f"{_value(change['b'])} (current)"
            )
    return lines


def _merged(config: dict[str, Any], override: Any) -> dict[str, Any]:
    from airflow_mlpipe.pipeline_run import deep_merge

    return deep_merge(config, override) if isinstance(override, dict) else dict(config)


def _with_defaults(component_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as its component's ``Config`` resolves it, defaults filled in (JSON values)."""
    from airflow_mlpipe.resolver import ComponentError, resolve_component

    try:
        model = resolve_component(component_name).config_model
    except ComponentError:
        return config
    try:
        return dict(model.model_validate(config).model_dump(mode="json"))
    except Exception:  # a templated value that only validates once rendered: fill defaults only
        filled = dict(config)
        for name, info in model.model_fields.items():
            if name not in filled and not info.is_required():
                filled[name] = json.loads(
                    json.dumps(info.get_default(call_default_factory=True), default=str)
                )
        return filled


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in ("{{", "{%", "{#"))


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, str(row[-1])]))


def _default_environment() -> str:
    from airflow_mlpipe import settings

    return settings.environment()


def _print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem.format())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
