"""The role × endpoint matrix, generated from the app's route table: every route must have a
rule here (a new route without one fails), and every rule is checked by real requests —
anonymous and as each role — against a real PostGIS. docs/security.md shows the same table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.settings import Settings
from gis import users
from gis.audit import Actor
from gis.database import make_engine
from tests.auth_world import PASSWORD, World, bearer, build_world

ROLES = users.ROLES
ALL = frozenset(ROLES)
PUBLIC = "public"  # no sign-in (rate-limited where it is an API endpoint)
PAGE = "page"  # any signed-in role; anonymous browsers are sent to /login
KEY = "api key"  # an Open311 client's api_key, not a user: 403 for anyone without one
Rule = frozenset[str] | str
COMMAND = frozenset({"admin", "operator"})  # the command center
TEAM_SIDE = frozenset({"admin", "operator", "dispatcher"})  # + the department's dispatcher
NOT_CHIEF = ALL - {"street_chief"}
NOT_DISPATCHER = ALL - {"dispatcher"}  # street chiefs: their own work log and evaluation row
SUPERVISORS = frozenset({"admin", "operator", "planner", "viewer"})
PLANNERS = frozenset({"admin", "planner"})  # grid plans: write


class RolePage(frozenset[str]):
    """A page for some roles: anonymous browsers go to /login, other roles get a 403 page."""


RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/"): PAGE,
    ("GET", "/patrol"): PAGE,  # street chiefs; other roles get a "not for you" page
    ("GET", "/patrol/sw.js"): PUBLIC,  # the patrol page's service worker (a static script)
    ("GET", "/login"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/api/v1/health"): PUBLIC,
    ("POST", "/api/v1/auth/token"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): ALL,
    ("GET", "/api/v1/auth/me"): ALL,
    ("GET", "/api/v1/jurisdictions"): ALL,
    ("GET", "/api/v1/jurisdictions/{code}"): ALL,
    ("GET", "/api/v1/grids"): ALL,
    ("GET", "/api/v1/grids/{code}"): ALL,
    ("GET", "/api/v1/incidents"): ALL,  # rows filtered by scope (tests/test_scope.py)
    ("GET", "/api/v1/incidents/{incident_id}"): ALL,  # object-level: 404 outside scope
    ("POST", "/api/v1/incidents"): frozenset({"admin", "operator", "street_chief"}),
    ("POST", "/api/v1/incidents/{incident_id}/photos"): frozenset(
        {"admin", "operator", "street_chief"}),
    ("GET", "/api/v1/incidents/{incident_id}/photos"): ALL,
    ("GET", "/api/v1/incidents/{incident_id}/photos/{photo_id}"): ALL,
    ("GET", "/api/v1/locate"): ALL,
    ("POST", "/api/v1/joint-zones"): frozenset({"admin", "planner"}),
    ("GET", "/api/v1/event-classes"): ALL,
    ("GET", "/api/v1/users"): frozenset({"admin"}),
    ("POST", "/api/v1/users"): frozenset({"admin"}),
    ("POST", "/api/v1/users/{username}/disable"): frozenset({"admin"}),
    ("GET", "/api/v1/audit"): frozenset({"admin"}),
    # teams: street chiefs have no business with them; rows and ids scoped (test_teams.py)
    ("GET", "/api/v1/departments"): NOT_CHIEF,
    ("GET", "/api/v1/teams"): NOT_CHIEF,
    ("GET", "/api/v1/teams/{team_id}"): NOT_CHIEF,
    ("PATCH", "/api/v1/teams/{team_id}"): frozenset({"admin"}),
    ("POST", "/api/v1/teams/{team_id}/status"): TEAM_SIDE,
    ("POST", "/api/v1/teams/{team_id}/positions"): TEAM_SIDE,
    ("GET", "/api/v1/teams/{team_id}/positions"): NOT_CHIEF,
    # dispatch and the case workflow (the domain narrows dispatchers to their own tasks)
    ("GET", "/api/v1/incidents/{incident_id}/recommendations"): COMMAND,
    ("GET", "/api/v1/incidents/{incident_id}/route"): COMMAND,
    ("POST", "/api/v1/incidents/{incident_id}/dispatches"): COMMAND,
    ("GET", "/api/v1/incidents/{incident_id}/dispatches"): ALL,
    ("POST", "/api/v1/dispatches/{dispatch_id}/status"): TEAM_SIDE,
    ("POST", "/api/v1/incidents/{incident_id}/whistles"): COMMAND,
    ("GET", "/api/v1/incidents/{incident_id}/whistles"): ALL,
    ("POST", "/api/v1/incidents/{incident_id}/transitions"): TEAM_SIDE,
    ("GET", "/api/v1/incidents/{incident_id}/transitions"): ALL,
    ("GET", "/api/v1/incidents/{incident_id}/events"): ALL,
    ("POST", "/api/v1/incidents/{incident_id}/extensions"): TEAM_SIDE,
    ("GET", "/api/v1/incidents/{incident_id}/extensions"): ALL,
    ("POST", "/api/v1/extensions/{request_id}/decision"): COMMAND,
    ("POST", "/api/v1/incidents/{incident_id}/supervise"): COMMAND,
    # evaluation
    ("GET", "/api/v1/stats"): frozenset({"admin", "operator", "planner", "viewer"}),
    ("GET", "/api/v1/dashboard"): frozenset({"admin", "operator", "planner", "viewer"}),
    # the command map: live feed, vector tiles, OGC API Features (rows scoped)
    ("GET", "/api/v1/events"): ALL,
    ("GET", "/api/v1/events/recent"): ALL,
    ("GET", "/tiles/layers.json"): ALL,
    ("GET", "/tiles/{layer}/{z}/{x}/{y}.mvt"): ALL,
    ("GET", "/ogc"): PUBLIC,
    ("GET", "/ogc/conformance"): PUBLIC,
    ("GET", "/ogc/collections"): ALL,
    ("GET", "/ogc/collections/{collection_id}"): ALL,
    ("GET", "/ogc/collections/{collection_id}/items"): ALL,
    ("GET", "/ogc/collections/{collection_id}/items/{feature_id}"): ALL,
    ("POST", "/api/v1/departments/{department_id}/ratings"): COMMAND,
    ("GET", "/api/v1/departments/{department_id}/ratings"): NOT_CHIEF,
    ("POST", "/api/v1/incidents/{incident_id}/followup"): COMMAND,
    ("GET", "/api/v1/patrol/me"): frozenset({"street_chief"}),
    ("GET", "/api/v1/patrol/checklist"): ALL,
    ("PUT", "/api/v1/patrol/checklist"): frozenset({"admin"}),
    ("POST", "/api/v1/patrols"): frozenset({"street_chief"}),
    ("GET", "/api/v1/patrols"): ALL,
    ("GET", "/api/v1/patrols/{patrol_id}"): ALL,
    ("GET", "/api/v1/patrols/{patrol_id}/points"): ALL,
    ("POST", "/api/v1/patrols/{patrol_id}/fixes"): frozenset({"street_chief"}),
    ("PUT", "/api/v1/patrols/{patrol_id}/checks/{item_code}"): frozenset({"street_chief"}),
    ("POST", "/api/v1/patrols/{patrol_id}/reports"): frozenset({"street_chief"}),
    ("POST", "/api/v1/patrols/{patrol_id}/end"): frozenset({"street_chief"}),
    ("GET", "/api/v1/streets/{street_id}/sign.svg"): frozenset(
        {"admin", "operator", "street_chief", "planner", "viewer"}),
    ("GET", "/api/v1/public/streets/{street_id}"): PUBLIC,
    ("POST", "/api/v1/public/street-reports"): PUBLIC,
    ("GET", "/report/street/{street_id}"): PUBLIC,
    ("GET", "/signs"): PAGE,
    # patrol reports: work logs, the evaluation (日巡/周查/月评), settings, supervisor page
    ("GET", "/api/v1/people/{person_id}/worklog"): NOT_DISPATCHER,
    ("GET", "/api/v1/patrol-evaluation"): NOT_DISPATCHER,
    ("GET", "/api/v1/patrol-evaluation/streets"): NOT_DISPATCHER,
    ("GET", "/api/v1/patrol-evaluation/street-offices"): NOT_DISPATCHER,
    ("GET", "/api/v1/patrol-settings"): SUPERVISORS,
    ("PUT", "/api/v1/patrol-settings"): frozenset({"admin"}),
    ("GET", "/patrol/supervise"): RolePage(SUPERVISORS),
    ("GET", "/planner"): RolePage(SUPERVISORS),  # planner page: planner/admin edit, others read
    ("GET", "/api/v1/reports/boundary"): SUPERVISORS,  # scoped readers: both sides in scope
    **{("GET", f"/api/v1/plans{path}"): SUPERVISORS
       for path in ("", "/{plan_id}", "/{plan_id}/grids", "/{plan_id}/cells",
                    "/{plan_id}/buildings", "/{plan_id}/metrics", "/{plan_id}/diff",
                    "/{plan_id}/comparison")},
    **{("POST", f"/api/v1/plans{path}"): PLANNERS
       for path in ("", "/import", "/merge-layers", "/{plan_id}/assign", "/{plan_id}/split",
                    "/{plan_id}/merge", "/{plan_id}/grids", "/{plan_id}/validate",
                    "/{plan_id}/approve", "/{plan_id}/reject", "/{plan_id}/comments",
                    "/{plan_id}/apply")},
    **{("GET", f"/open311/v2/{path}.{fmt}"): PUBLIC
       for path in ("discovery", "services", "services/{service_code}", "requests",
                    "requests/{service_request_id}")
       for fmt in ("json", "xml")},
    **{("POST", f"/open311/v2/requests.{fmt}"): KEY for fmt in ("json", "xml")},
}
DOC = Path(__file__).parents[1] / "docs" / "security.md"


def routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every endpoint (static file mounts excluded)."""
    found = set()
    for route in iter_route_contexts(app.routes):
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


def render_matrix() -> str:
    """The matrix as a Markdown table (the one in docs/security.md)."""
    lines = ["| endpoint | anonymous | " + " | ".join(ROLES) + " |",
             "|---|---|" + "---|" * len(ROLES)]
    for (method, path), rule in sorted(RULES.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        anonymous = "→ login" if isinstance(rule, RolePage) else {
            PUBLIC: "✓", PAGE: "→ login", KEY: "key"}.get(str(rule), "401")
        cells = ["key" if rule == KEY else
                 "✓" if isinstance(rule, str) or role in rule else "403" for role in ROLES]
        lines.append(f"| `{method} {path}` | {anonymous} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_every_route_has_a_rule_and_every_rule_a_route(settings: Settings) -> None:
    assert routes(create_app(settings)) == set(RULES)


def test_the_security_doc_shows_this_matrix() -> None:
    assert render_matrix() in DOC.read_text()


@pytest.fixture(scope="module")
def matrix_client(new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[TestClient, World]]:
    """One database with the auth world and a spare user to disable, for all requests."""
    url = new_database()
    engine: Engine = make_engine(url)
    world = build_world(engine)
    with engine.begin() as conn:
        users.add_user(conn, username="spare", password=PASSWORD, roles=["viewer"],
                       by=Actor("test"))
    settings = Settings(env="test", database_url=url, home=tmp_path_factory.mktemp("home"),
                        public_rate_per_minute=100_000)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        yield client, world
    engine.dispose()


def _request(client: TestClient, world: World, method: str, path: str,
             headers: dict[str, str]) -> int:
    url = path.format(code="110102", incident_id=world.incidents["xicheng"], username="spare",
                      service_code="event-0101", service_request_id=world.incidents["xicheng"],
                      photo_id=1, team_id=world.team_id, dispatch_id=world.dispatch_id,
                      request_id=1, department_id=world.department_id, layer="grids", z=14,
                      x=13487, y=6208, collection_id="grids", feature_id="1",
                      patrol_id=1, item_code="no_road_damage", street_id=world.street_id,
                      person_id=world.person_id, plan_id=1)
    if path == "/api/v1/events":  # a bad resume point answers at once instead of streaming
        headers = {**headers, "Last-Event-ID": "not-a-number"}
    response = client.request(method, url, headers=headers, follow_redirects=False)
    assert response.status_code < 500, f"{method} {url}: {response.text}"
    return response.status_code


@pytest.mark.parametrize(("method", "path"), sorted(RULES))
def test_anonymous(matrix_client: tuple[TestClient, World], method: str, path: str) -> None:
    client, world = matrix_client
    client.cookies.clear()
    status = _request(client, world, method, path, {})
    rule = RULES[(method, path)]
    if rule == PUBLIC:
        assert status not in (401, 403)
    elif rule == KEY:
        assert status == 403
    elif rule == PAGE or isinstance(rule, RolePage):
        assert status == 303
    else:
        assert status == 401


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), sorted(RULES))
def test_role(matrix_client: tuple[TestClient, World], method: str, path: str,
              role: str) -> None:
    client, world = matrix_client
    client.cookies.clear()
    username = {"admin": "admin", "operator": "op_xc", "dispatcher": "disp_xc",
                "street_chief": "chief", "planner": "planner", "viewer": "viewer"}[role]
    status = _request(client, world, method, path, bearer(client, username))
    rule = RULES[(method, path)]
    if rule == KEY:
        assert status == 403, f"{method} {path} without an api_key"
    elif isinstance(rule, str) or role in rule:
        assert status not in (401, 403), f"{role} denied {method} {path}"
    else:
        assert status == 403, f"{role} allowed {method} {path}"
