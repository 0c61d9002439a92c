"""The plans API against a real PostGIS: create from the live grids, import a layer, paint
cells between grids with undo, split, merge, the states and who may do what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from tests.auth_world import bearer
from tests.plan_world import (
    COMMUNITY_A,
    COMMUNITY_B,
    DX,
    DY,
    GRID_EAST,
    GRID_WEST,
    HOUSEHOLDS_A,
    X0,
    Y0,
    PlanWorld,
    build_plan_world,
)

API = "/api/v1/plans"


@pytest.fixture
def world(engine: Engine) -> PlanWorld:
    return build_plan_world(engine)


@pytest.fixture
def client(settings: Settings, world: PlanWorld) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        yield c


def _live(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, code, valid_from, valid_to, households, ST_AsEWKB(geom) "
            "FROM grids ORDER BY id"))]


def _create(client: TestClient, who: str = "planner", **body: Any) -> dict[str, Any]:
    body = body or {"name": "测试方案", "community_codes": [COMMUNITY_A]}
    response = client.post(API, json=body, headers=bearer(client, who))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _grids(client: TestClient, plan_id: int, who: str = "planner") -> dict[str, dict[str, Any]]:
    response = client.get(f"{API}/{plan_id}/grids", headers=bearer(client, who))
    assert response.status_code == 200, response.text
    return {f["properties"]["label"]: f for f in response.json()["features"]}


def _cells_of_building(client: TestClient, plan_id: int, building_ids: list[int]
                       ) -> list[int]:
    response = client.get(f"{API}/{plan_id}/buildings", headers=bearer(client, "planner"))
    by_building = {f["properties"]["id"]: f["properties"]["cell_id"]
                   for f in response.json()["features"]}
    return [by_building[b] for b in building_ids]


def test_a_plan_copies_the_live_grids_and_leaves_them_alone(
        client: TestClient, engine: Engine, world: PlanWorld) -> None:
    before = _live(engine)
    plan = _create(client)
    assert plan["status"] == "draft" and plan["source"] == "live"
    assert plan["author"] == "planner" and plan["revision"] == 0
    assert plan["grids"] == 2 and plan["households"] == 24 * HOUSEHOLDS_A
    assert plan["comments"][0]["to"] == "draft"
    grids = _grids(client, plan["id"])
    assert set(grids) == {GRID_WEST, GRID_EAST}
    assert grids[GRID_WEST]["properties"]["source_code"] == GRID_WEST
    assert grids[GRID_WEST]["properties"]["households"] == 12 * HOUSEHOLDS_A
    cells = client.get(f"{API}/{plan['id']}/cells", headers=bearer(client, "planner")).json()
    with_building = [f for f in cells["features"] if f["properties"]["building_id"]]
    assert len(with_building) == 24
    assert {f["properties"]["community_code"] for f in cells["features"]} == {COMMUNITY_A}
    assert _live(engine) == before


def test_a_plan_for_a_street_office_holds_all_its_communities(client: TestClient) -> None:
    plan = _create(client, name="广外全街道", street_code="110102020")
    assert plan["community_codes"] == [COMMUNITY_A, COMMUNITY_B]
    assert plan["grids"] == 3


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"name": "x"}, 422, "community_codes"),
    ({"name": "x", "community_codes": [COMMUNITY_A], "street_code": "110102020"}, 422,
     "community_codes"),
    ({"name": "x", "community_codes": ["110102020999"]}, 404, "community_codes"),
    ({"name": "x", "community_codes": ["1101"]}, 422, "community_codes"),
    ({"name": "x", "community_codes": [COMMUNITY_A, "110106002001"]}, 422, "community_codes"),
    ({"name": "x", "street_code": "110102999"}, 404, "street_code"),
    ({"name": "   ", "community_codes": [COMMUNITY_A]}, 422, "name"),
])
def test_bad_plans_are_refused_naming_the_field(client: TestClient, body: dict[str, Any],
                                                status: int, field: str) -> None:
    response = client.post(API, json=body, headers=bearer(client, "planner"))
    assert response.status_code == status, response.text
    assert field in response.text


def test_painting_buildings_moves_households_and_undo_restores(
        client: TestClient, world: PlanWorld) -> None:
    plan = _create(client)
    grids = _grids(client, plan["id"])
    west, east = grids[GRID_WEST]["id"], grids[GRID_EAST]["id"]
    area_before = _grids(client, plan["id"])
    cells = _cells_of_building(client, plan["id"], world.buildings[GRID_WEST][:2])
    response = client.post(f"{API}/{plan['id']}/assign", headers=bearer(client, "planner"),
                           json={"moves": [{"cell_id": c, "grid_id": east} for c in cells]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["moves"] == [{"cell_id": c, "from": west, "to": east} for c in sorted(cells)]
    changed = {f["id"]: f["properties"] for f in body["grids"]["features"]}
    assert changed[west]["households"] == 10 * HOUSEHOLDS_A
    assert changed[east]["households"] == 14 * HOUSEHOLDS_A
    metrics = {g["id"]: g for g in body["metrics"]["grids"]}
    assert metrics[west]["households"] == 10 * HOUSEHOLDS_A
    assert body["plan"]["revision"] == 1
    # undo: the moves reversed
    undo = [{"cell_id": m["cell_id"], "grid_id": m["from"]} for m in body["moves"]]
    response = client.post(f"{API}/{plan['id']}/assign", headers=bearer(client, "planner"),
                           json={"moves": undo})
    assert response.status_code == 200, response.text
    after = _grids(client, plan["id"])
    for label in (GRID_WEST, GRID_EAST):
        assert after[label]["properties"]["households"] == 12 * HOUSEHOLDS_A
        before_geom = area_before[label]["geometry"]
        assert _area(after[label]["geometry"]) == pytest.approx(_area(before_geom), rel=1e-4)


def _area(geometry: dict[str, Any]) -> float:
    from shapely.geometry import shape
    return float(shape(geometry).area)


def test_moves_across_communities_or_plans_are_refused(client: TestClient,
                                                       world: PlanWorld) -> None:
    plan = _create(client, name="两个社区", community_codes=[COMMUNITY_A, COMMUNITY_B])
    grids = _grids(client, plan["id"])
    cell = _cells_of_building(client, plan["id"], world.buildings[GRID_WEST][:1])[0]
    other = grids["110102020002001"]["id"]
    response = client.post(f"{API}/{plan['id']}/assign", headers=bearer(client, "planner"),
                           json={"moves": [{"cell_id": cell, "grid_id": other}]})
    assert response.status_code == 422 and "moves[0].grid_id" in response.text
    assert "one community" in response.text
    response = client.post(f"{API}/{plan['id']}/assign", headers=bearer(client, "planner"),
                           json={"moves": [{"cell_id": 999999, "grid_id": other}]})
    assert response.status_code == 422 and "moves[0].cell_id" in response.text
    response = client.post(f"{API}/{plan['id']}/assign", headers=bearer(client, "planner"),
                           json={"moves": []})
    assert response.status_code == 422 and "moves" in response.text


def test_split_along_the_cross_street_and_merge_back(client: TestClient) -> None:
    plan = _create(client)
    grids = _grids(client, plan["id"])
    west = grids[GRID_WEST]["id"]
    y = Y0 + DY / 2 + 0.00004  # ~4 m north of the east-west street: snaps onto it
    line = {"type": "LineString", "coordinates": [[X0 - 0.0005, y], [X0 + DX / 2 + 0.0005, y]]}
    response = client.post(f"{API}/{plan['id']}/split", headers=bearer(client, "planner"),
                           json={"grid_id": west, "line": line})
    assert response.status_code == 200, response.text
    body = response.json()
    new = body["created_grid_id"]
    changed = {f["id"]: f["properties"] for f in body["grids"]["features"]}
    assert changed[west]["households"] == 6 * HOUSEHOLDS_A
    assert changed[new]["households"] == 6 * HOUSEHOLDS_A
    snapped = body["snapped_line"]["coordinates"]
    assert all(abs(lat - (Y0 + DY / 2)) < 1e-6 for _, lat in snapped[1:-1])
    # both halves are out of the band now (210 < 300)
    out = {i["rule"] for i in body["metrics"]["issues"]}
    assert "households_out_of_band" in out
    response = client.post(f"{API}/{plan['id']}/merge", headers=bearer(client, "planner"),
                           json={"grid_ids": [west, new]})
    assert response.status_code == 200, response.text
    changed = {f["id"]: f["properties"] for f in response.json()["grids"]["features"]}
    assert changed[west]["households"] == 12 * HOUSEHOLDS_A
    assert changed[new]["households"] == 0


def test_a_line_that_does_not_cut_the_grid_is_refused(client: TestClient) -> None:
    plan = _create(client)
    west = _grids(client, plan["id"])[GRID_WEST]["id"]
    short = {"type": "LineString", "coordinates": [[X0 + 0.0001, Y0 + 0.0001],
                                                   [X0 + 0.0002, Y0 + 0.0002]]}
    for line, field in ((short, "line"), ({"type": "Point", "coordinates": [1, 2]}, "line"),
                        ({"nonsense": True}, "line")):
        response = client.post(f"{API}/{plan['id']}/split", headers=bearer(client, "planner"),
                               json={"grid_id": west, "line": line})
        assert response.status_code == 422, response.text
        assert field in response.text


def test_states_validate_approve_and_edits_send_back_to_draft(
        client: TestClient, world: PlanWorld) -> None:
    plan = _create(client)
    url = f"{API}/{plan['id']}"
    response = client.post(f"{url}/approve", headers=bearer(client, "planner2"))
    assert response.status_code == 409 and "validate" in response.text
    response = client.post(f"{url}/validate", headers=bearer(client, "planner"))
    assert response.status_code == 200, response.text
    assert response.json()["validation"]["ok"] is True
    assert response.json()["plan"]["status"] == "validated"
    # an edit sends it back to draft
    grids = _grids(client, plan["id"])
    cell = _cells_of_building(client, plan["id"], world.buildings[GRID_WEST][-1:])[0]
    client.post(f"{url}/assign", headers=bearer(client, "planner"),
                json={"moves": [{"cell_id": cell, "grid_id": grids[GRID_EAST]["id"]}]})
    detail = client.get(url, headers=bearer(client, "planner")).json()
    assert detail["status"] == "draft"
    assert detail["comments"][-1]["from"] == "validated"
    client.post(f"{url}/validate", headers=bearer(client, "planner"))
    response = client.post(f"{url}/approve", headers=bearer(client, "planner"))
    assert response.status_code == 403 and "author" in response.text
    response = client.post(f"{url}/approve", headers=bearer(client, "planner2"),
                           json={"comment": "同意"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"
    assert response.json()["reviewer"] == "planner2"
    response = client.post(f"{url}/reject", headers=bearer(client, "planner2"), json={})
    assert response.status_code == 422 and "comment" in response.text
    response = client.post(f"{url}/comments", headers=bearer(client, "viewer"),
                           json={"text": "看过"})
    assert response.status_code == 403


def test_an_invalid_plan_stays_draft_with_its_errors(client: TestClient) -> None:
    plan = _create(client)
    grids = _grids(client, plan["id"])
    response = client.post(f"{API}/{plan['id']}/merge", headers=bearer(client, "planner"),
                           json={"grid_ids": [grids[GRID_WEST]["id"], grids[GRID_EAST]["id"]]})
    assert response.status_code == 200, response.text
    response = client.post(f"{API}/{plan['id']}/validate", headers=bearer(client, "planner"))
    body = response.json()
    assert body["plan"]["status"] == "draft" and body["validation"]["ok"] is False
    assert [i["rule"] for i in body["validation"]["issues"]
            if i["severity"] == "error"] == ["households_out_of_band"]


def test_apply_through_the_api_changes_the_live_grids(client: TestClient, engine: Engine,
                                                      world: PlanWorld) -> None:
    plan = _create(client)
    url = f"{API}/{plan['id']}"
    grids = _grids(client, plan["id"])
    cell = _cells_of_building(client, plan["id"], world.buildings[GRID_WEST][-1:])[0]
    client.post(f"{url}/assign", headers=bearer(client, "planner"),
                json={"moves": [{"cell_id": cell, "grid_id": grids[GRID_EAST]["id"]}]})
    response = client.post(f"{url}/apply", headers=bearer(client, "planner"))
    assert response.status_code == 409
    assert client.post(f"{url}/validate", headers=bearer(client, "planner")).json()[
        "plan"]["status"] == "validated"
    assert client.post(f"{url}/approve", headers=bearer(client, "admin")).status_code == 200
    diff = client.get(f"{url}/diff", headers=bearer(client, "viewer"))
    assert diff.status_code == 200, diff.text
    assert diff.json()["buildings_moved"] == 1
    page = client.get(f"{url}/comparison", headers=bearer(client, "viewer"))
    assert page.status_code == 200 and "<svg" in page.text
    response = client.post(f"{url}/apply", headers=bearer(client, "planner"))
    assert response.status_code == 200, response.text
    assert response.json()["plan"]["status"] == "applied"
    with engine.connect() as conn:
        live = dict(conn.execute(text(
            "SELECT code, households FROM grids WHERE valid_to IS NULL AND "
            "community_code = :c"), {"c": COMMUNITY_A}).all())
        assert live == {GRID_WEST: 11 * HOUSEHOLDS_A, GRID_EAST: 13 * HOUSEHOLDS_A}
    response = client.post(f"{url}/assign", headers=bearer(client, "planner"),
                           json={"moves": [{"cell_id": cell, "grid_id": grids[GRID_WEST]["id"]}]})
    assert response.status_code == 409


def _geojson_file(tmp_path: Path, features: list[dict[str, Any]]) -> Path:
    path = tmp_path / "grids.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _polygon(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def test_import_a_layer_as_a_plan(client: TestClient, tmp_path: Path) -> None:
    third = X0 + DX / 3
    path = _geojson_file(tmp_path, [
        {"type": "Feature", "properties": {"code": GRID_WEST, "name": "西片"},
         "geometry": _polygon(X0, Y0, third, Y0 + DY)},
        {"type": "Feature", "properties": {"name": "东片"},
         "geometry": _polygon(third, Y0, X0 + DX, Y0 + DY)},
    ])
    with path.open("rb") as f:
        response = client.post(f"{API}/import", headers=bearer(client, "planner"),
                               data={"name": "导入方案"},
                               files={"file": ("grids.geojson", f, "application/geo+json")})
    assert response.status_code == 201, response.text
    plan = response.json()
    assert plan["source"] == "import" and plan["community_codes"] == [COMMUNITY_A]
    grids = _grids(client, plan["id"])
    assert grids[GRID_WEST]["properties"]["source_code"] == GRID_WEST
    assert grids[GRID_WEST]["properties"]["name"] == "西片"
    assert sum(g["properties"]["households"] for g in grids.values()) == 24 * HOUSEHOLDS_A


def test_a_bad_layer_file_loads_nothing(client: TestClient, engine: Engine,
                                        tmp_path: Path) -> None:
    path = _geojson_file(tmp_path, [
        {"type": "Feature", "properties": {}, "geometry": _polygon(X0, Y0, X0 + DX, Y0 + DY)},
        {"type": "Feature", "properties": {},
         "geometry": {"type": "LineString", "coordinates": [[X0, Y0], [X0 + DX, Y0]]}},
    ])
    cases = [
        (path.read_bytes(), "grids.geojson", "feature 2"),
        (b"not json at all", "grids.geojson", "not a readable geo file"),
        (path.read_bytes(), "grids.txt", ".geojson"),
        (json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {},
             "geometry": _polygon(X0 + 1, Y0 + 1, X0 + 1.01, Y0 + 1.01)}]}).encode(),
         "far.geojson", "does not lie in"),
    ]
    for data, name, reason in cases:
        response = client.post(f"{API}/import", headers=bearer(client, "planner"),
                               data={"name": "坏文件"}, files={"file": (name, data)})
        assert response.status_code == 422, response.text
        assert reason in response.text and "file" in response.text
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM grid_plans")) == 0
        assert conn.scalar(text("SELECT count(*) FROM grid_plan_grids")) == 0


def test_who_sees_and_changes_plans(client: TestClient) -> None:
    plan = _create(client)
    url = f"{API}/{plan['id']}"
    assert client.get(url, headers=bearer(client, "viewer")).status_code == 200
    # scoped to 丰台: the 西城 plan is not theirs to see or change
    assert client.get(url, headers=bearer(client, "op_ft")).status_code == 404
    assert client.get(API, headers=bearer(client, "op_ft")).json()["plans"] == []
    response = client.post(API, json={"name": "越权", "community_codes": [COMMUNITY_A]},
                           headers=bearer(client, "planner_ft"))
    assert response.status_code == 403 and "scope" in response.text
    assert client.post(f"{url}/validate",
                       headers=bearer(client, "planner_ft")).status_code == 403
    assert client.post(API, json={"name": "x", "community_codes": [COMMUNITY_A]},
                       headers=bearer(client, "viewer")).status_code == 403
    assert client.get(url).status_code == 401


def test_a_new_empty_grid_to_paint_into(client: TestClient, world: PlanWorld) -> None:
    plan = _create(client)
    response = client.post(f"{API}/{plan['id']}/grids", headers=bearer(client, "planner"),
                           json={"community_code": COMMUNITY_A})
    assert response.status_code == 201, response.text
    grid = response.json()["grid"]
    assert grid["code"] is None and grid["households"] == 0
    response = client.post(f"{API}/{plan['id']}/grids", headers=bearer(client, "planner"),
                           json={"community_code": COMMUNITY_B})
    assert response.status_code == 422 and "community_code" in response.text
    cells = _cells_of_building(client, plan["id"], world.buildings[GRID_WEST][:3])
    response = client.post(f"{API}/{plan['id']}/assign", headers=bearer(client, "planner"),
                           json={"moves": [{"cell_id": c, "grid_id": grid["id"]}
                                           for c in cells]})
    assert response.status_code == 200, response.text
    changed = {f["id"]: f["properties"] for f in response.json()["grids"]["features"]}
    assert changed[grid["id"]]["households"] == 3 * HOUSEHOLDS_A



def test_merge_two_specialised_layers_through_the_api(client: TestClient,
                                                      tmp_path: Path) -> None:
    third, half = X0 + DX / 3, Y0 + DY / 2
    zongzhi = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "综治一"},
         "geometry": _polygon(X0, Y0, third, Y0 + DY)},
        {"type": "Feature", "properties": {"name": "综治二"},
         "geometry": _polygon(third, Y0, X0 + DX, Y0 + DY)}]}).encode()
    chengguan = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "城管南"},
         "geometry": _polygon(X0, Y0, X0 + DX, half)},
        {"type": "Feature", "properties": {"name": "城管北"},
         "geometry": _polygon(X0, half, X0 + DX, Y0 + DY)}]}).encode()
    response = client.post(f"{API}/merge-layers", headers=bearer(client, "planner"),
                           data={"name": "多网合一", "community_codes": COMMUNITY_A},
                           files=[("files", ("zongzhi.geojson", zongzhi)),
                                  ("files", ("chengguan.geojson", chengguan))])
    assert response.status_code == 201, response.text
    plan = response.json()
    assert plan["source"] == "merge" and plan["grids"] == 2
    households = sorted(g["properties"]["households"]
                        for g in _grids(client, plan["id"]).values())
    assert sum(households) == 24 * HOUSEHOLDS_A
    assert all(300 <= h <= 500 for h in households)
    metrics = client.get(f"{API}/{plan['id']}/metrics", headers=bearer(client, "planner"))
    assert metrics.json()["ok"] is True, metrics.json()["issues"]
    response = client.post(f"{API}/merge-layers", headers=bearer(client, "planner"),
                           data={"name": "一层", "community_codes": COMMUNITY_A},
                           files=[("files", ("zongzhi.geojson", zongzhi))])
    assert response.status_code == 422 and "files" in response.text
