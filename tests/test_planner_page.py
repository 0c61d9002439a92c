"""The planner page (网格规划, /planner) in a real browser (Debian's Chromium, headless,
driven by Playwright) against a real server on a fresh database with the plan world of
tests/plan_world.py: community 110102020001 with two live grids of 12 buildings × 35
households (420 each), split by a north–south street.

A planner signs in, creates a plan for the community, drags a paint stroke over two
buildings of the west grid next to the street into the east grid and sees the households
change in the metrics panel (350 / 490); undo and redo (keys and buttons) bring the numbers
back and forth; validation finds the plan valid (已校验); an admin approves it over the API;
the planner looks at the hatched difference and applies it; the database then holds new
versions of both live grids, opened by the plan, and the painted buildings in the east grid.
A viewer sees the plan read-only, a street chief gets the 403 page, anyone signed out the
login page. Screenshots go to /tmp/planner_*.png."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect, sync_playwright
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis import users
from gis.audit import Actor
from tests.live_server import serve
from tests.plan_world import (
    COMMUNITY_A,
    DX,
    DY,
    GRID_EAST,
    GRID_WEST,
    HOUSEHOLDS_A,
    PASSWORD,
    X0,
    Y0,
    PlanWorld,
    build_plan_world,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                 "--disable-background-networking"]
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
SHOTS = Path("/tmp")
PAINTED = (11, 10)  # west grid, column 3 (next to the street), rows 4 and 3: 2 × 35 households
ONE_MORE = 9  # west grid, column 3, row 2 (south of the east–west street)
BEFORE = 12 * HOUSEHOLDS_A
MOVED = len(PAINTED) * HOUSEHOLDS_A
WEST_AFTER, EAST_AFTER = BEFORE - MOVED, BEFORE + MOVED


@pytest.fixture
def world(engine: Engine) -> PlanWorld:
    built = build_plan_world(engine)
    with engine.begin() as conn:
        person = conn.scalar(text("INSERT INTO people (name, district_code) "
                                  "VALUES ('街巷长甲', '110102') RETURNING id"))
        users.add_user(conn, username="chief", password=PASSWORD, roles=["street_chief"],
                       person_id=int(person), by=Actor("test"))
    return built


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # `make test` installs it: never pass without a browser
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser`")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(settings: Settings, world: PlanWorld) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


def sign_in(browser: Browser, url: str, username: str, path: str = "/planner") -> Page:
    context = browser.new_context(base_url=url, locale="zh-CN", viewport=VIEWPORT)
    page = context.new_page()
    page.on("console", lambda m: print(f"console.{m.type}: {m.text} {m.location}") if m.type in (
        "error", "warning") else None)
    page.on("pageerror", lambda e: print(f"pageerror: {e}"))
    page.on("response", lambda r: print(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.goto(path)  # signed out: the login page, then back here
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/planner"))
    wait_ready(page)
    return page


def wait_ready(page: Page) -> None:
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60000)


def households(page: Page, code: str) -> Locator:
    return page.locator("#grid-table tbody tr", has_text=code).locator(".col-households")


def bearer(url: str, username: str) -> dict[str, str]:
    response = httpx.post(f"{url}/api/v1/auth/token",
                          data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def building_points(page: Page, building_ids: list[int]) -> list[tuple[float, float]]:
    """Page coordinates of the middle of each building's footprint on the map."""
    box = page.locator("#map").bounding_box()
    assert box is not None
    points = page.evaluate("""(ids) => {
        const p = window.gridopsPlanner;
        return ids.map((id) => {
          const f = p.state.buildings.features.find((b) => b.properties.id === id);
          const ring = f.geometry.coordinates[0][0];
          const xs = ring.map((c) => c[0]), ys = ring.map((c) => c[1]);
          return p.project([(Math.min(...xs) + Math.max(...xs)) / 2,
                            (Math.min(...ys) + Math.max(...ys)) / 2]);
        });
    }""", building_ids)
    return [(box["x"] + x, box["y"] + y) for x, y in points]


def screen(page: Page, lon: float, lat: float) -> tuple[float, float]:
    """Page coordinates of a point on the map."""
    box = page.locator("#map").bounding_box()
    assert box is not None
    x, y = page.evaluate("(p) => window.gridopsPlanner.project(p)", [lon, lat])
    return box["x"] + x, box["y"] + y


def drag(page: Page, points: list[tuple[float, float]]) -> None:
    """One paint stroke through `points`."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=12)
    page.mouse.up()


def expect_households(page: Page, west: int, east: int) -> None:
    expect(households(page, GRID_WEST)).to_have_text(str(west))
    expect(households(page, GRID_EAST)).to_have_text(str(east))


def test_a_planner_paints_validates_and_applies(browser: Browser, server: str, world: PlanWorld,
                                                engine: Engine) -> None:
    page = sign_in(browser, server, "planner")
    expect(page.get_by_role("heading", name="网格规划")).to_be_visible()
    expect(page.locator("#plan-list")).to_contain_text("暂无方案")

    # a new plan for the community, copied from its live grids
    form = page.locator("#new-plan")
    form.get_by_label("方案名称").fill("测试一社区网格调整")
    form.get_by_label("社区代码").fill(COMMUNITY_A)
    form.get_by_role("button", name="新建方案", exact=True).click()
    expect(page.locator("#plan-status")).to_have_text("草稿")
    wait_ready(page)
    plan_id = page.evaluate("window.gridopsPlanner.state.plan.id")
    expect(page.locator(f"#plan-list [data-plan-id='{plan_id}']")).to_contain_text("草稿")
    expect_households(page, BEFORE, BEFORE)
    expect(page.locator("#summary [data-key='metrics.errors']")).to_have_text("0")
    page.wait_for_function("window.gridopsPlanner.map.loaded()")
    page.screenshot(path=str(SHOTS / "planner_created.png"))

    # paint two buildings of the west grid into the east grid: one stroke
    page.get_by_role("button", name="涂刷", exact=True).click()
    east_id = page.evaluate(f"""window.gridopsPlanner.state.grids.features
        .find((f) => f.properties.code === '{GRID_EAST}').properties.id""")
    page.select_option("#target-grid", str(east_id))
    painted = [world.buildings[GRID_WEST][i] for i in PAINTED]
    drag(page, building_points(page, painted))
    expect_households(page, WEST_AFTER, EAST_AFTER)
    wait_ready(page)
    in_east = page.evaluate("""(ids) => window.gridopsPlanner.state.buildings.features
        .filter((f) => ids.includes(f.properties.id)).map((f) => f.properties.grid_id)""", painted)
    assert in_east == [east_id, east_id]
    expect(page.locator("#plan-meta")).to_contain_text("第 1 版")
    page.wait_for_function("window.gridopsPlanner.map.loaded()")
    page.screenshot(path=str(SHOTS / "planner_painted.png"))

    # undo and redo restore the metrics (keyboard and buttons)
    page.locator("#map canvas").focus()
    page.keyboard.press("Control+z")
    expect_households(page, BEFORE, BEFORE)
    page.keyboard.press("Control+Shift+z")
    expect_households(page, WEST_AFTER, EAST_AFTER)
    page.get_by_role("button", name="撤销", exact=True).click()
    expect_households(page, BEFORE, BEFORE)
    page.get_by_role("button", name="重做", exact=True).click()
    expect_households(page, WEST_AFTER, EAST_AFTER)
    expect(page.get_by_role("button", name="重做", exact=True)).to_be_disabled()

    # one building more (a click) puts the east grid over the band: red, and an issue that
    # shows its grid in red on the map; undo
    [(x, y)] = building_points(page, [world.buildings[GRID_WEST][ONE_MORE]])
    page.mouse.click(x, y)
    expect(households(page, GRID_EAST)).to_have_text(str(EAST_AFTER + HOUSEHOLDS_A))
    expect(households(page, GRID_EAST)).to_have_attribute("data-out-of-band", "true")
    issue = page.locator("#issues [data-rule='households_out_of_band']")
    expect(issue).to_contain_text("户数超标")
    issue.click()
    page.wait_for_function("""window.gridopsPlanner.map.queryRenderedFeatures(
        {layers: ['issue-fill']}).length > 0""")
    page.screenshot(path=str(SHOTS / "planner_issue.png"))
    page.get_by_role("button", name="撤销", exact=True).click()
    expect_households(page, WEST_AFTER, EAST_AFTER)
    expect(page.locator("#issues")).to_contain_text("没有问题")
    wait_ready(page)

    # validate: valid, so 已校验
    page.get_by_role("button", name="校验", exact=True).click()
    expect(page.locator("#plan-status")).to_have_text("已校验")
    expect(page.locator("#summary [data-key='metrics.result']")).to_have_text("通过")
    expect(households(page, GRID_WEST)).to_have_attribute("data-out-of-band", "false")

    # the author may not approve; an admin does, over the API
    expect(page.get_by_role("button", name="批准", exact=True)).to_be_disabled()
    response = httpx.post(f"{server}/api/v1/plans/{plan_id}/approve",
                          json={"comment": "同意调整"}, headers=bearer(server, "admin"))
    assert response.status_code == 200, response.text
    page.reload()
    wait_ready(page)
    expect(page.locator("#plan-status")).to_have_text("已批准")
    expect(page.locator("#comments")).to_contain_text("同意调整")

    # the difference, hatched, and the printable comparison
    page.get_by_role("button", name="差异", exact=True).click()
    expect(page.locator("#diff-box")).to_be_visible()
    expect(page.locator("#diff-summary [data-key='diff.households']")).to_have_text(str(MOVED))
    page.wait_for_function("""window.gridopsPlanner.map.queryRenderedFeatures(
        {layers: ['diff-fill']}).length > 0""")
    expect(page.locator("#comparison")).to_have_attribute(
        "href", re.compile(rf"/api/v1/plans/{plan_id}/comparison$"))
    page.screenshot(path=str(SHOTS / "planner_diff.png"))

    # apply, confirming in the dialog
    page.get_by_role("button", name="实施", exact=True).click()
    dialog = page.locator("#apply-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-key='diff.households']")).to_have_text(str(MOVED))
    dialog.get_by_role("button", name="确认实施").click()
    expect(page.locator("#plan-status")).to_have_text("已实施")
    wait_ready(page)
    expect(page.get_by_role("button", name="涂刷", exact=True)).to_be_disabled()
    page.screenshot(path=str(SHOTS / "planner_applied.png"))

    with engine.connect() as conn:
        assert conn.scalar(text("SELECT status FROM grid_plans WHERE id = :p"),
                           {"p": plan_id}) == "applied"
        live = conn.execute(text(
            "SELECT code, households, plan_id FROM grids WHERE valid_to IS NULL "
            "AND code IN (:w, :e) ORDER BY code"), {"w": GRID_WEST, "e": GRID_EAST}).all()
        assert [(r.code, r.households, r.plan_id) for r in live] == [
            (GRID_WEST, WEST_AFTER, plan_id), (GRID_EAST, EAST_AFTER, plan_id)]
        closed = conn.scalar(text("SELECT count(*) FROM grids WHERE code IN (:w, :e) "
                                  "AND valid_to IS NOT NULL"), {"w": GRID_WEST, "e": GRID_EAST})
        assert closed == 2
        moved = conn.scalars(text("SELECT grid_code FROM buildings WHERE id = ANY(:ids)"),
                             {"ids": painted}).all()
        assert moved == [GRID_EAST, GRID_EAST]
    page.context.close()


def test_split_merge_and_a_new_grid(browser: Browser, server: str, world: PlanWorld) -> None:
    created = httpx.post(f"{server}/api/v1/plans", json={"name": "分割合并",
                                                         "community_codes": [COMMUNITY_A]},
                         headers=bearer(server, "planner"))
    assert created.status_code == 201, created.text
    page = sign_in(browser, server, "planner", f"/planner?plan={created.json()['id']}")
    expect_households(page, BEFORE, BEFORE)
    rows = page.locator("#grid-table tbody tr")
    half = BEFORE // 2

    # split the east grid along the east–west street: select it, click a line across it
    mid, street_y = X0 + DX / 2, Y0 + DY / 2
    page.mouse.click(*screen(page, X0 + DX * 0.9, Y0 + DY * 0.9))
    expect(page.locator("#grid-table tr.selected")).to_contain_text(GRID_EAST)
    page.get_by_role("button", name="分割", exact=True).click()
    page.mouse.click(*screen(page, mid - DX * 0.05, street_y + DY * 0.01))
    page.mouse.dblclick(*screen(page, X0 + DX * 1.05, street_y - DY * 0.01))
    expect(rows).to_have_count(3)
    expect(households(page, GRID_EAST)).to_have_text(str(half))
    new_row = page.locator("#grid-table tbody tr", has_text="新网格")
    expect(new_row.locator(".col-households")).to_have_text(str(half))
    expect(new_row.locator(".col-households")).to_have_attribute("data-out-of-band", "true")
    page.wait_for_function("""window.gridopsPlanner.map.queryRenderedFeatures(
        {layers: ['snapped-line']}).length > 0""")
    page.screenshot(path=str(SHOTS / "planner_split.png"))

    # merge the two halves again: the new grid stays, empty, so that undo and redo work
    # (picked in the table: the cells go into the first one picked)
    page.get_by_role("button", name="合并", exact=True).click()
    rows.filter(has_text=GRID_EAST).click()
    new_row.click()
    page.get_by_role("button", name="合并所选（2）").click()
    expect(households(page, GRID_EAST)).to_have_text(str(BEFORE))
    expect(new_row.locator(".col-households")).to_have_text("0")
    expect(new_row).to_contain_text("（空）")
    page.get_by_role("button", name="撤销", exact=True).click()
    expect(households(page, GRID_EAST)).to_have_text(str(half))
    page.get_by_role("button", name="撤销", exact=True).click()
    expect_households(page, BEFORE, BEFORE)
    expect(new_row.locator(".col-households")).to_have_text("0")

    # paint into a new grid made from the target list
    page.get_by_role("button", name="涂刷", exact=True).click()
    page.select_option("#target-grid", "new")
    expect(rows).to_have_count(4)
    page.mouse.click(*building_points(page, [world.buildings[GRID_WEST][0]])[0])
    expect(households(page, GRID_WEST)).to_have_text(str(BEFORE - HOUSEHOLDS_A))
    target = page.evaluate("window.gridopsPlanner.state.target")
    expect(page.locator(f"#grid-table tr[data-grid-id='{target}'] .col-households")
           ).to_have_text(str(HOUSEHOLDS_A))
    wait_ready(page)
    page.context.close()


def _layer(path: Path, halves: str) -> Path:
    """A GeoJSON layer cutting community A in two halves ("ns": north and south, "we": west
    and east)."""
    x1, y1, xm, ym = X0 + DX, Y0 + DY, X0 + DX / 2, Y0 + DY / 2
    boxes = ([(X0, Y0, x1, ym), (X0, ym, x1, y1)] if halves == "ns"
             else [(X0, Y0, xm, y1), (xm, Y0, x1, y1)])
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": f"{halves}{i}", "community_code": COMMUNITY_A},
         "geometry": {"type": "Polygon", "coordinates": [[[a, b], [c, b], [c, d], [a, d], [a, b]]]}}
        for i, (a, b, c, d) in enumerate(boxes)]}), encoding="utf-8")
    return path


def test_import_and_merge_layers(browser: Browser, server: str, world: PlanWorld,
                                 tmp_path: Path) -> None:
    page = sign_in(browser, server, "planner")
    rows = page.locator("#grid-table tbody tr")

    page.locator("#import-box summary").click()
    form = page.locator("#import-form")
    form.get_by_label("文件").set_input_files(str(_layer(tmp_path / "综治网格.geojson", "ns")))
    form.get_by_label("方案名称").fill("导入南北两格")
    form.get_by_role("button", name="导入").click()
    expect(page.locator("#plan-name")).to_have_text("导入南北两格")
    expect(page.locator("#plan-meta")).to_contain_text("导入")
    expect(rows).to_have_count(2)
    expect(page.locator("#summary [data-key='metrics.households']")).to_have_text(str(2 * BEFORE))
    for row in range(2):
        expect(rows.nth(row).locator(".col-households")).to_have_text(str(BEFORE))

    page.locator("#merge-box summary").click()
    form = page.locator("#merge-layers-form")
    form.get_by_label("专业网格图层").set_input_files(
        [str(_layer(tmp_path / "城管网格.geojson", "ns")),
         str(_layer(tmp_path / "应急网格.geojson", "we"))])
    form.get_by_label("方案名称").fill("多网合一试点")
    form.get_by_label("社区代码").fill(COMMUNITY_A)
    form.get_by_role("button", name="合并生成全科网格").click()
    expect(page.locator("#plan-name")).to_have_text("多网合一试点")
    expect(page.locator("#plan-meta")).to_contain_text("多网合一")
    expect(page.locator("#summary [data-key='metrics.households']")).to_have_text(str(2 * BEFORE))
    expect(page.locator("#summary [data-key='metrics.unassigned']")).to_have_text("0")
    expect(page.locator("#plan-list .plan-item")).to_have_count(2)
    wait_ready(page)
    page.wait_for_function("window.gridopsPlanner.map.loaded()")
    page.screenshot(path=str(SHOTS / "planner_merged_layers.png"))
    page.context.close()


def test_a_viewer_reads_and_errors_are_readable(browser: Browser, server: str,
                                                world: PlanWorld) -> None:
    created = httpx.post(f"{server}/api/v1/plans", json={"name": "只读查看",
                                                         "community_codes": [COMMUNITY_A]},
                         headers=bearer(server, "planner"))
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]

    page = sign_in(browser, server, "viewer", f"/planner?plan={plan_id}")
    expect(page.locator("#plan-name")).to_have_text("只读查看")
    expect(page.locator("#user-mode")).to_have_text("只读")
    expect(households(page, GRID_WEST)).to_have_text(str(BEFORE))
    expect(page.locator("#new-plan")).to_be_hidden()
    for name in ("涂刷", "分割", "合并", "校验", "批准", "实施"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="差异", exact=True)).to_be_enabled()
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Grid planning")).to_be_visible()
    expect(page.locator("#user-mode")).to_have_text("read-only")
    expect(households(page, GRID_EAST)).to_have_attribute("data-out-of-band", "false")
    page.wait_for_function("window.gridopsPlanner.map.loaded()")
    page.screenshot(path=str(SHOTS / "planner_viewer_en.png"))
    page.context.close()

    # a planner asking for a community that does not exist gets the server's reason
    page = sign_in(browser, server, "planner")  # a new browser context: Chinese again
    form = page.locator("#new-plan")
    form.get_by_label("方案名称").fill("不存在的社区")
    form.get_by_label("社区代码").fill("110102020099")
    form.get_by_role("button", name="新建方案", exact=True).click()
    expect(page.locator("#status")).to_have_attribute("data-kind", "error")
    expect(page.locator("#status")).to_contain_text("操作失败")
    expect(page.locator(".toast-error")).to_contain_text("110102020099")
    page.context.close()


def test_who_gets_the_page(settings: Settings, world: PlanWorld) -> None:
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        anonymous = client.get("/planner?plan=1", follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/login?next=/planner%3Fplan%3D1"
        for username, expected in (("planner", 200), ("admin", 200), ("viewer", 200),
                                   ("op_ft", 200), ("chief", 403)):
            token = client.post("/api/v1/auth/token",
                                data={"username": username, "password": PASSWORD})
            page = client.get("/planner", headers={
                "Authorization": f"Bearer {token.json()['access_token']}"})
            assert page.status_code == expected, username
            if expected == 403:
                assert "无权访问" in page.text and "/static/planner/main.js" not in page.text
            else:
                assert "/static/planner/main.js" in page.text
                assert "/vendor/maplibre-gl/maplibre-gl.js" in page.text
