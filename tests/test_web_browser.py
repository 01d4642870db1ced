"""The web view in a real browser: Debian's Chromium (scripts/system-deps.sh installs it with its
driver), driven by Selenium pointed at /usr/bin/chromium and /usr/bin/chromedriver — nothing
downloads a browser. `compliance serve` runs as a real process on a free port over a copy of the
replayed demo store: dashboard → the worst model → its broken artifact → the failing check → its
ledger entry (the hash must be the chain's own, and `verify` must pass); the per-model review is
downloaded through the browser and its SHA-256 must be the report run's. No console errors (a
CSP violation is one). A screenshot of every page goes to COMPLIANCE_SCREENSHOTS (CI keeps them
as an artifact) or the test's temporary folder.

COMPLIANCE_DEMO_STORE=path/to/compliance.db reuses the store of a `compliance demo` run instead of
replaying the year again. Set COMPLIANCE_TEST_BROWSER=off only on a machine without Chromium; CI never sets it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("COMPLIANCE_CHROMIUM", "/usr/bin/chromium"))
DRIVER = Path(os.environ.get("COMPLIANCE_CHROMEDRIVER", "/usr/bin/chromedriver"))
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.environ.get("COMPLIANCE_TEST_BROWSER") == "off",
                                                   reason="COMPLIANCE_TEST_BROWSER=off (no Chromium on this machine)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(url: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "compliance.cli.main", "--db", url, *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def served(request, tmp_path: Path):
    """A copy of the replayed demo store with a rendered review, served by `compliance serve`.
    COMPLIANCE_DEMO_STORE may name the store of a `compliance demo` run to copy instead of replaying."""
    given = os.environ.get("COMPLIANCE_DEMO_STORE")
    src = given if given else request.getfixturevalue("story_store").removeprefix("sqlite:///")
    db = tmp_path / "demo.db"
    with sqlite3.connect(src) as a, sqlite3.connect(db) as b:
        a.backup(b)
    url = f"sqlite:///{db}"
    status = json.loads(_cli(url, "status", "--quarter", "2026Q3", "--json"))
    worst = next(m for m in status["by_model"] if m["verdict"] == "not fit")
    reports = tmp_path / "reports"
    reports.mkdir()
    review = json.loads(_cli(url, "report", "--quarter", "2026Q3", "--model", worst["model_id"],
                             "--format", "html", "--out", str(reports / f"review-{worst['model_id']}.html"), "--json"))
    verify_before = json.loads(_cli(url, "verify", "--json"))
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "compliance.cli.main", "--db", url, "serve", "--port", str(port),
                             "--reports-dir", str(reports)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/static/web.css", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        yield {"base": base, "url": url, "review": review, "verify": verify_before, "log": tmp_path / "serve.log"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert json.loads(_cli(url, "verify", "--json"))["head"] == verify_before["head"], "serving wrote to the store"


@pytest.fixture
def browser(tmp_path: Path):
    assert CHROMIUM.exists() and DRIVER.exists(), (
        f"{CHROMIUM} / {DRIVER} missing: run scripts/system-deps.sh (Debian packages chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1100",
              "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=opts)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _shots() -> Path:
    d = Path(os.environ.get("COMPLIANCE_SCREENSHOTS", "")) if os.environ.get("COMPLIANCE_SCREENSHOTS") else None
    return d


def _shot(driver, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # the whole page: grow the window to the document's height for the screenshot
    h = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, min(max(int(h), 900), 6000))
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1440, 1100)


def _click(driver, css: str):
    from selenium.webdriver.common.by import By

    els = driver.find_elements(By.CSS_SELECTOR, css)
    assert els, f"nothing matches {css} on {driver.current_url}"
    href = els[0].get_attribute("href")
    driver.execute_script("arguments[0].scrollIntoView()", els[0])
    els[0].click()
    return href


def test_click_through_from_the_dashboard_to_the_ledger(served, browser, tmp_path):
    from selenium.webdriver.common.by import By

    shots = _shots() or tmp_path / "screenshots"
    d, base = browser, served["base"]
    d.get(base + "/?quarter=2026Q3")
    assert "Portfolio" in d.title
    _shot(d, shots, "1-dashboard")
    _click(d, "table a.fig.red[href^='/models/']")  # the worst model's red verdict
    assert "/models/" in d.current_url and "Model " in d.title
    _shot(d, shots, "2-model")
    _click(d, "table a.fig.red[href^='/artifacts/']")  # its broken (or stale) artifact
    assert "/artifacts/" in d.current_url
    _shot(d, shots, "3-artifact")
    _click(d, "table a.fig.red[href^='/checks/']")  # the failing check
    assert "/checks/" in d.current_url
    _shot(d, shots, "4-check")
    shown = d.find_element(By.ID, "entry-hash").text
    seq = int(d.find_element(By.ID, "ledger-entry").text)
    entry = json.loads(urllib.request.urlopen(f"{base}/api/ledger/{seq}").read())["entry"]
    assert shown == entry["hash"] and entry["entity_type"] == "check_run"
    assert served["verify"]["ok"] and served["verify"]["entries"] >= seq  # the chain `verify` recomputed holds this entry
    _click(d, "#ledger-entry")
    assert d.find_element(By.ID, "entry-hash").text == shown
    _shot(d, shots, "5-ledger-entry")
    d.get(base + "/ledger/verify")
    assert "ledger OK" in d.find_element(By.ID, "verify").text
    assert d.find_element(By.ID, "head-hash").text == served["verify"]["head"]  # the web's verify is `compliance verify`
    _shot(d, shots, "6-verify")
    d.get(base + "/ledger")
    assert "ledger OK" in d.find_element(By.ID, "verify").text
    _shot(d, shots, "6-ledger")
    # the review, downloaded through the browser, is byte for byte what the report run recorded
    d.get(base + "/reports")
    _shot(d, shots, "7-reports")
    name = Path(served["review"]["path"]).name
    _click(d, f"a.dl[href$='/{name}']")
    target = d.downloads / name
    for _ in range(100):
        if target.exists() and not list(d.downloads.glob("*.crdownload")):
            break
        time.sleep(0.1)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == served["review"]["sha256"]
    for path in ("/failure-modes?status=open", "/findings"):
        d.get(base + path)
        _shot(d, shots, "8-" + path.strip("/").split("?")[0])
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
