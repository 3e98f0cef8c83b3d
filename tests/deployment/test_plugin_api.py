"""The ML Pipelines plugin in a real api-server: registration, authentication, authorization, data.

Against ``ui_server`` (conftest.py): real runs and records, the repo's ``plugins/`` folder and the
package's entry point both present, an auth manager with restricted users, two loader files
(``dags/`` and ``dags/ranking/``) and a hostile deeply nested spec. The api-server knows the
pipelines from the serialized DAGs ``airflow dags reserialize`` stored.
"""

from __future__ import annotations

import json
import runpy
import subprocess
from urllib.parse import urlencode

import httpx
import pytest
from airflow_processes import AIRFLOW, REPO

from airflow_mlpipe.spec import load_folder

API = "/mlpipe/api"
PIPELINES = {"recommender_training", "user_engagement_features", "ranking_features", "deep_nesting"}
DATA_ROUTES = [
    f"{API}/pipelines",
    f"{API}/pipelines/recommender_training/records",
    f"{API}/pipelines/recommender_training/registry",
    f"{API}/pipelines/recommender_training/compare?a=x&b=y",
]


def test_plugin_is_registered_once_with_its_app_and_navigation_entry(ui_server):
    listed = subprocess.run(
        [AIRFLOW, "plugins", "--output", "json"],
        env=ui_server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    plugins = [p for p in json.loads(listed.stdout) if p["name"] == "mlpipe"]
    assert len(plugins) == 1, listed.stdout  # the plugins/ file defers to the entry point
    assert "airflow_mlpipe.plugin:MLPipePlugin" in plugins[0]["source"]

    api = ui_server.api()
    [plugin] = [p for p in api.get("/api/v2/plugins")["plugins"] if p["name"] == "mlpipe"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/mlpipe"
    [view] = plugin["external_views"]
    assert view["href"] == "/mlpipe/" and view["url_route"] == "mlpipe" and view["destination"] == "nav"
    assert api.get("/api/v2/plugins/importErrors")["import_errors"] == []


def test_plugins_folder_file_defines_the_plugin_when_no_entry_point_does(monkeypatch: pytest.MonkeyPatch):
    import importlib.metadata

    module = runpy.run_path(str(REPO / "plugins" / "mlpipe_plugin.py"))
    assert "MLPipePlugin" not in module  # installed: the entry point provides it

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])
    module = runpy.run_path(str(REPO / "plugins" / "mlpipe_plugin.py"))
    plugin = module["MLPipePlugin"]
    assert plugin.name == "mlpipe" and plugin.fastapi_apps[0]["url_prefix"] == "/mlpipe"


@pytest.mark.parametrize("route", DATA_ROUTES)
def test_no_data_without_a_valid_token_or_session(ui_server, route):
    assert httpx.get(ui_server.base_url + route).status_code == 401
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert httpx.get(ui_server.base_url + route, headers=bad).status_code == 403
    assert httpx.get(ui_server.base_url + route, cookies={"_token": "not-a-jwt"}).status_code == 403
    # The same answers as the REST API gives.
    assert httpx.get(ui_server.base_url + "/api/v2/dags").status_code == 401
    assert httpx.get(ui_server.base_url + "/api/v2/dags", headers=bad).status_code == 403


def test_page_sends_visitors_without_a_session_to_the_login_page(ui_server):
    response = httpx.get(f"{ui_server.base_url}/mlpipe/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/auth/login?next=")
    # Static files carry no data and need no session.
    assert httpx.get(f"{ui_server.base_url}/mlpipe/static/mlpipe.js").status_code == 200

    token = ui_server.api().token
    page = httpx.get(f"{ui_server.base_url}/mlpipe/", cookies={"_token": token})
    assert page.status_code == 200 and "mlpipe.js" in page.text


def test_session_cookie_is_accepted_like_the_ui_does(ui_server):
    token = ui_server.api("viewer").token
    response = httpx.get(f"{ui_server.base_url}{API}/pipelines", cookies={"_token": token})
    assert response.status_code == 200
    assert {p["name"] for p in response.json()["pipelines"]} == PIPELINES


def test_pipelines_list_spec_summaries_with_latest_records(ui_server):
    data = ui_server.api("viewer").get(f"{API}/pipelines")
    specs = load_folder(ui_server.dags / "pipelines", "dev")
    assert data["environment"] == "dev" and data["total_entries"] == len(PIPELINES)
    assert data["loader_files"] == ["mlpipe_loader.py", "ranking/mlpipe_loader.py"]
    by_name = {p["name"]: p for p in data["pipelines"]}

    recommender = by_name["recommender_training"]
    spec = specs.pipelines["recommender_training"]
    assert recommender["valid"] is True
    assert recommender["version"] == "3.2.1"
    assert recommender["config_version"] == spec.config_version
    assert recommender["environment"] == "dev"
    assert recommender["schedule"] == "0 3 * * *"
    assert recommender["owners"] == ["recommendations-team"]
    assert recommender["dag_path"] == "dags/recommender_training"
    assert recommender["thresholds"] == {"recall@10": 0.15, "ndcg@10": 0.12}
    assert recommender["loader_file"] == "mlpipe_loader.py" and recommender["is_paused"] is not None
    # the dev overlay's registry, not the base spec's
    [location] = recommender["registries"]
    assert location["uri"] == f"file://{ui_server.registry}/recommender_training"
    assert (location["stage"], location["alias"], location["conn_id"]) == ("register", "production", None)
    assert [s["name"] for s in recommender["stages"]] == [
        "extract",
        "transform_features",
        "train",
        "evaluate",
        "register",
    ]
    latest = recommender["latest_record"]
    assert latest["run_id"] == ui_server.runs["failed"]
    assert latest["state"] == "failed" and latest["trigger_source"] == "test"
    assert latest["record"]["stages_failed"] == ["extract"]

    features = by_name["user_engagement_features"]
    assert features["schedule"] == "@daily"
    assert features["latest_record"]["run_id"] == ui_server.runs["features"]
    assert features["latest_record"]["record"]["stages_completed"] == ["extract", "engagement"]


def test_records_newest_first_with_their_runs(ui_server):
    api = ui_server.api("viewer")
    data = api.get(f"{API}/pipelines/recommender_training/records")
    runs = ui_server.runs
    assert data["total_entries"] == 3
    assert [r["run_id"] for r in data["records"]] == [runs["failed"], runs["second"], runs["first"]]
    failed, second, first = data["records"]
    assert failed["state"] == "failed" and failed["record"]["stages_skipped"] == [
        "transform_features",
        "train",
        "evaluate",
        "register",
    ]
    assert "invalid config for stage 'extract'" in failed["record"]["errors"]["extract"]
    for entry in (first, second):
        assert entry["state"] == "success"
        assert entry["run_type"] == "manual" and entry["trigger_source"] == "test"
        assert entry["triggered_by"] == "manual"
        assert entry["duration_seconds"] > 0
        assert entry["record"]["execution_id"] == entry["run_id"]
        assert entry["record"]["triggered_by"] == "manual"
        assert "recall@10" in entry["record"]["outputs"]["evaluate"]["metrics"]
    assert second["record"]["overrides"]["train"] == {
        "sweep": {"grid": {"factors": [16], "regularization": [10, 20]}},
        "epochs": 10,
    }
    # The same record as the REST API's XCom entry.
    assert second["record"] == api.xcom("recommender_training", runs["second"], "execution_record")

    page = api.get(f"{API}/pipelines/recommender_training/records", limit=1, offset=1)
    assert [r["run_id"] for r in page["records"]] == [runs["second"]] and page["total_entries"] == 3
    assert api.status(f"{API}/pipelines/no_such_pipeline/records") == 404


OUT_OF_BOUNDS = ["limit=0", "limit=501", "offset=-1", "offset=1000001", "offset=" + "9" * 25]


@pytest.mark.parametrize("query", OUT_OF_BOUNDS)
def test_paging_out_of_bounds_is_a_422_not_a_server_error(ui_server, query):
    api = ui_server.api("viewer")
    assert api.status(f"{API}/pipelines/recommender_training/records?{query}") == 422
    assert api.status(f"{API}/pipelines/recommender_training/records?limit=500&offset=1000000") == 200


def test_registry_versions_and_production_alias(ui_server):
    data = ui_server.api("viewer").get(f"{API}/pipelines/recommender_training/registry")
    models = {m["uri"]: m for m in data["models"]}
    model = models[f"file://{ui_server.registry}/recommender_training"]
    assert model["error"] is None
    assert [v["version"] for v in model["versions"]] == [2, 1]
    assert [v["run_id"] for v in model["versions"]] == [ui_server.runs["second"], ui_server.runs["first"]]
    assert "recall@10" in model["versions"][0]["metrics"]
    alias_file = ui_server.registry / "recommender_training" / "aliases" / "production.json"
    expected = json.loads(alias_file.read_text())["version"] if alias_file.exists() else None
    assert model["alias"] == "production" and model["alias_version"] == expected
    # Only what the current spec names: not the base spec's registry the overlay replaced.
    assert list(models) == [f"file://{ui_server.registry}/recommender_training"]
    assert ui_server.api("viewer").get(f"{API}/pipelines/user_engagement_features/registry")["models"] == []


def test_a_second_loader_files_pipelines_are_listed_with_working_routes(ui_server):
    api = ui_server.api("viewer")
    by_name = {p["name"]: p for p in api.get(f"{API}/pipelines")["pipelines"]}
    ranking = by_name["ranking_features"]
    assert ranking["valid"] is True and ranking["loader_file"] == "ranking/mlpipe_loader.py"
    assert (ranking["version"], ranking["schedule"]) == ("1.0.0", "@daily")
    assert ranking["owners"] == ["ranking-team"]
    assert [s["name"] for s in ranking["stages"]] == ["extract", "engagement"]
    assert ranking["latest_run"] is None and ranking["latest_record"] is None
    records = api.get(f"{API}/pipelines/ranking_features/records")
    assert records == {"pipeline": "ranking_features", "records": [], "total_entries": 0}
    registry = api.get(f"{API}/pipelines/ranking_features/registry")
    assert registry == {"pipeline": "ranking_features", "models": []}


def test_a_deeply_nested_spec_does_not_take_the_api_server_down(ui_server):
    spec = ui_server.dags / "ranking" / "pipelines" / "deep_nesting.yaml"
    assert spec.read_text().count("- ") >= 30_000  # the hostile file is in the dags folder
    api = ui_server.api("viewer")
    pipelines = api.get(f"{API}/pipelines")["pipelines"]
    ui_server.processes.check_alive()  # the api-server process is still the one we started
    assert api.get("/api/v2/version")["version"]
    deep = [p for p in pipelines if p["name"] == "deep_nesting"]
    if deep:  # a placeholder: shown as invalid, with the reason
        [entry] = deep
        assert entry["valid"] is False and entry["stages"] == []
        assert "deep_nesting.yaml" in entry["problems"][0] and "nest" in entry["problems"][0]
        assert api.get(f"{API}/pipelines/deep_nesting/records")["total_entries"] == 0
    # the rest of its folder is unaffected
    assert "ranking_features" in {p["name"] for p in pipelines}


def _compare_path(pipeline: str, a: str, b: str) -> str:
    return f"{API}/pipelines/{pipeline}/compare?{urlencode({'a': a, 'b': b})}"


def test_compare_names_the_changed_config_and_the_metric_deltas_of_two_real_runs(ui_server):
    api = ui_server.api("viewer")
    runs = ui_server.runs
    data = api.get(f"{API}/pipelines/recommender_training/compare", a=runs["first"], b=runs["second"])
    records = {
        r["run_id"]: r["record"] for r in api.get(f"{API}/pipelines/recommender_training/records")["records"]
    }
    first, second = records[runs["first"]], records[runs["second"]]

    assert data["pipeline"] == "recommender_training" and data["runs"] == [runs["first"], runs["second"]]
    assert (data["a"]["run_id"], data["b"]["run_id"]) == (runs["first"], runs["second"])
    assert data["a"]["record"] == first and data["b"]["record"] == second  # as the records route has them
    assert data["same"] is False
    stages = {stage["stage"]: stage for stage in data["stages"]}
    assert list(stages) == ["extract", "transform_features", "train", "evaluate", "register"]

    # The sweeps' winners: the second run's trigger replaced the grid (conftest.py) and set epochs.
    train = stages["train"]
    assert train["status"] == ["computed", "computed"]
    changed = {difference["key"]: (difference["a"], difference["b"]) for difference in train["config"]}
    config_a, config_b = first["configs"]["train"], second["configs"]["train"]
    assert changed == {
        key: (config_a[key], config_b[key]) for key in config_a if config_a[key] != config_b[key]
    }
    # dags/pipelines/recommender_training.yaml: its sweep's factors, its epochs
    assert changed["factors"][1] == 16 and changed["factors"][0] in (64, 128)
    assert changed["epochs"] == (50, 10)
    for stage in data["stages"]:  # a cached stage in B says so
        cached = stage["stage"] in second["stages_cached"]
        assert stage["status"][1] == ("cached" if cached else "computed")

    evaluate = {metric["name"]: metric for metric in stages["evaluate"]["metrics"]}
    recall_a = first["outputs"]["evaluate"]["metrics"]["recall@10"]
    recall_b = second["outputs"]["evaluate"]["metrics"]["recall@10"]
    assert evaluate["recall@10"]["a"] == recall_a and evaluate["recall@10"]["b"] == recall_b
    assert evaluate["recall@10"]["delta"] == pytest.approx(recall_b - recall_a)
    # A different model: the trained artifact's content differs.
    [model] = [artifact for artifact in train["artifacts"] if artifact["name"] == "model"]
    assert model["a"] and model["b"] and model["same"] is False


def test_compare_against_a_failed_run_and_the_errors_of_a_bad_request(ui_server):
    api = ui_server.api("viewer")
    runs = ui_server.runs
    data = api.get(f"{API}/pipelines/recommender_training/compare", a=runs["failed"], b=runs["first"])
    statuses = {stage["stage"]: stage["status"] for stage in data["stages"]}
    assert statuses["extract"] == ["failed", "computed"]
    assert statuses["register"] == ["skipped", "computed"]
    assert "invalid config for stage 'extract'" in data["a"]["record"]["errors"]["extract"]

    response = api.client.get(_compare_path("recommender_training", runs["first"], "manual__no_such_run"))
    assert response.status_code == 404
    assert (
        "'manual__no_such_run'" in response.json()["detail"]
        and runs["first"] not in response.json()["detail"]
    )
    # A run of another pipeline is not a run of this one.
    other = _compare_path("recommender_training", runs["first"], runs["features"])
    assert api.status(other) == 404
    assert api.status(_compare_path("no_such_pipeline", runs["first"], runs["second"])) == 404
    assert api.status(f"{API}/pipelines/recommender_training/compare?a={runs['first']}") == 422
    assert api.status(_compare_path("recommender_training", runs["first"], "x" * 251)) == 422


def test_compare_needs_read_access_to_the_runs_and_xcoms(ui_server):
    runs = ui_server.runs
    path = _compare_path("recommender_training", runs["first"], runs["second"])
    assert ui_server.api("analyst").status(path) == 403  # may not read the DAG
    assert ui_server.api("auditor").status(path) == 403  # may read the runs, not the XComs
    assert ui_server.api("viewer").status(path) == 200


def test_authorization_is_per_dag_and_agrees_with_the_rest_api(ui_server):
    analyst = ui_server.api("analyst")
    names = [p["name"] for p in analyst.get(f"{API}/pipelines")["pipelines"]]
    assert names == ["user_engagement_features"]
    assert analyst.status(f"{API}/pipelines/recommender_training/records") == 403
    assert analyst.status(f"{API}/pipelines/recommender_training/registry") == 403
    assert analyst.status("/api/v2/dags/recommender_training") == 403
    assert analyst.status(f"{API}/pipelines/user_engagement_features/records") == 200

    auditor = ui_server.api("auditor")  # may read DAGs and runs, not XComs
    by_name = {p["name"]: p for p in auditor.get(f"{API}/pipelines")["pipelines"]}
    assert set(by_name) == PIPELINES
    assert by_name["recommender_training"]["latest_record"] is None
    assert auditor.status(f"{API}/pipelines/recommender_training/records") == 403
    run = ui_server.runs["first"]
    assert (
        auditor.status(f"{auditor.task_path('recommender_training', run, 'execution_record')}/xcomEntries")
        == 403
    )
