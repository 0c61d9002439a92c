"""The public report behind a sign's QR code (`POST /api/v1/public/street-reports`, no
sign-in): it creates a `citizen` incident on that street, routed to its chief, with the
photo, in one transaction; retries with the same key give the same report; bad photos,
classes, phones and positions are refused naming the field, leaving nothing behind; the
rate per client address is limited; garbage never makes a 500. The world is
tests/test_street_signs.py's."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from tests.test_street_signs import STREET_LAT, SignWorld, build_world

REPORTS = "/api/v1/public/street-reports"
NEAR = (116.3300, STREET_LAT + 0.0002)  # ~22 m north of 广安门外大街
FAR = (116.3300, STREET_LAT + 0.009)  # ~1 km north


def png(width: int = 8, height: int = 8, shade: int = 90) -> bytes:
    """A small grey PNG, made by hand (no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def world(engine: Engine) -> SignWorld:
    return build_world(engine)


@pytest.fixture
def client(settings: Settings, world: SignWorld) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def form(world: SignWorld, **fields: Any) -> dict[str, str]:
    base: dict[str, Any] = {"street_id": world.street_id, "event_code": "0101",
                            "description": "路边有一堆暴露垃圾", "lon": NEAR[0], "lat": NEAR[1]}
    base.update(fields)
    return {k: str(v) for k, v in base.items() if v is not None}


def post(client: TestClient, data: dict[str, str], key: str = "key-0001",
         photo: tuple[str, bytes, str] | None = None) -> Any:
    files = {"photo": photo} if photo else None
    return client.post(REPORTS, data=data, files=files, headers={"Idempotency-Key": key})


def count(engine: Engine, table: str = "incidents") -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text(f"SELECT count(*) FROM {table}")))  # noqa: S608 - constant


def field_of(response: Any) -> str:
    return str(response.json()["detail"][0]["field"])


def test_a_report_becomes_an_incident_on_the_street_with_its_photo(
        client: TestClient, world: SignWorld, engine: Engine) -> None:
    image = png()
    response = post(client, form(world, reporter_name=" 张女士 ",
                                 reporter_phone="139-1234 5678"),
                    photo=("IMG_0001.png", image, "image/png"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["street"] == {"id": world.street_id, "name": "广安门外大街"}
    assert body["chief"] == {"name": "李四", "role": "street_chief", "title": "街长"}
    assert body["photos"] == 1
    with engine.connect() as conn:
        row = conn.execute(text("""
            SELECT i.street_id, i.chief_person_id, i.source, i.status, i.reporter_name,
                   i.reporter_phone, i.address, i.district_code, i.street_code, i.created_by,
                   c.code, round(ST_Distance(i.geom::geography, ST_SetSRID(ST_MakePoint(
                       :lon, :lat), 4326)::geography)::numeric, 2) AS moved_m
            FROM incidents i JOIN event_classes c ON c.id = i.event_class_id
            WHERE i.id = :id"""), {"id": body["report_id"], "lon": NEAR[0],
                                   "lat": NEAR[1]}).mappings().one()
        photo = conn.execute(text("SELECT content_type, data, district_code FROM "
                                  "incident_photos WHERE incident_id = :id"),
                             {"id": body["report_id"]}).one()
        actors = conn.execute(text("SELECT action, actor FROM audit_log "
                                   "WHERE object_type = 'incident' "
                                   "AND object_id = CAST(:id AS text) ORDER BY id"),
                              {"id": body["report_id"]}).all()
    assert dict(row) == {
        "street_id": world.street_id, "chief_person_id": world.chief_id, "source": "citizen",
        "status": "pending", "reporter_name": "张女士", "reporter_phone": "13912345678",
        "address": "广安门外大街", "district_code": "110102", "street_code": "110102020",
        "created_by": None, "code": "0101", "moved_m": 0}
    assert (photo[0], bytes(photo[1]), photo[2]) == ("image/png", image, "110102")
    assert [tuple(a) for a in actors] == [("incident.create", "street_sign"),
                                          ("incident.photo", "street_sign")]


def test_a_retry_with_the_same_key_returns_the_same_report(
        client: TestClient, world: SignWorld, engine: Engine) -> None:
    photo = ("p.png", png(), "image/png")
    first = post(client, form(world), key="retry-key-1", photo=photo)
    again = post(client, form(world), key="retry-key-1", photo=photo)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["report_id"] == first.json()["report_id"]
    assert count(engine) == 1 and count(engine, "incident_photos") == 1
    # the same key for a different report is refused, not merged
    other = post(client, form(world, description="另一件事"), key="retry-key-1")
    assert other.status_code == 409 and field_of(other) == "Idempotency-Key"


def test_without_a_position_the_report_sits_on_the_middle_of_the_street(
        client: TestClient, world: SignWorld, engine: Engine) -> None:
    response = post(client, form(world, lon=None, lat=None))
    assert response.status_code == 201, response.text
    with engine.connect() as conn:
        on_street, lon = conn.execute(text("""
            SELECT ST_DWithin(i.geom::geography, s.geom::geography, 0.5), ST_X(i.geom)
            FROM incidents i JOIN streets s ON s.id = i.street_id WHERE i.id = :id"""),
            {"id": response.json()["report_id"]}).one()
    assert on_street
    assert lon == pytest.approx((116.31 + 116.3499) / 2, abs=1e-6)


@pytest.mark.parametrize(("name", "data", "mime"), [
    ("photo.jpg", b"this is not an image at all", "image/jpeg"),  # a text file named .jpg
    ("empty.jpg", b"", "image/jpeg"),
    ("big.png", png() + b"\x00" * 3000, "image/png"),  # over the 2048-byte limit below
    ("huge.png", png() + b"\x00" * 200_000, "image/png"),  # refused by its length alone
])
def test_a_bad_photo_is_refused_and_nothing_is_stored(
        settings: Settings, world: SignWorld, engine: Engine, name: str, data: bytes,
        mime: str) -> None:
    small = settings.model_copy(update={"photo_max_bytes": 2048})
    with TestClient(create_app(small)) as client:
        response = post(client, form(world), photo=(name, data, mime))
    assert response.status_code == 422, response.text
    assert field_of(response) == "photo"
    assert count(engine) == 0 and count(engine, "incident_photos") == 0


def test_an_upload_streamed_past_the_limit_is_cut_off(
        settings: Settings, world: SignWorld, engine: Engine) -> None:
    """No Content-Length (chunked): the body is counted while it arrives."""
    small = settings.model_copy(update={"photo_max_bytes": 2048})
    boundary = "gridops-test"
    head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in form(world).items()).encode()
    body = (head + f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; '
            'filename="a.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
            + png() + b"\x00" * 300_000 + f"\r\n--{boundary}--\r\n".encode())

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 16384):
            yield body[start:start + 16384]

    with TestClient(create_app(small)) as client:
        response = client.post(REPORTS, content=chunks(), headers={
            "Idempotency-Key": "chunked-01",
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 422, response.text
    assert field_of(response) == "photo"
    assert "the upload is over" in response.json()["detail"][0]["msg"]  # cut off while read
    assert count(engine) == 0


def test_a_position_a_kilometre_away_is_refused(
        client: TestClient, world: SignWorld, engine: Engine) -> None:
    response = post(client, form(world, lon=FAR[0], lat=FAR[1]),
                    photo=("p.png", png(), "image/png"))
    assert response.status_code == 422, response.text
    assert field_of(response) == "lon"
    assert "within 300 m" in response.json()["detail"][0]["msg"]
    assert count(engine) == 0 and count(engine, "incident_photos") == 0


def test_an_unknown_class_is_refused_with_close_codes(
        client: TestClient, world: SignWorld, engine: Engine) -> None:
    response = post(client, form(world, event_code="0199"), photo=("p.png", png(), "image/png"))
    assert response.status_code == 422, response.text
    assert field_of(response) == "event_code"
    assert response.json()["report"]["suggestions"]
    assert count(engine) == 0 and count(engine, "incident_photos") == 0


@pytest.mark.parametrize(("fields", "field"), [
    ({"reporter_phone": "12345"}, "reporter_phone"),
    ({"reporter_phone": "call me maybe"}, "reporter_phone"),
    ({"lat": None}, "lat"),  # half a position
    ({"lon": "abc"}, "lon"),
    ({"lon": "nan"}, "lon"),
    ({"lat": 116.33, "lon": 39.88}, "lat"),  # swapped
    ({"street_id": "x"}, "street_id"),
    ({"event_kind": "thing"}, "event_kind"),
    ({"description": "   "}, "description"),
    ({"description": "x" * 1001}, "description"),
    ({"reporter_name": "名" * 51}, "reporter_name"),
])
def test_bad_fields_are_named(client: TestClient, world: SignWorld, engine: Engine,
                              fields: dict[str, Any], field: str) -> None:
    response = post(client, form(world, **fields))
    assert response.status_code == 422, response.text
    assert field_of(response) == field
    assert count(engine) == 0


def test_the_key_is_required_and_an_unknown_street_is_404(
        client: TestClient, world: SignWorld, engine: Engine) -> None:
    response = client.post(REPORTS, data=form(world))
    assert response.status_code == 422 and field_of(response) == "Idempotency-Key"
    short = post(client, form(world), key="short")
    assert short.status_code == 422 and field_of(short) == "Idempotency-Key"
    unknown = post(client, form(world, street_id=999999))
    assert unknown.status_code == 404 and field_of(unknown) == "street_id"
    assert count(engine) == 0


def test_reports_are_rate_limited_per_address(
        settings: Settings, world: SignWorld, engine: Engine) -> None:
    limited = settings.model_copy(update={"public_report_per_hour": 3})
    with TestClient(create_app(limited)) as client:
        codes = [post(client, form(world, description=f"第 {n} 件"), key=f"rate-key-{n}")
                 .status_code for n in range(3)]
        refused = post(client, form(world, description="第 4 件"), key="rate-key-4")
    assert codes == [201, 201, 201]
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert "per hour" in refused.json()["detail"][0]["msg"]
    assert count(engine) == 3


@pytest.mark.parametrize(("body", "content_type"), [
    (b"garbage", "multipart/form-data; boundary=xyz"),
    (b"--xyz\r\nContent-Disposition: form-data\r\n\r\n\x00\xff\r\n--xyz--",
     "multipart/form-data; boundary=xyz"),
    (b"--xyz\r\nbroken", "multipart/form-data"),  # no boundary
    (b'{"street_id": 1}', "application/json"),
    (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
    (b"", "text/plain"),
])
def test_garbage_never_makes_a_500(client: TestClient, world: SignWorld, engine: Engine,
                                   body: bytes, content_type: str) -> None:
    response = client.post(REPORTS, content=body, headers={
        "Idempotency-Key": "garbage-01", "Content-Type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert count(engine) == 0


def test_a_text_field_named_photo_is_refused(client: TestClient, world: SignWorld) -> None:
    response = post(client, form(world, photo="not a file"))
    assert response.status_code == 422 and field_of(response) == "photo"


def test_the_public_view_of_a_street(client: TestClient, world: SignWorld,
                                     engine: Engine) -> None:
    response = client.get(f"/api/v1/public/streets/{world.street_id}")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["street"]["name"] == "广安门外大街"
    assert view["chief"] == {"name": "李四", "role": "street_chief", "title": "街长",
                             "phone": "13900000000"}
    assert view["phone"] == "13900000000"
    assert "王五" not in response.text and "13700000001" not in response.text  # stewards
    with engine.connect() as conn:
        distance = conn.scalar(text(
            "SELECT ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), 4326)"
            "::geography) FROM streets WHERE id = :id"),
            {"x": view["default_point"]["lon"], "y": view["default_point"]["lat"],
             "id": world.street_id})
    assert distance < 0.5
    codes = {(c["kind"], c["code"]) for c in view["classes"]}
    assert ("event", "0101") in codes and ("event", "0501") in codes
    assert {c["major_name"] for c in view["classes"]} == {"市容环境", "宣传广告", "街面秩序"}
    alley = client.get(f"/api/v1/public/streets/{world.alley_id}").json()
    assert alley["chief"]["title"] == "巷长" and alley["phone"] == "010-63456789"
    assert client.get("/api/v1/public/streets/999999").status_code == 404


def test_the_report_page_is_public_and_404_for_an_unknown_street(
        client: TestClient, world: SignWorld) -> None:
    page = client.get(f"/report/street/{world.street_id}")
    assert page.status_code == 200
    assert "广安门外大街" in page.text and 'capture="environment"' in page.text
    missing = client.get("/report/street/999999")
    assert missing.status_code == 404 and "找不到这条街巷" in missing.text
