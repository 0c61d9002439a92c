"""Street signs (公示牌): the printable SVG (content, escaping, a QR code that decodes to the
street's public report page) and who may print it, on a small world:

  西城 110102 (广安门外街道 110102020) west of x = 116.35 and 丰台 110106 (太平桥街道
  110106005) east of it, a community and a grid in each, the full event catalog;
  广安门外大街 (arterial, 广外) with its 街长 李四 and 小巷管家 王五;
  <太平桥> 胡同 (alley, 太平桥) with its 巷长 赵六 (no phone: the street office's hotline);
  one user per role and scope.

`build_world` is shared with tests/test_street_report.py and test_street_report_page.py.
"""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import segno
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import catalog, users
from gis.audit import Actor
from tests.test_command_page import CHROMIUM, CHROMIUM_ARGS, artifacts

PASSWORD = "correct horse battery"
XICHENG, FENGTAI = "110102", "110106"
GUANGWAI, TAIPINGQIAO = "110102020", "110106005"
STREET_LAT = 39.8805  # 广安门外大街 runs along this latitude from 116.31 to 116.3499
ALLEY_NAME = "<太平桥> 胡同 & 东"  # markup characters: the SVG must escape them
HOTLINE = "010-63456789"
SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class SignWorld:
    street_id: int
    alley_id: int
    chief_id: int
    steward_id: int
    alley_chief_id: int


def _box(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


def _person(conn: Connection, name: str, phone: str | None, post: str, organisation: str,
            district: str) -> int:
    return int(conn.scalar(text(
        "INSERT INTO people (name, phone, post, organisation, district_code) "
        "VALUES (:n, :p, :post, :org, :d) RETURNING id"),
        {"n": name, "p": phone, "post": post, "org": organisation, "d": district}))


def _assign(conn: Connection, street: int, person: int, role: str) -> None:
    conn.execute(text("INSERT INTO street_assignments (street_id, person_id, role, valid_from) "
                      "VALUES (:s, :p, :r, now() - interval '1 day')"),
                 {"s": street, "p": person, "r": role})


def build_world(engine: Engine) -> SignWorld:
    """The small world of the module docstring, with its users (password PASSWORD)."""
    west, east = (116.30, 39.86, 116.35, 39.90), (116.35, 39.86, 116.40, 39.90)
    with engine.begin() as conn:
        catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
        for level, code, name, box in (
                ("district", XICHENG, "西城区", west), ("district", FENGTAI, "丰台区", east),
                ("street", GUANGWAI, "广安门外街道", west),
                ("street", TAIPINGQIAO, "太平桥街道", east),
                ("community", GUANGWAI + "001", "三义东里社区", west),
                ("community", TAIPINGQIAO + "001", "东管头社区", east)):
            conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                              "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                         {"l": level, "c": code, "n": name, "g": _box(*box)})
        for code, name, box in ((GUANGWAI + "001001", "三义东里1号网格", west),
                                (TAIPINGQIAO + "001001", "东管头1号网格", east)):
            conn.execute(text("INSERT INTO grids (code, name, households, geom) "
                              "VALUES (:c, :n, 400, ST_GeomFromText(:g, 4326))"),
                         {"c": code, "n": name, "g": _box(*box)})
        conn.execute(text("""
            INSERT INTO departments (code, name, dept_type, tier, jurisdiction_code, phone)
            VALUES ('XC-CG', '西城区城管执法局', 'chengguan', 'core', :xc, NULL),
                   ('TPQ', '太平桥街道办事处', 'street_office', 'core', :tpq, :hotline)"""),
                     {"xc": XICHENG, "tpq": TAIPINGQIAO, "hotline": HOTLINE})
        street = int(conn.scalar(text(
            "INSERT INTO streets (name, road_class, district_code, street_office_code, geom) "
            "VALUES ('广安门外大街', 'arterial', :d, :s, ST_GeomFromText("
            "'MULTILINESTRING((116.31 39.8805,116.3499 39.8805))', 4326)) RETURNING id"),
            {"d": XICHENG, "s": GUANGWAI}))
        alley = int(conn.scalar(text(
            "INSERT INTO streets (name, road_class, district_code, street_office_code, geom) "
            "VALUES (:n, 'alley', :d, :s, ST_GeomFromText("
            "'MULTILINESTRING((116.36 39.87,116.37 39.87),(116.37 39.8702,116.38 39.8702))',"
            " 4326)) RETURNING id"), {"n": ALLEY_NAME, "d": FENGTAI, "s": TAIPINGQIAO}))
        chief = _person(conn, "李四", "13900000000", "街道工委委员", "广安门外街道办事处",
                        XICHENG)
        steward = _person(conn, "王五", "13700000001", "小巷管家（居民志愿者）",
                          "广安门外街道办事处", XICHENG)
        alley_chief = _person(conn, "赵六", None, "科长", "太平桥街道办事处", FENGTAI)
        _assign(conn, street, chief, "street_chief")
        _assign(conn, street, steward, "steward")
        _assign(conn, alley, alley_chief, "alley_chief")
        by = Actor("test")
        for username, roles, scope, extra in (
                ("admin", ["admin"], [], {}),
                ("op_xc", ["operator"], [XICHENG], {}),
                ("op_gw", ["operator"], [GUANGWAI], {}),
                ("op_ft", ["operator"], [FENGTAI], {}),
                ("op_city", ["operator"], [], {}),
                ("viewer_xc", ["viewer"], [XICHENG], {}),
                ("viewer_ft", ["viewer"], [FENGTAI], {}),
                ("planner", ["planner"], [], {}),
                ("disp", ["dispatcher"], [], {"department_code": "XC-CG"}),
                ("chief", ["street_chief"], [], {"person_id": chief}),
                ("steward", ["street_chief"], [], {"person_id": steward}),
                ("alley_chief", ["street_chief"], [], {"person_id": alley_chief})):
            users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                           scope_codes=scope, by=by, **extra)
    return SignWorld(street, alley, chief, steward, alley_chief)


def bearer(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/token",
                           data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def world(engine: Engine) -> SignWorld:
    return build_world(engine)


@pytest.fixture
def client(settings: Settings, world: SignWorld) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def texts(svg: ET.Element) -> list[str]:
    """Every text element's content, in document order."""
    return ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]


def qr_path(url: str) -> str:
    """The path data segno draws for `url` (as gis.signs makes it: error level M)."""
    buffer = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buffer, kind="svg", border=4, xmldecl=False)
    found = re.search(rb' d="([^"]+)"', buffer.getvalue())
    assert found
    return found.group(1).decode()


def test_the_sign_names_the_street_its_people_duties_phone_and_report_page(
        client: TestClient, world: SignWorld) -> None:
    response = client.get(f"/api/v1/streets/{world.street_id}/sign.svg",
                          headers=bearer(client, "admin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(response.content)  # well-formed XML
    assert svg.tag == f"{SVG}svg"
    assert svg.get("viewBox") == "0 0 210 297"  # A4 portrait, in millimetres
    assert "Noto Sans CJK SC" in (svg.get("font-family") or "")
    shown = texts(svg)
    for expected in ("街巷长公示牌", "广安门外大街", "街长", "李四", "王五", "13900000000",
                     "知情", "监督", "处置", "评价", "西城区 · 广安门外街道"):
        assert any(expected in line for line in shown), (expected, shown)
    assert any("街道工委委员" in line and "广安门外街道办事处" in line for line in shown)
    url = f"http://testserver/report/street/{world.street_id}"
    assert url in shown
    # the QR code is segno's drawing of the report page's URL, embedded as a path
    paths = [p.get("d") for p in svg.iter(f"{SVG}path")]
    assert paths == [qr_path(url)]
    assert not list(svg.iter(f"{SVG}image"))  # no external image


def test_an_alley_sign_says_alley_chief_escapes_its_name_and_falls_back_to_the_hotline(
        client: TestClient, world: SignWorld) -> None:
    response = client.get(f"/api/v1/streets/{world.alley_id}/sign.svg",
                          headers=bearer(client, "op_ft"))
    assert response.status_code == 200, response.text
    assert b"&lt;" in response.content and b"&amp;" in response.content
    shown = texts(ET.fromstring(response.content))
    assert ALLEY_NAME in shown  # parsed back: escaped, not dropped
    assert "巷长" in shown and "赵六" in shown
    assert HOTLINE in shown  # the chief has no phone: the street office's hotline
    assert "街道办事处值班电话" in shown


def test_the_qr_code_of_the_rendered_sign_decodes_to_the_report_page(
        client: TestClient, world: SignWorld) -> None:
    """Draw the SVG as a browser does (Chromium, 150 dpi) and read the QR code from the
    pixels with zxing-cpp."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser`")
    try:
        import zxingcpp
    except ImportError:  # a dev dependency: never pass without decoding
        pytest.fail("zxing-cpp is not installed: pip install -e '.[dev]'")
    response = client.get(f"/api/v1/streets/{world.street_id}/sign.svg",
                          headers=bearer(client, "chief"))
    assert response.status_code == 200, response.text
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 794, "height": 1123})
        page.set_content(f"<body style='margin:0'>{response.text.split('?>', 1)[1]}</body>")
        page.screenshot(path=str(artifacts() / "street-sign.png"))
        width, height, pixels = page.evaluate(RASTERISE, response.text)
        browser.close()
    grey = np.frombuffer(base64.b64decode(pixels), dtype=np.uint8).reshape(height, width)
    found = zxingcpp.read_barcodes(grey)
    assert [code.text for code in found] == [
        f"http://testserver/report/street/{world.street_id}"]
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode


# The SVG drawn into a canvas at 150 dpi; its green channel (grey on a white sign) as base64.
RASTERISE = """async (svg) => {
  const image = new Image();
  image.src = URL.createObjectURL(new Blob([svg], {type: "image/svg+xml"}));
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = 1240; canvas.height = 1754;
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const grey = new Uint8Array(canvas.width * canvas.height);
  for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i + 1];
  let binary = "";
  for (let i = 0; i < grey.length; i += 32768) {
    binary += String.fromCharCode.apply(null, grey.subarray(i, i + 32768));
  }
  return [canvas.width, canvas.height, btoa(binary)];
}"""


@pytest.mark.parametrize(("username", "street", "expected"), [
    (None, "street", 401),
    ("admin", "street", 200),
    ("op_xc", "street", 200),  # district scope
    ("op_gw", "street", 200),  # street office scope
    ("op_city", "street", 200),  # city-wide
    ("op_ft", "street", 403),  # another district
    ("op_gw", "alley", 403),  # another street office
    ("viewer_xc", "street", 200),
    ("viewer_ft", "street", 403),
    ("planner", "alley", 200),  # city-wide planner
    ("disp", "street", 403),  # departments print no signs
    ("chief", "street", 200),  # their own street
    ("steward", "street", 200),  # 小巷管家 of the street
    ("chief", "alley", 403),  # someone else's
    ("alley_chief", "alley", 200),
    ("alley_chief", "street", 403),
])
def test_who_may_print_a_sign(client: TestClient, world: SignWorld, username: str | None,
                              street: str, expected: int) -> None:
    street_id = world.street_id if street == "street" else world.alley_id
    headers = bearer(client, username) if username else {}
    response = client.get(f"/api/v1/streets/{street_id}/sign.svg", headers=headers)
    assert response.status_code == expected, response.text
    if expected == 403:
        field = "role" if username == "disp" else "street_id"
        assert response.json()["detail"][0]["field"] == field


def test_an_unknown_street_has_no_sign(client: TestClient, world: SignWorld) -> None:
    response = client.get("/api/v1/streets/999999/sign.svg", headers=bearer(client, "admin"))
    assert response.status_code == 404
    assert response.json()["detail"][0]["field"] == "street_id"
    assert client.get("/api/v1/streets/0/sign.svg",
                      headers=bearer(client, "admin")).status_code == 422


def test_the_sheet_of_a_street_office_has_one_page_per_sign(
        client: TestClient, world: SignWorld, engine: Engine) -> None:
    with engine.begin() as conn:  # a second street in 广外, no chief yet
        conn.execute(text(
            "INSERT INTO streets (name, road_class, district_code, street_office_code, geom) "
            "VALUES ('三义东里', 'branch', :d, :s, ST_GeomFromText("
            "'MULTILINESTRING((116.32 39.87,116.33 39.87))', 4326))"),
            {"d": XICHENG, "s": GUANGWAI})
    response = client.get(f"/signs?street_office={GUANGWAI}", headers=bearer(client, "op_gw"))
    assert response.status_code == 200, response.text
    html = response.text
    assert html.count("<svg ") == 2 and html.count('class="sheet"') == 2
    assert "广安门外大街" in html and "三义东里" in html and "（待定）" in html
    # a chief gets only their own streets of the office
    own = client.get(f"/signs?street_office={GUANGWAI}", headers=bearer(client, "chief"))
    assert own.status_code == 200 and own.text.count("<svg ") == 1
    assert "另有 1 条街巷不在您的范围内" in own.text


@pytest.mark.parametrize(("username", "office", "expected"), [
    (None, GUANGWAI, 303),
    ("op_ft", GUANGWAI, 403),
    ("disp", GUANGWAI, 403),
    ("admin", "110102999", 404),
    ("admin", "abc", 422),
    ("admin", TAIPINGQIAO, 200),
])
def test_who_may_see_the_sheet(client: TestClient, world: SignWorld, username: str | None,
                               office: str, expected: int) -> None:
    headers = bearer(client, username) if username else {}
    response = client.get(f"/signs?street_office={office}", headers=headers,
                          follow_redirects=False)
    assert response.status_code == expected, response.text
    if expected == 303:
        assert response.headers["location"].startswith("/login?next=")
