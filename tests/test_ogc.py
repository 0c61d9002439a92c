"""OGC API Features under /ogc on real PostGIS: documents, extents, keyset paging against
direct SQL counts, bbox/datetime/limit, items by id, scope, content types, and GDAL's
OAPIF driver reading every collection from a live server (../shared/checks/ogc-gdal.sh)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import ogc, users
from gis.audit import Actor
from tests.auth_world import PASSWORD, World, bearer, build_world

pytest_plugins = ["live_server"]  # fixtures: live_server

GDAL_CHECK = Path(__file__).resolve().parents[2] / "shared" / "checks" / "ogc-gdal.sh"
BASE = "https://gridops.example"  # links must follow the host and scheme of the request
COLLECTION_IDS = ["districts", "streets", "communities", "grids", "buildings", "lanes",
                  "joint_zones", "incidents"]
# Direct SQL counts of what each collection holds now (admin: every incident).
SQL_COUNT = {
    "districts": "SELECT count(*) FROM jurisdictions WHERE level = 'district' AND {now}",
    "streets": "SELECT count(*) FROM jurisdictions WHERE level = 'street' AND {now}",
    "communities": "SELECT count(*) FROM jurisdictions WHERE level = 'community' AND {now}",
    "grids": "SELECT count(*) FROM grids WHERE {now}",
    "buildings": "SELECT count(*) FROM buildings",
    "lanes": "SELECT count(*) FROM streets",
    "joint_zones": "SELECT count(*) FROM joint_zones",
    "incidents": "SELECT count(*) FROM incidents",
}
NOW = "valid_from <= now() AND (valid_to IS NULL OR valid_to > now())"


def _square(x: float, y: float, size: float) -> str:
    return (f"MULTIPOLYGON((({x} {y},{x + size} {y},{x + size} {y + size},{x} {y + size},"
            f"{x} {y})))")


@dataclass
class OgcWorld:
    """auth_world's districts, street, lane, incidents and users, plus a community, a grid
    (and a retired one), two buildings (one straddling), a joint zone and dated incidents."""

    base: World
    straddling_building: int
    dongcheng_building: int
    dated: dict[str, int]


def _dated_incident(conn: Connection, reported_at: str, x: float) -> int:
    return int(conn.scalar(text("""
        INSERT INTO incidents (source, event_class_id, description, reported_at, received_at,
                               geom, district_code, street_code)
        VALUES ('12345', (SELECT min(id) FROM event_classes), 'dated', :at, :at,
                ST_SetSRID(ST_MakePoint(:x, 39.875), 4326), '110102', '110102020')
        RETURNING id"""), {"at": reported_at, "x": x}))


def build_ogc_world(engine: Engine) -> OgcWorld:
    base = build_world(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) VALUES "
                          "('community', '110102020001', '广外第一社区', "
                          "ST_GeomFromText(:g, 4326))"), {"g": _square(116.34, 39.87, 0.005)})
        conn.execute(text("INSERT INTO grids (code, name, households, geom) VALUES "
                          "('110102020001001', '第1网格', 420, ST_GeomFromText(:g, 4326))"),
                     {"g": _square(116.34, 39.87, 0.005)})
        conn.execute(text("INSERT INTO grids (code, name, households, geom, valid_from, "
                          "valid_to) VALUES ('110102020001002', '旧网格', 10, "
                          "ST_GeomFromText(:g, 4326), '2020-01-01', '2021-01-01')"),
                     {"g": _square(116.345, 39.87, 0.005)})
        straddling, dongcheng = conn.scalars(text("""
            INSERT INTO buildings (district_code, grid_code, floors, households, use, geom)
            VALUES ('110102', '110102020001001', 6, 48, 'residential',
                    ST_GeomFromText(:a, 4326)),
                   ('110101', NULL, 3, 12, 'residential', ST_GeomFromText(:b, 4326))
            RETURNING id"""), {"a": _square(116.341, 39.871, 0.0005),
                               "b": _square(116.42, 39.89, 0.0005)}).all()
        conn.execute(text("INSERT INTO building_shares (building_id, level, code, share) "
                          "VALUES (:b, 'district', '110102', 0.3333), "
                          "(:b, 'district', '110106', 0.6667)"), {"b": straddling})
        conn.execute(text("INSERT INTO joint_zones (level, code_a, code_b, origin, width_m, "
                          "geom) VALUES ('district', '110102', '110106', 'derived', 50, "
                          "ST_GeomFromText(:g, 4326))"), {"g": _square(116.335, 39.87, 0.01)})
        dated = {"jan": _dated_incident(conn, "2026-01-10T10:00:00+08:00", 116.342),
                 "feb": _dated_incident(conn, "2026-02-10T10:00:00+08:00", 116.343),
                 "mar": _dated_incident(conn, "2026-03-10T10:00:00+08:00", 116.344)}
    return OgcWorld(base, int(straddling), int(dongcheng), dated)


@pytest.fixture
def world(engine: Engine) -> OgcWorld:
    return build_ogc_world(engine)


@pytest.fixture
def client(settings: Settings, world: OgcWorld) -> Iterator[TestClient]:
    ogc.clear_caches()
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    return bearer(client, "admin")


def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _rels(document: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {link["rel"]: link for link in document["links"]}


def _path_of(href: str) -> str:
    parts = urlsplit(href)
    assert f"{parts.scheme}://{parts.netloc}" == BASE, href  # absolute, from the request
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _bad(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["detail"][0]["field"] == field, response.text


def walk(client: TestClient, headers: dict[str, str], path: str) -> tuple[list[Any], int]:
    """Follow `next` links from `path`: every feature id read, and the first numberMatched."""
    ids: list[Any] = []
    matched: int | None = None
    url: str | None = path
    while url is not None:
        response = client.get(url, headers=headers)
        page = _json(response)
        assert response.headers["content-type"].startswith("application/geo+json")
        assert page["type"] == "FeatureCollection"
        assert page["numberReturned"] == len(page["features"])
        matched = page["numberMatched"] if matched is None else matched
        assert page["numberMatched"] == matched
        ids += [feature["id"] for feature in page["features"]]
        following = _rels(page).get("next")
        url = _path_of(following["href"]) if following else None
    assert matched is not None
    return ids, matched


# -- documents ------------------------------------------------------------------------------


def test_landing_page_and_conformance_are_public(client: TestClient) -> None:
    response = client.get("/ogc")
    landing = _json(response)
    assert response.headers["content-type"].startswith("application/json")
    links = _rels(landing)
    assert {"self", "service-desc", "conformance", "data"} <= set(links)
    assert _path_of(links["self"]["href"]) == "/ogc"
    assert _path_of(links["data"]["href"]) == "/ogc/collections"
    assert _path_of(links["conformance"]["href"]) == "/ogc/conformance"
    assert "openapi" in links["service-desc"]["type"]
    api = _json(client.get(_path_of(links["service-desc"]["href"])))
    limit = next(p for p in api["paths"]["/ogc/collections/{collection_id}/items"]["get"]
                 ["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == ogc.LIMIT_MAX
    assert limit["schema"]["default"] == ogc.LIMIT_DEFAULT

    conformance = _json(client.get("/ogc/conformance?f=json"))["conformsTo"]
    for cls in ("core", "geojson", "oas30"):
        assert f"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/{cls}" in conformance
    assert _json(client.get("/ogc?f=json"))["links"]
    _bad(client.get("/ogc?f=html"), "f")
    # documents ignore parameters they do not take (GDAL repeats its own on every URL)
    assert client.get("/ogc/conformance?datetime=2026-01-01").status_code == 200


def test_collections_items_and_features_need_a_signed_in_user(client: TestClient) -> None:
    for path in ("/ogc/collections", "/ogc/collections/grids",
                 "/ogc/collections/grids/items", "/ogc/collections/incidents/items",
                 "/ogc/collections/grids/items/110102020001001"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    client.headers.update(bearer(client, "viewer"))  # any signed-in role may read
    assert client.get("/ogc/collections").status_code == 200


def test_collections_document_lists_every_collection_with_extent(
        client: TestClient, admin: dict[str, str], engine: Engine) -> None:
    response = client.get("/ogc/collections", headers=admin)
    document = _json(response)
    assert response.headers["content-type"].startswith("application/json")
    assert _path_of(_rels(document)["self"]["href"]) == "/ogc/collections"
    collections = {c["id"]: c for c in document["collections"]}
    assert list(collections) == COLLECTION_IDS
    for cid, c in collections.items():
        assert any("\u4e00" <= ch <= "\u9fff" for ch in c["title"]), c["title"]  # Chinese
        assert any(ch.isascii() and ch.isalpha() for ch in c["title"]), c["title"]  # English
        assert c["description"]
        assert c["crs"] == [ogc.CRS84]
        links = _rels(c)
        assert _path_of(links["self"]["href"]) == f"/ogc/collections/{cid}"
        assert _path_of(links["items"]["href"]) == f"/ogc/collections/{cid}/items"
        assert links["items"]["type"] == "application/geo+json"
        (bbox,) = c["extent"]["spatial"]["bbox"]
        assert len(bbox) == 4 and bbox[0] <= bbox[2] and bbox[1] <= bbox[3]
        assert ("temporal" in c["extent"]) == (cid == "incidents")

    with engine.connect() as conn:
        exact = conn.execute(text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(geom) AS e FROM grids WHERE valid_from <= now() "
            "AND (valid_to IS NULL OR valid_to > now())) AS x")).one()
        first, last = conn.execute(text(
            "SELECT min(reported_at), max(reported_at) FROM incidents")).one()
    (grid_bbox,) = collections["grids"]["extent"]["spatial"]["bbox"]
    assert grid_bbox == pytest.approx(list(exact), abs=2e-7)  # the retired grid is left out
    assert grid_bbox[2] == pytest.approx(116.345, abs=2e-5)
    (interval,) = collections["incidents"]["extent"]["temporal"]["interval"]
    assert interval[0] == ogc._rfc3339(first) == "2026-01-10T02:00:00Z"
    assert interval[1] == ogc._rfc3339(last)

    one = _json(client.get("/ogc/collections/buildings?f=json", headers=admin))
    assert one["id"] == "buildings" and one["extent"] == collections["buildings"]["extent"]
    assert _json(client.get("/ogc/collections/parks", headers=admin), 404)[
        "detail"][0]["field"] == "collection_id"


# -- items ----------------------------------------------------------------------------------


def test_paging_through_every_collection_reads_each_feature_once(
        client: TestClient, admin: dict[str, str], engine: Engine) -> None:
    with engine.connect() as conn:
        expected = {cid: conn.scalar(text(sql.format(now=NOW))) for cid, sql in SQL_COUNT.items()}
    assert all(expected.values())
    for cid in COLLECTION_IDS:
        ids, matched = walk(client, admin, f"/ogc/collections/{cid}/items?limit=1")
        assert matched == expected[cid], cid
        assert len(ids) == len(set(ids)) == matched, cid
        assert ids == sorted(ids), cid  # ordered by feature id
    ids, matched = walk(client, admin, "/ogc/collections/incidents/items?limit=3")
    assert matched == expected["incidents"] == len(set(ids))


def test_next_link_carries_the_cursor_and_the_filters(
        client: TestClient, admin: dict[str, str], world: OgcWorld) -> None:
    page = _json(client.get("/ogc/collections/incidents/items?limit=2&bbox=116.3,39.8,116.5,40",
                            headers=admin))
    links = _rels(page)
    assert links["self"]["type"] == links["next"]["type"] == "application/geo+json"
    assert links["collection"]["type"] == "application/json"
    query = parse_qs(urlsplit(links["next"]["href"]).query)
    assert query["after"] == [str(page["features"][-1]["id"])]
    assert query["limit"] == ["2"] and query["bbox"] == ["116.3,39.8,116.5,40"]
    assert page["timeStamp"].endswith("Z")
    _bad(client.get("/ogc/collections/incidents/items?after=abc", headers=admin), "after")
    _bad(client.get("/ogc/collections/grids/items?after=12", headers=admin), "after")
    _bad(client.get("/ogc/collections/grids/items?sortby=code", headers=admin), "sortby")


def test_bbox_selects_intersecting_features(
        client: TestClient, admin: dict[str, str], world: OgcWorld) -> None:
    dongcheng = "116.41,39.88,116.44,39.90"
    page = _json(client.get(f"/ogc/collections/districts/items?bbox={dongcheng}",
                            headers=admin))
    assert [f["id"] for f in page["features"]] == ["110101"]
    assert page["numberMatched"] == 1
    page = _json(client.get(f"/ogc/collections/buildings/items?bbox={dongcheng}",
                            headers=admin))
    assert [f["id"] for f in page["features"]] == [world.dongcheng_building]
    page = _json(client.get("/ogc/collections/buildings/items?bbox=120,30,121,31",
                            headers=admin))
    assert page["features"] == [] and page["numberMatched"] == 0
    assert "next" not in _rels(page)
    for bad in ("1,2,3", "a,b,c,d", "39.88,116.41,39.90,116.44", "116.44,39.88,116.41,39.9",
                "116,39,117,40,1,2"):
        _bad(client.get(f"/ogc/collections/buildings/items?bbox={bad}", headers=admin),
             "bbox")


def test_datetime_filters_incidents_by_reported_at(
        client: TestClient, admin: dict[str, str], world: OgcWorld) -> None:
    dated = world.dated

    def ids(value: str) -> set[int]:
        page = _json(client.get("/ogc/collections/incidents/items",
                                params={"datetime": value}, headers=admin))
        assert page["numberMatched"] == len(page["features"])
        return {f["id"] for f in page["features"]}

    assert ids("2026-02-01T00:00:00+08:00/2026-02-28T00:00:00+08:00") == {dated["feb"]}
    assert ids("2026-02-10T10:00:00+08:00") == {dated["feb"]}  # an instant
    assert ids("2026-02-10T02:00:00Z") == {dated["feb"]}  # the same instant in UTC
    assert ids("2026-03-10") == {dated["mar"]}  # a date: that whole day
    assert ids("../2026-01-10") == {dated["jan"]}  # an end date includes its day
    assert ids("/2026-02-10T10:00:00+08:00") == {dated["jan"], dated["feb"]}  # closed end
    recent = ids("2026-03-01T00:00:00Z/..")
    assert dated["mar"] in recent and not {dated["jan"], dated["feb"]} & recent
    assert set(world.base.incidents.values()) <= recent  # reported now
    for bad in ("2026-13-01", "../..", "2026-03-01/2026-02-01", "a/b/c", "yesterday"):
        _bad(client.get("/ogc/collections/incidents/items", params={"datetime": bad},
                        headers=admin), "datetime")
    _bad(client.get("/ogc/collections/grids/items?datetime=2026-01-01", headers=admin),
         "datetime")


def test_limit_defaults_clamps_to_the_declared_maximum_and_rejects_nonsense(
        client: TestClient, admin: dict[str, str], world: OgcWorld) -> None:
    page = _json(client.get("/ogc/collections/incidents/items", headers=admin))
    assert page["numberReturned"] == page["numberMatched"] == 8  # all (default 100)
    assert "next" not in _rels(page)
    page = _json(client.get("/ogc/collections/incidents/items?limit=20000", headers=admin))
    assert page["numberReturned"] == 8
    own = _rels(page)["self"]
    assert parse_qs(urlsplit(own["href"]).query)["limit"] == [str(ogc.LIMIT_MAX)]
    assert "clamped" in own["title"]
    page = _json(client.get("/ogc/collections/incidents/items?limit=3", headers=admin))
    assert page["numberReturned"] == 3 and page["numberMatched"] == 8
    for bad in ("0", "-1", "abc", "1.5"):
        _bad(client.get(f"/ogc/collections/incidents/items?limit={bad}", headers=admin),
             "limit")


def test_item_by_id_and_404s(client: TestClient, admin: dict[str, str],
                             world: OgcWorld) -> None:
    response = client.get("/ogc/collections/grids/items/110102020001001", headers=admin)
    grid = _json(response)
    assert response.headers["content-type"].startswith("application/geo+json")
    assert grid["type"] == "Feature" and grid["id"] == "110102020001001"
    assert grid["geometry"]["type"] == "MultiPolygon"
    assert grid["properties"]["households"] == 420
    links = _rels(grid)
    assert _path_of(links["self"]["href"]) == "/ogc/collections/grids/items/110102020001001"
    assert _path_of(links["collection"]["href"]) == "/ogc/collections/grids"

    building = _json(client.get(
        f"/ogc/collections/buildings/items/{world.straddling_building}", headers=admin))
    props = building["properties"]
    assert props["straddles"] is True and props["households"] == 48 and props["floors"] == 6
    assert {(s["code"], s["share"]) for s in props["shares"]} == {("110102", 0.3333),
                                                                   ("110106", 0.6667)}
    other = _json(client.get(
        f"/ogc/collections/buildings/items/{world.dongcheng_building}", headers=admin))
    assert other["properties"]["straddles"] is False and other["properties"]["shares"] is None

    lane = _json(client.get(f"/ogc/collections/lanes/items/{world.base.street_id}",
                            headers=admin))["properties"]
    assert (lane["name"], lane["chief_name"], lane["chief_role"], lane["chief_phone"]) == (
        "广安门外大街", "李四", "street_chief", "13900000000")
    zone = _json(client.get("/ogc/collections/joint_zones/items?limit=1", headers=admin))[
        "features"][0]["properties"]
    assert (zone["name_a"], zone["name_b"]) == ("西城区", "丰台区")
    district = _json(client.get("/ogc/collections/districts/items/110102", headers=admin))
    assert district["properties"]["name"] == "西城区"
    # coordinates at most 7 decimals (GeoJSON written by PostGIS)
    x = grid["geometry"]["coordinates"][0][0][0][0]
    assert round(x, 7) == x

    for path, field in (("/ogc/collections/grids/items/110102020001002", "feature_id"),  # retired
                        ("/ogc/collections/grids/items/nope", "feature_id"),
                        ("/ogc/collections/buildings/items/999999", "feature_id"),
                        ("/ogc/collections/districts/items/110102020", "feature_id"),
                        ("/ogc/collections/parks/items/1", "collection_id")):
        body = _json(client.get(path, headers=admin), 404)
        assert body["detail"][0]["field"] == field, path


def test_incidents_are_scoped_to_the_reader(client: TestClient, world: OgcWorld) -> None:
    incidents = world.base.incidents
    dongcheng = bearer(client, "op_dc")
    ids, matched = walk(client, dongcheng, "/ogc/collections/incidents/items?limit=1")
    assert ids == [incidents["dongcheng"]] and matched == 1
    for key in ("xicheng", "xicheng_street", "joint"):
        response = client.get(f"/ogc/collections/incidents/items/{incidents[key]}",
                              headers=dongcheng)
        assert response.status_code == 404, key
    feature = _json(client.get(f"/ogc/collections/incidents/items/{incidents['dongcheng']}",
                               headers=dongcheng))
    assert feature["properties"]["reporter_phone"] == "13800000000"  # operators act on it

    fengtai = bearer(client, "op_ft")  # sees its own and the joint case naming 丰台
    ids, matched = walk(client, fengtai, "/ogc/collections/incidents/items")
    assert set(ids) == {incidents["fengtai"], incidents["joint"]} and matched == 2
    viewer = bearer(client, "viewer")  # 西城 viewer: no reporter contacts
    page = _json(client.get("/ogc/collections/incidents/items", headers=viewer))
    assert incidents["dongcheng"] not in {f["id"] for f in page["features"]}
    assert all(f["properties"]["reporter_phone"] is None for f in page["features"])
    # boundaries are not scoped: the 东城 operator reads 西城's grid
    assert client.get("/ogc/collections/grids/items/110102020001001",
                      headers=dongcheng).status_code == 200


def test_counts_are_exact_on_a_first_page_after_a_change(
        client: TestClient, admin: dict[str, str], engine: Engine, world: OgcWorld) -> None:
    before = _json(client.get("/ogc/collections/incidents/items?limit=1",
                              headers=admin))["numberMatched"]
    with engine.begin() as conn:
        _dated_incident(conn, "2026-04-01T10:00:00+08:00", 116.346)
    after = _json(client.get("/ogc/collections/incidents/items?limit=1",
                             headers=admin))["numberMatched"]
    assert after == before + 1


# -- the demo city --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city_client(city_url: str, city: Engine, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[TestClient]:
    with city.begin() as conn:
        if not conn.scalar(text("SELECT 1 FROM users WHERE username = 'ogc_admin'")):
            users.add_user(conn, username="ogc_admin", password=PASSWORD, roles=["admin"],
                           by=Actor("test"))
    settings = Settings(env="test", database_url=city_url,
                        home=tmp_path_factory.mktemp("ogc_city"))
    with TestClient(create_app(settings), base_url=BASE) as c:
        c.headers.update(bearer(c, "ogc_admin"))
        yield c


@pytest.mark.parametrize(("cid", "limit"), [("grids", 1000), ("lanes", 2000),
                                            ("joint_zones", 50)])
def test_paging_the_demo_city_matches_sql(city_client: TestClient, city: Engine, cid: str,
                                          limit: int) -> None:
    ids, matched = walk(city_client, {}, f"/ogc/collections/{cid}/items?limit={limit}")
    with city.connect() as conn:
        expected = conn.scalar(text(SQL_COUNT[cid].format(now=NOW)))
    assert matched == expected == len(ids) == len(set(ids))


def test_bbox_paging_of_city_buildings_matches_sql(city_client: TestClient,
                                                   city: Engine) -> None:
    bbox = "116.33,39.87,116.36,39.89"  # around the 西城–丰台 border
    ids, matched = walk(city_client, {}, f"/ogc/collections/buildings/items?limit=500&bbox={bbox}")
    with city.connect() as conn:
        expected = set(conn.scalars(text(
            "SELECT id FROM buildings WHERE ST_Intersects(geom, "
            "ST_MakeEnvelope(116.33, 39.87, 116.36, 39.89, 4326))")))
    assert matched == len(expected) > 500
    assert set(ids) == expected and len(ids) == len(expected)


# -- GDAL -------------------------------------------------------------------------------------


def test_gdal_reads_every_collection_from_a_live_server(world: OgcWorld,
                                                        live_server: str) -> None:
    assert shutil.which("ogrinfo"), "GDAL's ogrinfo is missing: apt-get install gdal-bin " \
        "(`gridops db up` installs it with the other system packages)"
    if not GDAL_CHECK.exists():
        pytest.skip(f"{GDAL_CHECK} is not here")
    token = httpx.post(f"{live_server}/api/v1/auth/token",
                       data={"username": "admin", "password": PASSWORD}).json()["access_token"]
    result = subprocess.run(
        ["bash", str(GDAL_CHECK), f"{live_server}/ogc", f"Authorization: Bearer {token}"],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line.split()[1].rstrip(":") for line in result.stdout.splitlines()
              if line.startswith("PASS")]
    assert passed == COLLECTION_IDS, result.stdout
