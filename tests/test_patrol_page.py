"""The patrol page of a 街巷长 (GET /patrol) in a real browser (Debian's Chromium, headless,
driven by Playwright) at a phone viewport (360×740), with the geolocation permission and a
scripted position walking along a known street, against a real server on a fresh database:

  西城 110102 / 广安门外街道 110102020 with a community and a grid; the street 广外测试街, a
  straight line along lat 39.88 from 116.3300 to 116.3370 (about 600 m); its chief 李四,
  bound to the user chief_li; the catalog's event classes.

Flow: sign in → my street (未巡查) → start → walk → tick two items (one with a note) → report
a problem with a photo at a position moved by tapping the map → offline → keep walking (the
queue count grows, on screen) → tick a third item → reload while offline (nothing lost) →
walk → back online → the queue drains to 0 → end → the summary. Then the database: every
fix the page recorded arrived exactly once, each check once with its ok/note, one incident of
the patrol (source street_chief) with one photo, the patrol ended with the coverage of the
walked share of the street (walked length + 30 m at each end, / street length).

Screenshots (360×740) go to $GRIDOPS_ARTIFACTS (default test-artifacts/): patrol-streets,
patrol-walking, patrol-report, patrol-offline(-en), patrol-summary, patrol-streets-en.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import (
    Browser,
    BrowserContext,
    FilePayload,
    Page,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import catalog, users
from gis.audit import Actor
from tests.live_server import serve
from tests.test_command_page import CHROMIUM, artifacts, launch

CHIEF, CHIEF_PASSWORD, CHIEF_NAME = "chief_li", "correct horse battery", "李四"
OPERATOR, OPERATOR_PASSWORD = "op_wang", "correct horse battery"
DISTRICT, STREET_OFFICE = "110102", "110102020"
LAT = 39.88
WEST, EAST = 116.3300, 116.3370  # the street's ends (about 600 m apart)
STREET = "广外测试街"
STEP_M = 4.0  # metres per step, one step a second (a walk: the server drops > 12 m/s)
M_PER_DEG_LON = 111_319.49 * math.cos(math.radians(LAT))
START_LON = WEST + 60 / M_PER_DEG_LON  # the walk starts 60 m from the west end
RADIUS_M = 30.0
PHONE: ViewportSize = {"width": 360, "height": 740}
NOTE = "井盖松动，已设警示"


def _box(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


def _world(conn: Connection) -> int:
    """The places, the street and its chief (bound to the user chief_li); the street id."""
    box = (116.30, 39.86, 116.35, 39.90)
    for level, code, name in (("district", DISTRICT, "西城区"),
                              ("street", STREET_OFFICE, "广安门外街道"),
                              ("community", STREET_OFFICE + "001", "三义东里社区")):
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                          "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                     {"l": level, "c": code, "n": name, "g": _box(*box)})
    conn.execute(text("INSERT INTO grids (code, name, households, geom) "
                      "VALUES (:c, '三义东里1号网格', 400, ST_GeomFromText(:g, 4326))"),
                 {"c": STREET_OFFICE + "001001", "g": _box(*box)})
    street = int(conn.scalar(text(
        "INSERT INTO streets (name, road_class, district_code, street_office_code, geom) "
        "VALUES (:n, 'secondary', :d, :s, ST_GeomFromText(:g, 4326)) RETURNING id"),
        {"n": STREET, "d": DISTRICT, "s": STREET_OFFICE,
         "g": f"MULTILINESTRING(({WEST} {LAT},{EAST} {LAT}))"}))
    person = int(conn.scalar(text(
        "INSERT INTO people (name, phone, post, district_code) "
        "VALUES (:n, '13900000000', 'street_chief', :d) RETURNING id"),
        {"n": CHIEF_NAME, "d": DISTRICT}))
    conn.execute(text("INSERT INTO street_assignments (street_id, person_id, role, valid_from) "
                      "VALUES (:s, :p, 'street_chief', now() - interval '1 day')"),
                 {"s": street, "p": person})
    users.add_user(conn, username=CHIEF, password=CHIEF_PASSWORD, roles=["street_chief"],
                   person_id=person, display_name=CHIEF_NAME, by=Actor("test"))
    users.add_user(conn, username=OPERATOR, password=OPERATOR_PASSWORD, roles=["operator"],
                   by=Actor("test"))
    return street


@pytest.fixture
def street(engine: Engine) -> int:
    with engine.begin() as conn:
        catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
        return _world(conn)


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """A fix a second (the default is one per 5 s) and small upload batches."""
    return settings.model_copy(update={"patrol_fix_interval_s": 1, "patrol_upload_batch": 5})


def png() -> bytes:
    """A small real PNG (8×8, one colour)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + b"\xcc\x33\x33" * 8 for _ in range(8))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# -- the page without a browser -----------------------------------------------------------


@pytest.fixture
def client(fast: Settings, street: int) -> Iterator[TestClient]:
    with TestClient(create_app(fast), base_url="https://testserver") as test_client:
        yield test_client


def _config(html: str) -> dict[str, object]:
    match = re.search(r'<script id="gridops-config" type="application/json">(.*?)</script>',
                      html, re.S)
    assert match is not None
    config: dict[str, object] = json.loads(match.group(1))
    return config


def _sign_in(client: TestClient, username: str, password: str) -> None:
    response = client.post("/api/v1/auth/login", json={"username": username,
                                                        "password": password})
    assert response.status_code == 200, response.text


def test_anonymous_visitors_go_to_the_login_page(client: TestClient) -> None:
    response = client.get("/patrol", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/patrol"


def test_a_chief_lands_on_the_patrol_page(client: TestClient) -> None:
    _sign_in(client, CHIEF, CHIEF_PASSWORD)
    home = client.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/patrol"
    page = client.get("/patrol", follow_redirects=False)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert CHIEF_NAME in page.text and 'id="sync"' in page.text
    config = _config(page.text)
    assert config["allowed"] is True and config["serviceWorker"] == "/patrol/sw.js"
    worker = client.get("/patrol/sw.js")
    assert worker.status_code == 200
    assert worker.headers["service-worker-allowed"] == "/patrol"
    assert "javascript" in worker.headers["content-type"]


def test_other_roles_are_told_the_page_is_not_for_them(client: TestClient) -> None:
    _sign_in(client, OPERATOR, OPERATOR_PASSWORD)
    assert client.get("/", follow_redirects=False).status_code == 200  # the command page
    page = client.get("/patrol", follow_redirects=False)
    assert page.status_code == 200
    assert "巡查页面仅供街巷长和小巷管家使用" in page.text
    assert _config(page.text)["allowed"] is False
    assert 'id="sync"' not in page.text


# -- the walk in a browser ------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser`")
    with sync_playwright() as driver:
        chromium = launch(driver)
        yield chromium
        chromium.close()


@pytest.fixture
def server(fast: Settings, street: int) -> Iterator[str]:
    with serve(create_app(fast)) as url:
        yield url


class Walker:
    """The scripted position: steps of STEP_M metres eastwards along the street, each one
    waited for until the page has recorded it as a fix (at least a second after the last)."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self.context = context
        self.page = page
        self.lon = START_LON
        self.first: float | None = None
        self.last: float | None = None
        self.context.set_geolocation({"latitude": LAT, "longitude": self.lon, "accuracy": 5})

    def recorded(self) -> int:
        return int(self.page.evaluate("window.gridopsPatrol.recorded()"))

    def wait_recorded(self) -> None:
        """Until the page's latest fix is the current position."""
        self.page.wait_for_function(
            "(lon) => { const f = window.gridopsPatrol && window.gridopsPatrol.lastFix();"
            " return f !== null && Math.abs(f[0] - lon) < 1e-9; }", arg=self.lon)
        self.first = self.lon if self.first is None else self.first
        self.last = self.lon

    def walk(self, steps: int) -> None:
        for _ in range(steps):
            time.sleep(1.05)  # the page records at most one fix per second
            self.lon += STEP_M / M_PER_DEG_LON
            self.context.set_geolocation({"latitude": LAT, "longitude": self.lon,
                                          "accuracy": 5})
            self.wait_recorded()


def queued(page: Page) -> int:
    return int(page.locator("#sync").get_attribute("data-count") or "0")


def wait_queued(page: Page, at_least: int) -> None:
    """Until the visible queue count reaches `at_least` (it follows the IndexedDB write)."""
    page.wait_for_function(
        "(n) => Number(document.querySelector('#sync').dataset.count || 0) >= n", arg=at_least)


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"{name}-360.png"))


def sign_in(page: Page) -> None:
    page.goto("/patrol")
    page.wait_for_url(re.compile(r"/login\?next=/patrol$"))
    page.get_by_label("用户名").fill(CHIEF)
    page.get_by_label("密码").fill(CHIEF_PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"/patrol$"))
    page.wait_for_selector("body[data-ready=true]")


def tick(page: Page, index: int, ok: bool, note: str | None = None) -> tuple[str, bool, str | None]:
    item = page.locator(".check-item").nth(index)
    code = item.get_attribute("data-code")
    assert code
    if note:
        item.locator(".check-note").fill(note)
    item.locator(".tick-ok" if ok else ".tick-problem").click()
    expect(item).to_have_attribute("data-state", "ok" if ok else "problem")
    return code, ok, note


def test_a_patrol_walk_with_checks_a_report_and_an_offline_stretch(
    browser: Browser, server: str, engine: Engine, street: int
) -> None:
    context = browser.new_context(base_url=server, locale="zh-CN", viewport=PHONE,
                                  is_mobile=True, has_touch=True,
                                  permissions=["geolocation"],
                                  geolocation={"latitude": LAT, "longitude": START_LON})
    page = context.new_page()
    page.on("console", lambda m: print(f"console.{m.type}: {m.text}") if m.type in (
        "error", "warning") else None)
    page.on("pageerror", lambda e: print(f"pageerror: {e}"))
    page.on("response", lambda r: print(f"HTTP {r.status} {r.request.method} {r.url}")
            if r.status >= 400 else None)
    page.on("dialog", lambda d: d.accept())  # "end the patrol?" with unticked items
    try:
        _walk(context, page, engine, street)
    finally:
        context.close()


def _walk(context: BrowserContext, page: Page, engine: Engine, street: int) -> None:
    walker = Walker(context, page)
    sign_in(page)

    # my street, not patrolled yet today; choose it
    row = page.locator(f'.street[data-street-id="{street}"]')
    expect(row).to_contain_text(STREET)
    expect(row).to_contain_text("未巡查")
    expect(row).to_have_attribute("data-status", "none")
    expect(page.locator(".bar .who")).to_have_text(CHIEF_NAME)
    expect(page.locator("#sync-text")).to_have_text("已同步")
    row.click()
    start = page.get_by_role("button", name="开始巡查")
    expect(start).to_be_visible()
    assert (start.bounding_box() or {"height": 0})["height"] >= 44  # a finger's size
    page.wait_for_function("window.gridopsMap.loaded() && !window.gridopsMap.isMoving()")
    shot(page, "patrol-streets")

    start.click()
    expect(page.locator("#patrol-street")).to_contain_text(STREET)
    walker.wait_recorded()  # the first fix, where the walk starts
    walker.walk(6)
    page.wait_for_function("window.gridopsPatrol.state.patrol?.serverId != null")

    # two items ticked, one with a note
    checks = [tick(page, 0, True), tick(page, 1, False, NOTE)]
    walker.walk(2)
    shot(page, "patrol-walking")

    # a problem with a photo, its position moved by tapping the map 20 m north of the walker
    page.get_by_role("tab", name="上报问题").click()
    page.locator("#report-class").select_option("event:0101")
    page.locator("#report-description").fill("人行道井盖松动")
    photo: FilePayload = {"name": "manhole.png", "mimeType": "image/png", "buffer": png()}
    page.locator("#report-photo").set_input_files(files=[photo])
    target = (walker.lon, LAT + 20 / 111_320)
    point = page.evaluate("(p) => window.gridopsMap.project(p)", list(target))
    box = page.locator("#map").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    expect(page.locator("#report-position")).to_contain_text("已手动调整")
    page.get_by_role("button", name="提交上报").click()
    expect(page.locator(".report-item")).to_have_count(1)
    sent = page.evaluate("window.gridopsPatrol.state.patrol.reports[0]")
    # where the tap landed (within a pixel or two), not the walker's fix
    assert abs(sent["lat"] - target[1]) * 111_320 < 3
    assert abs(sent["lon"] - target[0]) * M_PER_DEG_LON < 3
    tapped = [sent["lon"], sent["lat"]]
    expect(page.locator(".report-item")).to_contain_text("#", timeout=15_000)  # synced
    shot(page, "patrol-report")
    page.get_by_role("tab", name="巡查清单").click()

    # offline: the walk goes on, the queue grows on screen
    context.set_offline(True)
    expect(page.locator("#sync")).to_have_attribute("data-online", "false")
    before = queued(page)
    walker.walk(6)
    wait_queued(page, before + 6)
    expect(page.locator("#sync-text")).to_have_text(f"待同步 {queued(page)}")
    expect(page.locator("#sync-state")).to_have_text("离线")
    checks.append(tick(page, 2, True))
    shot(page, "patrol-offline")
    page.get_by_role("button", name="English").click()
    expect(page.locator("#sync-text")).to_have_text(f"{queued(page)} queued")
    expect(page.locator("#sync-state")).to_have_text("offline")
    expect(page.get_by_role("button", name="End patrol")).to_be_visible()
    shot(page, "patrol-offline-en")
    page.get_by_role("button", name="中文").click()

    # a reload while offline loses nothing: the queue and the patrol live in IndexedDB
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    waiting, recorded = queued(page), walker.recorded()
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#patrol-street")).to_contain_text(STREET)
    assert walker.recorded() >= recorded
    wait_queued(page, waiting)
    expect(page.locator(".check-item").nth(2)).to_have_attribute("data-state", "ok")
    expect(page.locator(".check-item").nth(1).locator(".check-note")).to_have_value(NOTE)
    walker.walk(3)
    wait_queued(page, waiting + 3)

    # online again: everything is sent, the count drops to 0
    context.set_offline(False)
    expect(page.locator("#sync")).to_have_attribute("data-count", "0", timeout=30_000)
    expect(page.locator("#sync-text")).to_have_text("已同步")
    walker.walk(2)

    page.get_by_role("button", name="结束巡查").click()
    expect(page.locator("#view-summary")).to_be_visible()
    expect(page.locator("#view-summary")).to_have_attribute("data-final", "true",
                                                            timeout=20_000)
    expect(page.locator("#sync")).to_have_attribute("data-count", "0")
    recorded = walker.recorded()
    summary = page.locator("#summary")
    expect(summary.locator('[data-key="reports"] dd')).to_have_text("1")
    expect(summary.locator('[data-key="checks"] dd')).to_contain_text("已检查 3/")
    expect(summary.locator('[data-key="checks"] dd')).to_contain_text("问题 1 项")
    shot(page, "patrol-summary")
    assert not page.locator("#failures").is_visible()

    _check_database(engine, street, walker, recorded, checks, tapped)

    # back to my streets: today's status is there (partly: under the 80% threshold)
    page.get_by_role("button", name="返回我的街巷").click()
    expect(page.locator(f'.street[data-street-id="{street}"]')).to_have_attribute(
        "data-status", "partly")

    # in English, remembered over a reload
    page.get_by_role("button", name="English").click()
    expect(page.locator("#streets-title")).to_have_text("My streets")
    expect(page.locator(f'.street[data-street-id="{street}"]')).to_contain_text("partly")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#streets-title")).to_have_text("My streets")
    expect(page.locator("#sync-text")).to_have_text("Synced")
    shot(page, "patrol-streets-en")


def _check_database(engine: Engine, street: int, walker: Walker, recorded: int,
                    checks: list[tuple[str, bool, str | None]],
                    tapped: list[float]) -> None:
    assert walker.first is not None and walker.last is not None
    with engine.connect() as conn:
        patrol = conn.execute(text(
            "SELECT p.id, p.status, p.coverage, p.street_id, pe.name FROM patrols p "
            "JOIN people pe ON pe.id = p.person_id")).mappings().one()  # exactly one patrol
        assert patrol["status"] == "ended" and patrol["street_id"] == street
        assert patrol["name"] == CHIEF_NAME
        # every fix the page recorded arrived, once (a fix is keyed by its time)
        points = conn.execute(text(
            "SELECT count(*) AS n, count(DISTINCT at) AS times, count(*) FILTER (WHERE kept) "
            "AS kept FROM patrol_points WHERE patrol_id = :p"), {"p": patrol["id"]}).one()
        assert points.n == recorded == points.times
        assert points.kept == recorded  # a walk: nothing too fast, nothing inaccurate
        # each check once, with its ok and note
        rows = conn.execute(text("SELECT item_code, ok, note FROM patrol_checks "
                                 "WHERE patrol_id = :p ORDER BY item_code"),
                            {"p": patrol["id"]}).all()
        assert sorted((r.item_code, r.ok, r.note) for r in rows) == sorted(checks)
        # one incident of this patrol, from the street chief, with one photo where tapped
        incidents = conn.execute(text(
            "SELECT i.id, i.source, i.street_id, "
            "ST_Distance(i.geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography)"
            " AS off, (SELECT count(*) FROM incident_photos ph WHERE ph.incident_id = i.id) "
            "AS photos FROM incidents i WHERE i.patrol_id = :p"),
            {"p": patrol["id"], "x": tapped[0], "y": tapped[1]}).mappings().all()
        assert len(incidents) == 1
        incident = incidents[0]
        assert incident["source"] == "street_chief" and incident["street_id"] == street
        assert incident["photos"] == 1
        assert incident["off"] < 0.5  # the position sent
        assert conn.scalar(text("SELECT count(*) FROM incidents")) == 1
    # coverage: the walked stretch and 30 m beyond each end of it, over the street's length
    walked_m = (walker.last - walker.first) * M_PER_DEG_LON
    start_m = (walker.first - WEST) * M_PER_DEG_LON
    covered = min(start_m + walked_m + RADIUS_M, (EAST - WEST) * M_PER_DEG_LON) \
        - max(start_m - RADIUS_M, 0.0)
    expected = covered / ((EAST - WEST) * M_PER_DEG_LON)
    assert patrol["coverage"] == pytest.approx(expected, abs=0.01)


def test_refused_items_stay_visible_and_server_errors_are_retried(
    browser: Browser, server: str, engine: Engine, street: int
) -> None:
    """A 503 is retried until the item arrives (once); a 422 is a permanent failure, shown
    until the person retries it (then it arrives) — never retried on its own. A second
    phone takes the patrol under way over; signing out ends the session."""
    # no service worker: Playwright's routes do not see requests a worker could handle
    context = browser.new_context(base_url=server, locale="zh-CN", viewport=PHONE,
                                  is_mobile=True, has_touch=True, service_workers="block",
                                  permissions=["geolocation"],
                                  geolocation={"latitude": LAT, "longitude": START_LON})
    page = context.new_page()
    page.on("pageerror", lambda e: print(f"pageerror: {e}"))
    calls: list[int] = []

    def flaky(route: Route) -> None:  # the first tick meets a 503, then the server
        calls.append(1)
        if len(calls) == 1:
            route.fulfill(status=503, json={"detail": "database unavailable"})
        else:
            route.continue_()

    def refuse(route: Route) -> None:
        route.fulfill(status=422, json={"detail": [
            {"field": "note", "msg": "refused by the test", "type": "value_error"}]})

    try:
        sign_in(page)
        page.locator(f'.street[data-street-id="{street}"]').click()
        page.get_by_role("button", name="开始巡查").click()
        page.wait_for_function("window.gridopsPatrol.state.patrol?.serverId != null")

        page.route("**/checks/**", flaky)
        ok_code, _, _ = tick(page, 0, True)
        expect(page.locator("#sync")).to_have_attribute("data-count", "0", timeout=15_000)
        assert len(calls) == 2
        page.unroute("**/checks/**")

        page.route("**/checks/**", refuse)
        bad_code, _, _ = tick(page, 1, False, "会被拒绝")
        failures = page.locator("#failures")
        expect(failures).to_be_visible()
        expect(failures).to_contain_text("1 项同步失败")
        expect(failures).to_contain_text("refused by the test")
        expect(failures.locator(".failure")).to_have_attribute("data-status", "422")
        expect(page.locator("#sync")).to_have_attribute("data-count", "0")
        expect(page.locator("#sync")).to_have_attribute("data-failed", "1")
        page.wait_for_timeout(3000)  # not retried on its own
        expect(failures).to_be_visible()
        shot(page, "patrol-failed")

        page.unroute("**/checks/**")
        failures.get_by_role("button", name="重试").click()
        expect(failures).to_be_hidden()
        expect(page.locator("#sync")).to_have_attribute("data-count", "0")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT item_code, ok, note FROM patrol_checks")).all()
        assert sorted((r.item_code, r.ok, r.note) for r in rows) == sorted(
            [(ok_code, True, None), (bad_code, False, "会被拒绝")])

        # a second phone (nothing stored on it) takes the patrol under way over
        other = browser.new_context(base_url=server, locale="zh-CN", viewport=PHONE,
                                    is_mobile=True, has_touch=True,
                                    permissions=["geolocation"],
                                    geolocation={"latitude": LAT, "longitude": START_LON})
        try:
            phone = other.new_page()
            sign_in(phone)
            expect(phone.locator("#patrol-street")).to_have_text(STREET)
            expect(phone.locator(f'.check-item[data-code="{ok_code}"]')).to_have_attribute(
                "data-state", "ok")
            expect(phone.locator(f'.check-item[data-code="{bad_code}"] .check-note')
                   ).to_have_value("会被拒绝")
        finally:
            other.close()

        # sign out (nothing waiting: no question asked)
        page.get_by_role("button", name="退出").click()
        page.wait_for_url(re.compile(r"/login$"))
        assert page.goto("/patrol") is not None
        page.wait_for_url(re.compile(r"/login\?next=/patrol$"))
    finally:
        context.close()
