"""The ML Pipelines page in a real headless browser (Debian's chromium through Selenium).

Logs in through Airflow's own login page, then checks that the page renders the pipelines, that
the charts draw a line, points and the threshold for each metric, that the records and the
registry show, and that links lead to the DAG in Airflow, both on the page itself and inside the
Airflow UI, where the page is the "ML Pipelines" entry of the navigation (an iframe).

Then picks two runs in the records table (one by mouse, one by keyboard), opens the compare view
and checks that it shows, per stage, each run's status, the config keys the second run changed,
and the metric deltas (B - A) the API computes.

Skipped where chromium or chromedriver is missing (``apt-get install chromium chromium-driver``),
except under ``CI=true``. Screenshots go to the session's temporary directory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow_processes import require

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 60


@pytest.fixture(scope="module")
def browser(ui_server) -> Iterator[object]:
    require(
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
        f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)",
    )
    require(_has_selenium(), "selenium is not installed (pip install -e '.[dev]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mlpipe-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _has_selenium() -> bool:
    import importlib.util

    return importlib.util.find_spec("selenium") is not None


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.25).until(condition, f"timed out waiting for {what}")


def css(root, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return root.find_elements(By.CSS_SELECTOR, selector)


def page_loaded(driver) -> bool:
    return css(driver, "body[data-loaded='true']") != [] and css(driver, "#records table tbody tr") != []


def log_in(driver, ui_server, next_path: str) -> None:
    """Through Airflow's login page, as a person would: it sends us back to ``next_path``."""
    driver.delete_all_cookies()
    driver.get(f"{ui_server.base_url}{next_path}")
    wait(
        driver, lambda d: "/auth/login" in d.current_url and css(d, "input[name=username]"), "the login page"
    )
    css(driver, "input[name=username]")[0].send_keys("admin")
    css(driver, "input[name=password]")[0].send_keys(ui_server.password("admin"))
    css(driver, "button[type=submit]")[0].click()
    wait(driver, lambda d: d.current_url.startswith(f"{ui_server.base_url}{next_path}"), next_path)


def test_page_renders_pipelines_charts_records_and_registry(browser, ui_server, tmp_path_factory):
    driver = browser
    log_in(driver, ui_server, "/mlpipe/")
    wait(driver, page_loaded, "the page to load its data")
    shot = tmp_path_factory.getbasetemp() / "mlpipe-page.png"
    driver.save_screenshot(str(shot))

    rows = {row.get_attribute("data-pipeline"): row for row in css(driver, "#pipelines tbody tr")}
    # every loader file's pipelines, the broken spec's placeholder too
    assert set(rows) == {
        "recommender_training",
        "user_engagement_features",
        "ranking_features",
        "deep_nesting",
    }
    assert "invalid spec" in rows["deep_nesting"].text
    cells = [cell.text for cell in css(rows["recommender_training"], "td")]
    assert (
        cells[1:6] == ["3.2.1", cells[2], "dev", "0 3 * * *", "recommendations-team"] and len(cells[2]) == 12
    )
    assert "failed" in cells[6] and "0/5 stages" in cells[7]
    assert "✗ extract" in cells[7]

    summary = css(driver, "#summary")[0].text
    assert "recommender_training" in summary and "v3.2.1" in summary
    assert "recall@10 ≥ 0.15" in summary and "recsys-alerts@example.com" in summary

    # A chart per quality metric: a line through both successful runs, their points, the threshold.
    charts = {svg.get_attribute("data-metric"): svg for svg in css(driver, "svg.chart")}
    assert {"recall@10", "ndcg@10", "coverage"} <= set(charts)
    recall = charts["recall@10"]
    line = css(recall, "path.metric-line")[0].get_attribute("d")
    assert line.startswith("M") and line.count("L") == 1  # two runs with metrics
    assert len(css(recall, "circle.point")) == 2
    assert css(recall, "path.threshold") and css(recall, "path.baseline")
    assert "threshold 0.15" in recall.text
    assert recall.size["width"] > 200 and recall.size["height"] > 100
    assert not css(charts["coverage"], "path.threshold")  # coverage has no threshold

    records = css(driver, "#records tbody tr")
    assert [r.get_attribute("data-run-id") for r in records] == [
        ui_server.runs["failed"],
        ui_server.runs["second"],
        ui_server.runs["first"],
    ]
    assert "✗ extract" in records[0].text and "✓ register" in records[1].text
    assert "manual" in records[1].text and "via test" in records[1].text

    # The reference spec's sweep of train: the newest swept run's variants, the winner marked.
    entries = ui_server.api().get("/mlpipe/api/pipelines/recommender_training/records")["records"]
    swept = next(entry for entry in entries if entry["record"] and entry["record"]["sweeps"])
    assert swept["run_id"] == ui_server.runs["second"]  # its trigger replaced the grid, factors 16
    sweep = swept["record"]["sweeps"]["train"]
    table = css(driver, "#sweeps section.sweep[data-stage='train']")[0]
    assert f"{len(sweep['variants'])} variants in run {swept['run_id']}" in table.text
    rows = css(table, "tbody tr")
    assert len(rows) == len(sweep["variants"]) == 2  # the trigger's grid: regularization 10 or 20
    assert [row.get_attribute("data-index") for row in css(table, "tbody tr.selected")] == [
        str(sweep["selected"])
    ]
    assert "★ selected" in rows[sweep["selected"]].text

    registry = {m.get_attribute("data-uri"): m for m in css(driver, ".registry-model")}
    model = registry[f"file://{ui_server.registry}/recommender_training"]
    versions = [row.text.split()[0] for row in css(model, "tbody tr")]
    assert versions == ["v2", "v1"]


def test_links_lead_to_the_dag_and_the_run_in_airflow(browser, ui_server):
    driver = browser
    log_in(driver, ui_server, "/mlpipe/")
    wait(driver, page_loaded, "the page")
    run_link = css(driver, f"#records tr[data-run-id='{ui_server.runs['second']}'] a.airflow-link")[0]
    assert run_link.get_attribute("href").startswith(f"{ui_server.base_url}/dags/recommender_training/runs/")

    css(driver, "#pipelines tr[data-pipeline='user_engagement_features'] a.pipeline-link")[0].click()
    wait(
        driver, lambda d: "user_engagement_features" in css(d, "#summary h2")[0].text, "the selected pipeline"
    )
    wait(driver, lambda d: css(d, f"#records tr[data-run-id='{ui_server.runs['features']}']"), "its records")

    dag_link = css(driver, "#summary a.airflow-link")[0]
    assert dag_link.get_attribute("href") == f"{ui_server.base_url}/dags/user_engagement_features"
    dag_link.click()
    wait(
        driver,
        lambda d: d.current_url == f"{ui_server.base_url}/dags/user_engagement_features",
        "the DAG page",
    )
    wait(driver, lambda d: "user_engagement_features" in d.find_element("tag name", "body").text, "the DAG")


def test_page_inside_the_airflow_ui_navigates_the_ui(browser, ui_server, tmp_path_factory):
    driver = browser
    log_in(driver, ui_server, "/")
    nav = wait(driver, lambda d: css(d, "a[href$='/plugin/mlpipe']"), "the ML Pipelines navigation entry")
    nav[0].click()
    frame = wait(driver, lambda d: css(d, "iframe[title='ML Pipelines']"), "the embedded page")[0]
    driver.switch_to.frame(frame)
    try:
        wait(driver, page_loaded, "the page inside the UI")
        driver.switch_to.default_content()
        driver.save_screenshot(str(tmp_path_factory.getbasetemp() / "mlpipe-in-airflow-ui.png"))
        driver.switch_to.frame(frame)
        css(driver, "#pipelines tr[data-pipeline='recommender_training'] a.airflow-link")[0].click()
    finally:
        driver.switch_to.default_content()
    # The Airflow UI itself moves to the DAG (no second Airflow inside the frame).
    wait(driver, lambda d: d.current_url == f"{ui_server.base_url}/dags/recommender_training", "the DAG page")
    wait(driver, lambda d: not css(d, "iframe[title='ML Pipelines']"), "the frame to go away")
    wait(driver, lambda d: "recommender_training" in d.find_element("tag name", "body").text, "the DAG")


def test_two_picked_runs_are_compared_stage_by_stage(browser, ui_server, tmp_path_factory):
    from selenium.webdriver.common.keys import Keys

    driver = browser
    runs = ui_server.runs
    log_in(driver, ui_server, "/mlpipe/")
    wait(driver, page_loaded, "the page")

    # Looked up each time: the page's periodic refresh redraws the table (the picks survive it).
    def pick(label: str):
        return css(driver, f"#records tr[data-run-id='{runs[label]}'] input.pick-run")[0]

    def compare_button():
        return css(driver, "#compare-runs")[0]

    assert not compare_button().is_enabled()
    pick("first").click()
    assert not compare_button().is_enabled()  # one run is not a comparison
    pick("second").send_keys(Keys.SPACE)  # the keyboard ticks a box too
    wait(driver, lambda d: compare_button().is_enabled(), "Compare to be enabled with two runs")
    pick("failed").click()
    assert not compare_button().is_enabled()  # three runs are not one comparison
    assert "exactly two" in css(driver, "#compare-hint")[0].text
    pick("failed").send_keys(Keys.SPACE)
    wait(driver, lambda d: compare_button().is_enabled(), "Compare to be enabled again")
    compare_button().send_keys(Keys.ENTER)

    section = wait(driver, lambda d: css(d, "#compare[data-loaded='true']"), "the comparison")[0]
    driver.save_screenshot(str(tmp_path_factory.getbasetemp() / "mlpipe-compare.png"))
    assert driver.switch_to.active_element.get_attribute("id") == "compare-title"  # focus moves to it
    # The older run is A, the newer B.
    assert runs["first"] in css(section, "dd[data-run='A']")[0].text
    assert runs["second"] in css(section, "dd[data-run='B']")[0].text

    api = ui_server.api()
    records = api.get("/mlpipe/api/pipelines/recommender_training/records")["records"]
    by_run = {entry["run_id"]: entry["record"] for entry in records}
    first, second = by_run[runs["first"]], by_run[runs["second"]]

    stages = {block.get_attribute("data-stage"): block for block in css(section, ".compare-stage")}
    assert list(stages) == ["extract", "transform_features", "train", "evaluate", "register"]
    for name, block in stages.items():
        expected = ["cached" if name in record["stages_cached"] else "computed" for record in (first, second)]
        assert [badge.text for badge in css(block, "h4 .status .badge")] == expected

    # The config keys the second run's overrides changed, with both values.
    train = stages["train"]
    factors = [cell.text for cell in css(train, "tr[data-key='factors'] td")]
    assert factors == ["factors", str(first["configs"]["train"]["factors"]), "16"]
    epochs = [cell.text for cell in css(train, "tr[data-key='epochs'] td")]
    assert epochs == ["epochs", str(first["configs"]["train"]["epochs"]), "10"]
    assert "differs" in css(train, "li[data-artifact='model']")[0].text
    # The records table marks the stages a run reused from the cache.
    second_row = css(driver, f"#records tr[data-run-id='{runs['second']}']")[0].text
    assert second["stages_cached"], "the second run's features have the first's inputs: reused"
    for name in second["stages_cached"]:
        assert f"↺ {name}" in second_row and f"✓ {name}" not in second_row

    # recall@10's delta, B - A, signed and highlighted.
    recall_a = first["outputs"]["evaluate"]["metrics"]["recall@10"]
    recall_b = second["outputs"]["evaluate"]["metrics"]["recall@10"]
    delta = css(stages["evaluate"], "tr[data-metric='recall@10'] .delta")[0]
    assert float(delta.get_attribute("data-delta")) == pytest.approx(recall_b - recall_a)
    if recall_b != recall_a:
        sign, direction = ("+", "up") if recall_b > recall_a else ("\u2212", "down")
        assert delta.text.startswith(sign) and direction in delta.get_attribute("class").split()
    else:
        assert delta.text.startswith("±0")

    # Escape closes it and gives the focus back to Compare.
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(driver, lambda d: not css(d, "#compare")[0].is_displayed(), "the comparison to close")
    assert driver.switch_to.active_element.get_attribute("id") == "compare-runs"
