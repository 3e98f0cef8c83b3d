"""``mlpipe``: validate, render and scaffold pipeline specs; list components; print the schema.

User mistakes end as messages and an exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from airflow_mlpipe.spec.errors import Location, Problem, SpecError

EXIT_OK = 0
EXIT_INVALID = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SpecError as exc:
        _print_problems(exc.problems)
        return EXIT_INVALID
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
    validate.set_defaults(handler=_validate)

    render = commands.add_parser(
        "render", help="print a spec's execution format as JSON", formatter_class=formatter
    )
    render.add_argument("spec", type=Path, metavar="SPEC")
    render.add_argument("--env", help="environment whose overlay applies (default: [mlpipe] environment)")
    render.add_argument(
        "--explain", action="store_true", help="show which file and line each value came from"
    )
    render.set_defaults(handler=_render)

    schema = commands.add_parser("schema", help="print the JSON Schema of specs", formatter_class=formatter)
    schema.add_argument("--output", type=Path, help="write to this file instead of stdout")
    schema.set_defaults(handler=_schema)

    components = commands.add_parser(
        "components", help="list components, or show one's config", formatter_class=formatter
    )
    components.add_argument("name", nargs="?", help="a component to describe, e.g. data.extract.database")
    components.set_defaults(handler=_components)

    new = commands.add_parser("new", help="scaffold a spec file NAME.yaml", formatter_class=formatter)
    new.add_argument("name", help="pipeline name: lowercase letters, digits and underscores")
    new.add_argument("--dir", type=Path, default=Path("."), help="folder to write it in (default: .)")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.set_defaults(handler=_new)
    return parser


def _validate(args: argparse.Namespace) -> int:
    from airflow_mlpipe.spec.loader import discover_specs, load_folder

    environment = args.env or _default_environment()
    problems: list[Problem] = []
    valid: list[str] = []
    for path in args.paths:
        if not path.exists():
            problems.append(Problem("no such file or folder", Location(str(path), 1, 1)))
            continue
        folder, only = (path, None) if path.is_dir() else (path.parent, path.stem.partition(".")[0])
        specs, _ = discover_specs(folder, only=only)
        environments = {environment} | {env for files in specs.values() for f in files for env in f.overlays}
        loaded: set[str] = set()
        failed: set[str] = set()
        for env in sorted(environments):
            result = load_folder(folder, env, only=only)
            loaded |= set(result.pipelines)
            failed |= set(result.errors)
            for error in result.errors.values():
                problems += error.problems
        valid += sorted(loaded - failed)
    problems = list(dict.fromkeys(problems))  # the base's problems repeat for each environment
    if args.format == "json":
        print(json.dumps({"valid": valid, "problems": [p.to_dict() for p in problems]}, indent=2))
    else:
        _print_problems(problems)
        if not problems:
            print(f"{len(valid)} spec(s) valid")
    return EXIT_INVALID if problems else EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from airflow_mlpipe.spec.loader import load_pipeline

    environment = args.env or _default_environment()
    if not args.spec.is_file():
        raise SpecError([Problem("no such spec file", Location(str(args.spec), 1, 1))])
    pipeline = load_pipeline(args.spec, environment)
    if not args.explain:
        print(json.dumps(pipeline.render(), indent=2, default=str))
        return EXIT_OK
    from airflow_mlpipe.spec.loader import discover_specs, read_spec

    specs, _ = discover_specs(args.spec.parent, only=args.spec.stem)
    data = read_spec(specs[args.spec.stem][0], environment)
    for field, value, location in _leaves(data, ""):
        print(f"{field} = {json.dumps(value, default=str)}    # {location}")
    return EXIT_OK


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
    from airflow_mlpipe.spec.schema import builtin_component_schemas, pipeline_schema

    text = json.dumps(pipeline_schema(builtin_component_schemas()), indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _components(args: argparse.Namespace) -> int:
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
    print("\nconfig:")
    for field_name, info in component.config_model.model_fields.items():
        default = (
            "required" if info.is_required() else f"default {info.get_default(call_default_factory=True)!r}"
        )
        print(f"  {field_name} ({default}): {info.description or ''}")
    print("\nJSON Schema of config:")
    print(json.dumps(component.config_model.model_json_schema(), indent=2))
    return EXIT_OK


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
      connection: analytics_db
      parameters:
        cutoff: "{{{{ macros.ds_add(dag_run.run_after | ds, -90) }}}}"
    dependencies: []
"""


def _new(args: argparse.Namespace) -> int:
    from airflow_mlpipe.spec.models import NAME_PATTERN
    from airflow_mlpipe.spec.schema import SCHEMA_ID

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


def _default_environment() -> str:
    from airflow_mlpipe import settings

    return settings.environment()


def _print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem.format())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
