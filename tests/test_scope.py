"""Scope rules on a real PostGIS: who reads which incident, joint (联合哨) cases, department
tasks, street chiefs' streets, IDOR attempts, personal data, the audit log for admins, and
audit rows written atomically with their change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis import users
from gis.audit import Actor
from tests.auth_world import World, bearer, build_world


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


@pytest.fixture
def client(settings: Settings, world: World) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        yield c


def visible(client: TestClient, world: World, username: str) -> set[str]:
    """Names of the world's incidents `username` sees in the list."""
    response = client.get("/api/v1/incidents", headers=bearer(client, username))
    assert response.status_code == 200, response.text
    ids = {f["id"] for f in response.json()["features"]}
    return {name for name, incident_id in world.incidents.items() if incident_id in ids}


@pytest.mark.parametrize(("username", "expected"), [
    ("admin", {"dongcheng", "xicheng", "xicheng_street", "fengtai", "joint"}),
    ("op_city", {"dongcheng", "xicheng", "xicheng_street", "fengtai", "joint"}),
    ("op_dc", {"dongcheng"}),
    ("op_xc", {"xicheng", "xicheng_street", "joint"}),
    ("op_ft", {"fengtai", "joint"}),  # the 联合哨 case names 丰台 too
    ("viewer", {"xicheng", "xicheng_street", "joint"}),
    ("planner", {"dongcheng", "xicheng", "xicheng_street", "fengtai", "joint"}),
    ("disp_xc", {"xicheng"}),  # its department's task only
    ("disp_ft", set()),
    ("chief", {"xicheng_street"}),  # the street assigned to that chief only
])
def test_list_is_filtered_by_scope(client: TestClient, world: World, username: str,
                                   expected: set[str]) -> None:
    assert visible(client, world, username) == expected


def test_an_operator_of_dongcheng_cannot_read_a_xicheng_incident(
        client: TestClient, world: World) -> None:
    headers = bearer(client, "op_dc")
    guessed = client.get(f"/api/v1/incidents/{world.incidents['xicheng']}", headers=headers)
    missing = client.get("/api/v1/incidents/999999", headers=headers)
    # Indistinguishable from a missing id: no existence oracle.
    assert guessed.status_code == missing.status_code == 404
    assert guessed.json()["detail"][0]["field"] == missing.json()["detail"][0]["field"]
    assert client.get(f"/api/v1/incidents/{world.incidents['dongcheng']}",
                      headers=headers).status_code == 200


def test_both_sides_read_a_joint_case(client: TestClient, world: World) -> None:
    for username in ("op_xc", "op_ft"):
        response = client.get(f"/api/v1/incidents/{world.incidents['joint']}",
                              headers=bearer(client, username))
        assert response.status_code == 200
        props = response.json()["properties"]
        assert props["is_joint"] is True
        assert {j["code"] for j in props["joint"]["jurisdictions"]} == {"110102", "110106"}
    assert client.get(f"/api/v1/incidents/{world.incidents['joint']}",
                      headers=bearer(client, "op_dc")).status_code == 404


@pytest.mark.parametrize(("username", "name", "status"), [
    ("disp_ft", "xicheng", 404),  # another department's task
    ("disp_xc", "fengtai", 404),
    ("chief", "xicheng", 404),  # same district, not the chief's street
    ("chief", "xicheng_street", 200),
    ("op_ft", "xicheng", 404),
])
def test_object_level_checks_on_ids_in_paths(client: TestClient, world: World, username: str,
                                             name: str, status: int) -> None:
    response = client.get(f"/api/v1/incidents/{world.incidents[name]}",
                          headers=bearer(client, username))
    assert response.status_code == status


def test_reporter_contacts_only_for_those_who_act(client: TestClient, world: World) -> None:
    path = f"/api/v1/incidents/{world.incidents['xicheng']}"
    acting = client.get(path, headers=bearer(client, "op_xc")).json()["properties"]
    reading = client.get(path, headers=bearer(client, "viewer")).json()["properties"]
    assert acting["reporter_phone"] == "13800000000"
    assert reading["reporter_phone"] is None and reading["reporter_name"] is None


def test_scope_filters_apply_before_paging(client: TestClient, world: World) -> None:
    headers = bearer(client, "op_xc")
    first = client.get("/api/v1/incidents?limit=2", headers=headers).json()
    assert first["numberReturned"] == 2
    [link] = [x["href"] for x in first["links"] if x["rel"] == "next"]
    second = client.get(link, headers=headers).json()
    assert second["numberReturned"] == 1
    assert not [x for x in second["links"] if x["rel"] == "next"]


def test_admin_reads_the_audit_log_with_filters(client: TestClient) -> None:
    headers = bearer(client, "admin")
    created = client.post("/api/v1/users", headers={**headers, "X-Request-ID": "mk-1"}, json={
        "username": "op_new", "password": "long enough", "roles": ["operator"],
        "scope_codes": ["110101"]})
    assert created.status_code == 201, created.text
    page = client.get("/api/v1/audit?action=user.add&limit=3", headers=headers).json()
    assert [e["action"] for e in page["items"]] == ["user.add"] * 3
    newest = page["items"][0]
    assert (newest["actor"], newest["object_id"], newest["request_id"]) == (
        "admin", str(created.json()["id"]), "mk-1")
    assert newest["after"]["scope_codes"] == ["110101"]
    assert "password_hash" not in newest["after"]
    following = client.get(page["next"], headers=headers).json()
    assert following["items"][0]["id"] < page["items"][-1]["id"]
    by_request = client.get("/api/v1/audit?request_id=mk-1", headers=headers).json()
    assert [e["object_id"] for e in by_request["items"]] == [newest["object_id"]]
    assert client.get("/api/v1/audit", headers=bearer(client, "op_city")).status_code == 403


def test_a_failed_change_writes_no_audit_row(client: TestClient, engine: Engine) -> None:
    def audit_rows() -> int:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM audit_log")))

    headers = bearer(client, "admin")
    before = audit_rows()  # after the (audited) login
    # Rejected by validation (unknown scope), and by the database (a taken username).
    bad = client.post("/api/v1/users", headers=headers, json={
        "username": "x1", "password": "long enough", "roles": ["operator"],
        "scope_codes": ["999999"]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "scope"
    taken = client.post("/api/v1/users", headers=headers, json={
        "username": "viewer", "password": "long enough", "roles": ["viewer"]})
    assert taken.status_code == 409
    assert audit_rows() == before
    # The audit row and the change share one transaction: a failure after both undoes both.
    with pytest.raises(RuntimeError), engine.begin() as conn:
        users.add_user(conn, username="ghost", password="long enough", roles=["viewer"],
                       by=Actor("test"))
        raise RuntimeError("the request failed after the change")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM users WHERE username = 'ghost'")) == 0
    assert audit_rows() == before


def test_the_audit_log_cannot_be_changed(engine: Engine, world: World) -> None:
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log",
                      "TRUNCATE audit_log"):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))


def test_disabling_a_user_through_the_api(client: TestClient) -> None:
    viewer = bearer(client, "viewer")
    response = client.post("/api/v1/users/viewer/disable", headers=bearer(client, "admin"))
    assert response.status_code == 200 and response.json()["is_active"] is False
    assert client.get("/api/v1/auth/me", headers=viewer).status_code == 401
    missing = client.post("/api/v1/users/nobody/disable", headers=bearer(client, "admin"))
    assert missing.status_code == 404
