"""Jinja templates in stage configs, checked when the spec loads instead of when the task runs.

Airflow renders every string in a stage's config with the DAG's Jinja environment just before
the task runs, and that environment is strict: an unknown name or filter fails the task. Parsing
each template here (never rendering it: no Variable, connection or database is touched) reports
syntax errors and misspelt names with the file and line, when the author can still fix them.
"""

from __future__ import annotations

from functools import cache

import jinja2
import jinja2.meta
import jinja2.nodes

from airflow_mlpipe.suggest import did_you_mean

# Where Jinja syntax starts; a string without any of these renders as itself.
TEMPLATE_STARTS = ("{{", "{%", "{#")

# The names of Airflow's task context (airflow.sdk.definitions.context.Context) and the filters
# Airflow adds to Jinja's (airflow.sdk.definitions._internal.templater.FILTERS). Written out so
# loading a spec never imports Airflow; tests/spec/test_templates.py keeps them in step.
CONTEXT_NAMES = frozenset(
    {
        "asset_state_store",
        "conn",
        "dag",
        "dag_run",
        "data_interval_end",
        "data_interval_start",
        "ds",
        "ds_nodash",
        "exception",
        "expanded_ti_count",
        "inlet_events",
        "inlets",
        "logical_date",
        "macros",
        "map_index_template",
        "outlet_events",
        "outlets",
        "params",
        "partition_date",
        "partition_key",
        "prev_data_interval_end_success",
        "prev_data_interval_start_success",
        "prev_end_date_success",
        "prev_start_date_success",
        "reason",
        "run_id",
        "task",
        "task_instance",
        "task_instance_key_str",
        "task_reschedule_count",
        "task_state_store",
        "templates_dict",
        "test_mode",
        "ti",
        "triggering_asset_events",
        "try_number",
        "ts",
        "ts_nodash",
        "ts_nodash_with_tz",
        "var",
    }
)
AIRFLOW_FILTERS = frozenset({"ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz"})


def is_template(value: object) -> bool:
    return isinstance(value, str) and any(start in value for start in TEMPLATE_STARTS)


def template_problem(text: str) -> tuple[str, str] | None:
    """``(message, suggestion)`` when the template ``text`` cannot render, else ``None``."""
    env = _environment()
    try:
        tree = env.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        where = f" (line {exc.lineno} of the template)" if "\n" in text.strip() else ""
        return (
            f"the template does not parse: {exc.message}{where}",
            "check that every '{{' has its '}}' and every '{%' its '%}'",
        )
    # Filters and tests first: finding the undeclared names compiles the template, which
    # refuses an unknown filter with a message that offers no suggestion.
    for node in tree.find_all((jinja2.nodes.Filter, jinja2.nodes.Test)):
        is_filter = isinstance(node, jinja2.nodes.Filter)
        kind, table = ("filter", env.filters) if is_filter else ("test", env.tests)
        if node.name not in table:
            return f"the template uses the unknown {kind} '{node.name}'", did_you_mean(node.name, table)
    known = CONTEXT_NAMES | set(env.globals)
    unknown = sorted(jinja2.meta.find_undeclared_variables(tree) - known)
    if unknown:
        return (
            f"the template uses '{unknown[0]}', which Airflow's task context does not have",
            did_you_mean(unknown[0], known) or "see 'Templates reference' in Airflow's documentation",
        )
    return None


@cache
def _environment() -> jinja2.Environment:
    # Like Airflow's task environment (airflow.sdk.definitions._internal.templater): the 'do'
    # extension on, Airflow's filters added. Only ever used to parse.
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    env.filters.update(dict.fromkeys(AIRFLOW_FILTERS, str))
    return env
