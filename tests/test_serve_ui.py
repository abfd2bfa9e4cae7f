"""The read-only web UI in a real headless Chromium (Debian's chromium + chromedriver, Selenium).

The registry behind it went through a real continual step on tiny BERT models: an adapter in
production, then ``update`` on drifted data (drift report, new adapter, fusion, promotion), and
a recorded Hub push. The tests read pages as a person would, follow links, and save a
screenshot of every page under ``build/test-artifacts/ui/`` (or ``$TEST_ARTIFACTS/ui``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry import continual
from registry.serve import ServeConfig
from registry.serve.client import Client
from registry.serve.runner import Server
from registry.store import Registry
from registry.trainer import train
from tests.test_continual import BOOKS, FCFG, PETS, TCFG, _write

# A continual step on tiny models plus a browser: about half a minute, so it runs with -m slow
# (make test runs both suites).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "build" / "test-artifacts")) / "ui"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1100",
]


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "no headless browser here: the UI tests need Debian's chromium and chromium-driver "
            "(run `make browser`, which installs them with apt-get)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[test]'")
    return chromium, driver


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory, tiny_base_dir: Path) -> Iterator[Any]:
    """A server with --ui over a registry that has lived through one continual step."""
    _browser_paths()
    root = tmp_path_factory.mktemp("serve-ui")
    books = _write(root / "books", BOOKS, seed=1)
    pets = _write(root / "pets", PETS, seed=3, pos_share=0.85)
    reg = Registry.init(root / "home")
    first = train(reg, "sentiment", books, str(tiny_base_dir), config=TCFG, progress=False)
    reg.set_alias("sentiment", "production", first.version.uid)
    result = continual.update(
        reg,
        "sentiment",
        pets,
        n_permutations=100,
        progress=False,
        train_config=TCFG,
        fuse_config=FCFG,
        members="append",
        tolerance=1.0,
        force=True,  # promote whatever the tiny models score: the pages are under test
    )
    assert result.promoted, result
    production = reg.resolve("sentiment:production")
    reg.record_hub_link(
        production,
        repo_id="someone/sentiment-fusion",
        commit_sha="0123456789abcdef0123456789abcdef01234567",  # a made-up commit
        revision="main",
        direction="push",
    )
    server = Server(reg, ServeConfig(port=0, ui=True, poll_interval=0.2)).start_in_thread()
    yield {"server": server, "registry": reg, "production": production, "first": first.version}
    server.stop()
    reg.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _browser_paths()
    options = Options()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(60)
    yield chrome
    chrome.quit()


def _shot(browser: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _text(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def test_tasks_page_shows_production_and_links_to_it(ui_server: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, production = ui_server["server"], ui_server["production"]
    browser.get(server.url + "/ui")
    _shot(browser, "01-tasks")
    assert browser.title.startswith("Tasks")
    table = _text(browser, "#tasks")
    assert "sentiment" in table and production.ref in table
    assert production.artifact_sha256[:12] in table  # served now, with its sha256
    assert "drift" in table  # the last drift check, linked
    browser.find_element(By.CSS_SELECTOR, "a.production").click()
    assert browser.current_url.endswith(f"/ui/models/{production.uid}")
    assert production.ref in _text(browser, "h1")


def test_task_page_metrics_matrix_forgetting_and_drift(ui_server: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    reg, production, first = ui_server["registry"], ui_server["production"], ui_server["first"]
    browser.get(ui_server["server"].url + "/ui/tasks/sentiment")
    _shot(browser, "02-task")
    assert production.ref in _text(browser, ".production")
    versions = _text(browser, "#versions")
    assert first.ref in versions and production.ref in versions
    # A metric value a person would read: the first adapter's recorded validation accuracy.
    accuracy = next(
        m.value for m in reg.metrics(first) if m.name == "accuracy" and m.split == "validation"
    )
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "td.metric-accuracy")]
    assert f"{accuracy:.4g}" in cells
    # The accuracy matrix is drawn (two production steps) with its numbers; forgetting too.
    matrix_cells = browser.find_elements(By.CSS_SELECTOR, "#matrix svg.matrix text.cell")
    assert len(matrix_cells) >= 4
    assert browser.find_element(By.CSS_SELECTOR, "svg.bars").is_displayed()
    assert _text(browser, ".bwt") not in ("", "–")
    # Drift reports with their statistics; follow one.
    drift = _text(browser, "#drift")
    assert "embedding_mmd" in drift and "p=" in drift
    browser.find_element(By.CSS_SELECTOR, "#drift a").click()
    _shot(browser, "03-drift")
    assert "Drift report #" in _text(browser, "h1")
    tests = _text(browser, "#tests")
    assert "embedding_mmd" in tests and "vocabulary_coverage" in tests
    assert _text(browser, ".decision") == "drift"


def test_model_page_lineage_graph_members_and_hub(ui_server: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    production, first = ui_server["production"], ui_server["first"]
    browser.get(ui_server["server"].url + f"/ui/models/{production.uid}")
    _shot(browser, "04-model")
    assert _text(browser, ".sha256") == production.artifact_sha256
    # The lineage graph is drawn in the page: its nodes are SVG text a person can read.
    nodes = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg.lineage text.node")]
    assert production.ref in nodes and first.ref in nodes
    relations = {t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg.lineage .relation")}
    assert "fused_from" in relations
    hub = browser.find_element(By.CSS_SELECTOR, "a.hub")
    assert hub.text == "someone/sentiment-fusion"
    assert hub.get_attribute("href").endswith(
        "/someone/sentiment-fusion/tree/0123456789abcdef0123456789abcdef01234567"
    )
    # Follow a member link to the first adapter's page, then back to its task.
    browser.find_element(By.LINK_TEXT, first.ref).click()
    _shot(browser, "05-member")
    assert first.ref in _text(browser, "h1")
    assert "validation" in _text(browser, "#metrics")
    browser.find_element(By.CSS_SELECTOR, "#facts a").click()
    assert browser.current_url.endswith("/ui/tasks/sentiment")


def test_unknown_pages_are_readable_errors(ui_server: Any, browser: Any) -> None:
    browser.get(ui_server["server"].url + "/ui/models/nope@7")
    _shot(browser, "06-not-found")
    assert _text(browser, "h1").startswith("404")
    status, _, page = Client(ui_server["server"].url).request("GET", "/ui/tasks/nothing")
    assert status == 404 and b"Hint:" in page
