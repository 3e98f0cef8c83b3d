"""Everything the API returns passes through Airflow's secrets masker on its way out.

Execution records quote errors, stage configs and overrides, and a registry error can quote a
URI: any of them may hold a secret (a password in a connection URI, a token a component logged in
its error). The masker replaces the secrets this process knows (``mask_secret``) and the values of
sensitive keys (``password``, ``token``, ``secret``...), exactly as Airflow's REST API does.
"""

from __future__ import annotations

from typing import Any

#: How deep strings are searched for secrets (the masker's own default is 5: records are deeper).
MAX_DEPTH = 32


def mask(value: Any, name: str | None = None) -> Any:
    """``value`` with every secret Airflow's masker knows replaced by ``***``.

    ``name``, when given, is the key ``value`` is known by: a sensitive one (``password``,
    ``db.token``...) hides the whole value.
    """
    try:  # the api-server's masker (the one the REST API uses)
        from airflow._shared.secrets_masker import redact
    except ImportError:  # pragma: no cover - other Airflow 3 layouts
        from airflow.sdk.log import redact
    return redact(value, name=name, max_depth=MAX_DEPTH)
