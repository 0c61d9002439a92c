"""Incident intake over HTTP on the demo city: placement stored on the incident, case state
by source, stage deadlines, duplicates, scope, idempotent retries (also 20 at once), the
change notification, /locate, and every kind of bad input as a 4xx naming the field."""

from __future__ import annotations

import json
import select
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis import users
from gis.audit import Actor
from gis.democity.city import STRADDLER_NAME
from gis.events import CHANNEL as NOTIFY_CHANNEL
from tests.auth_world import PASSWORD, token
from tests.live_server import serve

XICHENG_OPERATOR = "intake_op_xc"
DONGCHENG_OPERATOR = "intake_op_dc"


@pytest.fixture(scope="module")
def city_settings(city_url: str, city: Engine, tmp_path_factory: pytest.TempPathFactory
                  ) -> Settings:
    with city.begin() as conn:
        for name, roles, scope in ((XICHENG_OPERATOR, ["operator"], ["110102"]),
                                   (DONGCHENG_OPERATOR, ["operator"], ["110101"]),
                                   ("intake_viewer", ["viewer"], []),
                                   ("intake_admin", ["admin"], [])):
            if not conn.scalar(text("SELECT 1 FROM users WHERE username = :u"), {"u": name}):
                users.add_user(conn, username=name, password=PASSWORD, roles=roles,
                               scope_codes=scope, by=Actor("test"))
    return Settings(env="test", database_url=city_url, home=tmp_path_factory.mktemp("home"),
                    public_rate_per_minute=100_000)


@pytest.fixture(scope="module")
def client(city_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(city_settings), base_url="https://testserver") as c:
        c.headers["Authorization"] = f"Bearer {token(c, XICHENG_OPERATOR)}"
        yield c


def point_in(city: Engine, where: str, **params: object) -> tuple[float, float]:
    """A point on the surface of the first grid matching `where` (SQL over grids g)."""
    with city.connect() as conn:
        row = conn.execute(text(
            f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(g.geom) AS p "  # noqa: S608
            f"FROM grids g WHERE g.valid_to IS NULL AND {where} ORDER BY g.code LIMIT 1) x"),
            params).one()
    return float(row[0]), float(row[1])


def report(**fields: Any) -> dict[str, Any]:
    return {"event_code": "0101", "description": "路边有暴露垃圾", "source": "12345",
            **fields}


def test_a_report_is_placed_stored_and_gets_deadlines(client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    response = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat),
                           headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    body = response.json()
    props = body["incident"]["properties"]
    assert props["status"] == "pending"  # 12345 reports wait for acceptance (待受理)
    assert props["grid_code"] == body["placement"]["grid"]["code"]
    assert props["district_code"] == "110102"
    assert props["event_name"] == "暴露垃圾"
    deadlines = [datetime.fromisoformat(props["deadlines"][s])
                 for s in ("accept", "dispatch", "handle", "verify")]
    assert deadlines == sorted(deadlines)
    assert deadlines[0] > datetime.fromisoformat(props["reported_at"])
    assert response.headers["Location"] == f"/api/v1/incidents/{props['id']}"
    with city.connect() as conn:
        events = conn.execute(text("SELECT action, to_status FROM case_events "
                                   "WHERE incident_id = :i"), {"i": props["id"]}).all()
        audited = conn.scalar(text("SELECT count(*) FROM audit_log WHERE action = "
                                   "'incident.create' AND object_id = :i"),
                              {"i": str(props["id"])})
    assert [tuple(e) for e in events] == [("report", "pending")]
    assert audited == 1


def test_inspectors_reports_are_registered_at_once_and_duplicates_suggested(
        client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'", )
    first = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat,
                                                         source="grid_worker")).json()
    assert first["incident"]["properties"]["status"] == "registered"  # 立案
    second = client.post("/api/v1/incidents", json=report(
        lon=lon + 0.0001, lat=lat, source="citizen")).json()
    near = {d["id"]: d for d in second["duplicates"]}
    assert first["incident"]["id"] in near
    assert near[first["incident"]["id"]]["distance_m"] < 20


def test_a_joint_case_on_the_straddling_building(client: TestClient, city: Engine) -> None:
    with city.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM buildings "
            "WHERE name = :n) b"), {"n": STRADDLER_NAME}).one()
    body = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat)).json()
    props = body["incident"]["properties"]
    assert props["is_joint"] is True
    shares = {j["code"]: j["share"] for j in props["joint"]["jurisdictions"]}
    assert shares["110102"] == pytest.approx(1 / 3, abs=0.01)
    assert shares["110106"] == pytest.approx(2 / 3, abs=0.01)


def test_operators_report_only_in_their_scope_and_viewers_not_at_all(
        client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    dongcheng = {"Authorization": f"Bearer {token(client, DONGCHENG_OPERATOR)}"}
    refused = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat), headers=dongcheng)
    assert refused.status_code == 403
    assert "outside your scope" in refused.json()["detail"][0]["msg"]
    viewer = {"Authorization": f"Bearer {token(client, 'intake_viewer')}"}
    assert client.post("/api/v1/incidents", json=report(lon=lon, lat=lat),
                       headers=viewer).status_code == 403


def test_a_retry_with_the_same_key_returns_the_same_incident(
        client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat), headers=key)
    again = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat), headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["incident"]["id"] == again.json()["incident"]["id"]
    other = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat, description="另一件"),
                        headers=key)
    assert other.status_code == 409
    assert other.json()["detail"][0]["field"] == "Idempotency-Key"


def test_twenty_parallel_posts_with_one_key_make_one_incident(
        city_settings: Settings, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    key = str(uuid.uuid4())
    with serve(create_app(city_settings)) as url:
        bearer = httpx.post(f"{url}/api/v1/auth/token", data={
            "username": XICHENG_OPERATOR, "password": PASSWORD}).json()["access_token"]
        headers = {"Authorization": f"Bearer {bearer}", "Idempotency-Key": key}

        def post(_: int) -> httpx.Response:
            return httpx.post(f"{url}/api/v1/incidents", json=report(lon=lon, lat=lat),
                              headers=headers, timeout=30)

        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(post, range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["incident"]["id"] for r in responses}) == 1
    with city.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM incidents WHERE idempotency_key = :k"),
                           {"k": key}) == 1


def test_a_new_incident_is_announced_on_commit(client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    raw = city.raw_connection()
    raw.detach()  # autocommit below must not go back to the shared pool
    try:
        raw.set_isolation_level(0)  # autocommit: LISTEN takes effect at once
        cursor = raw.cursor()
        cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
        created = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat)).json()
        select.select([raw], [], [], 5)
        raw.poll()  # type: ignore[attr-defined]
        payloads = [json.loads(n.payload) for n in raw.notifies]  # type: ignore[attr-defined]
    finally:
        raw.close()
    mine = [p for p in payloads if p["incident_id"] == created["incident"]["id"]]
    assert mine and mine[0]["type"] == "incident.created"
    assert "110102" in mine[0]["codes"]


def test_locate_has_no_side_effects(client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110106'")
    with city.connect() as conn:
        before = conn.scalar(text("SELECT count(*) FROM incidents"))
    response = client.get("/api/v1/locate", params={"lon": lon, "lat": lat})
    assert response.status_code == 200
    assert response.json()["district"] == {"code": "110106", "name": "丰台区"}
    assert set(response.json()["joint"]) == {"is_joint", "jurisdictions", "zones"}
    with city.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM incidents")) == before
    assert client.get("/api/v1/locate", params={"lon": lon, "lat": lat},
                      headers={"Authorization": ""}).status_code == 401


@pytest.mark.parametrize(("fields", "field", "reason"), [
    ({"lon": 39.88, "lat": 116.35}, "lat", "swapped"),
    ({"lon": 121.47, "lat": 31.23}, "lon", "outside the service area"),
    ({"lon": "NaN", "lat": 39.9}, "lon", "finite"),
    ({"crs": "utm50"}, "crs", "wgs84"),
    ({"event_code": "0199"}, "event_code", "did you mean 01"),  # closest codes listed
    ({"event_code": "暴露垃级"}, "event_code", "暴露垃圾"),
    ({"description": ""}, "description", "at least 1 character"),
    ({"description": "长" * 4001}, "description", "at most 4000 characters"),
    ({"source": "wechat"}, "source", "12345"),
    ({"description": "垃圾\u0000"}, "description", "control characters"),
    ({"address": "\u0007门口"}, "address", "control characters"),
])
def test_bad_reports_are_4xx_naming_the_field(
        client: TestClient, city: Engine, fields: dict[str, Any], field: str, reason: str
) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    body = report(**{"lon": lon, "lat": lat, **fields})
    payload = json.dumps(body).replace('"NaN"', "NaN")
    response = client.post("/api/v1/incidents", content=payload,
                           headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    entry = response.json()["detail"][0]
    assert entry["field"] == field
    assert reason in entry["msg"]


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/api/v1/incidents", content=b'{"event_code": "0101", ',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"][0]["msg"]


def test_components_are_reported_with_their_kind(client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    event = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat)).json()
    part = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat,
                                                         event_kind="component")).json()
    assert (event["incident"]["properties"]["event_kind"],
            event["incident"]["properties"]["event_name"]) == ("event", "暴露垃圾")
    assert part["incident"]["properties"]["event_kind"] == "component"
    assert part["incident"]["properties"]["event_name"] != "暴露垃圾"


def test_list_filters_and_overdue(client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    old = client.post("/api/v1/incidents", json=report(
        lon=lon, lat=lat, source="sensor", reported_at="2026-10-01T09:00:00+08:00")).json()
    new = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat, source="sensor")).json()
    grid = old["placement"]["grid"]["code"]
    assert old["incident"]["properties"]["overdue"] is True  # 受理 limit long past
    assert new["incident"]["properties"]["overdue"] is False

    def ids(**params: Any) -> set[int]:
        response = client.get("/api/v1/incidents", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        return {f["id"] for f in response.json()["features"]}

    mine = {old["incident"]["id"], new["incident"]["id"]}
    assert mine <= ids(grid=grid, source="sensor", event_code="0101")
    assert ids(grid=grid, source="sensor", overdue=True) & mine == {old["incident"]["id"]}
    assert ids(grid=grid, source="sensor", overdue=False) & mine == {new["incident"]["id"]}
    assert not ids(grid=grid, source="sensor", event_kind="component") & mine
    assert mine <= ids(community=grid[:12], since="2026-09-30", source="sensor")
    bad = client.get("/api/v1/incidents", params={"community": "11010"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "community"


# A 1×1 PNG.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def test_photos_are_checked_by_their_bytes_and_stay_in_scope(
        client: TestClient, city: Engine) -> None:
    lon, lat = point_in(city, "g.district_code = '110102'")
    incident_id = client.post("/api/v1/incidents", json=report(lon=lon, lat=lat)
                              ).json()["incident"]["id"]
    url = f"/api/v1/incidents/{incident_id}/photos"
    added = client.post(url, files={"photo": ("x.png", PNG, "image/png")})
    assert added.status_code == 201, added.text
    assert added.json()["content_type"] == "image/png"
    again = client.post(url, files={"photo": ("y.png", PNG, "image/png")})
    assert again.status_code == 409 and again.json()["detail"][0]["field"] == "photo"
    fake = client.post(url, files={"photo": ("evil.jpg", b"<script>alert(1)</script>",
                                             "image/jpeg")})
    assert fake.status_code == 422
    assert "not a JPEG, PNG or WebP" in fake.json()["detail"][0]["msg"]
    empty = client.post(url, files={"photo": ("e.png", b"", "image/png")})
    assert empty.status_code == 422 and "empty" in empty.json()["detail"][0]["msg"]
    listed = client.get(url).json()
    assert [p["id"] for p in listed] == [added.json()["id"]]
    image = client.get(f"{url}/{added.json()['id']}")
    assert image.content == PNG and image.headers["content-type"] == "image/png"
    dongcheng = {"Authorization": f"Bearer {token(client, DONGCHENG_OPERATOR)}"}
    assert client.get(url, headers=dongcheng).status_code == 404
    assert client.post(url, headers=dongcheng,
                       files={"photo": ("z.png", PNG + b"x", "image/png")}).status_code == 404


def test_oversize_photos_are_refused(city_settings: Settings, city: Engine) -> None:
    small = city_settings.model_copy(update={"photo_max_bytes": 2048})
    with TestClient(create_app(small), base_url="https://testserver") as c:
        c.headers["Authorization"] = f"Bearer {token(c, XICHENG_OPERATOR)}"
        lon, lat = point_in(city, "g.district_code = '110102'")
        incident_id = c.post("/api/v1/incidents", json=report(lon=lon, lat=lat)
                             ).json()["incident"]["id"]
        big = PNG + b"\0" * 4096
        response = c.post(f"/api/v1/incidents/{incident_id}/photos",
                          files={"photo": ("big.png", big, "image/png")})
    assert response.status_code == 422
    assert "over the limit of 2,048" in response.json()["detail"][0]["msg"]
