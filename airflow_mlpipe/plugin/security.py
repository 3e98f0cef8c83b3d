"""Authentication and authorization for the plugin, delegated to Airflow's auth manager.

The plugin's routes authenticate exactly as Airflow's REST API does: they call Airflow's own
``get_user`` dependency, which accepts a JWT in the ``Authorization: Bearer`` header or, from
the UI, in the ``_token`` session cookie, and which answers 401 without a credential and 403
with an invalid one. Authorization then asks the configured auth manager, per DAG, for the
same permissions the REST API requires for the same data: reading the DAG for a pipeline's
summary, and its runs and XComs for execution records.

Airflow's API modules are imported when a request arrives, not when the plugin is loaded:
every Airflow process loads plugins, and only the api-server needs these.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="A JWT from Airflow's POST /auth/token")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

#: What reading a pipeline's execution records requires: its runs and the record's XCom.
RECORD_ENTITIES = ("RUN", "XCOM")


async def current_user(request: Request, credentials: BearerCredentials) -> BaseUser:
    """The authenticated user, through Airflow's REST API authentication (401/403 otherwise)."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, credentials)


async def session_user(request: Request) -> BaseUser | None:
    """The authenticated user, or None (for the page, which sends visitors to the login page)."""
    try:
        return await current_user(request, await _bearer(request))
    except HTTPException:
        return None


def readable_dag_ids(user: BaseUser) -> set[str]:
    """The DAG ids ``user`` may read, as the auth manager says (what ``GET /api/v2/dags`` lists)."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


def can_read(user: BaseUser, dag_id: str, entities: Iterable[str] = ()) -> bool:
    """Whether ``user`` may read the DAG ``dag_id`` and each of its ``entities`` (``RUN``, ``XCOM``...)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.models.dag import DagModel

    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
    requests: list[Any] = [{"method": "GET", "details": details}]
    requests += [
        {"method": "GET", "access_entity": DagAccessEntity[entity], "details": details} for entity in entities
    ]
    return get_auth_manager().batch_is_authorized_dag(requests, user=user)


def require_read(user: BaseUser, dag_id: str, entities: Iterable[str] = ()) -> None:
    """Raise 403, like the REST API, unless ``user`` may read ``dag_id`` and ``entities``."""
    if not can_read(user, dag_id, entities):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")


def login_url(next_url: str) -> str:
    """The auth manager's login page, returning to ``next_url`` afterwards."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)
