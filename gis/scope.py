"""Row-level visibility as SQL predicates, applied inside queries (never filtered after).

Rules (DESIGN.md §3 Security; issue 4):
- admin: everything;
- operator, viewer, planner: incidents in their jurisdiction scope (district or street
  codes; empty scope = the whole city), plus every joint (联合哨) case that names one of
  their jurisdictions;
- department dispatcher: incidents with a task for their department (a dispatch to one of
  its teams, or a whistle summoning it);
- street chief: incidents on the streets they are assigned to now, routed to them, or
  reported by them.
A user with several roles sees the union.
"""

from __future__ import annotations

from typing import Any

from gis.auth import Principal

SCOPED_READERS = ("operator", "viewer", "planner")


def sees_all(p: Principal) -> bool:
    """Admins and city-wide operators, viewers and planners: no row filter."""
    return p.has_any("admin") or (p.has_any(*SCOPED_READERS) and p.city_wide)


def covers(p: Principal, *codes: str | None) -> bool:
    """Whether `p` reads as an operator, viewer or planner whose scope (district or street
    office codes; empty = the whole city) holds one of `codes`."""
    return p.has_any(*SCOPED_READERS) and (
        p.city_wide or any(code in p.scope_codes for code in codes if code))


def any_of(terms: list[str]) -> str:
    """A boolean SQL expression true where one of `terms` holds (false for none)."""
    return "(" + ") OR (".join(terms) + ")" if terms else "false"


def incident_visible(p: Principal) -> tuple[str, dict[str, Any]]:
    """A boolean SQL expression over incidents aliased `i`, true where `p` may see the
    row, and its bound parameters (names prefixed `scope_`)."""
    if sees_all(p):
        return "true", {}
    terms: list[str] = []
    params: dict[str, Any] = {}
    if p.has_any(*SCOPED_READERS):
        params["scope_codes"] = list(p.scope_codes)
        terms.append(
            "i.district_code = ANY(:scope_codes) "
            "OR i.street_code = ANY(:scope_codes) "
            "OR (i.is_joint AND EXISTS ("
            "SELECT 1 FROM jsonb_array_elements("
            "coalesce(i.joint -> 'jurisdictions', '[]'::jsonb)) AS jj "
            "WHERE jj ->> 'code' = ANY(:scope_codes) "
            "OR left(jj ->> 'code', 6) = ANY(:scope_codes)))")
    if p.has_any("dispatcher") and p.department_id is not None:
        params["scope_department"] = p.department_id
        terms.append(
            "EXISTS (SELECT 1 FROM dispatches d JOIN teams t ON t.id = d.team_id "
            "WHERE d.incident_id = i.id AND t.department_id = :scope_department) "
            "OR EXISTS (SELECT 1 FROM whistles w JOIN whistle_summons ws "
            "ON ws.whistle_id = w.id WHERE w.incident_id = i.id "
            "AND ws.department_id = :scope_department)")
    if p.has_any("street_chief"):
        params["scope_person"] = p.person_id
        params["scope_user"] = p.user_id
        terms.append(
            "i.chief_person_id = :scope_person OR i.created_by = :scope_user "
            "OR i.street_id IN (SELECT sa.street_id FROM street_assignments sa "
            "WHERE sa.person_id = :scope_person AND sa.valid_from <= now() "
            "AND (sa.valid_to IS NULL OR sa.valid_to > now()))")
    return any_of(terms), params


def may_see_contacts(p: Principal) -> bool:
    """Reporter names and phones (personal data) go to those who act on the case."""
    return p.has_any("admin", "operator", "dispatcher")
