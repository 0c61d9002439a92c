"""Vector tiles on the demo city: every layer decodes as MVT with its properties, minimum
zooms, the feature cap, clusters, ETag/304, invalidation by change events (only the tiles
concerned), the reader's scope, and bad input."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis import tiles, users
from gis.audit import Actor
from gis.auth import Principal
from gis.tiles import LAYERS, Tile, TileCache, TileKey
from tests.auth_world import PASSWORD, token

DONGCHENG, XICHENG = "110101", "110102"

# A point of each layer's own rows in 西城 (so the tile holds features), as SQL giving
# lon, lat.
ANCHOR = {
    "districts": "SELECT ST_PointOnSurface(geom) FROM jurisdictions WHERE code = '110102'",
    "streets": "SELECT ST_PointOnSurface(geom) FROM jurisdictions WHERE level = 'street' "
               "AND district_code = '110102' ORDER BY code LIMIT 1",
    "communities": "SELECT ST_PointOnSurface(geom) FROM jurisdictions "
                   "WHERE level = 'community' AND district_code = '110102' "
                   "ORDER BY code LIMIT 1",
    "grids": "SELECT ST_PointOnSurface(geom) FROM grids WHERE district_code = '110102' "
             "ORDER BY code LIMIT 1",
    "buildings": "SELECT ST_PointOnSurface(geom) FROM buildings "
                 "WHERE district_code = '110102' ORDER BY id LIMIT 1",
    "lanes": "SELECT ST_LineInterpolatePoint(ST_GeometryN(geom, 1), 0.5) FROM streets s "
             "WHERE district_code = '110102' AND EXISTS (SELECT 1 FROM street_assignments "
             "sa WHERE sa.street_id = s.id AND sa.role = 'street_chief' "
             "AND sa.valid_to IS NULL) ORDER BY id LIMIT 1",
    "joint_zones": "SELECT ST_PointOnSurface(geom) FROM joint_zones ORDER BY id LIMIT 1",
    "incidents": "SELECT geom FROM incidents WHERE district_code = '110102' "
                 "AND status IN ('pending', 'registered', 'dispatched', 'handling') "
                 "ORDER BY id LIMIT 1",
    "teams": "SELECT position FROM teams WHERE district_code = '110102' "
             "AND position IS NOT NULL ORDER BY id LIMIT 1",
}
ZOOM = {"districts": 10, "streets": 12, "communities": 13, "grids": 14, "buildings": 16,
        "lanes": 15, "joint_zones": 14, "incidents": 15, "teams": 14}
# Properties every feature must carry (ST_AsMVT leaves out NULL values).
REQUIRED = {
    "districts": {"code", "name"},
    "streets": {"code", "name", "district_code"},
    "communities": {"code", "name", "street_code", "district_code"},
    "grids": {"code", "community_code", "street_code", "district_code"},
    "buildings": {"id", "district_code"},
    "lanes": {"id", "name", "road_class", "district_code"},
    "joint_zones": {"id", "level", "code_a", "code_b"},
    "incidents": {"id", "status", "event_code", "event_name", "source", "is_joint",
                  "overdue", "reported_at", "district_code"},
    "teams": {"id", "name", "department", "dept_type", "status", "stale", "district_code"},
}


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The XYZ tile holding a WGS84 point."""
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def anchor(engine: Engine, layer: str) -> tuple[float, float]:
    with engine.connect() as conn:
        sql = f"SELECT ST_X(p), ST_Y(p) FROM ({ANCHOR[layer]}) AS a(p)"  # noqa: S608 - constant SQL of this module
        row = conn.execute(text(sql)).one()
    return float(row[0]), float(row[1])


def decode(data: bytes) -> dict[str, Any]:
    return dict(mapbox_vector_tile.decode(data)) if data else {}


def features(data: bytes, layer: str) -> list[dict[str, Any]]:
    return list(decode(data).get(layer, {}).get("features", []))


def make_user(engine: Engine, username: str, roles: list[str], scope: list[str]) -> None:
    with engine.begin() as conn:
        if not conn.scalar(text("SELECT 1 FROM users WHERE username = :u"), {"u": username}):
            users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                           scope_codes=scope, by=Actor("test"))


@pytest.fixture(scope="module")
def client(city_url: str, city: Engine, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    settings = Settings(env="test", database_url=city_url,
                        home=tmp_path_factory.mktemp("tiles_home"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: TestClient, city: Engine) -> dict[str, str]:
    make_user(city, "tiles_admin", ["admin"], [])
    return {"Authorization": f"Bearer {token(client, 'tiles_admin')}"}


@pytest.fixture(scope="module")
def op_dongcheng(client: TestClient, city: Engine) -> dict[str, str]:
    make_user(city, "tiles_op_dc", ["operator"], [DONGCHENG])
    return {"Authorization": f"Bearer {token(client, 'tiles_op_dc')}"}


@pytest.fixture
def cache(client: TestClient) -> TileCache:
    """The app's tile cache, emptied."""
    tile_cache: TileCache = getattr(client.app, "state").tile_cache  # noqa: B009
    tile_cache.clear()
    return tile_cache


def get_tile(client: TestClient, headers: dict[str, str], layer: str, z: int, x: int,
             y: int, **extra: str) -> Any:
    return client.get(f"/tiles/{layer}/{z}/{x}/{y}.mvt", headers={**headers, **extra})


# -- layers ----------------------------------------------------------------------------


def test_layers_json_describes_every_layer(client: TestClient,
                                           admin: dict[str, str]) -> None:
    assert client.get("/tiles/layers.json").status_code == 401
    response = client.get("/tiles/layers.json", headers=admin)
    assert response.status_code == 200
    described = {entry["name"]: entry for entry in response.json()["layers"]}
    assert list(described) == list(LAYERS)
    assert described["buildings"]["minzoom"] == 14
    assert described["incidents"]["cluster_below_zoom"] == tiles.CLUSTER_BELOW
    for name, entry in described.items():
        assert entry["tiles"] == [f"http://testserver/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt"]
        assert entry["maxzoom"] >= entry["minzoom"]
        assert REQUIRED[name] <= set(entry["fields"])


@pytest.mark.parametrize("layer", list(LAYERS))
def test_each_layer_decodes_with_its_features_and_properties(
        client: TestClient, city: Engine, admin: dict[str, str], layer: str) -> None:
    lon, lat = anchor(city, layer)
    z = ZOOM[layer]
    x, y = tile_of(lon, lat, z)
    response = get_tile(client, admin, layer, z, x, y)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    decoded = decode(response.content)
    assert list(decoded) == [layer]
    assert decoded[layer]["extent"] == tiles.EXTENT
    found = decoded[layer]["features"]
    assert found
    declared = set(LAYERS[layer].fields)
    for feature in found:
        assert REQUIRED[layer] <= set(feature["properties"]) <= declared
    if layer == "lanes":
        assert any("chief_name" in f["properties"] for f in found)
    if layer == "incidents":
        assert all(f["properties"]["status"] in tiles.OPEN_STATUSES for f in found)
        assert all(f["id"] == f["properties"]["id"] for f in found)


def test_grid_tile_holds_exactly_the_grids_in_force_it_meets(
        client: TestClient, city: Engine, admin: dict[str, str]) -> None:
    lon, lat = anchor(city, "grids")
    x, y = tile_of(lon, lat, 15)
    codes = {f["properties"]["code"]
             for f in features(get_tile(client, admin, "grids", 15, x, y).content, "grids")}
    with city.connect() as conn:
        inside, near = (set(conn.scalars(text(f"""
            SELECT code FROM grids
            WHERE ST_Intersects(geom, ST_Transform(ST_TileEnvelope(15, :x, :y,
                                                                   margin => :m), 4326))
              AND valid_from <= now() AND (valid_to IS NULL OR valid_to > now())
              {extra}"""), {"x": x, "y": y, "m": m}))  # noqa: S608 - constant SQL of this module
            for m, extra in ((0.0, "AND NOT ST_Touches(geom, ST_Transform("
                                   "ST_TileEnvelope(15, :x, :y), 4326))"),
                             (tiles.BUFFER / tiles.EXTENT, "")))
    assert inside
    assert inside <= codes <= near


def test_buildings_only_from_zoom_14(client: TestClient, city: Engine,
                                     admin: dict[str, str]) -> None:
    lon, lat = anchor(city, "buildings")
    for z in (12, 13):
        response = get_tile(client, admin, "buildings", z, *tile_of(lon, lat, z))
        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert features(get_tile(client, admin, "buildings", 14, *tile_of(lon, lat, 14)).content,
                    "buildings")


def test_the_feature_cap_keeps_the_largest_and_the_tile_valid(city: Engine) -> None:
    lon, lat = anchor(city, "buildings")
    x, y = tile_of(lon, lat, 14)
    reader = Principal(0, "t", None, frozenset({"admin"}), (), None, None, "s", "bearer",
                       datetime.now(UTC))
    capped = dataclasses.replace(LAYERS["buildings"], cap=5)
    with city.connect() as conn:
        full = features(tiles.render_tile(conn, LAYERS["buildings"], 14, x, y, reader),
                        "buildings")
        kept = features(tiles.render_tile(conn, capped, 14, x, y, reader), "buildings")
        envelope = "ST_Transform(ST_TileEnvelope(14, :x, :y, margin => :m), 4326)"
        largest = list(conn.scalars(text(f"""
            SELECT id FROM buildings WHERE geom && {envelope}
            ORDER BY ST_Area(geom) DESC LIMIT 5"""),  # noqa: S608 - constant SQL of this module
            {"x": x, "y": y, "m": tiles.BUFFER / tiles.EXTENT}))
    assert len(full) > 5
    assert len(kept) == 5
    assert {f["properties"]["id"] for f in kept} == set(largest)


def test_incidents_cluster_below_zoom_13(client: TestClient, city: Engine,
                                         admin: dict[str, str]) -> None:
    lon, lat = anchor(city, "incidents")
    x, y = tile_of(lon, lat, 11)
    clusters = features(get_tile(client, admin, "incidents", 11, x, y).content, "incidents")
    with city.connect() as conn:
        expected = conn.scalar(text("""
            SELECT count(*) FROM incidents
            WHERE geom && ST_Transform(ST_TileEnvelope(11, :x, :y), 4326)
              AND status NOT IN ('closed', 'void')"""), {"x": x, "y": y})
    assert clusters
    assert len(clusters) <= tiles.CLUSTER_CELLS ** 2
    assert sum(f["properties"]["point_count"] for f in clusters) == expected
    assert all(("id" in f["properties"]) == (f["properties"]["point_count"] == 1)
               for f in clusters)


# -- caching ---------------------------------------------------------------------------


def test_etag_304_and_cache_control(client: TestClient, city: Engine, admin: dict[str, str],
                                    cache: TileCache) -> None:
    for layer, control in (("grids", "private, max-age=60"),
                           ("incidents", "private, no-cache")):
        lon, lat = anchor(city, layer)
        x, y = tile_of(lon, lat, 15)
        first = get_tile(client, admin, layer, 15, x, y)
        etag = first.headers["etag"]
        assert etag.startswith('"') and first.headers["cache-control"] == control
        again = get_tile(client, admin, layer, 15, x, y, **{"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == control
        other = get_tile(client, admin, layer, 15, x, y, **{"If-None-Match": '"other"'})
        assert other.status_code == 200 and other.content == first.content
    assert cache.stats.hits >= 2


def test_a_change_reaches_the_tile_after_its_event(client: TestClient, city: Engine,
                                                  admin: dict[str, str],
                                                  cache: TileCache) -> None:
    lon, lat = anchor(city, "incidents")
    lon, lat = lon + 0.0003, lat + 0.0002
    x, y = tile_of(lon, lat, 15)
    before = get_tile(client, admin, "incidents", 15, x, y)
    etag = before.headers["etag"]
    with city.begin() as conn:
        new_id = conn.scalar(text("""
            INSERT INTO incidents (source, event_class_id, description, geom, district_code)
            VALUES ('12345', (SELECT min(id) FROM event_classes), 'tiles test',
                    ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), '110102')
            RETURNING id"""), {"lon": lon, "lat": lat})
    # Without its event the cached tile is served (the cache is what invalidation is for).
    assert get_tile(client, admin, "incidents", 15, x, y,
                    **{"If-None-Match": etag}).status_code == 304
    event = {"id": 1, "type": "incident.created", "codes": ["110102"],
             "incident_id": new_id, "layers": ["incidents"], "points": [[lon, lat]]}
    assert cache.invalidate(event) >= 1
    after = get_tile(client, admin, "incidents", 15, x, y, **{"If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["etag"] != etag
    assert new_id in {f["properties"]["id"] for f in features(after.content, "incidents")}


def tile_at(lon: float, lat: float, z: int, layer: str = "incidents") -> TileKey:
    return TileKey(layer, z, *tile_of(lon, lat, z))


def test_invalidate_drops_only_the_tiles_concerned() -> None:
    cache = TileCache()
    here, far = (116.3651, 39.9123), (116.2001, 39.8001)
    keys = [tile_at(*here, z) for z in (8, 12, 15, 16)] + [tile_at(*far, 15)]
    keys += [tile_at(*here, 15, "teams"), tile_at(*here, 15, "grids"),
             TileKey("incidents", 15, keys[2].x, keys[2].y, "another scope")]
    for key in keys:
        assert cache.put(key, Tile.of(b"x"), cache.version(key.layer))
    dropped = cache.invalidate({"type": "incident.status", "layers": ["incidents"],
                                "points": [list(here)]})
    assert dropped == 5  # z8, z12, z15 (two scopes) and z16 over `here`
    left = {k for k in keys if cache.get(k) is not None}
    assert left == {tile_at(*far, 15), tile_at(*here, 15, "teams"),
                    tile_at(*here, 15, "grids")}
    # A point just across a tile edge, within the buffer, reaches the neighbour too.
    x, y = keys[2].x, keys[2].y
    west = -180.0 + 360.0 * x / 2 ** 15  # the tile's west edge
    neighbour = TileKey("incidents", 15, x - 1, y)
    for key in (TileKey("incidents", 15, x, y), neighbour):
        cache.put(key, Tile.of(b"x"), cache.version("incidents"))
    inside_buffer = west + 0.5 * (360.0 / 2 ** 15) * tiles.BUFFER / tiles.EXTENT
    assert cache.invalidate({"layers": ["incidents"], "points": [[inside_buffer, here[1]]]}) == 2
    # A bbox, and a place-less event (the whole layer).
    assert cache.invalidate({"layers": ["grids"], "bbox": [116.0, 39.5, 116.1, 39.6]}) == 0
    assert cache.invalidate({"layers": ["grids"],
                             "bbox": [here[0] - 0.01, here[1] - 0.01, here[0], here[1]]}) == 1
    assert cache.invalidate({"type": "team.updated", "team_id": 1}) == 1  # default layer
    assert cache.invalidate({"type": "incidents.imported", "layers": ["incidents"]}) == 1
    assert len(cache) == 0


def test_a_render_older_than_an_invalidation_is_not_cached() -> None:
    cache = TileCache()
    key = TileKey("incidents", 15, 1, 1)
    version = cache.version("incidents")
    cache.invalidate({"layers": ["incidents"], "points": [[0.0, 0.0]]})  # meanwhile
    assert not cache.put(key, Tile.of(b"old"), version)
    assert cache.get(key) is None
    assert cache.put(key, Tile.of(b"new"), cache.version("incidents"))


def test_the_cache_is_bounded_by_bytes_least_recently_used_first() -> None:
    cache = TileCache(max_bytes=64 * 1024)
    keys = [TileKey("grids", 16, i, 0) for i in range(30)]
    for key in keys:
        cache.put(key, Tile.of(bytes(3000)), cache.version("grids"))
        cache.get(keys[0])  # keep the first one in use
    assert cache.size_bytes <= 64 * 1024
    assert cache.get(keys[0]) is not None
    assert cache.get(keys[1]) is None
    assert cache.get(keys[-1]) is not None


# -- scope -----------------------------------------------------------------------------


def test_incidents_and_teams_follow_the_readers_scope(
        client: TestClient, city: Engine, admin: dict[str, str],
        op_dongcheng: dict[str, str], cache: TileCache) -> None:
    for layer, z in (("incidents", 14), ("teams", 13)):
        x, y = tile_of(*anchor(city, layer), z)
        everyone = features(get_tile(client, admin, layer, z, x, y).content, layer)
        assert any(f["properties"]["district_code"] == XICHENG for f in everyone)
        # The admin's tile is cached now; the 东城 operator must not get it.
        mine = features(get_tile(client, op_dongcheng, layer, z, x, y).content, layer)
        assert len(mine) < len(everyone)
        for feature in mine:
            props = feature["properties"]
            assert props["district_code"] == DONGCHENG or props.get("is_joint")


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status", "field"), [
    ("/tiles/roads/10/1/1.mvt", 404, "layer"),
    ("/tiles/grids/23/0/0.mvt", 422, "z"),
    ("/tiles/grids/-1/0/0.mvt", 422, "z"),
    ("/tiles/grids/3/8/0.mvt", 422, "x"),
    ("/tiles/grids/3/0/-1.mvt", 422, "y"),
    ("/tiles/grids/3/0/y.mvt", 422, "y"),
    ("/tiles/grids/zz/0/0.mvt", 422, "z"),
])
def test_bad_tiles_are_refused_naming_the_field(client: TestClient, admin: dict[str, str],
                                                path: str, status: int, field: str) -> None:
    response = client.get(path, headers=admin)
    assert response.status_code == status
    detail = response.json()["detail"][0]
    assert detail["field"] == field
    if field == "layer":
        assert all(name in detail["msg"] for name in LAYERS)


def test_tiles_need_sign_in_by_token_or_the_pages_cookie(
        client: TestClient, city: Engine, admin: dict[str, str]) -> None:
    x, y = tile_of(*anchor(city, "grids"), 14)
    path = f"/tiles/grids/14/{x}/{y}.mvt"
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer forged.token"}
                      ).status_code == 401
    browser = TestClient(client.app, base_url="https://testserver")
    assert browser.post("/api/v1/auth/login", json={"username": "tiles_admin",
                                                    "password": PASSWORD}).status_code == 200
    response = browser.get(path)
    assert response.status_code == 200
    assert features(response.content, "grids")



@pytest.mark.parametrize("z", [12, 14, 16])
def test_the_affine_map_stays_within_its_error_of_web_mercator(city: Engine, z: int) -> None:
    lon, lat = anchor(city, "grids")
    x, y = tile_of(lon, lat, z)
    affine = tiles._affine(z, y)
    assert affine is not None
    a_x, a_y, b_y = affine
    unit = 2 * math.pi * 6378137.0 / 2 ** z / tiles.EXTENT
    with city.connect() as conn:
        worst, vertices = conn.execute(text("""
            SELECT max(ST_Distance(ST_SetSRID(ST_Affine(p.geom, :a_x, 0, 0, :a_y, 0, :b_y), 3857),
                                   ST_Transform(p.geom, 3857))), count(*)
            FROM grids g, ST_DumpPoints(g.geom) p
            WHERE g.geom && ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326)
              AND ST_Intersects(p.geom, ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326))
        """), {"a_x": a_x, "a_y": a_y, "b_y": b_y, "z": z, "x": x, "y": y}).one()
    assert vertices > 0
    assert worst / unit <= tiles.AFFINE_MAX_ERROR
