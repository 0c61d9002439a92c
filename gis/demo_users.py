"""One demo account per role (plus a 丰台 operator, to show joint cases from both sides).
Their passwords are public (printed by `make demo`, listed in the README): demo only —
production refuses to start while any is active."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from gis import users
from gis.audit import Actor

XICHENG, FENGTAI, GUANGWAI = "110102", "110106", "110102020"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    scope: tuple[str, ...]
    display_name: str
    department_code: str | None = None
    # bound to a person holding this assignment role in this street office
    person_of: tuple[str, str] | None = None


DEMO_USERS = (
    DemoUser("demo_admin", "demo-admin-2026", "admin", (), "系统管理员（示范）"),
    DemoUser("demo_operator", "demo-operator-2026", "operator", (XICHENG,),
             "西城区指挥中心（示范）"),
    DemoUser("demo_operator_ft", "demo-operator-2026", "operator", (FENGTAI,),
             "丰台区指挥中心（示范）"),
    DemoUser("demo_dispatcher", "demo-dispatcher-2026", "dispatcher", (XICHENG,),
             "西城区城管执法局调度（示范）", department_code=f"{XICHENG}.urban_management"),
    DemoUser("demo_chief", "demo-chief-2026", "street_chief", (GUANGWAI,),
             "广外街道街巷长（示范）", person_of=(GUANGWAI, "street_chief")),
    DemoUser("demo_steward", "demo-steward-2026", "street_chief", (GUANGWAI,),
             "广外街道小巷管家（示范）", person_of=(GUANGWAI, "steward")),
    DemoUser("demo_planner", "demo-planner-2026", "planner", (), "网格规划（示范）"),
    DemoUser("demo_viewer", "demo-viewer-2026", "viewer", (), "领导查看（示范）"),
)


def _person(conn: Connection, street_office: str, role: str) -> int | None:
    """A current holder of `role` on the streets of the 街巷长 of the first street of
    `street_office` (the lowest ids: stable): that chief for `street_chief`, one of the
    stewards (小巷管家) on the same streets for `steward`."""
    person = conn.scalar(text("""
        WITH chief AS (
            SELECT sa.person_id FROM street_assignments sa JOIN streets s ON s.id = sa.street_id
            WHERE s.street_office_code = :office AND sa.role = 'street_chief'
              AND sa.valid_to IS NULL
            ORDER BY s.id LIMIT 1),
        streets AS (
            SELECT sa.street_id FROM street_assignments sa JOIN chief USING (person_id)
            WHERE sa.role = 'street_chief' AND sa.valid_to IS NULL)
        SELECT sa.person_id FROM street_assignments sa JOIN streets USING (street_id)
        WHERE sa.role = :role AND sa.valid_to IS NULL
        ORDER BY sa.person_id LIMIT 1"""), {"office": street_office, "role": role})
    return None if person is None else int(person)


def ensure_demo_users(conn: Connection, by: Actor) -> list[tuple[DemoUser, str]]:
    """Create the demo users that are missing; (user, state) for each: created, exists, or
    why it was skipped (the database lacks its department or street chief)."""
    existing = set(conn.scalars(text("SELECT username FROM users")))
    result: list[tuple[DemoUser, str]] = []
    for demo in DEMO_USERS:
        if demo.username in existing:
            result.append((demo, "exists"))
            continue
        person = None if demo.person_of is None else _person(conn, *demo.person_of)
        if demo.person_of is not None and person is None:
            office, role = demo.person_of
            result.append((demo, f"skipped: no {role} in {office}"))
            continue
        if demo.department_code is not None and not conn.scalar(
                text("SELECT 1 FROM departments WHERE code = :c"), {"c": demo.department_code}):
            result.append((demo, f"skipped: no department {demo.department_code}"))
            continue
        users.add_user(conn, username=demo.username, password=demo.password,
                       roles=[demo.role], scope_codes=demo.scope,
                       department_code=demo.department_code, person_id=person,
                       display_name=demo.display_name, is_demo=True, by=by)
        result.append((demo, "created"))
    return result
