"""The public report page behind a sign's QR code, in a real browser (Debian's Chromium via
Playwright) at a phone viewport (360×740), against a real server on a fresh database
holding tests/test_street_signs.py's world. No sign-in anywhere.

1. Location allowed, the phone near 广安门外大街: choose a class, describe, attach a photo
   (a PNG made here), give a phone number, submit → the receipt with the report number;
   the incident is on that street, routed to its chief, at the phone's position, with the
   photo.
2. Location denied: the report falls back to the street's own middle; the English toggle.
3. Location allowed but 1 km away: the server refuses the position, the page sends the
   report again at the street's position and says so.

Screenshots go to $GRIDOPS_ARTIFACTS (default test-artifacts/).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from tests.live_server import serve
from tests.test_command_page import CHROMIUM, CHROMIUM_ARGS, artifacts
from tests.test_street_report import FAR, NEAR, png
from tests.test_street_signs import SignWorld, build_world

PHONE = {"width": 360, "height": 740}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # `make test` installs it: never pass without a browser
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser`")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def world(engine: Engine) -> SignWorld:
    return build_world(engine)


@pytest.fixture
def server(settings: Settings, world: SignWorld) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


def open_form(browser: Browser, server: str, street_id: int,
              position: tuple[float, float] | None) -> Page:
    """The form on a phone; `position` (lon, lat) is the phone's fix when location is
    allowed, None when the citizen denies it."""
    options: dict[str, Any] = {"base_url": server, "locale": "zh-CN", "viewport": PHONE,
                               "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
    if position is not None:
        options.update(geolocation={"longitude": position[0], "latitude": position[1],
                                    "accuracy": 12}, permissions=["geolocation"])
    context = browser.new_context(**options)
    page = context.new_page()
    page.on("console", lambda m: print(f"console.{m.type}: {m.text}") if m.type in (
        "error", "warning") else None)
    page.on("pageerror", lambda e: print(f"pageerror: {e}"))
    page.goto(f"/report/street/{street_id}")
    expect(page.locator("#street-name")).to_have_text("广安门外大街")
    expect(page.locator("#chief-line")).to_contain_text("街长 李四")
    expect(page.locator("#chief-line")).to_contain_text("13900000000")
    return page


def fill(page: Page, description: str, *, photo: bytes | None = None,
         phone: str | None = None) -> None:
    page.locator("#event-code").select_option("event:0101")
    page.locator("#description").fill(description)
    if photo is not None:
        page.locator("#photo").set_input_files(files=[{
            "name": "photo.png", "mimeType": "image/png", "buffer": photo}])
        expect(page.locator("#photo-preview")).to_be_visible()
    if phone is not None:
        page.locator(".contact summary").click()
        page.locator("#reporter-phone").fill(phone)


def submit(page: Page) -> int:
    page.locator("#submit").click()
    receipt = page.locator("#receipt")
    expect(receipt).to_be_visible(timeout=10_000)
    expect(page.locator("#report-form")).to_be_hidden()
    number = page.locator("#receipt-id").inner_text()
    assert number.startswith("#")
    return int(number[1:])


def stored(engine: Engine, incident_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(text("""
            SELECT i.street_id, i.chief_person_id, i.source, i.status, i.reporter_phone,
                   ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat,
                   ST_Distance(i.geom::geography, s.geom::geography) AS from_street_m,
                   (SELECT count(*) FROM incident_photos p WHERE p.incident_id = i.id) AS photos,
                   (SELECT p.data FROM incident_photos p WHERE p.incident_id = i.id
                    ORDER BY p.id LIMIT 1) AS photo
            FROM incidents i JOIN streets s ON s.id = i.street_id WHERE i.id = :id"""),
            {"id": incident_id}).mappings().one())


def shoot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"{name}.png"), full_page=True)


def test_a_citizen_reports_with_location_and_photo(browser: Browser, server: str,
                                                   world: SignWorld, engine: Engine) -> None:
    page = open_form(browser, server, world.street_id, NEAR)
    expect(page.locator("#position-status")).to_contain_text("您当前的位置")
    image = png(16, 16, 140)
    fill(page, "人行道上有暴露垃圾，已经两天了", photo=image, phone="139 1234 5678")
    shoot(page, "street-report-form")
    report_id = submit(page)
    expect(page.locator("#receipt-street")).to_contain_text("广安门外大街 · 已转街长 李四")
    expect(page.locator("#receipt-next li")).to_have_count(3)
    shoot(page, "street-report-receipt")
    row = stored(engine, report_id)
    assert (row["street_id"], row["chief_person_id"], row["source"], row["status"],
            row["reporter_phone"]) == (world.street_id, world.chief_id, "citizen", "pending",
                                       "13912345678")
    assert (row["lon"], row["lat"]) == (pytest.approx(NEAR[0], abs=1e-6),
                                        pytest.approx(NEAR[1], abs=1e-6))
    assert row["photos"] == 1 and bytes(row["photo"]) == image
    # a second report from the same page is a new one (a new key)
    page.locator("#again").click()
    fill(page, "路灯下还有一袋垃圾")
    assert submit(page) != report_id
    page.context.close()


def test_without_location_the_report_falls_back_to_the_street(
        browser: Browser, server: str, world: SignWorld, engine: Engine) -> None:
    page = open_form(browser, server, world.street_id, None)
    expect(page.locator("#position-status")).to_contain_text(
        "未获得定位授权，将使用街巷位置：广安门外大街")
    page.locator("#lang-toggle").click()  # English, then back
    expect(page.locator("label[for=description]")).to_have_text("Description")
    expect(page.locator("#position-status")).to_contain_text("No permission to locate you")
    shoot(page, "street-report-form-en")
    page.locator("#lang-toggle").click()
    expect(page.locator("label[for=description]")).to_have_text("问题描述")
    fill(page, "路口有人乱扔垃圾")
    report_id = submit(page)
    row = stored(engine, report_id)
    assert row["street_id"] == world.street_id and row["photos"] == 0
    assert row["from_street_m"] < 0.5  # on the street itself
    assert row["lon"] == pytest.approx((116.31 + 116.3499) / 2, abs=1e-6)
    page.context.close()


def test_a_fix_far_from_the_street_is_replaced_by_the_street(
        browser: Browser, server: str, world: SignWorld, engine: Engine) -> None:
    page = open_form(browser, server, world.street_id, FAR)
    expect(page.locator("#position-status")).to_contain_text("您当前的位置")
    fill(page, "这里的垃圾桶满了")
    report_id = submit(page)
    expect(page.locator("#receipt-note")).to_contain_text("已按街巷位置登记")
    shoot(page, "street-report-moved")
    row = stored(engine, report_id)
    assert row["street_id"] == world.street_id and row["from_street_m"] < 0.5
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM incidents")) == 1
    page.context.close()
