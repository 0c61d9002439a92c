"""Grid plans (网格调整方案): the record, who may see and change it, its states and their
transitions, and the plan's grids, cells and buildings as GeoJSON built by PostGIS.

States: draft → validated (the last validation found no errors) → approved (by a reviewer
other than the author, or an admin) → applied (gis/plan_apply.py). Any state before
applied may go to rejected. Editing a validated or approved plan sends it back to draft:
what was checked or approved is no longer what is there. A plan never touches the live
grids until it is applied. Every change is audited; transitions and comments are also
kept on the plan (`comments`), so the page can show the plan's history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from gis.audit import Actor, record
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput, NotFound
from gis.scope import SCOPED_READERS, sees_all

STATES = ("draft", "validated", "approved", "applied", "rejected")
EDITABLE = ("draft", "validated", "approved")
MAX_COMMENT = 2000
MAX_NAME = 200

_SUMMARY = """
    SELECT p.id, p.name, p.status, p.community_codes, p.district_code, p.source, p.revision,
           p.effective_from, p.created_at, p.updated_at, p.validated_at, p.approved_at,
           p.applied_at, au.username AS author, au.id AS author_id,
           rv.username AS reviewer, rv.id AS reviewer_id,
           (SELECT count(*) FROM grid_plan_grids g
            WHERE g.plan_id = p.id AND g.geom IS NOT NULL) AS grids,
           (SELECT coalesce(sum(g.households), 0) FROM grid_plan_grids g
            WHERE g.plan_id = p.id) AS households
    FROM grid_plans p
    LEFT JOIN users au ON au.id = p.author_id
    LEFT JOIN users rv ON rv.id = p.reviewer_id
"""


# -- who may see and change a plan ------------------------------------------------------------


def _readable_sql(reader: Principal) -> tuple[str, dict[str, Any]]:
    """A predicate over grid_plans `p`: admins and city-wide readers see every plan; scoped
    planners, operators and viewers the plans touching their districts or street offices."""
    if sees_all(reader):
        return "true", {}
    if not reader.has_any(*SCOPED_READERS):
        return "false", {}
    return ("(p.district_code = ANY(:scope_codes) OR EXISTS (SELECT 1 FROM "
            "unnest(p.community_codes) c WHERE left(c, 9) = ANY(:scope_codes)))",
            {"scope_codes": list(reader.scope_codes)})


def may_change(writer: Principal, community_codes: Sequence[str]) -> bool:
    """Admins, and planners whose scope holds every one of the communities."""
    if writer.has_any("admin"):
        return True
    if not writer.has_any("planner"):
        return False
    return writer.city_wide or all(
        code[:6] in writer.scope_codes or code[:9] in writer.scope_codes
        for code in community_codes)


def check_may_change(writer: Principal, community_codes: Sequence[str]) -> None:
    """Forbidden unless `writer` may change plans for these communities."""
    if not may_change(writer, community_codes):
        raise Forbidden("you may change plans only for communities inside your scope",
                        field="community_codes")


# -- reading ------------------------------------------------------------------------------------


def list_plans(conn: Connection, reader: Principal, status: str | None = None,
               limit: int = 200) -> list[dict[str, Any]]:
    """The plans `reader` may see, newest change first, optionally of one status."""
    if status is not None and status not in STATES:
        raise InvalidInput(f"status must be one of {', '.join(STATES)}; got {status!r}",
                           field="status")
    visible, params = _readable_sql(reader)
    rows = conn.execute(text(
        f"{_SUMMARY} WHERE {visible} AND (CAST(:status AS text) IS NULL OR p.status = :status)"
        " ORDER BY p.updated_at DESC, p.id DESC LIMIT :limit"),
        {**params, "status": status, "limit": limit}).mappings().all()
    return [_summary(row) for row in rows]


def _summary(row: RowMapping) -> dict[str, Any]:
    out = dict(row)
    out["grids"] = int(out["grids"])
    out["households"] = int(out["households"])
    return out


def get_plan(conn: Connection, plan_id: int, reader: Principal) -> dict[str, Any]:
    """A plan with its comments, last validation and extent; NotFound when it does not
    exist or `reader` may not see it."""
    visible, params = _readable_sql(reader)
    row = conn.execute(text(
        f"""SELECT s.*, p.comments, p.validation, p.properties,
                   (SELECT json_build_array(ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e))
                    FROM (SELECT ST_Extent(geom) AS e FROM grid_plan_cells c
                          WHERE c.plan_id = s.id) x WHERE e IS NOT NULL) AS bbox
            FROM ({_SUMMARY} WHERE p.id = :id AND {visible}) s
            JOIN grid_plans p ON p.id = s.id"""),  # noqa: S608 - constant fragments
        {**params, "id": plan_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no grid plan {plan_id}", field="plan_id")
    return _summary(row)


def locked(conn: Connection, plan_id: int, writer: Principal) -> RowMapping:
    """The plan row, locked for this transaction, after checking `writer` may change it."""
    row = conn.execute(text("SELECT * FROM grid_plans WHERE id = :id FOR UPDATE"),
                       {"id": plan_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no grid plan {plan_id}", field="plan_id")
    check_may_change(writer, row["community_codes"])
    return row


def grids_geojson(conn: Connection, plan_id: int,
                  grid_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The plan's grids (all, or `grid_ids`) as a FeatureCollection; empty grids have a
    null geometry."""
    return dict(conn.scalar(text("""
        SELECT json_build_object('type', 'FeatureCollection', 'features',
                 coalesce(json_agg(json_build_object(
                   'type', 'Feature', 'id', g.id,
                   'geometry', ST_AsGeoJSON(g.geom, 7)::json,
                   'properties', json_build_object(
                     'id', g.id, 'code', g.code, 'name', g.name,
                     'community_code', g.community_code, 'households', g.households,
                     'buildings', g.buildings, 'source_grid_id', g.source_grid_id,
                     'source_code', lg.code,
                     'label', coalesce(g.code, '新网格 #' || g.id)))
                 ORDER BY g.community_code, g.code NULLS LAST, g.id), '[]'))
        FROM grid_plan_grids g
        LEFT JOIN grids lg ON lg.id = g.source_grid_id
        WHERE g.plan_id = :plan
          AND (CAST(:ids AS bigint[]) IS NULL OR g.id = ANY(CAST(:ids AS bigint[])))
    """), {"plan": plan_id, "ids": list(grid_ids) if grid_ids is not None else None}))


def cells_geojson(conn: Connection, plan_id: int) -> dict[str, Any]:
    """The plan's cells (the pieces a planner paints) as a FeatureCollection."""
    return dict(conn.scalar(text("""
        SELECT json_build_object('type', 'FeatureCollection', 'features',
                 coalesce(json_agg(json_build_object(
                   'type', 'Feature', 'id', c.id,
                   'geometry', ST_AsGeoJSON(c.geom, 7)::json,
                   'properties', json_build_object(
                     'id', c.id, 'grid_id', c.plan_grid_id,
                     'community_code', c.community_code, 'building_id', c.building_id,
                     'households', c.households)) ORDER BY c.id), '[]'))
        FROM grid_plan_cells c WHERE c.plan_id = :plan
    """), {"plan": plan_id}))


def buildings_geojson(conn: Connection, plan_id: int) -> dict[str, Any]:
    """The footprints of the buildings in the plan's cells, with the cell and grid each
    one is in."""
    return dict(conn.scalar(text("""
        SELECT json_build_object('type', 'FeatureCollection', 'features',
                 coalesce(json_agg(json_build_object(
                   'type', 'Feature', 'id', b.id,
                   'geometry', ST_AsGeoJSON(b.geom, 7)::json,
                   'properties', json_build_object(
                     'id', b.id, 'cell_id', c.id, 'grid_id', c.plan_grid_id,
                     'households', b.households, 'name', b.name)) ORDER BY b.id), '[]'))
        FROM grid_plan_cells c JOIN buildings b ON b.id = c.building_id
        WHERE c.plan_id = :plan
    """), {"plan": plan_id}))


# -- writing ------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A plan name: 1 to 200 characters after trimming."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"name must be 1 to {MAX_NAME} characters", field="name")
    return name


def insert_plan(conn: Connection, *, name: str, community_codes: Sequence[str], source: str,
                author: Principal, actor: Actor, properties: Mapping[str, Any] | None = None
                ) -> int:
    """A new draft plan for `community_codes` (which must exist now, in one district)."""
    codes = sorted(set(community_codes))
    if not codes:
        raise InvalidInput("name at least one community", field="community_codes")
    bad = [c for c in codes if not (len(c) == 12 and c.isdigit())]
    if bad:
        raise InvalidInput(f"community codes have 12 digits; got {', '.join(bad[:5])}",
                           field="community_codes")
    if len({c[:6] for c in codes}) > 1:
        raise InvalidInput("a plan covers communities of one district; got "
                           f"{', '.join(sorted({c[:6] for c in codes}))}",
                           field="community_codes")
    known = set(conn.scalars(text(
        "SELECT code FROM jurisdictions WHERE level = 'community' AND code = ANY(:codes) "
        "AND valid_from <= now() AND (valid_to IS NULL OR valid_to > now())"),
        {"codes": codes}))
    missing = [c for c in codes if c not in known]
    if missing:
        raise NotFound(f"no community in force with code {', '.join(missing[:5])}",
                       field="community_codes")
    check_may_change(author, codes)
    plan_id = int(conn.scalar(text("""
        INSERT INTO grid_plans (name, community_codes, district_code, author_id, source,
                                properties, comments)
        VALUES (:name, :codes, :district, :author, :source, CAST(:props AS jsonb),
                jsonb_build_array(jsonb_build_object(
                  'at', now(), 'user', CAST(:username AS text), 'kind', 'transition',
                  'from', NULL, 'to', 'draft', 'text', CAST(:how AS text))))
        RETURNING id
    """), {"name": check_name(name), "codes": codes, "district": codes[0][:6],
           "author": author.user_id, "source": source, "username": author.username,
           "props": json.dumps(properties or {}, ensure_ascii=False),
           "how": {"live": "从现行网格创建 created from the live grids",
                   "import": "从导入图层创建 created from an imported layer",
                   "merge": "多网合一 merged from specialised layers"}[source]}))
    record(conn, actor, action="grid_plan.create", object_type="grid_plan",
           object_id=str(plan_id), after={"name": name, "community_codes": codes,
                                          "source": source}, district_code=codes[0][:6])
    return plan_id


def note(conn: Connection, plan_id: int, writer: Principal, kind: str, text_: str | None,
         before: str | None = None, after: str | None = None) -> None:
    """Append a comment or a transition to the plan's history."""
    conn.execute(text("""
        UPDATE grid_plans SET comments = comments || jsonb_build_array(jsonb_build_object(
          'at', now(), 'user', CAST(:user AS text), 'kind', CAST(:kind AS text),
          'text', CAST(:text AS text), 'from', CAST(:before AS text),
          'to', CAST(:after AS text))), updated_at = now()
        WHERE id = :id
    """), {"id": plan_id, "user": writer.username, "kind": kind, "text": text_,
           "before": before, "after": after})


def check_comment(value: str | None, *, required: bool = False) -> str | None:
    """A comment of at most 2,000 characters (required for a rejection)."""
    value = (value or "").strip() or None
    if required and value is None:
        raise InvalidInput("say why (a comment is required)", field="comment")
    if value is not None and len(value) > MAX_COMMENT:
        raise InvalidInput(f"comment must be at most {MAX_COMMENT} characters",
                           field="comment")
    return value


def add_comment(conn: Connection, plan_id: int, writer: Principal, actor: Actor,
                comment: str) -> None:
    """A comment on a plan (any state; reviewers comment too)."""
    plan = conn.execute(text("SELECT community_codes FROM grid_plans WHERE id = :id"),
                        {"id": plan_id}).one_or_none()
    if plan is None:
        raise NotFound(f"no grid plan {plan_id}", field="plan_id")
    body = check_comment(comment, required=True)
    note(conn, plan_id, writer, "comment", body)
    record(conn, actor, action="grid_plan.comment", object_type="grid_plan",
           object_id=str(plan_id), after={"text": body})


def mark_edited(conn: Connection, plan: RowMapping, writer: Principal, actor: Actor,
                change: Mapping[str, Any]) -> None:
    """After an edit: revision + 1; a validated or approved plan goes back to draft."""
    if plan["status"] not in EDITABLE:
        raise Conflict(f"plan {plan['id']} is {plan['status']}; only draft, validated or "
                       "approved plans can be edited", field="status")
    back = plan["status"] != "draft"
    conn.execute(text("""
        UPDATE grid_plans SET revision = revision + 1, updated_at = now(), status = 'draft',
               reviewer_id = CASE WHEN :back THEN NULL ELSE reviewer_id END,
               approved_at = CASE WHEN :back THEN NULL ELSE approved_at END
        WHERE id = :id
    """), {"id": plan["id"], "back": back})
    if back:
        note(conn, plan["id"], writer, "transition", "修改后退回草稿 edited, back to draft",
             plan["status"], "draft")
    record(conn, actor, action="grid_plan.edit", object_type="grid_plan",
           object_id=str(plan["id"]), after=dict(change), district_code=plan["district_code"])


def store_validation(conn: Connection, plan: RowMapping, writer: Principal, actor: Actor,
                     report: Mapping[str, Any]) -> str:
    """Keep the report; a draft with no errors becomes validated. Returns the new status."""
    if plan["status"] not in ("draft", "validated"):
        raise Conflict(f"plan {plan['id']} is {plan['status']}; only a draft is validated",
                       field="status")
    status = "validated" if report.get("ok") else "draft"
    stored = {**report, "revision": plan["revision"]}
    conn.execute(text("""
        UPDATE grid_plans SET validation = CAST(:report AS jsonb), status = :status,
               validated_at = CASE WHEN :status = 'validated' THEN now() END,
               updated_at = now()
        WHERE id = :id
    """), {"id": plan["id"], "status": status,
           "report": json.dumps(stored, ensure_ascii=False, default=str)})
    if status != plan["status"]:
        note(conn, plan["id"], writer, "transition",
             f"校验通过 validated: {report.get('warnings', 0)} warning(s)",
             plan["status"], status)
    record(conn, actor, action="grid_plan.validate", object_type="grid_plan",
           object_id=str(plan["id"]),
           after={"ok": report.get("ok"), "errors": report.get("errors"),
                  "warnings": report.get("warnings"), "status": status})
    return status


def approve(conn: Connection, plan: RowMapping, reviewer: Principal, actor: Actor,
            comment: str | None) -> None:
    """validated → approved, by a reviewer who is not the author (admins may approve
    their own plans)."""
    if plan["status"] != "validated":
        raise Conflict(f"plan {plan['id']} is {plan['status']}; only a validated plan can "
                       "be approved (validate it first)", field="status")
    if plan["author_id"] == reviewer.user_id and not reviewer.has_any("admin"):
        raise Forbidden("the author of a plan cannot approve it; another planner or an "
                        "admin reviews it", field="reviewer")
    body = check_comment(comment)
    conn.execute(text("""
        UPDATE grid_plans SET status = 'approved', reviewer_id = :reviewer,
               approved_at = now(), updated_at = now() WHERE id = :id
    """), {"id": plan["id"], "reviewer": reviewer.user_id})
    note(conn, plan["id"], reviewer, "transition", body or "批准 approved", "validated",
         "approved")
    record(conn, actor, action="grid_plan.approve", object_type="grid_plan",
           object_id=str(plan["id"]), before={"status": "validated"},
           after={"status": "approved", "comment": body})


def reject(conn: Connection, plan: RowMapping, reviewer: Principal, actor: Actor,
           comment: str | None) -> None:
    """Any state before applied → rejected (final), with the reason."""
    if plan["status"] not in EDITABLE:
        raise Conflict(f"plan {plan['id']} is {plan['status']}; it cannot be rejected",
                       field="status")
    body = check_comment(comment, required=True)
    conn.execute(text("UPDATE grid_plans SET status = 'rejected', reviewer_id = :reviewer, "
                      "updated_at = now() WHERE id = :id"),
                 {"id": plan["id"], "reviewer": reviewer.user_id})
    note(conn, plan["id"], reviewer, "transition", body, plan["status"], "rejected")
    record(conn, actor, action="grid_plan.reject", object_type="grid_plan",
           object_id=str(plan["id"]), before={"status": plan["status"]},
           after={"status": "rejected", "comment": body})
