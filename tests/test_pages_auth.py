"""Signing in through the pages: the login page, the map page behind it, sign-out, and the
`next` parameter that must never leave the site. Browser tests drive Debian's Chromium
against a real uvicorn server; the rest use the TestClient over https (Secure cookies)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)
from sqlalchemy import Engine, text

from api.app import create_app
from api.routers.pages import safe_next
from api.security import CSRF_COOKIE, SESSION_COOKIE
from api.settings import Settings
from gis import auth, users
from gis.audit import Actor

pytest_plugins = ["live_server"]  # fixtures: live_server, live_server_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                 "--disable-background-networking"]
USERNAME, PASSWORD, DISPLAY_NAME = "op_zhang", "correct horse battery", "张伟"
SQUARE = "MULTIPOLYGON(((116.3 39.9,116.31 39.9,116.31 39.91,116.3 39.91,116.3 39.9)))"
WRONG = "username or password is wrong"  # the server's words (api/routers/auth.py)


@pytest.fixture
def operator(engine: Engine) -> str:
    """An operator (city-wide) in a database holding one district, 西城区; its username."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) VALUES "
                          "('district', '110102', '西城区', ST_GeomFromText(:w, 4326))"),
                     {"w": SQUARE})
        users.add_user(conn, username=USERNAME, password=PASSWORD, roles=["operator"],
                       display_name=DISPLAY_NAME, by=Actor("test"))
    return USERNAME


# -- pages without a browser -------------------------------------------------------------


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="https://testserver") as test_client:
        yield test_client


def login_config(html: str) -> dict[str, object]:
    """The JSON config the login page hands to login.js."""
    match = re.search(r'<script id="gridops-config" type="application/json">(.*?)</script>',
                      html, re.S)
    assert match is not None
    config: dict[str, object] = json.loads(match.group(1))
    return config


@pytest.mark.parametrize("cookie", [None, "forged.signature"])
def test_map_page_sends_anyone_not_signed_in_to_login(
    client: TestClient, cookie: str | None
) -> None:
    if cookie:
        client.cookies.set(SESSION_COOKIE, cookie)
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/"
    assert response.headers["cache-control"] == "no-store"


def test_login_page_is_a_chinese_first_accessible_form(client: TestClient) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    assert '<html lang="zh-CN">' in html
    assert "<title>GridOps 登录</title>" in html and ">GridOps 登录</h1>" in html
    assert 'id="lang-toggle"' in html
    assert '<label for="username"' in html and '<label for="password"' in html
    assert 'autocomplete="username"' in html and 'autocomplete="current-password"' in html
    assert 'method="post"' in html  # never a GET: no password in a URL
    assert 'role="alert" aria-live="assertive"' in html
    assert "/static/login.js" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    assert login_config(html) == {"apiBase": "/api/v1", "next": "/", "csrfCookie": CSRF_COOKIE}
    assert client.get("/static/login.js").status_code == 200


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/", "/"),
        ("/#12/39.9/116.4", "/#12/39.9/116.4"),
        ("/incidents?status=open", "/incidents?status=open"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
        ("", "/"),
    ],
)
def test_next_is_kept_only_when_it_is_a_path_on_this_site(
    client: TestClient, given: str, kept: str
) -> None:
    assert safe_next(given) == kept
    html = client.get("/login", params={"next": given}).text
    assert login_config(html)["next"] == kept


def test_signed_in_map_page_names_the_user_and_offers_sign_out(
    client: TestClient, operator: str
) -> None:
    response = client.post("/api/v1/auth/login", json={"username": operator,
                                                        "password": PASSWORD})
    assert response.status_code == 200
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert DISPLAY_NAME in page.text and operator in page.text
    assert 'data-roles="operator"' in page.text
    assert f'data-csrf-cookie="{CSRF_COOKIE}"' in page.text
    assert 'id="logout"' in page.text and ">退出</button>" in page.text


def test_docs_stay_public(client: TestClient) -> None:
    assert client.get("/docs", follow_redirects=False).status_code == 200


def test_login_page_renders_while_the_database_is_down(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(env="test", home=tmp_path / "home",
                        database_url=f"postgresql://gridops:x@127.0.0.1:{port}/gridops")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        assert client.get("/login").status_code == 200


# -- in the browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():  # `make test` installs it: never pass without a browser
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser` "
                    "(apt-get install chromium fonts-noto-cjk)")
    with sync_playwright() as driver:
        yield driver


def launch(playwright: Playwright, *extra_args: str) -> Browser:
    """Debian's Chromium, headless."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


def new_context(browser: Browser, url: str) -> BrowserContext:
    return browser.new_context(base_url=url, locale="zh-CN",
                               viewport={"width": 1366, "height": 768})


@pytest.fixture
def context(browser: Browser, live_server: str) -> Iterator[BrowserContext]:
    ctx = new_context(browser, live_server)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, username: str = USERNAME, password: str = PASSWORD) -> None:
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def path_of(page: Page) -> str:
    """The page's URL without the origin."""
    return re.sub(r"^https?://[^/]+", "", page.url)


def session_cookie(context: BrowserContext) -> dict[str, object]:
    found = [c for c in context.cookies() if c.get("name") == SESSION_COOKIE]
    assert len(found) == 1, context.cookies()
    return dict(found[0])


def test_anonymous_visit_lands_on_the_login_page(page: Page, live_server: str) -> None:
    page.goto("/")
    assert path_of(page) == "/login?next=/"
    expect(page.get_by_role("heading", name="GridOps 登录")).to_be_visible()
    expect(page.get_by_label("用户名")).to_be_focused()


def test_wrong_password_shows_the_servers_reason(page: Page, operator: str) -> None:
    page.goto("/login")
    sign_in(page, password="not the password")
    message = page.get_by_role("alert")
    expect(message).to_contain_text("用户名或密码错误")
    expect(message).to_contain_text(WRONG)
    expect(page.get_by_label("密码")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("密码")).to_be_focused()
    assert path_of(page) == "/login"
    page.get_by_role("button", name="English").click()
    expect(message).to_have_text(re.compile(f"^{WRONG}"))  # the server's words, once
    expect(page.get_by_role("heading", name="GridOps sign in")).to_be_visible()


def test_login_lands_on_the_map_naming_the_user_with_a_secure_httponly_cookie(
    page: Page, context: BrowserContext, operator: str
) -> None:
    page.goto("/")
    sign_in(page)
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/(#.*)?$"))
    panel = page.locator("#user")
    expect(panel).to_contain_text(DISPLAY_NAME)
    expect(panel).to_contain_text(operator)
    expect(panel).to_contain_text("受理员")
    expect(page.get_by_role("status")).to_have_text("已加载 1 个边界")  # the API let us in
    cookie = session_cookie(context)
    assert cookie["httpOnly"] is True and cookie["secure"] is True
    assert cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").startswith(f"{CSRF_COOKIE}=")  # not the session


def test_sign_out_revokes_the_session_and_returns_to_login(
    page: Page, context: BrowserContext, live_server: str, operator: str
) -> None:
    page.goto("/login")
    sign_in(page)
    expect(page.locator("#user")).to_contain_text(DISPLAY_NAME)
    expect(page.get_by_role("status")).to_have_text(re.compile("已加载"))  # the page is wired
    token = str(session_cookie(context)["value"])
    page.get_by_role("button", name="退出").click()
    page.wait_for_url(re.compile(r"/login$"))
    assert not [c for c in context.cookies() if c.get("name") == SESSION_COOKIE]
    page.goto("/")
    assert path_of(page) == "/login?next=/"
    replayed = httpx.get(f"{live_server}/api/v1/auth/me", cookies={SESSION_COOKIE: token})
    assert replayed.status_code == 401  # revoked on the server, not just forgotten


def test_an_expired_session_on_the_map_signs_in_again_and_comes_back(
    page: Page, context: BrowserContext, engine: Engine, operator: str
) -> None:
    page.goto("/login")
    sign_in(page)
    expect(page.get_by_role("status")).to_have_text("已加载 1 个边界")
    session_id = str(session_cookie(context)["value"]).rpartition(".")[0]
    with engine.begin() as conn:
        auth.revoke_session(conn, session_id)
    page.evaluate("window.location.hash = '#14/39.905/116.305'")  # grids load -> 401
    page.wait_for_url(re.compile(r"/login\?next="))
    assert path_of(page) == "/login?next=%2F%2314%2F39.905%2F116.305"
    sign_in(page)
    page.wait_for_url(re.compile(r"/#14/39\.905/116\.305$"))


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/",
                                    "/\\evil.example"])
def test_next_cannot_send_the_user_off_the_site(
    page: Page, live_server: str, operator: str, target: str
) -> None:
    page.goto("/login?" + str(httpx.QueryParams({"next": target})))
    sign_in(page)
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/(#.*)?$"))
    assert page.url.startswith(f"{live_server}/")


def test_too_many_failures_show_when_to_retry(
    browser: Browser, settings: Settings, operator: str,
    live_server_for: Callable[[Settings], AbstractContextManager[str]],
) -> None:
    strict = settings.model_copy(update={"login_max_failures": 2})
    with live_server_for(strict) as url, closing(new_context(browser, url)) as context:
        page = context.new_page()
        page.goto("/login")
        for _ in range(2):
            sign_in(page, password="not the password")
            expect(page.get_by_role("alert")).to_contain_text(WRONG)
        sign_in(page)  # even the right password waits now
        message = page.get_by_role("alert")
        expect(message).to_contain_text("尝试次数过多，请在 15 分钟后重试")
        expect(message).to_contain_text("too many failed logins")
        assert path_of(page) == "/login"


def test_plain_http_from_another_host_says_why_the_login_did_not_stick(
    playwright: Playwright, live_server: str, operator: str
) -> None:
    """Over http:// from a host that is not loopback, Chromium drops Secure cookies: the
    login page says so instead of bouncing back to itself."""
    port = live_server.rpartition(":")[2]
    chromium = launch(playwright, "--host-resolver-rules=MAP gridops.test 127.0.0.1")
    try:
        page = chromium.new_page(base_url=f"http://gridops.test:{port}", locale="zh-CN")
        page.goto("/login")
        sign_in(page)
        expect(page.get_by_role("alert")).to_contain_text("浏览器没有保存登录 Cookie")
        assert path_of(page) == "/login"
    finally:
        chromium.close()
