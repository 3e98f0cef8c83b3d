"""An auth manager for the plugin's authorization tests: SimpleAuthManager with per-DAG limits.

* ``analyst`` may only read the DAG ``user_engagement_features`` (nothing of any other DAG);
* ``auditor`` may read every DAG but no DAG's XComs (so no execution records).

Everyone else is as SimpleAuthManager decides by role.
"""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class ScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
        name = user.get_name()
        if name == "analyst" and (details is None or details.id != "user_engagement_features"):
            return False
        if name == "auditor" and access_entity == DagAccessEntity.XCOM:
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
