"""The command page in a real browser (Debian's Chromium, headless, driven by Playwright)
against a real server on a fresh database holding a small world:

  西城 110102 (广安门外街道 110102020) west of x = 116.35 and 丰台 110106 (太平桥街道
  110106005) east of it, a community and a grid in each, a 联合哨 joint zone 100 m wide on
  the line, a building straddling it (one third in 西城), a road along lat 39.88 from
  116.31 to 116.39, the 街巷 广安门外大街 with its chief 李四, the catalog's event classes,
  each district's 城管 department with teams (fresh positions), and an operator.

Flow 1: sign in → an incident created through the API appears in the list and on the map
(a rendered feature of the incidents layer) within 2 s, over the live feed → open it → the
card shows its placement and recommendations → dispatch the first team → the team turns
busy on the map → take the case through 处置中, 处置反馈, 核查 to 结案.
Flow 2: a joint case on the line: the 联合哨 preselects a department from each side; blown
with the first team of each side's list, it summons both departments and sends both teams;
the English toggle, remembered over a reload.

Screenshots go to $GRIDOPS_ARTIFACTS (default test-artifacts/) at 1366×768 and 1920×1080.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.routers.tiles import tile_cache
from api.settings import Settings
from gis import catalog, users
from gis.audit import Actor
from tests.live_server import serve

CHROMIUM = "/usr/bin/chromium"
# --no-sandbox: Chromium's sandbox needs user namespaces, which containers and root lack;
# --disable-gpu + --enable-unsafe-swiftshader: no GPU here, so WebGL (MapLibre) runs on
# SwiftShader, the CPU renderer, which Chromium enables only when asked.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                 "--disable-background-networking"]
USERNAME, PASSWORD, DISPLAY_NAME = "op_wang", "correct horse battery", "王芳"
XICHENG, FENGTAI = "110102", "110106"
GUANGWAI, TAIPINGQIAO = "110102020", "110106005"
LAT = 39.88
SIZES: dict[str, ViewportSize] = {"1366": {"width": 1366, "height": 768},
                                  "1920": {"width": 1920, "height": 1080}}
LIVE_MS = 2000  # an incident must reach the list and the map within 2 s


def artifacts() -> Path:
    """Where screenshots go (gitignored): $GRIDOPS_ARTIFACTS or test-artifacts/."""
    folder = Path(os.environ.get("GRIDOPS_ARTIFACTS", Path(__file__).parent.parent
                                 / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _box(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


@dataclass
class World:
    teams: dict[str, int] = field(default_factory=dict)
    departments: dict[str, int] = field(default_factory=dict)


def _places(conn: Connection) -> None:
    west, east = (116.30, 39.86, 116.35, 39.90), (116.35, 39.86, 116.40, 39.90)
    rows = [("district", XICHENG, "西城区", west), ("district", FENGTAI, "丰台区", east),
            ("street", GUANGWAI, "广安门外街道", west), ("street", TAIPINGQIAO, "太平桥街道", east),
            ("community", GUANGWAI + "001", "三义东里社区", west),
            ("community", TAIPINGQIAO + "001", "东管头社区", east)]
    for level, code, name, box in rows:
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                          "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                     {"l": level, "c": code, "n": name, "g": _box(*box)})
    for code, name, box in ((GUANGWAI + "001001", "三义东里1号网格", west),
                            (TAIPINGQIAO + "001001", "东管头1号网格", east)):
        conn.execute(text("INSERT INTO grids (code, name, households, geom) "
                          "VALUES (:c, :n, 400, ST_GeomFromText(:g, 4326))"),
                     {"c": code, "n": name, "g": _box(*box)})
    conn.execute(text("INSERT INTO joint_zones (level, code_a, code_b, width_m, geom) VALUES "
                      "('district', :a, :b, 100, ST_GeomFromText(:g, 4326))"),
                 {"a": XICHENG, "b": FENGTAI, "g": _box(116.3494, 39.86, 116.3506, 39.90)})
    building = conn.scalar(text(
        "INSERT INTO buildings (name, district_code, households, geom) VALUES "
        "('广外跨界楼', :d, 60, ST_GeomFromText(:g, 4326)) RETURNING id"),
        {"d": XICHENG, "g": _box(116.3490, 39.8810, 116.3520, 39.8820)})
    for code, share in ((XICHENG, 1 / 3), (FENGTAI, 2 / 3)):
        conn.execute(text("INSERT INTO building_shares (building_id, level, code, share) "
                          "VALUES (:b, 'district', :c, :s)"),
                     {"b": building, "c": code, "s": share})


def _roads(conn: Connection) -> None:
    xs = [round(116.31 + 0.01 * k, 2) for k in range(9)]  # 116.31 … 116.39
    for node, x in enumerate(xs, start=1):
        conn.execute(text("INSERT INTO road_nodes (id, geom, district_code) VALUES "
                          "(:id, ST_SetSRID(ST_MakePoint(:x, :y), 4326), :d)"),
                     {"id": node, "x": x, "y": LAT, "d": XICHENG if x < 116.35 else FENGTAI})
    for a in range(1, len(xs)):
        conn.execute(text("""
            INSERT INTO road_edges (source, target, name, road_class, length_m, speed_kmh,
                                    cost, reverse_cost, geom, district_code)
            SELECT :a, :b, '广安门外大街', 'arterial', len, 36, len / 10.0, len / 10.0, g, :d
            FROM (SELECT g, ST_Length(g::geography) AS len FROM (SELECT ST_MakeLine(
                  (SELECT geom FROM road_nodes WHERE id = :a),
                  (SELECT geom FROM road_nodes WHERE id = :b)) AS g) x) y
        """), {"a": a, "b": a + 1, "d": XICHENG if a < 5 else FENGTAI})
    street = conn.scalar(text(
        "INSERT INTO streets (name, road_class, district_code, street_office_code, geom) "
        "VALUES ('广安门外大街', 'arterial', :d, :s, "
        "ST_GeomFromText('MULTILINESTRING((116.31 39.8805,116.3499 39.8805))', 4326)) "
        "RETURNING id"), {"d": XICHENG, "s": GUANGWAI})
    chief = conn.scalar(text("INSERT INTO people (name, phone, post, district_code) VALUES "
                             "('李四', '13900000000', 'street_chief', :d) RETURNING id"),
                        {"d": XICHENG})
    conn.execute(text("INSERT INTO street_assignments (street_id, person_id, role, valid_from) "
                      "VALUES (:s, :p, 'street_chief', now() - interval '1 day')"),
                 {"s": street, "p": chief})


def _teams(conn: Connection, world: World) -> None:
    need = conn.scalar(text("SELECT departments -> 0 ->> 'type' FROM event_classes "
                            "WHERE kind = 'event' AND code = '0101'"))
    for code, name, home in (("XC-CG", "西城区城管执法局", XICHENG),
                             ("FT-CG", "丰台区城管执法局", FENGTAI)):
        world.departments[code] = int(conn.scalar(text(
            "INSERT INTO departments (code, name, dept_type, tier, jurisdiction_code) "
            "VALUES (:c, :n, :t, 'core', :j) RETURNING id"),
            {"c": code, "n": name, "t": need, "j": home}))
    for key, name, dept, home, x in (("xc1", "西城城管一队", "XC-CG", XICHENG, 116.33),
                                     ("xc2", "西城城管二队", "XC-CG", XICHENG, 116.32),
                                     ("ft1", "丰台城管一队", "FT-CG", FENGTAI, 116.37)):
        world.teams[key] = int(conn.scalar(text("""
            INSERT INTO teams (code, name, department_id, home_code, status, capabilities,
                               position, position_at)
            VALUES (:code, :name, :dept, :home, 'available', ARRAY[:cap],
                    ST_SetSRID(ST_MakePoint(:x, :y), 4326), now())
            RETURNING id"""), {"code": key.upper(), "name": name,
                               "dept": world.departments[dept], "home": home, "cap": need,
                               "x": x, "y": LAT + 0.0003}))


@pytest.fixture
def world(engine: Engine) -> World:
    built = World()
    with engine.begin() as conn:
        catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
        _places(conn)
        _roads(conn)
        _teams(conn, built)
        users.add_user(conn, username=USERNAME, password=PASSWORD, roles=["operator"],
                       display_name=DISPLAY_NAME, by=Actor("test"))
    return built


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # `make test` installs it: never pass without a browser
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser`")
    with sync_playwright() as driver:
        chromium = launch(driver)
        yield chromium
        chromium.close()


def launch(driver: Playwright) -> Browser:
    return driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture
def server(settings: Settings, world: World) -> Iterator[str]:
    app = create_app(settings)
    with serve(app) as url:
        hub = app.state.hub
        if hub is not None and not hub._callbacks:  # until app.py wires it
            hub.subscribe(tile_cache(app).invalidate)
        yield url


def open_page(browser: Browser, url: str, size: str) -> Page:
    context = browser.new_context(base_url=url, locale="zh-CN", viewport=SIZES[size])
    page = context.new_page()
    # the browser's errors end up in the test's output when it fails
    page.on("console", lambda m: print(f"console.{m.type}: {m.text}") if m.type in (
        "error", "warning") else None)
    page.on("pageerror", lambda e: print(f"pageerror: {e}"))
    page.goto("/")
    page.get_by_label("用户名").fill(USERNAME)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/(#.*)?$"))
    page.wait_for_function("window.gridopsPage !== undefined")
    expect(page.locator("#live")).to_have_attribute("data-state", "open")
    return page


def look_at(page: Page, zoom: int, lat: float, lon: float) -> None:
    """Move the map (the view is in the URL hash) and wait until it has drawn."""
    page.evaluate(f"window.location.hash = '#{zoom}/{lat}/{lon}'")
    page.wait_for_function("window.gridopsMap.loaded() && !window.gridopsMap.isMoving()")


@contextmanager
def api(server: str) -> Iterator[httpx.Client]:
    """An HTTP client signed in as the operator (bearer token)."""
    with httpx.Client(base_url=server) as client:
        response = client.post("/api/v1/auth/token", data={"username": USERNAME,
                                                           "password": PASSWORD})
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        yield client


def report(client: httpx.Client, lon: float, lat: float, description: str) -> int:
    response = client.post("/api/v1/incidents", json={
        "event_code": "0101", "lon": lon, "lat": lat, "description": description,
        "source": "grid_worker"})
    assert response.status_code == 201, response.text
    return int(response.json()["incident"]["id"])


RENDERED = """([layer, key, value]) => window.gridopsMap.queryRenderedFeatures(
    {layers: [layer]}).filter((f) => f.properties[key] === value).map((f) => f.properties)"""


def rendered(page: Page, layer: str, key: str, value: object) -> list[dict[str, object]]:
    """Properties of the features drawn on the map in `layer` whose `key` is `value`."""
    return list(page.evaluate(RENDERED, [layer, key, value]))


def wait_rendered(page: Page, layer: str, id_: int, timeout: float, **want: object) -> None:
    """Wait until `layer` draws the feature `id_` with the properties `want`."""
    page.wait_for_function(
        """([layer, id, want]) => window.gridopsMap.queryRenderedFeatures({layers: [layer]})
             .some((f) => f.properties.id === id
                   && Object.entries(want).every(([k, v]) => f.properties[k] === v))""",
        arg=[layer, id_, want], timeout=timeout)


def card_status(page: Page) -> str:
    return str(page.locator("#card-status").inner_text())


def take(page: Page, action: str, status: str) -> None:
    page.locator(f"#card button[data-action='{action}']").click()
    expect(page.locator("#card-status")).to_have_text(status)


def shoot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"{name}.png"))


@pytest.mark.parametrize("size", ["1366", "1920"])
def test_incident_arrives_is_dispatched_and_closed(browser: Browser, server: str, world: World,
                                                   size: str) -> None:
    page = open_page(browser, server, size)
    expect(page.locator("#user")).to_contain_text(DISPLAY_NAME)
    look_at(page, 15, 39.8805, 116.331)
    with api(server) as client:
        incident = report(client, 116.331, 39.8806, "路边暴露垃圾")
    row = page.locator(f"#incident-list li[data-incident-id='{incident}']")
    expect(row).to_be_visible(timeout=LIVE_MS)
    wait_rendered(page, "incidents-circle", incident, LIVE_MS, status="registered")

    row.locator("button").click()
    card = page.locator("#card")
    expect(card).to_be_visible()
    placement = card.locator(".section-placement")
    for shown in ("西城区", "广安门外街道", "三义东里社区", "三义东里1号网格", "李四",
                  "13900000000"):
        expect(placement).to_contain_text(shown)
    teams = card.locator(".section-recommend li.team")
    expect(teams.first).to_contain_text("西城城管一队")  # nearest by road
    expect(teams.first).to_contain_text("分钟")
    expect(card.locator(".countdown")).to_contain_text(re.compile("剩余|已超期"))
    shoot(page, f"flow1-card-{size}")

    teams.first.locator("button.small").click()
    expect(page.locator("#card-status")).to_have_text("派遣")
    wait_rendered(page, "teams-circle", world.teams["xc1"], 5000, status="busy")
    expect(card.locator(".section-dispatches")).to_contain_text("西城城管一队")

    take(page, "start", "处置中")
    take(page, "feedback", "处置反馈")
    take(page, "verify", "核查")
    take(page, "close", "结案")
    wait_rendered(page, "teams-circle", world.teams["xc1"], 5000, status="available")
    expect(card.locator(".section-timeline")).to_contain_text("结案")
    shoot(page, f"flow1-closed-{size}")
    page.context.close()


def test_a_joint_case_summons_and_sends_both_sides(browser: Browser, server: str,
                                                   world: World) -> None:
    page = open_page(browser, server, "1920")
    look_at(page, 15, 39.8815, 116.3497)
    with api(server) as client:
        incident = report(client, 116.3497, 39.8815, "跨界违建")
    expect(page.locator(f"#incident-list li[data-incident-id='{incident}']")).to_be_visible(
        timeout=LIVE_MS)
    page.evaluate("(id) => window.gridopsPage.select(id)", incident)
    card = page.locator("#card")
    placement = card.locator(".section-placement")
    expect(placement).to_contain_text("广外跨界楼")
    expect(placement).to_contain_text("33%")
    expect(placement).to_contain_text("67%")
    groups = card.locator(".rec-group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_contain_text("西城区")
    expect(groups.nth(1)).to_contain_text("丰台区")

    whistle = card.locator(".section-whistle")
    expect(whistle.locator("select[name=kind]")).to_have_value("joint")
    checked = whistle.locator("input[name=department]:checked")
    expect(checked).to_have_count(2)
    assert sorted(int(v) for v in checked.evaluate_all("(xs) => xs.map((x) => x.value)")) \
        == sorted(world.departments.values())
    for k in range(2):
        groups.nth(k).locator("li.team input[type=checkbox]").first.check()
    page.wait_for_function(  # the ticked team's road route is drawn
        "window.gridopsMap.querySourceFeatures('route').length > 0")
    whistle.scroll_into_view_if_needed()
    shoot(page, "flow2-whistle-1920")
    whistle.locator("#blow-whistle").click()

    sent = card.locator(".section-dispatches li.dispatch")
    expect(sent).to_have_count(2)
    expect(card.locator(".section-dispatches")).to_contain_text("西城区城管执法局")
    expect(card.locator(".section-dispatches")).to_contain_text("丰台区城管执法局")
    expect(page.locator("#card-status")).to_have_text("派遣")
    with api(server) as client:
        [blown] = client.get(f"/api/v1/incidents/{incident}/whistles").json()
    assert blown["kind"] == "joint"
    assert {s["department_id"] for s in blown["summoned"]} == set(world.departments.values())
    wait_rendered(page, "teams-circle", world.teams["ft1"], 5000, status="busy")
    shoot(page, "flow2-dispatched-1920")

    page.get_by_role("button", name="English").click()  # and the choice is remembered
    expect(page.locator("#card-status")).to_have_text("Dispatched")
    page.reload()
    expect(page.get_by_role("heading", name="GridOps command center")).to_be_visible()
    page.context.close()
