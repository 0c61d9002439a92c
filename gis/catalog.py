"""The event catalog (事件/部件 classes, 属地管理事项清单, stage time limits) with its work
calendar: read and validated from a JSON file (data/catalog/events.json), loaded into the
database, and read back (active classes, the calendar in force, "did you mean" codes).

A bad file raises `InvalidInput` whose `field` is a path naming the entry and the field, e.g.
`classes[event:0101].departments[1].type`; `detail` holds `{"entry": ..., "field": ...}`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection, RowMapping, text

from gis import audit
from gis.errors import InvalidInput
from gis.workcalendar import UNITS, BadEntry, WorkCalendar, parse_calendar

__all__ = [
    "DEFAULT_CATALOG_PATH", "FORMAT", "KINDS", "STAGES", "UNITS", "Catalog", "WorkCalendar",
    "current_calendar", "department_types", "find_class", "list_classes", "load_catalog",
    "load_into_db", "parse_catalog", "stage_deadlines", "stage_limits_seconds",
    "suggest_codes", "summary",
]

DEFAULT_CATALOG_PATH = Path(__file__).resolve().parents[1] / "data" / "catalog" / "events.json"
FORMAT = "gridops-event-catalog/1"
KINDS = ("event", "component")
STAGES = ("accept", "dispatch", "handle", "verify")  # 受理, 派遣, 处置, 核查
ROLES = ("primary", "assisting")
WHISTLES = ("enforcement", "priority", "emergency", "joint")
_MAJOR_CODE = re.compile(r"^[0-9]{2}$")
_CLASS_CODE = re.compile(r"^[0-9]{4}$")
_DEPT_TYPE = re.compile(r"^[a-z_]+$")
_Bad = BadEntry


@dataclass(frozen=True)
class Catalog:
    """A parsed catalog: one row per class in `classes`, plus its calendar."""

    classes: pd.DataFrame  # kind, code, major_code, major_name, name, departments,
    #                        time_limits, default_whistle
    calendar: WorkCalendar
    department_types: Mapping[str, str]
    name: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    synthetic: bool = False

    def lookup(self, kind: str, code: str) -> pd.Series:
        """The class row for (kind, code); NotFound-like InvalidInput otherwise."""
        hit = self.classes[(self.classes["kind"] == kind) & (self.classes["code"] == code)]
        if hit.empty:
            raise InvalidInput(f"unknown {kind} class code {code!r}", field="event_code")
        return hit.iloc[0]


# -- reading and validating a file -----------------------------------------------------


def load_catalog(path: str | Path = DEFAULT_CATALOG_PATH) -> Catalog:
    """Read and validate a catalog file; InvalidInput names the bad entry and field."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read catalog file {p}: {exc}", field="path") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{p.name}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
            field="file", detail={"entry": "file", "field": "file"}) from exc
    return parse_catalog(data)


def parse_catalog(data: Any) -> Catalog:
    """Validate an already-parsed catalog document (see load_catalog)."""
    try:
        return _parse(data)
    except BadEntry as bad:
        raise bad.as_invalid() from None


def _parse(data: Any) -> Catalog:
    if not isinstance(data, dict):
        raise _Bad("catalog", "", "the document must be a JSON object")
    if data.get("format") != FORMAT:
        raise _Bad("catalog", "format", f"must be {FORMAT!r}, not {data.get('format')!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _Bad("catalog", "name", "needs a non-empty name")
    synthetic = data.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise _Bad("catalog", "synthetic", "must be true or false")
    dept_types = _department_types(data.get("department_types"))
    calendar = parse_calendar(data.get("calendar"))
    majors = data.get("majors")
    if not isinstance(majors, list) or not majors:
        raise _Bad("catalog", "majors", "must be a non-empty list of major classes")
    rows: list[dict[str, Any]] = []
    seen_majors: set[tuple[str, str]] = set()
    seen: set[tuple[str, str]] = set()
    for i, major in enumerate(majors):
        kind, code, major_name, classes = _major(major, i, seen_majors)
        for j, entry in enumerate(classes):
            row = _class(entry, kind, code, major_name, f"majors[{i}].classes[{j}]", dept_types)
            if (kind, row["code"]) in seen:
                raise _Bad(f"classes[{kind}:{row['code']}]", "code",
                           f"duplicate {kind} code {row['code']}")
            seen.add((kind, row["code"]))
            rows.append(row)
    columns = ["kind", "code", "major_code", "major_name", "name", "departments", "time_limits",
               "default_whistle"]
    classes_df = pd.DataFrame(rows, columns=columns).reset_index(drop=True)
    classes_df["default_whistle"] = pd.Series(  # keep None (not NaN) for "no whistle"
        [r["default_whistle"] for r in rows], dtype=object)
    provenance = data.get("provenance", {})
    return Catalog(classes=classes_df, calendar=calendar, department_types=dept_types,
                   name=name.strip(), format=FORMAT, synthetic=synthetic,
                   provenance=provenance if isinstance(provenance, dict) else {})


def _department_types(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise _Bad("department_types", "", "must be a non-empty object {dept_type: name}")
    for key, name in value.items():
        if not _DEPT_TYPE.match(key):
            raise _Bad("department_types", key, "a dept_type is lower-case letters and _")
        if not isinstance(name, str) or not name.strip():
            raise _Bad("department_types", key, "needs a non-empty name")
    return dict(value)


def _major(major: Any, i: int, seen: set[tuple[str, str]]) -> tuple[str, str, str, list[Any]]:
    entry = f"majors[{i}]"
    if not isinstance(major, dict):
        raise _Bad(entry, "", "must be an object")
    kind, code, name = major.get("kind"), major.get("code"), major.get("name")
    if kind not in KINDS:
        raise _Bad(entry, "kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(code, str) or not _MAJOR_CODE.match(code):
        raise _Bad(entry, "code", f"a major code is 2 digits, not {code!r}")
    entry = f"majors[{kind}:{code}]"
    if (kind, code) in seen:
        raise _Bad(entry, "code", f"duplicate {kind} major code {code}")
    seen.add((kind, code))
    if not isinstance(name, str) or not name.strip():
        raise _Bad(entry, "name", "needs a non-empty name")
    classes = major.get("classes")
    if not isinstance(classes, list) or not classes:
        raise _Bad(entry, "classes", "must be a non-empty list")
    return kind, code, name, classes


def _class(entry: Any, kind: str, major_code: str, major_name: str, where: str,
           dept_types: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _Bad(where, "", "must be an object")
    code = entry.get("code")
    if not isinstance(code, str) or not _CLASS_CODE.match(code):
        raise _Bad(where, "code", f"a class code is 4 digits (major 2 + minor 2), not {code!r}")
    where = f"classes[{kind}:{code}]"
    if not code.startswith(major_code):
        raise _Bad(where, "code", f"must start with its major code {major_code}")
    if code.endswith("00"):
        raise _Bad(where, "code", "minor code 00 is not a class")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _Bad(where, "name", "needs a non-empty name")
    whistle = entry.get("default_whistle")
    if whistle is not None and whistle not in WHISTLES:
        raise _Bad(where, "default_whistle",
                   f"must be null or one of {', '.join(WHISTLES)}, not {whistle!r}")
    return {
        "kind": kind, "code": code, "major_code": major_code, "major_name": major_name,
        "name": name.strip(),
        "departments": _departments(entry.get("departments"), where, dept_types),
        "time_limits": _time_limits(entry.get("time_limits"), where),
        "default_whistle": whistle,
    }


def _departments(value: Any, where: str, dept_types: Mapping[str, str]) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _Bad(where, "departments", "must list at least one responsible department")
    out: list[dict[str, str]] = []
    for k, dep in enumerate(value):
        fld = f"departments[{k}]"
        if not isinstance(dep, dict):
            raise _Bad(where, fld, "must be an object {type, role}")
        dtype, role = dep.get("type"), dep.get("role")
        if dtype not in dept_types:
            raise _Bad(where, f"{fld}.type",
                       f"unknown department type {dtype!r} (known: {', '.join(dept_types)})")
        if role not in ROLES:
            raise _Bad(where, f"{fld}.role", f"must be primary or assisting, not {role!r}")
        if any(d["type"] == dtype for d in out):
            raise _Bad(where, f"{fld}.type", f"department type {dtype} listed twice")
        out.append({"type": str(dtype), "role": str(role)})
    if sum(d["role"] == "primary" for d in out) != 1:
        raise _Bad(where, "departments", "exactly one department must be primary")
    return out


def _time_limits(value: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise _Bad(where, "time_limits", "must be an object {stage: {value, unit}}")
    unknown = sorted(set(value) - set(STAGES))
    if unknown:
        raise _Bad(where, f"time_limits.{unknown[0]}",
                   f"unknown stage (stages: {', '.join(STAGES)})")
    out: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        fld = f"time_limits.{stage}"
        limit = value.get(stage)
        if not isinstance(limit, dict):
            raise _Bad(where, fld, "missing: every stage needs {value, unit}")
        amount, unit = limit.get("value"), limit.get("unit")
        if unit not in UNITS:
            raise _Bad(where, f"{fld}.unit", f"unknown unit {unit!r} (units: {', '.join(UNITS)})")
        if (isinstance(amount, bool) or not isinstance(amount, int | float)
                or not np.isfinite(amount) or amount <= 0):
            raise _Bad(where, f"{fld}.value", f"must be a positive number, not {amount!r}")
        out[stage] = {"value": amount, "unit": unit}
    return out


# -- time limits -------------------------------------------------------------------------


def stage_limits_seconds(
    catalog: Catalog, stages: Sequence[str] = STAGES
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per class row: total limit over `stages` as (working seconds, clock seconds)."""
    per_day = catalog.calendar.seconds_per_day
    work = np.zeros(len(catalog.classes))
    clock = np.zeros(len(catalog.classes))
    for i, limits in enumerate(catalog.classes["time_limits"]):
        for stage in stages:
            v, unit = float(limits[stage]["value"]), limits[stage]["unit"]
            if unit == "hours":
                clock[i] += v * 3600
            else:
                work[i] += v * (3600 if unit == "work_hours" else per_day)
    return work, clock


def stage_deadlines(calendar: WorkCalendar, start: datetime,
                    time_limits: Mapping[str, Mapping[str, Any]],
                    stages: Sequence[str] = STAGES) -> dict[str, datetime]:
    """The planned schedule from `start` (timezone-aware): each stage in `stages` starts when
    the previous one's limit runs out; stages absent from `time_limits` are skipped."""
    present = [stage for stage in stages if stage in time_limits]
    ends = calendar.schedule(start, [(float(time_limits[stage]["value"]),
                                      str(time_limits[stage]["unit"])) for stage in present])
    return dict(zip(present, ends, strict=True))


# -- the catalog in the database ---------------------------------------------------------


def load_into_db(conn: Connection, catalog: Catalog, *, by: audit.Actor) -> dict[str, int]:
    """Make `catalog` the loaded one, on `conn` (the caller's transaction: all or nothing).
    Classes are upserted by (kind, code) and activated; classes missing from `catalog` are
    deactivated, never deleted (incidents reference them); the `catalogs` row is replaced;
    one audit row. Returns counts: classes, added, updated, unchanged, deactivated."""
    conn.execute(text("LOCK TABLE catalogs IN EXCLUSIVE MODE"))  # one loader at a time
    before = conn.execute(text(
        "SELECT name, format, loaded_at FROM catalogs ORDER BY id DESC LIMIT 1")).mappings().first()
    rows = json.dumps(catalog.classes[["kind", "code", "major_name", "name", "departments",
                                       "time_limits", "default_whistle"]].to_dict("records"),
                      ensure_ascii=False)
    added, updated = conn.execute(text("""
        WITH incoming AS (
          SELECT e->>'kind' AS kind, e->>'code' AS code, e->>'major_name' AS major_name,
                 e->>'name' AS name, e->'departments' AS departments,
                 e->'time_limits' AS time_limits, e->>'default_whistle' AS default_whistle, n
          FROM jsonb_array_elements(CAST(:rows AS jsonb)) WITH ORDINALITY AS x(e, n)),
        upserted AS (
          INSERT INTO event_classes AS c (kind, code, major_name, name, departments, time_limits,
                                          default_whistle, active)
          SELECT kind, code, major_name, name, departments, time_limits, default_whistle, true
          FROM incoming ORDER BY n
          ON CONFLICT (kind, code) DO UPDATE SET
            major_name = EXCLUDED.major_name, name = EXCLUDED.name,
            departments = EXCLUDED.departments, time_limits = EXCLUDED.time_limits,
            default_whistle = EXCLUDED.default_whistle, active = true
          WHERE (c.major_name, c.name, c.departments, c.time_limits, c.default_whistle, c.active)
            IS DISTINCT FROM (EXCLUDED.major_name, EXCLUDED.name, EXCLUDED.departments,
                              EXCLUDED.time_limits, EXCLUDED.default_whistle, true)
          RETURNING (xmax = 0) AS added)
        SELECT count(*) FILTER (WHERE added), count(*) FILTER (WHERE NOT added) FROM upserted
    """), {"rows": rows}).one()
    deactivated = conn.execute(text("""
        UPDATE event_classes c SET active = false
        WHERE c.active AND NOT EXISTS (
          SELECT 1 FROM jsonb_array_elements(CAST(:rows AS jsonb)) e
          WHERE e->>'kind' = c.kind AND e->>'code' = c.code)
    """), {"rows": rows}).rowcount
    conn.execute(text("DELETE FROM catalogs"))
    conn.execute(text("""
        INSERT INTO catalogs (name, format, synthetic, department_types, calendar, loaded_by)
        VALUES (:name, :format, :synthetic, CAST(:types AS jsonb), CAST(:calendar AS jsonb), :by)
    """), {"name": catalog.name, "format": catalog.format, "synthetic": catalog.synthetic,
           "types": json.dumps(dict(catalog.department_types), ensure_ascii=False),
           "calendar": json.dumps(catalog.calendar.to_json(), ensure_ascii=False),
           "by": by.name})
    total = len(catalog.classes)
    counts = {"classes": total, "added": int(added), "updated": int(updated),
              "unchanged": total - int(added) - int(updated), "deactivated": int(deactivated)}
    audit.record(conn, by, action="catalog.load", object_type="catalog", object_id=catalog.name,
                 before=None if before is None else dict(before),
                 after={"name": catalog.name, "format": catalog.format, **counts})
    return counts


@lru_cache(maxsize=1)
def _default_catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG_PATH)


def _loaded(conn: Connection) -> RowMapping | None:
    row = conn.execute(text("SELECT id, name, format, synthetic, department_types, calendar, "
                            "loaded_at, loaded_by FROM catalogs ORDER BY id DESC LIMIT 1"))
    return row.mappings().first()


# (catalogs.id, loaded_at) → its parsed calendar: a loaded catalog never changes, so each
# process parses a calendar once (and keeps its deadline arithmetic warm)
_CALENDARS: dict[tuple[int, datetime], WorkCalendar] = {}


def current_calendar(conn: Connection) -> WorkCalendar:
    """The work calendar of the loaded catalog (the default file's when none is loaded)."""
    row = _loaded(conn)
    if row is None:
        return _default_catalog().calendar
    version = (int(row["id"]), row["loaded_at"])
    if version not in _CALENDARS:
        try:
            _CALENDARS[version] = parse_calendar(row["calendar"])
        except BadEntry as bad:
            raise bad.as_invalid() from None
    return _CALENDARS[version]


def calendar_of(conn: Connection, version: tuple[int, datetime] | None) -> WorkCalendar:
    """`current_calendar` when the caller already read the catalog version (id, loaded_at):
    no query unless this process has not parsed that catalog's calendar yet."""
    if version is None:
        return _default_catalog().calendar
    return _CALENDARS.get(version) or current_calendar(conn)


def department_types(conn: Connection) -> dict[str, str]:
    """dept_type → name (Chinese) of the loaded catalog (the default file's when none is)."""
    row = _loaded(conn)
    return dict(_default_catalog().department_types if row is None else row["department_types"])


_CLASS_COLUMNS = """c.id, c.kind, c.code, c.major_code, c.major_name, c.name, c.time_limits,
    c.default_whistle, c.active,
    (SELECT coalesce(jsonb_agg(d || jsonb_build_object(
               'type_name', CAST(:types AS jsonb)->>(d->>'type')) ORDER BY o), '[]')
     FROM jsonb_array_elements(c.departments) WITH ORDINALITY AS x(d, o)) AS departments"""


def list_classes(conn: Connection, *, kind: str | None = None, major: str | None = None,
                 active: bool | None = True, q: str | None = None) -> list[dict[str, Any]]:
    """Classes, events first then by code; filters: kind, major (code or name), active, q
    (substring of the name or code). Each department carries its type's name."""
    rows = conn.execute(text(f"""
        SELECT {_CLASS_COLUMNS}
        FROM event_classes c
        WHERE (CAST(:kind AS text) IS NULL OR c.kind = :kind)
          AND (CAST(:major AS text) IS NULL OR c.major_code = :major OR c.major_name = :major)
          AND (CAST(:active AS boolean) IS NULL OR c.active = :active)
          AND (CAST(:q AS text) IS NULL OR strpos(lower(c.name), lower(:q)) > 0
               OR strpos(c.code, :q) > 0)
        ORDER BY c.kind = 'component', c.code
    """), {"kind": kind, "major": major, "active": active, "q": q or None,  # noqa: S608
           "types": json.dumps(department_types(conn), ensure_ascii=False)})
    return [dict(r) for r in rows.mappings()]


def suggest_codes(conn: Connection, text_or_code: str, limit: int = 5, *,
                  kind: str | None = None) -> list[dict[str, str]]:
    """The active classes closest to an unknown code or name ("did you mean"), best first,
    as {kind, code, name, major_name}. Digits compare as codes (same major first, then the
    nearest number: "0102" → 0101, 0103); text compares with names (difflib ratio, ≥ 0.4;
    a name containing the text, or contained in it, counts as close)."""
    query = text_or_code.strip()
    if not query or limit < 1:
        return []
    rows = conn.execute(text(
        "SELECT kind, code, name, major_name FROM event_classes "
        "WHERE active AND (CAST(:kind AS text) IS NULL OR kind = :kind)"),
        {"kind": kind}).mappings().all()
    classes = [dict(r) for r in rows]
    if query.isascii() and query.isdigit() and len(query) <= 4:
        code = query.zfill(4)
        classes.sort(key=lambda c: (c["code"][:2] != code[:2], abs(int(c["code"]) - int(code)),
                                    c["code"], c["kind"] != "event"))
        return classes[:limit]
    scored = [(_name_score(query, c["name"]), c) for c in classes]
    scored = [(s, c) for s, c in scored if s >= 0.4]
    scored.sort(key=lambda sc: (-sc[0], sc[1]["code"], sc[1]["kind"] != "event"))
    return [c for _, c in scored[:limit]]


def _name_score(query: str, name: str) -> float:
    ratio = difflib.SequenceMatcher(None, query, name).ratio()
    return max(ratio, 0.9) if query in name or name in query else ratio


def find_class(conn: Connection, kind: str, code: str, *,
               field_name: str = "event_code") -> dict[str, Any]:
    """The active class (kind, code) with its departments; InvalidInput naming `field_name`
    with up to 5 suggestions (`detail["suggestions"]`) when there is none."""
    row = conn.execute(text(f"SELECT {_CLASS_COLUMNS} FROM event_classes c "  # noqa: S608
                            "WHERE c.kind = :kind AND c.code = :code AND c.active"),
                       {"kind": kind, "code": code,
                        "types": json.dumps(department_types(conn), ensure_ascii=False)}).first()
    if row is not None:
        return dict(row._mapping)
    suggestions = suggest_codes(conn, code, kind=kind)
    hint = "; did you mean " + ", ".join(f"{s['code']} {s['name']}" for s in suggestions) \
        if suggestions else ""
    raise InvalidInput(f"unknown {kind} class code {code!r}{hint}", field=field_name,
                       detail={"suggestions": suggestions})


def summary(conn: Connection) -> dict[str, Any]:
    """The loaded catalog (name, format, synthetic, loaded_at, loaded_by; None when none is
    loaded) and class counts per kind and major (active, inactive)."""
    row = _loaded(conn)
    majors = conn.execute(text("""
        SELECT kind, major_code,
               coalesce(max(major_name) FILTER (WHERE active), max(major_name)) AS major_name,
               count(*) FILTER (WHERE active) AS active,
               count(*) FILTER (WHERE NOT active) AS inactive
        FROM event_classes GROUP BY kind, major_code
        ORDER BY kind = 'component', major_code
    """)).mappings().all()
    loaded = None if row is None else {k: row[k] for k in ("name", "format", "synthetic",
                                                           "loaded_at", "loaded_by")}
    return {"catalog": loaded, "majors": [dict(m) for m in majors]}
