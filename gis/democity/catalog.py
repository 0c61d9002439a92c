"""The event catalog (事件/部件 classes, 属地管理事项清单, stage time limits) and its work
calendar, loaded from a JSON file (data/catalog/events.json) and validated entry by entry.

A bad file raises `InvalidInput` whose `field` is a path naming the entry and the field, e.g.
`classes[event:0101].departments[1].type`; `detail` holds `{"entry": ..., "field": ...}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import pandas as pd

from gis.errors import InvalidInput

DEFAULT_CATALOG_PATH = Path(__file__).resolve().parents[2] / "data" / "catalog" / "events.json"
KINDS = ("event", "component")
STAGES = ("accept", "dispatch", "handle", "verify")  # 受理, 派遣, 处置, 核查
UNITS = ("work_hours", "work_days", "hours")  # 工作时, 工作日, natural (clock) hours
ROLES = ("primary", "assisting")
WHISTLES = ("enforcement", "priority", "emergency", "joint")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MAJOR_CODE = re.compile(r"^[0-9]{2}$")
_CLASS_CODE = re.compile(r"^[0-9]{4}$")
_DEPT_TYPE = re.compile(r"^[a-z_]+$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
NS_PER_S = 1_000_000_000


class _Bad(Exception):
    """A problem at `entry` / `field` (turned into InvalidInput at the top)."""

    def __init__(self, entry: str, fld: str, reason: str) -> None:
        super().__init__(reason)
        self.entry, self.field, self.reason = entry, fld, reason


@dataclass(frozen=True)
class WorkCalendar:
    """Working hours, weekends, public holidays and adjusted working days (调休)."""

    timezone: str
    working_hours: tuple[tuple[time, time], ...]
    weekend: frozenset[int]  # date.weekday() numbers, Monday = 0
    holidays: Mapping[date, str] = field(default_factory=dict)
    adjusted_working_days: Mapping[date, str] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        """The calendar's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def seconds_per_day(self) -> int:
        """Working seconds in one working day (7 h for 09:00–12:00 + 13:30–17:30)."""
        return sum(_secs(b) - _secs(a) for a, b in self.working_hours)

    def is_workday(self, day: date) -> bool:
        """A working day: adjusted working days are, holidays and weekends are not."""
        if day in self.adjusted_working_days:
            return True
        return day not in self.holidays and day.weekday() not in self.weekend

    def intervals(self, first: date, last: date) -> tuple[npt.NDArray[np.int64], ...]:
        """Working intervals between two dates (inclusive) as epoch-ns starts and ends."""
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        starts: list[int] = []
        ends: list[int] = []
        for day in days:
            if not self.is_workday(day):
                continue
            for a, b in self.working_hours:
                starts.append(_epoch_ns(datetime.combine(day, a, self.tz)))
                ends.append(_epoch_ns(datetime.combine(day, b, self.tz)))
        return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)

    def add_working_seconds(
        self, start_ns: npt.ArrayLike, seconds: npt.ArrayLike
    ) -> npt.NDArray[np.int64]:
        """Vectorised: the instant (epoch ns) after `seconds` of working time from each start
        (time outside working hours does not count)."""
        start = np.asarray(start_ns, dtype=np.int64)
        need = np.round(np.asarray(seconds, dtype=float) * NS_PER_S).astype(np.int64)
        if start.size == 0:
            return start.copy()
        tz = self.tz
        first = datetime.fromtimestamp(int(start.min()) / NS_PER_S, tz).date() - timedelta(days=1)
        horizon = int(need.max()) / NS_PER_S / max(self.seconds_per_day, 1)
        span = int(horizon * 2) + 40  # holidays stretch working days; stay generous
        last = datetime.fromtimestamp(int(start.max()) / NS_PER_S, tz).date() + timedelta(
            days=span)
        s, e = self.intervals(first, last)
        cum_end = np.cumsum(e - s)  # working ns done at the end of each interval
        cum_start = cum_end - (e - s)
        i = np.searchsorted(e, start, side="right")  # first interval ending after start
        i_c = np.minimum(i, len(s) - 1)
        done = np.where(start > s[i_c], cum_start[i_c] + (start - s[i_c]), cum_start[i_c])
        target = done + need
        j = np.minimum(np.searchsorted(cum_end, target, side="left"), len(s) - 1)
        out = s[j] + (target - cum_start[j])
        return np.asarray(np.where(need > 0, np.maximum(out, start), start), dtype=np.int64)

    def deadline(self, start: datetime, value: float, unit: str) -> datetime:
        """When a stage limit (`value` `unit`) that starts at `start` runs out."""
        if unit not in UNITS:
            raise InvalidInput(f"unknown time-limit unit {unit!r}", field="unit")
        if unit == "hours":
            return start + timedelta(hours=value)
        secs = value * (3600 if unit == "work_hours" else self.seconds_per_day)
        out = self.add_working_seconds([_epoch_ns(start)], [secs])[0]
        return datetime.fromtimestamp(int(out) / NS_PER_S, self.tz)


@dataclass(frozen=True)
class Catalog:
    """The loaded catalog: one row per class in `classes`, plus its calendar."""

    classes: pd.DataFrame  # kind, code, major_code, major_name, name, departments,
    #                        time_limits, default_whistle
    calendar: WorkCalendar
    department_types: Mapping[str, str]
    name: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def lookup(self, kind: str, code: str) -> pd.Series:
        """The class row for (kind, code); NotFound-like InvalidInput otherwise."""
        hit = self.classes[(self.classes["kind"] == kind) & (self.classes["code"] == code)]
        if hit.empty:
            raise InvalidInput(f"unknown {kind} class code {code!r}", field="event_code")
        return hit.iloc[0]


def _secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _epoch_ns(t: datetime) -> int:
    return round(t.timestamp()) * NS_PER_S


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
    except _Bad as bad:
        where = bad.entry if not bad.field else f"{bad.entry}.{bad.field}"
        raise InvalidInput(f"catalog {where}: {bad.reason}", field=where,
                           detail={"entry": bad.entry, "field": bad.field}) from None


def _parse(data: Any) -> Catalog:
    if not isinstance(data, dict):
        raise _Bad("catalog", "", "the document must be a JSON object")
    dept_types = _department_types(data.get("department_types"))
    calendar = _calendar(data.get("calendar"))
    majors = data.get("majors")
    if not isinstance(majors, list) or not majors:
        raise _Bad("catalog", "majors", "must be a non-empty list of major classes")
    rows: list[dict[str, Any]] = []
    seen_majors: set[tuple[str, str]] = set()
    seen: set[tuple[str, str]] = set()
    for i, major in enumerate(majors):
        kind, code, name, classes = _major(major, i, seen_majors)
        for j, entry in enumerate(classes):
            row = _class(entry, kind, code, name, f"majors[{i}].classes[{j}]", dept_types)
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
                   name=str(data.get("name", "")),
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


def _calendar(value: Any) -> WorkCalendar:
    if not isinstance(value, dict):
        raise _Bad("calendar", "", "must be an object")
    tz = value.get("timezone")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _Bad("calendar", "timezone", f"unknown time zone {tz!r}") from exc
    hours = _working_hours(value.get("working_hours"))
    weekend = value.get("weekend", [])
    if not isinstance(weekend, list) or any(d not in WEEKDAYS for d in weekend):
        raise _Bad("calendar", "weekend", f"must list weekday names ({', '.join(WEEKDAYS)})")
    holidays = _holidays(value.get("holidays", []))
    adjusted = _dated("adjusted_working_days", value.get("adjusted_working_days", []))
    for day in adjusted:
        if day in holidays:
            raise _Bad("calendar", "adjusted_working_days",
                       f"{day} is both a holiday and an adjusted working day")
    return WorkCalendar(timezone=str(tz), working_hours=hours,
                        weekend=frozenset(WEEKDAYS.index(d) for d in weekend),
                        holidays=holidays, adjusted_working_days=adjusted)


def _working_hours(value: Any) -> tuple[tuple[time, time], ...]:
    if not isinstance(value, list) or not value:
        raise _Bad("calendar", "working_hours", "must list {start, end} periods")
    out: list[tuple[time, time]] = []
    for k, period in enumerate(value):
        fld = f"working_hours[{k}]"
        if not isinstance(period, dict):
            raise _Bad("calendar", fld, "must be an object {start, end}")
        a, b = period.get("start"), period.get("end")
        for key, v in (("start", a), ("end", b)):
            if not isinstance(v, str) or not _HHMM.match(v):
                raise _Bad("calendar", f"{fld}.{key}", f"must be HH:MM, not {v!r}")
        ta, tb = time.fromisoformat(str(a)), time.fromisoformat(str(b))
        if tb <= ta or (out and ta < out[-1][1]):
            raise _Bad("calendar", fld, "periods must be increasing and not overlap")
        out.append((ta, tb))
    return tuple(out)


def _date(value: Any, fld: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise _Bad("calendar", fld, f"not a date (YYYY-MM-DD): {value!r}") from exc


def _holidays(value: Any) -> dict[date, str]:
    if not isinstance(value, list):
        raise _Bad("calendar", "holidays", "must be a list of {name, from, to}")
    out: dict[date, str] = {}
    for k, item in enumerate(value):
        fld = f"holidays[{k}]"
        if not isinstance(item, dict) or not str(item.get("name", "")).strip():
            raise _Bad("calendar", fld, "must be an object with a name, from and to")
        first = _date(item.get("from"), f"{fld}.from")
        last = _date(item.get("to", item.get("from")), f"{fld}.to")
        if last < first or (last - first).days > 14:
            raise _Bad("calendar", f"{fld}.to", "must be on or after from, within 14 days")
        for i in range((last - first).days + 1):
            out[first + timedelta(days=i)] = str(item["name"])
    return out


def _dated(key: str, value: Any) -> dict[date, str]:
    if not isinstance(value, list):
        raise _Bad("calendar", key, "must be a list of {name, date}")
    out: dict[date, str] = {}
    for k, item in enumerate(value):
        if not isinstance(item, dict):
            raise _Bad("calendar", f"{key}[{k}]", "must be an object {name, date}")
        out[_date(item.get("date"), f"{key}[{k}].date")] = str(item.get("name", ""))
    return out


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
