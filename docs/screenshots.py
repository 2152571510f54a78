"""Screenshots of the Prefect UI for the README, taken with headless Chromium.

Run against a live server that has run the deployments (README, "Operating it"):
    PREFECT_UI_URL=http://127.0.0.1:4200 python docs/screenshots.py
Needs Debian's chromium and chromium-driver; nothing downloads a browser.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

UI = os.environ.get("PREFECT_UI_URL", "http://127.0.0.1:4200").rstrip("/")
OUT = Path(__file__).resolve().parent


def api(path: str, body: dict | None = None) -> object:
    data = json.dumps(body or {}).encode() if body is not None else None
    req = urllib.request.Request(
        f"{UI}/api{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


def driver() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--window-size=1440,900",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def shoot(browser: webdriver.Chrome, path: str, name: str, wait_s: float = 6.0) -> None:
    browser.get(f"{UI}{path}")
    time.sleep(wait_s)  # the UI renders client-side after its API calls
    browser.save_screenshot(str(OUT / name))
    print("wrote", OUT / name)


def main() -> None:
    flows = {f["name"]: f["id"] for f in api("/flows/filter", {})}

    def latest(flow_name: str) -> dict:
        return api(
            "/flow_runs/filter",
            {
                "flows": {"id": {"any_": [flows[flow_name]]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                "sort": "START_TIME_DESC",
                "limit": 1,
            },
        )[0]

    retrain = latest("landmarks-retrain")
    refresh = latest("landmarks-refresh")
    weekly = api("/deployments/name/landmarks-refresh/weekly")
    report = api("/artifacts/filter", {"artifacts": {"key": {"any_": ["training-report"]}}})
    browser = driver()
    try:
        shoot(browser, "/deployments", "ui-deployments.png")
        shoot(
            browser,
            f"/deployments/deployment/{weekly['id']}?tab=Parameters",
        )
        shoot(browser, f"/deployments/deployment/{weekly['id']}/run", "ui-run-form.png")
        shoot(browser, f"/runs/flow-run/{refresh['id']}", "ui-refresh-run.png", 8)
        shoot(browser, f"/runs/flow-run/{retrain['id']}?tab=Artifacts", "ui-retrain-artifacts.png")
        if report:
            shoot(browser, f"/artifacts/artifact/{report[0]['id']}", "ui-training-report.png")
    finally:
        browser.quit()


if __name__ == "__main__":
    main()
