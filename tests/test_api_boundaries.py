"""Jurisdiction and grid GeoJSON endpoints on a real PostGIS: filters, bbox, versions in
force at `at`, keyset paging, 404s and 422s that name the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from tests.auth_world import sign_in

SQUARE = "MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"

V2020 = "2020-01-01T00:00:00+08:00"
V2024 = "2024-01-01T00:00:00+08:00"

# 西城 (110102) sits west of x=116.40, 丰台 (110106) east of it in this synthetic layout.
# 西城 has two versions: a smaller one until 2024-01-01 and a larger one since.
# (level, code, name, (minx, miny, maxx, maxy), valid_from, valid_to)
JURISDICTIONS: list[tuple[str, str, str, tuple[float, ...], str, str | None]] = [
    ("district", "110102", "西城区（旧界）", (116.30, 39.85, 116.38, 39.95), V2020, V2024),
    ("district", "110102", "西城区", (116.30, 39.85, 116.40, 39.95), V2024, None),
    ("district", "110106", "丰台区", (116.40, 39.85, 116.50, 39.95), V2020, None),
    ("street", "110102020", "广安门外街道", (116.30, 39.85, 116.35, 39.90), V2020, None),
    ("street", "110102021", "广安门内街道", (116.35, 39.85, 116.38, 39.90), V2020, None),
    # A street office merged away in 2015: only in force before that.
    ("street", "110102099", "已撤并街道", (116.30, 39.90, 116.35, 39.95),
     "2010-01-01T00:00:00+08:00", "2015-01-01T00:00:00+08:00"),
    ("street", "110106001", "太平桥街道", (116.40, 39.85, 116.45, 39.90), V2020, None),
    ("community", "110102020001", "广外一社区", (116.30, 39.85, 116.32, 39.87), V2020, None),
    ("community", "110102020002", "广外二社区", (116.32, 39.85, 116.35, 39.87), V2020, None),
    ("community", "110106001001", "太平桥一社区", (116.40, 39.85, 116.42, 39.87), V2020, None),
]
# (code, name, households, box, valid_from, valid_to); grid 1 grew on 2024-01-01.
GRIDS: list[tuple[str, str, int, tuple[float, ...], str, str | None]] = [
    ("110102020001001", "广外一社区第1网格", 300, (116.300, 39.85, 116.305, 39.86), V2020, V2024),
    ("110102020001001", "广外一社区第1网格", 420, (116.300, 39.85, 116.310, 39.86), V2024, None),
    ("110102020001002", "广外一社区第2网格", 380, (116.310, 39.85, 116.320, 39.86), V2020, None),
    ("110102020001003", "广外一社区第3网格", 350, (116.300, 39.86, 116.320, 39.87), V2020, None),
    ("110102020002001", "广外二社区第1网格", 450, (116.320, 39.85, 116.350, 39.87), V2020, None),
    ("110106001001001", "太平桥一社区第1网格", 330, (116.400, 39.85, 116.420, 39.87), V2020, None),
]
CURRENT_JURISDICTIONS = ["110102", "110102020", "110102020001", "110102020002", "110102021",
                         "110106", "110106001", "110106001001"]
CURRENT_GRIDS = ["110102020001001", "110102020001002", "110102020001003", "110102020002001",
                 "110106001001001"]


def wkt(box: tuple[float, ...]) -> str:
    x0, y0, x1, y1 = box
    return SQUARE.format(x0=x0, y0=y0, x1=x1, y1=y1)


def insert_boundaries(conn: Connection) -> None:
    """The fixture city: jurisdictions and grids with bound parameters."""
    conn.execute(text(
        "INSERT INTO jurisdictions (level, code, name, geom, valid_from, valid_to, is_synthetic) "
        "VALUES (:level, :code, :name, ST_GeomFromText(:wkt, 4326), :vf, :vt, true)"
    ), [{"level": level, "code": code, "name": name, "wkt": wkt(box), "vf": vf, "vt": vt}
        for level, code, name, box, vf, vt in JURISDICTIONS])
    conn.execute(text(
        "INSERT INTO grids (code, name, households, geom, valid_from, valid_to) "
        "VALUES (:code, :name, :households, ST_GeomFromText(:wkt, 4326), :vf, :vt)"
    ), [{"code": code, "name": name, "households": households, "wkt": wkt(box), "vf": vf,
         "vt": vt} for code, name, households, box, vf, vt in GRIDS])


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with engine.begin() as conn:
        insert_boundaries(conn)
    with TestClient(create_app(settings)) as test_client:
        sign_in(test_client, engine)
        yield test_client


def codes(body: dict[str, Any]) -> list[str]:
    return [feature["id"] for feature in body["features"]]


def get_ok(client: TestClient, url: str, **params: Any) -> dict[str, Any]:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    body: dict[str, Any] = response.json()
    return body


def error_for(
    client: TestClient, url: str, params: dict[str, Any] | None = None, status: int = 422
) -> dict[str, Any]:
    """The single error entry of a 4xx answer."""
    response = client.get(url, params=params)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and len(detail) == 1
    entry: dict[str, Any] = detail[0]
    if status == 422:  # the message names the field; a 404 names the code asked for
        assert entry["field"] in entry["msg"]
    return entry


def collect_pages(client: TestClient, url: str, limit: int) -> tuple[list[str], int]:
    """Follow `next` links from the first page; return all codes and the number of pages."""
    response = client.get(str(httpx.URL(url).copy_merge_params({"limit": limit})))
    seen: list[str] = []
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert body["numberReturned"] == len(body["features"]) <= limit
        seen += codes(body)
        next_links = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not next_links:
            return seen, pages
        response = client.get(next_links[0])


# -- jurisdictions ---------------------------------------------------------------------------


def test_jurisdictions_in_force_now_as_a_feature_collection(client: TestClient) -> None:
    body = get_ok(client, "/api/v1/jurisdictions")
    assert body["type"] == "FeatureCollection"
    assert codes(body) == CURRENT_JURISDICTIONS
    assert body["numberReturned"] == len(CURRENT_JURISDICTIONS)
    assert [link["rel"] for link in body["links"]] == ["self"]
    assert body["bbox"] == pytest.approx([116.30, 39.85, 116.50, 39.95])
    xicheng = body["features"][0]
    assert xicheng["type"] == "Feature"
    assert xicheng["geometry"]["type"] == "MultiPolygon"
    props = xicheng["properties"]
    assert props["code"] == "110102"
    assert props["name"] == "西城区"
    assert props["level"] == "district"
    assert props["parent_code"] is None
    assert props["district_code"] == "110102"
    assert datetime.fromisoformat(props["valid_from"]) == datetime.fromisoformat(
        "2024-01-01T00:00:00+08:00")
    assert props["valid_to"] is None
    street = body["features"][1]["properties"]
    assert (street["level"], street["parent_code"], street["district_code"]) == (
        "street", "110102", "110102")


def test_filter_by_level_and_parent(client: TestClient) -> None:
    assert codes(get_ok(client, "/api/v1/jurisdictions", level="district")) == ["110102", "110106"]
    assert codes(get_ok(client, "/api/v1/jurisdictions", level="street", parent="110102")) == [
        "110102020", "110102021"]
    assert codes(get_ok(client, "/api/v1/jurisdictions", parent="110102020")) == [
        "110102020001", "110102020002"]
    assert codes(get_ok(client, "/api/v1/jurisdictions", level="community",
                        parent="110106001")) == ["110106001001"]


def test_bbox_selects_intersecting_features(client: TestClient) -> None:
    # A box inside 丰台's 太平桥 area only.
    body = get_ok(client, "/api/v1/jurisdictions", bbox="116.43,39.88,116.44,39.89")
    assert codes(body) == ["110106", "110106001"]
    body = get_ok(client, "/api/v1/jurisdictions", bbox="116.301,39.851,116.302,39.852",
                  level="community")
    assert codes(body) == ["110102020001"]
    assert codes(get_ok(client, "/api/v1/jurisdictions", bbox="120,30,121,31")) == []


def test_at_selects_the_version_in_force(client: TestClient) -> None:
    old = get_ok(client, "/api/v1/jurisdictions", level="district", at="2022-06-01")
    assert codes(old) == ["110102", "110106"]
    assert old["features"][0]["properties"]["name"] == "西城区（旧界）"
    assert old["bbox"] == pytest.approx([116.30, 39.85, 116.50, 39.95])
    # The merged-away street is there in 2012, not now.
    in_2012 = get_ok(client, "/api/v1/jurisdictions", at="2012-01-01T00:00:00Z")
    assert codes(in_2012) == ["110102099"]
    assert "110102099" not in codes(get_ok(client, "/api/v1/jurisdictions"))
    # The old version ends at 2024-01-01T00:00+08 (exclusive); the new one starts there.
    one = get_ok(client, "/api/v1/jurisdictions/110102", at="2023-12-31T23:59:59+08:00")
    assert one["properties"]["name"] == "西城区（旧界）"
    assert datetime.fromisoformat(one["properties"]["valid_to"]) == datetime.fromisoformat(
        "2024-01-01T00:00:00+08:00")
    new = get_ok(client, "/api/v1/jurisdictions/110102", at="2024-01-01T00:00:00+08:00")
    assert new["properties"]["name"] == "西城区"
    # Naive datetimes are Beijing time: 2023-12-31T16:30Z is already 2024 in Beijing.
    assert get_ok(client, "/api/v1/jurisdictions/110102",
                  at="2024-01-01T00:30:00")["properties"]["name"] == "西城区"
    assert get_ok(client, "/api/v1/jurisdictions/110102",
                  at="2023-12-31T16:30:00Z")["properties"]["name"] == "西城区"
    assert get_ok(client, "/api/v1/jurisdictions/110102",
                  at="2023-12-31T15:30:00Z")["properties"]["name"] == "西城区（旧界）"


def test_at_with_an_unencoded_plus_in_the_query_string(client: TestClient) -> None:
    # "+08:00" typed into a URL arrives as " 08:00"; it is still read as an offset.
    response = client.get("/api/v1/jurisdictions/110102?at=2023-06-01T00:00:00+08:00")
    assert response.status_code == 200, response.text
    assert response.json()["properties"]["name"] == "西城区（旧界）"


def test_one_jurisdiction_as_a_feature(client: TestClient) -> None:
    feature = get_ok(client, "/api/v1/jurisdictions/110102020")
    assert feature["type"] == "Feature"
    assert feature["id"] == "110102020"
    assert feature["properties"]["name"] == "广安门外街道"
    ring = feature["geometry"]["coordinates"][0][0]
    assert [116.30, 39.85] in ring and [116.35, 39.90] in ring


def test_keyset_paging_through_all_pages_equals_the_full_set(client: TestClient) -> None:
    full = codes(get_ok(client, "/api/v1/jurisdictions", limit=1000))
    for limit in (1, 2, 3, len(full), len(full) + 1):
        seen, pages = collect_pages(client, "/api/v1/jurisdictions", limit)
        assert seen == full
        assert pages == max(1, -(-len(full) // limit))
    # Other filters survive in the next link.
    seen, pages = collect_pages(client, "/api/v1/jurisdictions?level=street&at=2022-01-01", 1)
    assert seen == ["110102020", "110102021", "110106001"] and pages == 3
    after = get_ok(client, "/api/v1/jurisdictions", after="110102021", limit=2)
    assert codes(after) == ["110106", "110106001"]


def test_unknown_code_is_404_naming_the_code(client: TestClient) -> None:
    entry = error_for(client, "/api/v1/jurisdictions/110105", status=404)
    assert entry["loc"] == ["path", "code"]
    assert entry["msg"] == "jurisdiction 110105 does not exist"
    entry = error_for(client, "/api/v1/jurisdictions/110102099", status=404)
    assert "110102099 has no version in force" in entry["msg"]
    assert "2010-01-01" in entry["msg"] or "2009-12-31" in entry["msg"]


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"bbox": "116.3,39.8,116.5"}, "bbox", "4 comma-separated numbers"),
        ({"bbox": "39.8,116.3,40.0,116.5"}, "bbox", "looks like lat,lon order"),
        ({"bbox": "116.5,39.8,116.3,40.0"}, "bbox", "minlon must be less than maxlon"),
        ({"bbox": "116.3,40.0,116.5,39.8"}, "bbox", "minlat must be less than maxlat"),
        ({"bbox": "116.3,39.8,east,40"}, "bbox", "'east' is not a number"),
        ({"bbox": "116.3,nan,116.5,40"}, "bbox", "not a finite number"),
        ({"bbox": "12950000,4850000,12960000,4860000"}, "bbox", "not projected metres"),
        ({"limit": "1001"}, "limit", "at most 1000"),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"limit": "ten"}, "limit", "valid integer"),
        ({"at": "yesterday"}, "at", "ISO 8601"),
        ({"at": "2024-13-01"}, "at", "ISO 8601"),
        ({"level": "town"}, "level", "'district', 'street' or 'community'"),
        ({"parent": "1101"}, "parent", "6-digit district or 9-digit street code"),
        ({"level": "district", "parent": "110102"}, "parent", "districts have no parent"),
        ({"level": "community", "parent": "110102"}, "parent", "is a 9-digit street code"),
        ({"after": "11010x"}, "after", "got '11010x'"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_field(
    client: TestClient, params: dict[str, str], field: str, reason: str
) -> None:
    entry = error_for(client, "/api/v1/jurisdictions", params)
    assert entry["field"] == field
    assert entry["loc"] == ["query", field]
    assert reason in entry["msg"]


def test_bad_code_in_the_path_is_422_naming_the_code(client: TestClient) -> None:
    entry = error_for(client, "/api/v1/jurisdictions/11010A")
    assert entry["loc"] == ["path", "code"]
    assert "6-digit district, 9-digit street or 12-digit community code" in entry["msg"]
    entry = error_for(client, "/api/v1/grids/110102020001")
    assert "15-digit grid code" in entry["msg"]


def test_limit_above_the_configured_page_max_is_422(settings: Settings, engine: Engine) -> None:
    with engine.begin() as conn:
        insert_boundaries(conn)
    small = settings.model_copy(update={"page_max": 3})
    with TestClient(create_app(small)) as client:
        sign_in(client, engine)
        entry = error_for(client, "/api/v1/jurisdictions", {"limit": 4})
        assert entry["msg"] == "limit must be at most 3; got 4"
        default = get_ok(client, "/api/v1/jurisdictions")  # default page shrinks to page_max
        assert default["numberReturned"] == 3
        assert codes(default) == CURRENT_JURISDICTIONS[:3]
        assert [link["rel"] for link in default["links"]] == ["self", "next"]


# -- grids -----------------------------------------------------------------------------------


def test_grids_in_force_with_their_parents_and_households(client: TestClient) -> None:
    body = get_ok(client, "/api/v1/grids")
    assert codes(body) == CURRENT_GRIDS
    props = body["features"][0]["properties"]
    assert props == {
        "code": "110102020001001", "name": "广外一社区第1网格", "community_code": "110102020001",
        "street_code": "110102020", "district_code": "110102", "households": 420,
        "valid_from": props["valid_from"], "valid_to": None, "is_synthetic": False,
    }
    assert datetime.fromisoformat(props["valid_from"]) == datetime.fromisoformat(
        "2024-01-01T00:00:00+08:00")


def test_grid_filters(client: TestClient) -> None:
    assert codes(get_ok(client, "/api/v1/grids", community="110102020001")) == CURRENT_GRIDS[:3]
    assert codes(get_ok(client, "/api/v1/grids", street="110102020")) == CURRENT_GRIDS[:4]
    assert codes(get_ok(client, "/api/v1/grids", district="110106")) == ["110106001001001"]
    assert codes(get_ok(client, "/api/v1/grids", district="110106", street="110102020")) == []
    # Grid 1 grew in 2024 (116.300-116.310): a box at 116.307 finds it now, not in 2022.
    box = "116.306,39.851,116.308,39.852"
    assert codes(get_ok(client, "/api/v1/grids", bbox=box)) == ["110102020001001"]
    assert codes(get_ok(client, "/api/v1/grids", bbox=box, at="2022-01-01")) == []


def test_grid_versions_and_single_grid(client: TestClient) -> None:
    old = get_ok(client, "/api/v1/grids/110102020001001", at="2023-01-01")
    new = get_ok(client, "/api/v1/grids/110102020001001")
    assert (old["properties"]["households"], new["properties"]["households"]) == (300, 420)
    assert old["id"] == new["id"] == "110102020001001"
    entry = error_for(client, "/api/v1/grids/110102020001009", status=404)
    assert entry["msg"] == "grid 110102020001009 does not exist"
    entry = error_for(client, "/api/v1/grids/110102020001001", {"at": "2019-01-01"}, status=404)
    assert "no version in force at 2019-01-01T00:00:00+08:00" in entry["msg"]


def test_grid_keyset_paging(client: TestClient) -> None:
    for limit in (1, 2, 4):
        seen, _ = collect_pages(client, "/api/v1/grids", limit)
        assert seen == CURRENT_GRIDS
    seen, pages = collect_pages(client, "/api/v1/grids?street=110102020", 3)
    assert seen == CURRENT_GRIDS[:4] and pages == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [({"community": "110102020"}, "community"), ({"street": "1101020200"}, "street"),
     ({"district": "11O102"}, "district"), ({"after": "110102020001"}, "after"),
     ({"bbox": "1,2,3"}, "bbox"), ({"at": "2024-02-30"}, "at"), ({"limit": "100000"}, "limit")],
)
def test_bad_grid_parameters_are_422_naming_the_field(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    entry = error_for(client, "/api/v1/grids", params)
    assert entry["field"] == field
    assert entry["loc"] == ["query", field]
