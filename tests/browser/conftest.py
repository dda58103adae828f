"""Fixtures of the browser tests: one twin for the whole folder, headless Chromium profiles, Node with `ws`."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stickyws.localproc import pid_alive
from stickyws.settings import Settings
from stickyws.twin.browser import allow_page_origins
from stickyws.twin.cluster import TwinCluster
from tests.e2e.support import require_binaries

NODE_DIR = Path(__file__).parent / "node"
#: Short drain and delay so a deregistration takes a few seconds.
TWIN_SETTINGS: dict[str, Any] = {
    "deregistration_delay_s": 4,
    "drain_window_s": 1,
    "shutdown_timeout_s": 2,
    "stop_timeout_s": 4,
    "heartbeat_interval_s": 0.5,
    "heartbeat_ttl_s": 3,
    "reconnect_cap_s": 2,
}
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@pytest.fixture(scope="package")
def twin() -> Iterator[TwinCluster]:
    """Redis, three reference servers and HAProxy, shared by every test of this folder; its own page
    origins are allowed. Proves at the end that none of its processes is left."""
    require_binaries()
    cluster = TwinCluster(Settings().with_overrides(TWIN_SETTINGS), servers=3, time_scale=0.05)
    allow_page_origins(cluster)
    cluster.start()
    try:
        yield cluster
    finally:
        pids = cluster.pids()
        cluster.stop()
        assert [pid for pid in pids if pid_alive(pid)] == []


@pytest.fixture(scope="package")
def node_modules() -> Path:
    """tests/browser/node/node_modules with the pinned `ws` (installed with `npm ci` when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail(
            "node and npm are needed for the client's Node tests: install Node.js 20 (apt-get install nodejs npm)"
        )
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True, timeout=120
        )
    return NODE_DIR / "node_modules"


@pytest.fixture(scope="package")
def chromium_binaries() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver (scripts/install-system-deps.sh installs them)."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail("chromium and chromedriver are needed: run scripts/install-system-deps.sh (Debian packages)")
    return browser, driver


@pytest.fixture
def new_profile(chromium_binaries: tuple[str, str]) -> Iterator[Callable[..., Any]]:
    """Factory: a headless Chromium with a fresh, temporary profile (own cookie jar); pass
    ``third_party_cookies=True`` to allow cross-site cookies. All are quit after the test, and their
    chromedriver processes are proven gone."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_binaries
    drivers: list[Any] = []
    services: list[Any] = []
    folders: list[str] = []

    def make(*, third_party_cookies: bool = False) -> Any:
        folder = tempfile.mkdtemp(prefix="stickyws-chromium-")
        folders.append(folder)
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        if third_party_cookies:  # the "Allow third-party cookies" setting (blocked by default here)
            options.add_experimental_option("prefs", {"profile.cookie_controls_mode": 0})
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={folder}"):
            options.add_argument(flag)
        service = Service(driver_path)
        services.append(service)
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_script_timeout(30)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.quit()
    for service in services:
        proc = service.process
        if proc is not None:
            proc.wait(timeout=10)
            assert proc.poll() is not None
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
