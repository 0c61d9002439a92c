"""Working time (工作时/工作日): working hours, weekends, public holidays and adjusted working
days (调休), deadline arithmetic on them, and their JSON form (the `calendar` object of a
catalog file, also stored in the `catalogs` table)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from gis.errors import InvalidInput

UNITS = ("work_hours", "work_days", "hours")  # 工作时, 工作日, natural (clock) hours
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
NS_PER_S = 1_000_000_000
MAX_HOLIDAY_DAYS = 14
MEMO_SIZE = 256


def days_between(first: date, last: date, tz: str) -> tuple[datetime, datetime]:
    """[midnight starting `first`, midnight ending `last`) in time zone `tz`: the instants
    of calendar days `first`..`last`."""
    zone = ZoneInfo(tz)
    return (datetime.combine(first, time(0), zone),
            datetime.combine(last + timedelta(days=1), time(0), zone))


class BadEntry(Exception):
    """A problem at `entry` / `field` of a catalog document (see `as_invalid`)."""

    def __init__(self, entry: str, fld: str, reason: str) -> None:
        super().__init__(reason)
        self.entry, self.field, self.reason = entry, fld, reason

    def as_invalid(self) -> InvalidInput:
        """The InvalidInput users see: `field` is the path `entry.field`."""
        where = self.entry if not self.field else f"{self.entry}.{self.field}"
        return InvalidInput(f"catalog {where}: {self.reason}", field=where,
                            detail={"entry": self.entry, "field": self.field})


@dataclass(frozen=True)
class WorkCalendar:
    """Working hours, weekends, public holidays and adjusted working days (调休)."""

    timezone: str
    working_hours: tuple[tuple[time, time], ...]
    weekend: frozenset[int]  # date.weekday() numbers, Monday = 0
    holidays: Mapping[date, str] = field(default_factory=dict)
    adjusted_working_days: Mapping[date, str] = field(default_factory=dict)
    # (first, last) → intervals: deadlines from the same days reuse them (a few per day)
    _memo: dict[tuple[date, date], tuple[npt.NDArray[np.int64], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

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
        """Working intervals between two dates (inclusive) as epoch-ns starts and ends
        (remembered per date pair; the arrays are shared, do not modify them)."""
        key = (first, last)
        if key not in self._memo:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = self._intervals(first, last)
        return self._memo[key]

    def _intervals(self, first: date, last: date) -> tuple[npt.NDArray[np.int64], ...]:
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
        """When a stage limit (`value` `unit`) that starts at `start` runs out (in the
        calendar's time zone; `start` must be timezone-aware)."""
        return self.schedule(start, [(value, unit)])[0]

    def schedule(self, start: datetime, limits: Sequence[tuple[float, str]]) -> list[datetime]:
        """Deadlines of consecutive stages from `start` (timezone-aware): each limit
        (value, unit) starts when the previous one runs out. One vectorised pass per run of
        working-time limits."""
        if start.tzinfo is None:
            raise InvalidInput("a deadline needs a timezone-aware start", field="start")
        for _, unit in limits:
            if unit not in UNITS:
                raise InvalidInput(f"unknown time-limit unit {unit!r}", field="unit")
        out: list[datetime] = []
        k = 0
        while k < len(limits):
            at = out[-1] if out else start
            value, unit = limits[k]
            if unit == "hours":
                out.append((at + timedelta(hours=value)).astimezone(self.tz))
                k += 1
                continue
            run: list[float] = []
            while k < len(limits) and limits[k][1] != "hours":
                value, unit = limits[k]
                run.append(value * (3600 if unit == "work_hours" else self.seconds_per_day))
                k += 1
            ends = self.add_working_seconds(np.full(len(run), _epoch_ns(at)), np.cumsum(run))
            out.extend(datetime.fromtimestamp(int(x) / NS_PER_S, self.tz) for x in ends)
        return out

    def to_json(self) -> dict[str, Any]:
        """The calendar in the catalog file's form (`parse_calendar` reads it back)."""
        return {
            "timezone": self.timezone,
            "working_hours": [{"start": a.strftime("%H:%M"), "end": b.strftime("%H:%M")}
                              for a, b in self.working_hours],
            "weekend": [WEEKDAYS[d] for d in sorted(self.weekend)],
            "holidays": _ranges(self.holidays),
            "adjusted_working_days": [{"name": name, "date": day.isoformat()}
                                      for day, name in sorted(self.adjusted_working_days.items())],
        }


def _secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _epoch_ns(t: datetime) -> int:
    return round(t.timestamp()) * NS_PER_S


def _ranges(days: Mapping[date, str]) -> list[dict[str, str]]:
    """Consecutive days of one holiday as {name, from, to} (at most MAX_HOLIDAY_DAYS each)."""
    out: list[dict[str, str]] = []
    for day, name in sorted(days.items()):
        last = out[-1] if out else None
        if (last is not None and last["name"] == name
                and date.fromisoformat(last["to"]) + timedelta(days=1) == day
                and (day - date.fromisoformat(last["from"])).days <= MAX_HOLIDAY_DAYS):
            last["to"] = day.isoformat()
        else:
            out.append({"name": name, "from": day.isoformat(), "to": day.isoformat()})
    return out


def parse_calendar(value: Any) -> WorkCalendar:
    """Validate a calendar object; BadEntry names the field (entry "calendar")."""
    if not isinstance(value, dict):
        raise BadEntry("calendar", "", "must be an object")
    tz = value.get("timezone")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadEntry("calendar", "timezone", f"unknown time zone {tz!r}") from exc
    hours = _working_hours(value.get("working_hours"))
    weekend = value.get("weekend", [])
    if not isinstance(weekend, list) or any(d not in WEEKDAYS for d in weekend):
        raise BadEntry("calendar", "weekend", f"must list weekday names ({', '.join(WEEKDAYS)})")
    holidays = _holidays(value.get("holidays", []))
    adjusted = _dated("adjusted_working_days", value.get("adjusted_working_days", []))
    for day in adjusted:
        if day in holidays:
            raise BadEntry("calendar", "adjusted_working_days",
                           f"{day} is both a holiday and an adjusted working day")
    return WorkCalendar(timezone=str(tz), working_hours=hours,
                        weekend=frozenset(WEEKDAYS.index(d) for d in weekend),
                        holidays=holidays, adjusted_working_days=adjusted)


def _working_hours(value: Any) -> tuple[tuple[time, time], ...]:
    if not isinstance(value, list) or not value:
        raise BadEntry("calendar", "working_hours", "must list {start, end} periods")
    out: list[tuple[time, time]] = []
    for k, period in enumerate(value):
        fld = f"working_hours[{k}]"
        if not isinstance(period, dict):
            raise BadEntry("calendar", fld, "must be an object {start, end}")
        a, b = period.get("start"), period.get("end")
        for key, v in (("start", a), ("end", b)):
            if not isinstance(v, str) or not _HHMM.match(v):
                raise BadEntry("calendar", f"{fld}.{key}", f"must be HH:MM, not {v!r}")
        ta, tb = time.fromisoformat(str(a)), time.fromisoformat(str(b))
        if tb <= ta or (out and ta < out[-1][1]):
            raise BadEntry("calendar", fld, "periods must be increasing and not overlap")
        out.append((ta, tb))
    return tuple(out)


def _date(value: Any, fld: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise BadEntry("calendar", fld, f"not a date (YYYY-MM-DD): {value!r}") from exc


def _holidays(value: Any) -> dict[date, str]:
    if not isinstance(value, list):
        raise BadEntry("calendar", "holidays", "must be a list of {name, from, to}")
    out: dict[date, str] = {}
    for k, item in enumerate(value):
        fld = f"holidays[{k}]"
        if not isinstance(item, dict) or not str(item.get("name", "")).strip():
            raise BadEntry("calendar", fld, "must be an object with a name, from and to")
        first = _date(item.get("from"), f"{fld}.from")
        last = _date(item.get("to", item.get("from")), f"{fld}.to")
        if last < first or (last - first).days > MAX_HOLIDAY_DAYS:
            raise BadEntry("calendar", f"{fld}.to",
                           f"must be on or after from, within {MAX_HOLIDAY_DAYS} days")
        for i in range((last - first).days + 1):
            out[first + timedelta(days=i)] = str(item["name"])
    return out


def _dated(key: str, value: Any) -> dict[date, str]:
    if not isinstance(value, list):
        raise BadEntry("calendar", key, "must be a list of {name, date}")
    out: dict[date, str] = {}
    for k, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadEntry("calendar", f"{key}[{k}]", "must be an object {name, date}")
        out[_date(item.get("date"), f"{key}[{k}].date")] = str(item.get("name", ""))
    return out
