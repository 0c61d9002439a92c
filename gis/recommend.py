"""Which teams to send (DESIGN.md §3 Dispatch): teams whose capability matches the event
class's responsible departments, available, with a fresh position — shortlisted by
straight-line distance (KNN on the GiST index), then ranked by road travel time (one bounded
search from the incident over the reversed road graph, gis.roadgraph). Each pick carries
its reasons; each gap (nobody capable, positions stale, all busy, nobody within the budget)
is reported as a shortfall. A joint (联合哨) case gets a list per jurisdiction it names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, RowMapping, text

from gis import roadgraph
from gis.auth import Principal
from gis.errors import InvalidInput, NotFound
from gis.scope import incident_visible

SHORTLIST = 50  # nearest eligible teams (straight line) whose road ETA is computed
MAX_LIMIT = 20
ROLE_ZH = {"primary": "主责", "assisting": "协办"}

_INCIDENT = """
    SELECT i.id, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.status, i.district_code,
           i.street_code, i.is_joint, i.joint, ec.kind, ec.code, ec.name AS event_name,
           ec.departments
    FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
    WHERE i.id = :id AND ({visible})
"""

# The capable teams (capability matches; for a joint case, based in that jurisdiction or
# covering it), counted by availability, and the nearest eligible ones by straight line with
# what ranking and reasons need — one row per team, or one row of counts alone when none is
# eligible.
_POINT = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)"
_CAPABLE = """
    capable AS (
        SELECT t.*, t.position_at >= now() - :stale AS fresh FROM teams t
        WHERE t.capabilities && CAST(:caps AS text[])
          AND (CAST(:within AS text) IS NULL
               OR t.home_code LIKE :within || '%' OR :within LIKE t.home_code || '%'))
"""
_SHORTLIST = text(f"""
    WITH {_CAPABLE},
    counts AS (
        SELECT count(*) AS capable,
               count(*) FILTER (WHERE status = 'available') AS available,
               count(*) FILTER (WHERE status = 'available' AND fresh IS NOT TRUE) AS stale
        FROM capable),
    nearest AS (  -- a constant point: KNN order; the joins below see only these rows
        SELECT * FROM capable t WHERE t.status = 'available' AND t.fresh
        ORDER BY t.position <-> {_POINT}, t.id LIMIT :shortlist)
    SELECT counts.*, t.id, t.code, t.name, t.home_code, t.capabilities,
           d.id AS department_id, d.name AS department_name, d.dept_type,
           coalesce(hj.name, dj.name) AS home_name,
           ST_X(t.position) AS lon, ST_Y(t.position) AS lat, t.position_at,
           ST_Distance(t.position::geography, {_POINT}::geography) AS straight_m,
           extract(epoch FROM now() - t.position_at) AS position_age_s
    FROM counts
    LEFT JOIN nearest t ON true
    LEFT JOIN departments d ON d.id = t.department_id
    LEFT JOIN jurisdictions hj ON hj.code = t.home_code AND hj.valid_to IS NULL
    LEFT JOIN jurisdictions dj ON dj.code = t.district_code AND dj.valid_to IS NULL
                              AND dj.level = 'district'
    ORDER BY t.position <-> {_POINT}, t.id
""")  # noqa: S608 - constant fragments


@dataclass(frozen=True)
class Need:
    """What the incident needs: the capabilities that match (department types and the
    class itself, `event:CODE`), and each department type's role (主责 primary / 协办)."""

    capabilities: list[str]
    roles: dict[str, str]


def need_of(kind: str, code: str, departments: list[dict[str, str]]) -> Need:
    """The capabilities a team needs for an event class."""
    roles = {d["type"]: d.get("role", "assisting") for d in departments}
    return Need([*roles, f"{kind}:{code}"], roles)


def _reason(kind: str, zh: str, en: str) -> dict[str, str]:
    return {"kind": kind, "zh": zh, "en": en}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}"


def _pick(row: RowMapping, need: Need, eta_s: float, road_m: float) -> dict[str, Any]:
    matched = [c for c in need.capabilities if c in row["capabilities"]]
    role = next((need.roles[c] for c in matched if c in need.roles), "assisting")
    what = ", ".join(matched)
    return {
        "team_id": row["id"], "team_code": row["code"], "name": row["name"],
        "department": {"id": row["department_id"], "name": row["department_name"],
                       "dept_type": row["dept_type"]},
        "eta_s": round(eta_s, 1), "road_m": round(road_m, 1),
        "straight_m": round(row["straight_m"], 1),
        "jurisdiction": {"code": row["home_code"], "name": row["home_name"]},
        "position_at": row["position_at"],
        "reasons": [
            _reason("capability", f"能力匹配（{ROLE_ZH[role]}）：{what}",
                    f"capable ({role}): {what}"),
            _reason("eta", f"道路行程约 {_minutes(eta_s)} 分钟（{road_m / 1000:.1f} 公里）",
                    f"about {_minutes(eta_s)} min by road ({road_m / 1000:.1f} km)"),
            _reason("distance", f"直线距离 {row['straight_m'] / 1000:.1f} 公里",
                    f"{row['straight_m'] / 1000:.1f} km in a straight line"),
            _reason("jurisdiction", f"辖区：{row['home_name'] or row['home_code']}",
                    f"home jurisdiction: {row['home_name'] or row['home_code']}"),
            _reason("position", f"位置更新于 {_minutes(row['position_age_s'])} 分钟前",
                    f"position {_minutes(row['position_age_s'])} min old"),
        ],
    }


def _shortfalls(counts: RowMapping, reached: int, limit: int, need: Need,
                budget_s: float, stale_after: timedelta) -> list[dict[str, str]]:
    """Why fewer teams than asked could be recommended."""
    caps = ", ".join(need.capabilities)
    capable, available, stale = counts["capable"], counts["available"], counts["stale"]
    if capable == 0:
        return [_reason("no_capable_team", f"没有具备该能力的队伍（{caps}）",
                        f"no team has the capability ({caps})")]
    out = []
    minutes = f"{stale_after.total_seconds() / 60:.0f}"
    budget = _minutes(budget_s)
    if available == 0:
        out.append(_reason("all_busy", f"具备能力的 {capable} 支队伍均不可用（忙碌、下班或停用）",
                           f"all {capable} capable teams are busy, off duty or out of service"))
    elif available < capable:
        out.append(_reason("some_busy",
                           f"{capable - available} 支具备能力的队伍不可用（忙碌、下班或停用）",
                           f"{capable - available} capable teams are busy, off duty or out "
                           "of service"))
    if stale:
        out.append(_reason("positions_stale",
                           f"{stale} 支可用队伍位置超过 {minutes} 分钟未更新或缺失",
                           f"{stale} available teams have no position newer than "
                           f"{minutes} min"))
    if available > stale and reached == 0:
        out.append(_reason("none_in_range", f"{budget} 分钟道路行程内没有可用队伍",
                           f"no available team within {budget} min by road"))
    elif 0 < reached < limit:
        out.append(_reason("fewer_than_asked", f"{budget} 分钟道路行程内仅有 {reached} 支可用队伍",
                           f"only {reached} available teams within {budget} min by road"))
    return out


def _group(conn: Connection, incident: RowMapping, need: Need, *, within: str | None,
           limit: int, budget_s: float, stale_after: timedelta) -> dict[str, Any]:
    """One ranked list: the capable teams (in `within`, a jurisdiction code, if given)."""
    args = {"lon": incident["lon"], "lat": incident["lat"], "caps": need.capabilities,
            "stale": stale_after, "within": within, "shortlist": SHORTLIST}
    found = conn.execute(_SHORTLIST, args).mappings().all()
    counts, rows = found[0], [r for r in found if r["id"] is not None]
    picks: list[dict[str, Any]] = []
    if rows:
        etas = roadgraph.graph_for(conn).etas_to(
            incident["lon"], incident["lat"], np.array([r["lon"] for r in rows]),
            np.array([r["lat"] for r in rows]), budget_s=budget_s)
        order = np.lexsort((np.array([r["id"] for r in rows]), etas.eta_s))
        picks = [_pick(rows[k], need, float(etas.eta_s[k]), float(etas.road_m[k]))
                 for k in order if np.isfinite(etas.eta_s[k])]
    return {"teams": picks[:limit],
            "shortfalls": _shortfalls(counts, len(picks), limit, need, budget_s, stale_after)}


def recommend(conn: Connection, reader: Principal, incident_id: int, *, limit: int = 5,
              budget_s: float, stale_after: timedelta) -> dict[str, Any]:
    """The teams to send to an incident, best first, with reasons and shortfalls. A joint
    case has one group per jurisdiction it names (teams based there); otherwise one group
    of every capable team, whatever its jurisdiction (the nearest by road wins)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    visible, params = incident_visible(reader)
    incident = conn.execute(text(_INCIDENT.format(visible=visible)),
                            {**params, "id": incident_id}).mappings().one_or_none()
    if incident is None:
        raise NotFound(f"no incident {incident_id} (or not in your scope)", field="incident_id")
    departments = incident["departments"]
    if isinstance(departments, str):
        departments = json.loads(departments)
    need = need_of(incident["kind"], incident["code"], departments)
    def group(within: str | None) -> dict[str, Any]:
        return _group(conn, incident, need, within=within, limit=limit, budget_s=budget_s,
                      stale_after=stale_after)

    if incident["is_joint"] and incident["joint"]:
        groups = [{"jurisdiction": j, **group(j["code"])}
                  for j in incident["joint"]["jurisdictions"]]
    else:
        groups = [{"jurisdiction": None, **group(None)}]
    return {"incident_id": incident_id, "status": incident["status"],
            "event": {"kind": incident["kind"], "code": incident["code"],
                      "name": incident["event_name"]},
            "capabilities": need.capabilities, "budget_s": budget_s,
            "stale_after_s": stale_after.total_seconds(), "groups": groups}


_TEAM_AND_CASE = """
    SELECT ST_X(i.geom) AS to_lon, ST_Y(i.geom) AS to_lat,
           ST_X(t.position) AS from_lon, ST_Y(t.position) AS from_lat, t.name
    FROM incidents i, teams t
    WHERE i.id = :incident_id AND t.id = :team_id AND ({visible})
"""


def route(conn: Connection, reader: Principal, incident_id: int, team_id: int, *,
          budget_s: float) -> dict[str, Any]:
    """The fastest road path from a team to an incident as a GeoJSON Feature (LineString,
    with `eta_s` and `road_m`), for drawing on the map; NotFound when either is unknown or
    out of scope, or the team has no position or no road path within the budget."""
    visible, params = incident_visible(reader)
    row = conn.execute(text(_TEAM_AND_CASE.format(visible=visible)), {
        **params, "incident_id": incident_id, "team_id": team_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no incident {incident_id} (or not in your scope), or no team "
                       f"{team_id}", field="team_id")
    if row["from_lon"] is None:
        raise NotFound(f"team {team_id} ({row['name']}) has no position", field="team_id")
    graph = roadgraph.graph_for(conn)
    coords = graph.route(row["from_lon"], row["from_lat"], row["to_lon"], row["to_lat"],
                         budget_s=budget_s)
    if coords is None:
        raise NotFound(f"no road path from team {team_id} within {_minutes(budget_s)} min",
                       field="team_id")
    etas = graph.etas_to(row["to_lon"], row["to_lat"], [row["from_lon"]], [row["from_lat"]],
                         budget_s=budget_s)
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
            "properties": {"incident_id": incident_id, "team_id": team_id,
                           "eta_s": round(float(etas.eta_s[0]), 1),
                           "road_m": round(float(etas.road_m[0]), 1)}}
