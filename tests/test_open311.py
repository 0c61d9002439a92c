"""Open311 GeoReport v2 on the demo city: discovery, services from the catalog, service
definitions, form-encoded POST with an API key (missing, wrong, revoked → 403), the created
incident placed in the right grid, requests read back in JSON and XML without contacts,
idempotent retries, bad input as an Open311 error list naming the field, the rate limit, a
real HTTP round trip, and the `gridops open311 key` commands."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis import open311
from gis.audit import Actor
from gis.crs import wgs84_to_gcj02
from gis.errors import Forbidden, InvalidInput
from tests.live_server import serve

V2 = "/open311/v2"
CLIENT = "o311-test-app"
RETIRED = "o311-retired-app"


@pytest.fixture(scope="module")
def keys(city: Engine) -> dict[str, str]:
    """A valid key and a revoked one, on the shared demo city."""
    with city.begin() as conn:
        _, key = open311.create_key(conn, CLIENT, by=Actor("test"))
        _, old = open311.create_key(conn, RETIRED, by=Actor("test"))
        open311.revoke_key(conn, RETIRED, by=Actor("test"))
    return {"valid": key, "revoked": old}


@pytest.fixture(scope="module")
def city_settings(city_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(env="test", database_url=city_url, home=tmp_path_factory.mktemp("home"),
                    public_rate_per_minute=100_000)


@pytest.fixture(scope="module")
def client(city_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(city_settings)) as c:
        yield c


def point_in(city: Engine, district: str) -> tuple[float, float, str]:
    """A point inside a current grid of `district`, and that grid's code."""
    with city.connect() as conn:
        row = conn.execute(text("""
            SELECT ST_X(p), ST_Y(p), code FROM (
              SELECT ST_PointOnSurface(g.geom) AS p, g.code FROM grids g
              WHERE g.valid_to IS NULL AND g.district_code = :d ORDER BY g.code DESC LIMIT 1) x
        """), {"d": district}).one()
    return float(row[0]), float(row[1]), str(row[2])


def form(key: str, lon: float, lat: float, **fields: Any) -> dict[str, Any]:
    return {"api_key": key, "service_code": "event-0101", "lat": lat, "long": lon,
            "description": "路边有暴露垃圾 (open311 test)", **fields}


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert isinstance(body, list) and body, response.text
    assert set(body[0]) == {"code", "description"}
    assert body[0]["code"] == response.status_code
    return body


def xml(response: httpx.Response) -> ET.Element:
    assert response.headers["content-type"].startswith("text/xml"), response.text
    return ET.fromstring(response.content)


# -- discovery and services ----------------------------------------------------------------


def test_discovery_names_this_endpoint_and_its_formats(client: TestClient) -> None:
    response = client.get(f"{V2}/discovery.json")
    assert response.status_code == 200, response.text
    endpoint = response.json()["endpoints"][0]
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["specification"] == open311.SPECIFICATION
    assert set(endpoint["formats"]) == {"application/json", "text/xml"}
    assert endpoint["type"] == "test"
    root = xml(client.get(f"{V2}/discovery.xml"))
    assert [f.text for f in root.iter("format")] == endpoint["formats"]


def test_services_are_the_active_catalog_classes(client: TestClient, city: Engine) -> None:
    with city.connect() as conn:
        active = set(conn.scalars(text(
            "SELECT kind || '-' || code FROM event_classes WHERE active")))
        expected_agency = conn.scalar(text("""
            SELECT c.department_types->>(d->>'type')
            FROM event_classes ec, jsonb_array_elements(ec.departments) d, catalogs c
            WHERE ec.kind = 'event' AND ec.code = '0101' AND d->>'role' = 'primary'"""))
    response = client.get(f"{V2}/services.json")
    assert response.status_code == 200, response.text
    services = {s["service_code"]: s for s in response.json()}
    assert set(services) == active
    assert {"event-0101", "component-0101"} <= set(services)  # codes collide across kinds
    garbage = services["event-0101"]
    assert garbage["service_name"] == "暴露垃圾"
    assert garbage["group"] == "市容环境"
    assert garbage["metadata"] is True and garbage["type"] == "realtime"
    assert expected_agency and expected_agency in garbage["description"]

    root = xml(client.get(f"{V2}/services.xml"))
    assert root.tag == "services"
    assert {s.findtext("service_code") for s in root.findall("service")} == active
    assert root.find("service/metadata").text == "true"  # type: ignore[union-attr]


def test_a_service_definition_offers_the_crs_attribute(client: TestClient) -> None:
    response = client.get(f"{V2}/services/event-0101.json")
    assert response.status_code == 200, response.text
    definition = response.json()
    assert definition["service_code"] == "event-0101"
    [attribute] = definition["attributes"]
    assert attribute["code"] == "crs" and attribute["datatype"] == "singlevaluelist"
    assert {v["key"] for v in attribute["values"]} == {"wgs84", "gcj02", "bd09"}
    root = xml(client.get(f"{V2}/services/component-0101.xml"))
    assert root.tag == "service_definition"
    assert root.findtext("service_code") == "component-0101"
    assert [v.findtext("key") for v in root.iter("value")] == ["wgs84", "gcj02", "bd09"]


@pytest.mark.parametrize(("code", "status"), [("event-0199", 404), ("0101", 400),
                                              ("event-01x1", 400)])
def test_an_unknown_service_definition_is_an_error_list(client: TestClient, code: str,
                                                        status: int) -> None:
    response = client.get(f"{V2}/services/{code}.json")
    assert response.status_code == status
    assert "service_code" in errors_of(response)[0]["description"]


# -- creating requests ---------------------------------------------------------------------


def test_a_request_becomes_an_incident_in_the_right_grid(
        client: TestClient, city: Engine, keys: dict[str, str]) -> None:
    lon, lat, grid = point_in(city, "110102")
    response = client.post(f"{V2}/requests.json", data=form(
        keys["valid"], lon, lat, address_string="广安门外大街 1 号", first_name="Li",
        last_name="Lei", phone="13800000000", email="li@example.org",
        media_url="https://example.org/p.jpg"))
    assert response.status_code == 201, response.text
    [answer] = response.json()
    request_id = answer["service_request_id"]
    assert isinstance(request_id, str) and request_id.isdigit()
    assert "待受理" in answer["service_notice"]

    with city.connect() as conn:
        row = conn.execute(text("""
            SELECT i.source, i.status, i.grid_code, i.district_code, i.address,
                   i.reporter_name, i.reporter_phone, ec.kind, ec.code,
                   (SELECT g.code FROM grids g WHERE g.valid_to IS NULL
                      AND ST_Covers(g.geom, i.geom) ORDER BY g.code LIMIT 1) AS containing,
                   (SELECT actor FROM audit_log WHERE action = 'incident.create'
                      AND object_id = CAST(i.id AS text)) AS actor,
                   i.deadlines->>'handle' AS handle
            FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
            WHERE i.id = :id"""), {"id": int(request_id)}).mappings().one()
        last_used = conn.scalar(text(
            "SELECT last_used_at FROM open311_keys WHERE name = :n"), {"n": CLIENT})
    assert row["source"] == "citizen" and row["status"] == "pending"
    assert row["grid_code"] == grid == row["containing"]
    assert row["district_code"] == "110102"
    assert (row["kind"], row["code"]) == ("event", "0101")
    assert row["address"] == "广安门外大街 1 号"
    assert (row["reporter_name"], row["reporter_phone"]) == ("Li Lei", "13800000000")
    assert row["actor"] == f"open311:{CLIENT}"
    assert last_used is not None

    one = client.get(f"{V2}/requests/{request_id}.json")
    assert one.status_code == 200, one.text
    [got] = one.json()
    assert got["service_request_id"] == request_id
    assert got["status"] == "open" and got["status_notes"].startswith("待受理")
    assert got["service_code"] == "event-0101" and got["service_name"] == "暴露垃圾"
    assert got["lat"] == pytest.approx(lat, abs=1e-6)
    assert got["long"] == pytest.approx(lon, abs=1e-6)
    assert got["address"] == "广安门外大街 1 号"
    assert got["agency_responsible"]
    assert got["requested_datetime"].endswith("+08:00")
    assert got["expected_datetime"][:16] == row["handle"][:16]
    for contact in ("Li Lei", "13800000000", "li@example.org"):
        assert contact not in one.text  # never the reporter's contacts

    listed = client.get(f"{V2}/requests.json", params={"service_request_id": request_id})
    assert [r["service_request_id"] for r in listed.json()] == [request_id]
    root = xml(client.get(f"{V2}/requests/{request_id}.xml"))
    assert root.tag == "service_requests"
    assert root.findtext("request/service_request_id") == request_id
    assert root.findtext("request/status") == "open"
    assert "13800000000" not in ET.tostring(root, encoding="unicode")


def test_an_xml_post_answers_in_xml_and_takes_gcj02(
        client: TestClient, city: Engine, keys: dict[str, str]) -> None:
    lon, lat, grid = point_in(city, "110101")
    gx, gy = wgs84_to_gcj02([lon], [lat])
    response = client.post(f"{V2}/requests.xml", data=form(
        keys["valid"], float(gx[0]), float(gy[0]), **{"attribute[crs]": "gcj02"}))
    assert response.status_code == 201, response.text
    request_id = xml(response).findtext("request/service_request_id")
    with city.connect() as conn:
        stored = conn.execute(text("SELECT grid_code, input_crs FROM incidents WHERE id = :id"),
                              {"id": int(request_id or 0)}).one()
    assert tuple(stored) == (grid, "gcj02")


def test_a_retry_with_the_same_idempotency_key_returns_the_same_request(
        client: TestClient, city: Engine, keys: dict[str, str]) -> None:
    lon, lat, _ = point_in(city, "110106")
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(f"{V2}/requests.json", data=form(keys["valid"], lon, lat),
                        headers=headers)
    again = client.post(f"{V2}/requests.json", data=form(keys["valid"], lon, lat),
                        headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    request_id = first.json()[0]["service_request_id"]
    assert again.json()[0]["service_request_id"] == request_id
    with city.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM incidents WHERE idempotency_key LIKE :k"),
                           {"k": f"open311:%:{headers['Idempotency-Key']}"}) == 1


def test_reusing_an_idempotency_key_for_another_report_is_409(
        client: TestClient, city: Engine, keys: dict[str, str]) -> None:
    lon, lat, _ = point_in(city, "110106")
    headers = {"Idempotency-Key": f"reuse-{uuid.uuid4()}"}
    first = client.post(f"{V2}/requests.json", data=form(keys["valid"], lon, lat),
                        headers=headers)
    other = client.post(f"{V2}/requests.json", headers=headers, data=form(
        keys["valid"], lon, lat, description="另一件事"))
    assert (first.status_code, other.status_code) == (201, 409)
    description = errors_of(other)[0]["description"]
    assert description.startswith(f"Idempotency-Key {headers['Idempotency-Key']!r} was already")
    assert first.json()[0]["service_request_id"] in description


@pytest.mark.parametrize(("key", "says"), [(None, "api_key is required"),
                                           ("o311_not-a-real-key", "api_key is not valid"),
                                           ("revoked", "revoked")])
def test_a_post_needs_a_valid_unrevoked_key(
        client: TestClient, city: Engine, keys: dict[str, str], key: str | None,
        says: str) -> None:
    lon, lat, _ = point_in(city, "110102")
    data = form(keys.get(key or "", key or ""), lon, lat)
    if key is None:
        del data["api_key"]
    with city.connect() as conn:
        before = conn.scalar(text("SELECT count(*) FROM incidents"))
    response = client.post(f"{V2}/requests.json", data=data)
    assert response.status_code == 403
    assert says in errors_of(response)[0]["description"]
    xml_response = client.post(f"{V2}/requests.xml", data=data)
    assert xml_response.status_code == 403
    root = xml(xml_response)
    assert root.tag == "errors" and root.findtext("error/code") == "403"
    with city.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM incidents")) == before


@pytest.mark.parametrize(("fields", "field", "says"), [
    ({"lat": "200"}, "lat", "-90..90"),
    ({"lat": "abc"}, "lat", "number"),
    ({"long": "nan"}, "long", "finite"),
    ({"long": "inf"}, "long", "finite"),
    ({"long": "-181"}, "long", "-180..180"),
    ({"lat": "", "long": "", "address_string": "广安门外大街 1 号"}, "lat",
     "address_string alone is not supported"),
    ({"lat": "", "long": ""}, "lat", "required"),
    ({"lat": "39.0", "long": "117.5"}, "long", "outside the service area"),
    ({"service_code": "event-0199"}, "service_code", "did you mean event-01"),
    ({"service_code": "0101"}, "service_code", "event-0101"),
    ({"service_code": ""}, "service_code", "required"),
    ({"description": "  "}, "description", "required"),
    ({"description": "x" * 4001}, "description", "at most 4000"),
    ({"attribute[crs]": "epsg3857"}, "attribute[crs]", "wgs84"),
    ({"first_name": "x" * 101}, "first_name", "at most 100"),
    ({"description": "垃圾\x00"}, "description", "control characters"),
])
def test_bad_input_is_a_400_error_list_naming_the_field(
        client: TestClient, city: Engine, keys: dict[str, str], fields: dict[str, str],
        field: str, says: str) -> None:
    lon, lat, _ = point_in(city, "110102")
    response = client.post(f"{V2}/requests.json", data={**form(keys["valid"], lon, lat),
                                                         **fields})
    assert response.status_code == 400, response.text
    description = errors_of(response)[0]["description"]
    assert description.startswith(field) and says in description


def test_a_short_idempotency_key_is_refused(client: TestClient, city: Engine,
                                            keys: dict[str, str]) -> None:
    lon, lat, _ = point_in(city, "110102")
    response = client.post(f"{V2}/requests.json", data=form(keys["valid"], lon, lat),
                           headers={"Idempotency-Key": "abc"})
    assert response.status_code == 400
    assert errors_of(response)[0]["description"].startswith("Idempotency-Key")


# -- reading requests ----------------------------------------------------------------------


def test_requests_filter_by_code_status_and_dates(client: TestClient, city: Engine,
                                                  keys: dict[str, str]) -> None:
    lon, lat, _ = point_in(city, "110102")
    created = client.post(f"{V2}/requests.json", data=form(
        keys["valid"], lon, lat, service_code="component-0101"))
    assert created.status_code == 201, created.text
    request_id = created.json()[0]["service_request_id"]

    def ids(**params: str) -> list[str]:
        response = client.get(f"{V2}/requests.json", params=params)
        assert response.status_code == 200, response.text
        return [r["service_request_id"] for r in response.json()]

    assert request_id in ids()
    assert request_id in ids(service_code="component-0101,event-0102")
    assert request_id not in ids(service_code="event-0101")
    assert request_id in ids(status="open")
    assert request_id not in ids(status="closed")
    assert request_id not in ids(start_date="2020-01-01T00:00:00Z",
                                 end_date="2020-02-01T00:00:00Z")
    with city.connect() as conn:
        hotline = conn.scalar(text("SELECT max(id) FROM incidents WHERE source <> 'citizen'"))
    assert hotline is not None
    assert ids(service_request_id=str(hotline)) == []  # only public reports are public
    assert client.get(f"{V2}/requests/{hotline}.json").status_code == 404
    root = xml(client.get(f"{V2}/requests.xml", params={"service_request_id": request_id}))
    assert [r.findtext("service_code") for r in root.findall("request")] == ["component-0101"]


@pytest.mark.parametrize(("params", "field"), [
    ({"service_request_id": "1,x"}, "service_request_id"),
    ({"service_code": "garbage"}, "service_code"),
    ({"status": "pending"}, "status"),
    ({"start_date": "yesterday"}, "start_date"),
    ({"start_date": "2024-01-01", "end_date": "2024-06-01"}, "end_date"),
    ({"start_date": "2024-06-01", "end_date": "2024-01-01"}, "end_date"),
    ({"end_date": "0001-01-01"}, "end_date"),
    ({"start_date": "9999-12-31"}, "start_date"),
])
def test_bad_filters_are_400_naming_the_parameter(client: TestClient, params: dict[str, str],
                                                  field: str) -> None:
    response = client.get(f"{V2}/requests.json", params=params)
    assert response.status_code == 400, response.text
    assert errors_of(response)[0]["description"].startswith(field)


def test_an_unknown_request_is_404_in_either_format(client: TestClient) -> None:
    response = client.get(f"{V2}/requests/999999999.json")
    assert response.status_code == 404
    assert "service_request_id" in errors_of(response)[0]["description"]
    root = xml(client.get(f"{V2}/requests/999999999.xml"))
    assert root.findtext("error/code") == "404"
    assert client.get(f"{V2}/requests/abc.json").status_code == 400
    assert client.get(f"{V2}/requests/\u00b2.json").status_code == 400  # isdigit(), not int


def test_open311_is_rate_limited_per_client(city_url: str, tmp_path: Any) -> None:
    settings = Settings(env="test", database_url=city_url, home=tmp_path / "home",
                        public_rate_per_minute=3)
    with TestClient(create_app(settings)) as c:
        codes = [c.get(f"{V2}/services.json").status_code for _ in range(3)]
        limited = c.get(f"{V2}/requests.xml")
        posted = c.post(f"{V2}/requests.json", data={"api_key": "x"})
    assert codes == [200, 200, 200]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert xml(limited).findtext("error/code") == "429"
    assert posted.status_code == 429
    assert "rate limit" in errors_of(posted)[0]["description"]


def test_a_real_client_round_trip_over_http(city_settings: Settings, city: Engine,
                                            keys: dict[str, str]) -> None:
    lon, lat, _ = point_in(city, "110106")
    with serve(create_app(city_settings)) as url:
        root = f"{url}{V2}"
        services = httpx.get(f"{root}/services.json").json()
        code = services[0]["service_code"]
        created = httpx.post(f"{root}/requests.json", data={**form(keys["valid"], lon, lat),
                                                            "service_code": code})
        assert created.status_code == 201, created.text
        request_id = created.json()[0]["service_request_id"]
        got = httpx.get(f"{root}/requests.xml", params={"service_request_id": request_id})
    assert xml(got).findtext("request/service_code") == code


# -- keys and the CLI ----------------------------------------------------------------------


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "open311", "key", *args],
                          env={**os.environ, "DATABASE_URL": db_url, "COLUMNS": "60"},
                          capture_output=True, text=True, timeout=120, check=False)


def test_key_commands_create_list_and_revoke(db_url: str, engine: Engine) -> None:
    made = cli(db_url, "create", "wechat-miniapp")
    assert made.returncode == 0, made.stderr
    key = made.stdout.split()[-1]
    assert key.startswith(open311.KEY_PREFIX) and len(key) > 40
    with engine.connect() as conn:
        assert open311.verify_key(conn, key).name == "wechat-miniapp"
        stored = conn.execute(text("SELECT key_hash FROM open311_keys")).scalar_one()
        actions = list(conn.scalars(text(
            "SELECT action FROM audit_log WHERE object_type = 'open311_key' ORDER BY id")))
    assert stored == open311.hash_key(key) and key not in stored  # only the hash is kept
    assert actions == ["open311_key.create"]

    again = cli(db_url, "create", "wechat-miniapp")
    assert again.returncode == 1 and "already exists" in again.stderr

    listed = cli(db_url, "list")
    assert listed.returncode == 0 and "wechat-miniapp" in listed.stdout
    assert key not in listed.stdout

    revoked = cli(db_url, "revoke", "wechat-miniapp")
    assert revoked.returncode == 0, revoked.stderr
    with engine.connect() as conn, pytest.raises(Forbidden, match="revoked"):
        open311.verify_key(conn, key)
    missing = cli(db_url, "revoke", "nobody")
    assert missing.returncode == 1 and "no Open311 client" in missing.stderr


@pytest.mark.parametrize("name", ["", "two words", "x" * 101])
def test_a_client_name_is_one_short_word(engine: Engine, name: str) -> None:
    with engine.begin() as conn, pytest.raises(InvalidInput, match="client name"):
        open311.create_key(conn, name, by=Actor("test"))
