"""The supervisor page (街巷长考核, /patrol/supervise) in a real browser (Debian's Chromium,
headless, driven by Playwright) against a real server on a fresh database.

The world: 广安门外街道 (110102020) with three streets on lat 39.88 — 张三 is street chief of
S1 (walked every working day of October 2026) and S2 (never walked), 李四 of S3 (walked
every working day), 王五 steward of S1 (walks half of it). The supervisor, an operator,
signs in, sees the month's ranking with 李四 first, S2 drawn as uncovered on the map (a
rendered feature), opens a work log, and switches to English (remembered over a reload).
Screenshots go to $GRIDOPS_ARTIFACTS (default test-artifacts/) at 1366×768 and 390×844."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis import catalog, users
from gis.audit import Actor
from tests.live_server import serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                 "--disable-background-networking"]
USERNAME, PASSWORD, DISPLAY_NAME = "op_wang", "correct horse battery", "王芳"
XICHENG, GUANGWAI = "110102", "110102020"
LAT = 39.88
SIZES: dict[str, ViewportSize] = {"1366": {"width": 1366, "height": 768},
                                  "390": {"width": 390, "height": 844}}
PAGE = "/patrol/supervise?period=month&date=2026-10-15"
WORKING_DAYS = [date(2026, 10, d) for d in (8, 9, 10, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23,
                                            26, 27, 28, 29, 30)]


def artifacts() -> Path:
    """Where screenshots go (gitignored): $GRIDOPS_ARTIFACTS or test-artifacts/."""
    folder = Path(os.environ.get("GRIDOPS_ARTIFACTS", Path(__file__).parent.parent
                                 / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def world(engine: Engine) -> dict[str, int]:
    people: dict[str, int] = {}
    with engine.begin() as conn:
        catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
        for level, code, name in (("district", XICHENG, "西城区"),
                                  ("street", GUANGWAI, "广安门外街道")):
            conn.execute(text(
                "INSERT INTO jurisdictions (level, code, name, geom) VALUES (:l, :c, :n, "
                "ST_Multi(ST_MakeEnvelope(116.25, 39.80, 116.40, 39.95, 4326)))"),
                {"l": level, "c": code, "n": name})
        streets = {}
        for key, x0, x1 in (("S1", 116.300, 116.310), ("S2", 116.300, 116.310),
                            ("S3", 116.315, 116.330)):
            y = LAT + (0.004 if key == "S2" else 0)
            streets[key] = conn.scalar(text(
                "INSERT INTO streets (name, road_class, district_code, street_office_code, "
                "geom) VALUES (:n, 'branch', '110102', :so, ST_Multi(ST_MakeLine("
                "ST_MakePoint(:x0, :y), ST_MakePoint(:x1, :y)))) RETURNING id"),
                {"n": f"街巷{key}", "so": GUANGWAI, "x0": x0, "x1": x1, "y": y})
        for name, assigned in (("张三", [("S1", "street_chief"), ("S2", "street_chief")]),
                               ("李四", [("S3", "street_chief")]),
                               ("王五", [("S1", "steward")])):
            people[name] = conn.scalar(text("INSERT INTO people (name, district_code) "
                                            "VALUES (:n, '110102') RETURNING id"), {"n": name})
            for street, role in assigned:
                conn.execute(text(
                    "INSERT INTO street_assignments (street_id, person_id, role, valid_from) "
                    "VALUES (:s, :p, :r, '2026-01-01T00:00:00+08:00')"),
                    {"s": streets[street], "p": people[name], "r": role})
        for name, street, x0, x1 in (("张三", "S1", 116.300, 116.310),
                                     ("李四", "S3", 116.315, 116.330),
                                     ("王五", "S1", 116.300, 116.305)):
            conn.execute(text("""
                INSERT INTO patrols (person_id, street_id, started_at, ended_at, status,
                                     district_code, track)
                SELECT :p, :s, t0, t0 + interval '20 minutes', 'ended', '110102',
                       ST_SetSRID(ST_MakeLine(
                         ST_MakePointM(:x0, :y, extract(epoch FROM t0)),
                         ST_MakePointM(:x1, :y, extract(epoch FROM t0) + 1200)), 4326)
                FROM (SELECT (d + time '09:00') AT TIME ZONE 'Asia/Shanghai' AS t0
                      FROM unnest(CAST(:days AS date[])) AS d) x
            """), {"p": people[name], "s": streets[street], "x0": x0, "x1": x1, "y": LAT,
                   "days": WORKING_DAYS})
        users.add_user(conn, username=USERNAME, password=PASSWORD, roles=["operator"],
                       display_name=DISPLAY_NAME, by=Actor("test"))
        conn.execute(text("INSERT INTO departments (code, name, dept_type, tier, "
                          "jurisdiction_code) VALUES ('XC-CG', '西城区城管执法局', "
                          "'urban_management', 'core', '110102')"))
        users.add_user(conn, username="disp", password=PASSWORD, roles=["dispatcher"],
                       department_code="XC-CG", by=Actor("test"))
    return {name: int(pid) for name, pid in people.items()}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():  # `make test` installs it: never pass without a browser
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser`")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(settings: Settings, world: dict[str, int]) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


def sign_in(browser: Browser, url: str, size: str, username: str = USERNAME) -> Page:
    context = browser.new_context(base_url=url, locale="zh-CN", viewport=SIZES[size])
    page = context.new_page()
    page.on("console", lambda m: print(f"console.{m.type}: {m.text}") if m.type in (
        "error", "warning") else None)
    page.on("pageerror", lambda e: print(f"pageerror: {e}"))
    page.goto(PAGE)  # signed out: the login page, then back here
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/patrol/supervise\?"))
    return page


def wait_ready(page: Page) -> None:
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=30000)


RENDERED = """(name) => window.gridopsSuperviseMap.queryRenderedFeatures(
    {layers: ['streets-line']}).filter((f) => f.properties.name === name)
    .map((f) => f.properties)"""


@pytest.mark.parametrize("size", ["1366", "390"])
def test_the_supervisor_sees_the_ranking_and_the_uncovered_street(
        browser: Browser, server: str, world: dict[str, int], size: str) -> None:
    page = sign_in(browser, server, size)
    wait_ready(page)
    expect(page.get_by_role("heading", name="街巷长考核")).to_be_visible()
    expect(page.locator("select[name=street_office]")).to_have_value(GUANGWAI)
    chiefs = page.locator("#chiefs tbody tr")
    expect(chiefs).to_have_count(2)
    expect(chiefs.first).to_contain_text("李四")
    expect(chiefs.first.locator(".col-rank")).to_have_text("1")
    expect(chiefs.first.locator(".col-compliance")).to_contain_text("100%")
    expect(chiefs.nth(1)).to_contain_text("张三")
    expect(chiefs.nth(1).locator(".col-compliance")).to_contain_text("50%")
    expect(page.locator("#stewards tbody tr")).to_have_count(1)
    expect(page.locator("#stewards tbody tr").first).to_contain_text("王五")
    expect(page.locator("#period-text")).to_contain_text("18")
    expect(page.locator("#legend")).to_contain_text("未巡查达标")

    page.wait_for_function(f"({RENDERED})('街巷S2').length > 0", timeout=15000)
    [s2] = page.evaluate(RENDERED, "街巷S2")[:1]
    assert s2["state"] == "uncovered" and s2["covered"] is False and s2["chief"] == "张三"
    [s3] = page.evaluate(RENDERED, "街巷S3")[:1]
    assert s3["state"] == "covered"
    page.screenshot(path=str(artifacts() / f"supervise-{size}.png"), full_page=size == "390")

    link = chiefs.first.locator("a")
    assert f"/people/{world['李四']}/worklog" in (link.get_attribute("href") or "")
    assert "format=html" in (link.get_attribute("href") or "")
    csv_href = page.locator("#csv-link").get_attribute("href") or ""
    assert "format=csv" in csv_href and f"street_office={GUANGWAI}" in csv_href
    with page.context.expect_page() as opened:
        link.click()
    log = opened.value
    log.wait_for_load_state()
    expect(log.locator("#person-name")).to_have_text("李四")
    expect(log.locator("h1")).to_contain_text("工作日志")
    log.close()
    page.context.close()


def test_english_toggle_is_remembered_and_filters_reload(browser: Browser, server: str,
                                                         world: dict[str, int]) -> None:
    page = sign_in(browser, server, "1366")
    wait_ready(page)
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Street-chief evaluation")).to_be_visible()
    expect(page.locator("#chiefs thead")).to_contain_text("Score")
    expect(page.locator("#chiefs tbody tr").first.locator(".col-role")).to_have_text(
        "street chief")
    page.reload()
    wait_ready(page)
    expect(page.get_by_role("heading", name="Street-chief evaluation")).to_be_visible()

    page.select_option("select[name=period]", "day")  # 2026-10-15: S2 again uncovered
    wait_ready(page)
    page.wait_for_function("window.gridopsSupervise.state.evaluation.period.period === 'day'")
    expect(page.locator("#period-text")).to_contain_text("1 working days")
    assert "period=day" in page.url
    page.wait_for_function(f"({RENDERED})('街巷S2').length > 0", timeout=15000)
    assert page.evaluate(RENDERED, "街巷S2")[0]["state"] == "uncovered"
    page.screenshot(path=str(artifacts() / "supervise-day-en-1366.png"))
    page.get_by_role("button", name="中文").click()
    expect(page.get_by_role("heading", name="街巷长考核")).to_be_visible()
    page.context.close()


def test_other_roles_get_a_403_page_and_strangers_the_login(settings: Settings,
                                                            world: dict[str, int]) -> None:
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        response = client.get(PAGE, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=/patrol/supervise")
        token = client.post("/api/v1/auth/token", data={"username": "disp",
                                                       "password": PASSWORD}).json()
        response = client.get(PAGE, headers={
            "Authorization": f"Bearer {token['access_token']}"})
        assert response.status_code == 403
        assert "无权访问" in response.text and "Forbidden" in response.text
