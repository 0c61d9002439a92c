"""A small world for authorisation tests: three districts (东城, 西城, 丰台), one street,
a department with a team, a street chief on a street, incidents in each district, a joint
(联合哨) case on the 西城–丰台 line, and one user per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from gis import auth, users
from gis.audit import Actor

PASSWORD = "correct horse battery"
DONGCHENG, XICHENG, FENGTAI = "110101", "110102", "110106"
GUANGWAI = "110102020"  # 广安门外街道 (西城)


def _square(x: float, y: float, size: float = 0.01) -> str:
    return (f"MULTIPOLYGON((({x} {y},{x + size} {y},{x + size} {y + size},{x} {y + size},"
            f"{x} {y})))")


@dataclass
class World:
    """Ids of what `build_world` made."""

    incidents: dict[str, int] = field(default_factory=dict)
    department_id: int = 0
    other_department_id: int = 0
    person_id: int = 0
    street_id: int = 0
    team_id: int = 0
    dispatch_id: int = 0


def _incident(conn: Connection, key: str, district: str, street: str | None, *,
              street_id: int | None = None, joint: str | None = None) -> int:
    return int(conn.scalar(
        text("""
            INSERT INTO incidents (source, event_class_id, description, reporter_name,
                                   reporter_phone, geom, district_code, street_code,
                                   street_id, is_joint, joint)
            VALUES ('12345', (SELECT min(id) FROM event_classes), :key, '张三', '13800000000',
                    ST_SetSRID(ST_MakePoint(116.35, 39.88), 4326), :district, :street,
                    :street_id, :joint IS NOT NULL, CAST(:joint AS jsonb))
            RETURNING id
        """),
        {"key": key, "district": district, "street": street, "street_id": street_id,
         "joint": joint}))


def build_world(engine: Engine) -> World:
    """Fill the database; return the ids the tests need."""
    world = World()
    with engine.begin() as conn:
        for code, name, x in ((DONGCHENG, "东城区", 116.40), (XICHENG, "西城区", 116.34),
                              (FENGTAI, "丰台区", 116.28)):
            conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                              "VALUES ('district', :c, :n, ST_GeomFromText(:g, 4326))"),
                         {"c": code, "n": name, "g": _square(x, 39.87, 0.05)})
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) VALUES "
                          "('street', :c, '广安门外街道', ST_GeomFromText(:g, 4326))"),
                     {"c": GUANGWAI, "g": _square(116.34, 39.87)})
        conn.execute(text("INSERT INTO event_classes (kind, code, major_name, name) "
                          "VALUES ('event', '0101', '市容环境', '暴露垃圾')"))
        world.department_id, world.other_department_id = conn.scalars(text("""
            INSERT INTO departments (code, name, dept_type, tier, jurisdiction_code) VALUES
              ('XC-CG', '西城区城管执法局', 'chengguan', 'core', '110102'),
              ('FT-CG', '丰台区城管执法局', 'chengguan', 'core', '110106')
            RETURNING id""")).all()
        world.team_id = team_id = conn.scalar(text(
            "INSERT INTO teams (code, name, department_id, home_code) "
            "VALUES ('XC-CG-1', '西城城管一队', :d, '110102') RETURNING id"),
            {"d": world.department_id})
        world.person_id = int(conn.scalar(text(
            "INSERT INTO people (name, phone, post, district_code) "
            "VALUES ('李四', '13900000000', 'street_chief', '110102') RETURNING id")))
        world.street_id = int(conn.scalar(text(
            "INSERT INTO streets (name, road_class, district_code, street_office_code, geom) "
            "VALUES ('广安门外大街', 'arterial', '110102', :s, "
            "ST_GeomFromText('MULTILINESTRING((116.341 39.875,116.349 39.875))', 4326)) "
            "RETURNING id"), {"s": GUANGWAI}))
        conn.execute(text("INSERT INTO street_assignments (street_id, person_id, role, "
                          "valid_from) VALUES (:s, :p, 'street_chief', now() - interval '1 day')"),
                     {"s": world.street_id, "p": world.person_id})
        inc = world.incidents
        inc["dongcheng"] = _incident(conn, "dongcheng", DONGCHENG, None)
        inc["xicheng"] = _incident(conn, "xicheng", XICHENG, GUANGWAI)
        inc["xicheng_street"] = _incident(conn, "xicheng_street", XICHENG, GUANGWAI,
                                          street_id=world.street_id)
        inc["fengtai"] = _incident(conn, "fengtai", FENGTAI, None)
        inc["joint"] = _incident(conn, "joint", XICHENG, GUANGWAI, joint="""
            {"jurisdictions": [
              {"level": "district", "code": "110102", "name": "西城区", "share": 0.33},
              {"level": "district", "code": "110106", "name": "丰台区", "share": 0.67}]}""")
        world.dispatch_id = int(conn.scalar(text(
            "INSERT INTO dispatches (incident_id, team_id, district_code) "
            "VALUES (:i, :t, '110102') RETURNING id"), {"i": inc["xicheng"], "t": team_id}))
        by = Actor("test")
        for username, roles, scope, extra in (
                ("admin", ["admin"], [], {}),
                ("op_dc", ["operator"], [DONGCHENG], {}),
                ("op_xc", ["operator"], [XICHENG], {}),
                ("op_ft", ["operator"], [FENGTAI], {}),
                ("op_city", ["operator"], [], {}),
                ("disp_xc", ["dispatcher"], [], {"department_code": "XC-CG"}),
                ("disp_ft", ["dispatcher"], [], {"department_code": "FT-CG"}),
                ("chief", ["street_chief"], [XICHENG], {"person_id": world.person_id}),
                ("planner", ["planner"], [], {}),
                ("viewer", ["viewer"], [XICHENG], {})):
            users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                           scope_codes=scope, by=by, **extra)
    return world


def token(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """A bearer token from the OAuth2 password flow."""
    response = client.post("/api/v1/auth/token",
                           data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(client: TestClient, username: str) -> dict[str, str]:
    """Authorization headers for `username`."""
    return {"Authorization": f"Bearer {token(client, username)}"}


def session_for(conn: Connection, username: str) -> str:
    """A fresh bearer session id for `username` (no HTTP), for domain-level checks."""
    user_id = conn.scalar(text("SELECT id FROM users WHERE username = :u"), {"u": username})
    session_id, _ = auth.create_session(conn, int(user_id), "bearer", timedelta(hours=1))
    return session_id


def sign_in(client: TestClient, engine: Engine, role: str = "viewer") -> None:
    """Create a city-wide user with `role` (once) and send its bearer token on every request
    of `client` from now on."""
    username = f"reader_{role}"
    with engine.begin() as conn:
        if not conn.scalar(text("SELECT 1 FROM users WHERE username = :u"), {"u": username}):
            users.add_user(conn, username=username, password=PASSWORD, roles=[role],
                           by=Actor("test"))
    client.headers["Authorization"] = f"Bearer {token(client, username)}"
