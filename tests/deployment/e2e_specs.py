"""The specs the session's Celery deployment (``e2e_cluster`` in ``conftest.py``) adds to ``dags/``.

``test_e2e_celery.py`` runs the reference pipeline and the first three; ``test_assets_approval.py``
the pipelines triggered by data and the approval gates.
"""

from __future__ import annotations

ENVIRONMENT = "e2e"
STAGES = ["extract", "transform_features", "train", "evaluate", "register"]

OVERLAY = """\
# The deployment tests' environment: manual runs only, so unpausing it starts no scheduled run;
# train on the GPU workers' queue, once (these tests follow one train task to its worker and
# through the cache; the reference spec's sweep runs in the UI server's runs and test_sweep_runs);
# the registry on S3 (a trigger may not change a registry).
metadata:
  schedule: null
stages:
  - name: train
    queue: {gpu_queue}
    sweep: null
  - name: register
    config: {{registry: "{registry}", conn_id: {conn_id}}}
"""
GPU_QUEUE = "gpu"
#: The cluster's workers: each has its own temporary folder and copy of the dags folder.
WORKERS = {"celery-worker": "default", "gpu-worker": GPU_QUEUE}
#: tests/conftest.py's moto server; its connection reaches the cluster's processes through env.
S3_CONN_ID = "mlpipe_s3"
#: A user who may trigger DAGs (SimpleAuthManager's "user" role) but, like anyone without write
#: access to the spec folder, not author them.
TRIGGERER = "triggerer"

FAILING = """\
name: failing_pipeline
version: 1.0.0
metadata:
  owner: e2e-team
  description: Fails on purpose, its query reads a table that does not exist
  schedule: null
  notify_on_failure: ["oncall@example.com", "owner@example.com"]
stages:
  - name: extract
    component: data.extract.database
    config:
      query: "SELECT * FROM table_that_does_not_exist"
      conn_id: analytics_db
    retries: 0
  - name: features
    component: features.user_engagement
    config: {window_days: 7}
    dependencies: [extract]
"""

MINUTELY = """\
name: minutely_events
version: 1.0.0
metadata:
  owner: e2e-team
  description: A small extract every minute
  schedule: "* * * * *"
stages:
  - name: extract
    component: data.extract.database
    config:
      query: "SELECT user_id, item_id FROM user_events LIMIT 100"
      conn_id: analytics_db
    retries: 0
"""


# --- pipelines triggered by data (test_assets_approval.py) --------------------------------------

_SMALL_EXTRACT = """\
  - name: extract
    component: data.extract.database
    config:
      query: "SELECT user_id, item_id FROM user_events LIMIT 50"
      conn_id: analytics_db
    retries: 0
"""


def _small(name: str, description: str, schedule: str, stages: str = "") -> str:
    return (
        f"name: {name}\nversion: 1.0.0\nmetadata:\n  owner: e2e-team\n  description: {description}\n"
        f"  schedule: {schedule}\nstages:\n{_SMALL_EXTRACT}{stages}"
    )


ASSET_SOURCE = _small("asset_source", "A small extract that other pipelines run after", "null")
AFTER_SOURCE = _small(
    "after_source", "Runs after each successful run of asset_source", "{after: [asset_source]}"
)
#: External assets, as another system would announce them through the REST API.
ANY_ASSETS = ("s3://mlpipe-e2e/events/a", "s3://mlpipe-e2e/events/b")
ALL_ASSETS = ("s3://mlpipe-e2e/events/c", "s3://mlpipe-e2e/events/d")
ON_ANY_ASSET = _small(
    "on_any_asset", "Runs when either asset is updated", f"{{assets: [{', '.join(ANY_ASSETS)}], any: true}}"
)
ON_ALL_ASSETS = _small(
    "on_all_assets", "Runs once both assets are updated", f"{{assets: [{', '.join(ALL_ASSETS)}]}}"
)

# --- approval gates (test_assets_approval.py) ----------------------------------------------------

_GATED_STAGES = """\
  - name: publish
    component: data.extract.database
    config:
      query: "SELECT COUNT(*) AS n FROM user_events"
      conn_id: analytics_db
    dependencies: [extract]
    retries: 0
    approval: {{required: true{timeout}}}
  - name: announce
    component: data.extract.database
    config:
      query: "SELECT 1 AS done"
      conn_id: analytics_db
    dependencies: [publish]
    retries: 0
"""
GATED = _small("gated", "Publishes only once a person approves", "null", _GATED_STAGES.format(timeout=""))
GATED_TIMEOUT = _small(
    "gated_timeout",
    "Nobody answers its approval request in time",
    "null",
    _GATED_STAGES.format(timeout=", timeout: 5s"),
)

SPECS_FOR_ASSETS_AND_APPROVALS = {
    "asset_source.yaml": ASSET_SOURCE,
    "after_source.yaml": AFTER_SOURCE,
    "on_any_asset.yaml": ON_ANY_ASSET,
    "on_all_assets.yaml": ON_ALL_ASSETS,
    "gated.yaml": GATED,
    "gated_timeout.yaml": GATED_TIMEOUT,
}
