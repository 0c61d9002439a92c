"""The saved boundary report opens offline: the 广安门外 / 太平桥 report of the demo city is
written to a folder, opened from file:// in headless Chromium (Debian's, driven by
Playwright) with every request that is not a local file aborted, and its Leaflet map draws
the two areas, the shared line, the straddling buildings and the incidents as vector paths —
with no request failed or blocked and no script error. A screenshot goes to
/tmp/boundary_report.png (and $GRIDOPS_ARTIFACTS)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from playwright.sync_api import Route, sync_playwright
from sqlalchemy import Engine

from gis.boundary_report import boundary_report
from gis.boundary_report_html import write_report
from tests.test_command_page import CHROMIUM, CHROMIUM_ARGS, artifacts

SCREENSHOT = Path("/tmp/boundary_report.png")
EXTERNAL = re.compile(r"<(?:script|link|img|iframe)[^>]*\s(?:src|href)=\"?https?:",
                      re.IGNORECASE)


def test_saved_report_shows_its_map_without_network(city: Engine, tmp_path: Path) -> None:
    with city.connect() as conn:
        report = boundary_report(conn, a="110102020", b="110106002")
    paths = write_report(report, tmp_path / "report")
    html = paths["report.html"].read_text(encoding="utf-8")
    assert not EXTERNAL.search(html)
    assert "<script src=" not in html and "<link " not in html  # everything is inlined

    blocked: list[str] = []
    failed: list[str] = []
    errors: list[str] = []

    def only_files(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", only_files)
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(paths["report.html"].as_uri())
            page.wait_for_selector(".leaflet-container .leaflet-overlay-pane path")
            paths_drawn = page.locator(".leaflet-overlay-pane path").count()
            # A, B, the line, one per straddling building and one per incident
            expected = 3 + len(report["buildings"]) + len(report["incidents"]["items"])
            assert paths_drawn >= expected
            assert page.locator(".leaflet-control-layers-overlays label").count() >= 5
            assert page.locator("h1").inner_text().startswith("边界争议报告")
            page.locator(".map-box").scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    shutil.copy(SCREENSHOT, artifacts() / "boundary_report.png")
    assert blocked == [] and failed == [] and errors == []
