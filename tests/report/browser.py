"""Headless Chromium for the report tests (and the README screenshot), driven by Selenium.

The browser and its driver are Debian's ``chromium`` and ``chromium-driver`` (``make test``
installs them); both paths are given explicitly, so Selenium Manager never looks for (or
downloads) a driver. Every load records the page's console and its network activity through
Chrome's performance log (CDP ``Network.*`` events), and ``Network.setBlockedURLs`` blocks every
URL other than the page itself, so a request would fail *and* be seen.

``python -m tests.report.browser shot REPORT.html OUT.png [ELEMENT_ID]`` writes a screenshot of a report.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE_LOAD_TIMEOUT_S = 30


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists() and not shutil.which(Path(path).name):
            return f"{path} not found: `make test` installs Debian's {pkg} (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


def start(width: int = 1400, height: int = 1000):
    """A headless Chromium session with console and performance (network) logging."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium") or CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root (CI containers)
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",  # no update checks or field trials: the log holds only the page's traffic
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver") or CHROMEDRIVER
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    driver.set_script_timeout(PAGE_LOAD_TIMEOUT_S)
    return driver


@dataclass
class Load:
    """What one page load did."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)  # Network.requestWillBeSent params, page excluded
    page_seen: bool = False  # the page's own request was logged (so the log works)
    failed: list[dict[str, Any]] = field(default_factory=list)  # Network.loadingFailed params
    console_errors: list[dict[str, Any]] = field(default_factory=list)


def load(driver, path: str | Path) -> Load:
    """Open ``path`` from a file:// URL with every other URL blocked; collect requests and console errors."""
    url = Path(path).resolve().as_uri()
    driver.get_log("performance")  # drop what earlier loads left
    driver.get_log("browser")
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]}
    )
    driver.get(url)
    driver.execute_script("return document.readyState")  # the page is loaded before the logs are read
    out = Load(url)
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            req_url = params.get("request", {}).get("url", "")
            if req_url == url:
                out.page_seen = True
            else:
                out.requests.append(params)
        elif method == "Network.loadingFailed":
            out.failed.append(params)
    out.console_errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    return out


def screenshot(
    report: str | Path, png: str | Path, at: str | None = None, width: int = 1280, height: int = 1500
) -> Path:
    """A PNG of ``report``: its top, or from the element with id ``at`` (the sticky menu stays in view)."""
    driver = start(width, height)
    try:
        driver.get(Path(report).resolve().as_uri())
        if at:
            driver.execute_script("document.getElementById(arguments[0]).scrollIntoView(); window.scrollBy(0, -44)", at)
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
    try:  # a palette image is a third of the size and looks the same for flat charts and text
        from PIL import Image
    except ImportError:
        return Path(png)
    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)
    return Path(png)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5) or sys.argv[1] != "shot":
        sys.exit("usage: python -m tests.report.browser shot REPORT.html OUT.png [ELEMENT_ID]")
    print(screenshot(sys.argv[2], sys.argv[3], *sys.argv[4:]))
