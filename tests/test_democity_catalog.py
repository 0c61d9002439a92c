"""The event catalog file: it loads, it has what a city profile needs, its calendar computes
deadlines across weekends, holidays and 调休 days, and every bad file is refused with an
InvalidInput naming the entry and the field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from gis.catalog import DEFAULT_CATALOG_PATH, STAGES, UNITS, load_catalog
from gis.errors import InvalidInput

TZ = ZoneInfo("Asia/Shanghai")
RAW: dict[str, Any] = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))


def _at(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=TZ)


def test_catalog_loads_with_both_kinds() -> None:
    cat = load_catalog()
    classes = cat.classes
    counts = classes.groupby("kind").size()
    assert counts["event"] == 58 and counts["component"] == 37
    assert classes["code"].str.fullmatch(r"[0-9]{4}").all()
    assert (classes["code"].str[:2] == classes["major_code"]).all()
    assert not classes.duplicated(["kind", "code"]).any()
    assert set(classes.loc[classes["kind"] == "event", "major_name"]) == {
        "市容环境", "宣传广告", "施工管理", "突发事件", "街面秩序", "扩展事件"}
    for deps, limits in zip(classes["departments"], classes["time_limits"], strict=True):
        assert sum(d["role"] == "primary" for d in deps) == 1
        assert {d["type"] for d in deps} <= set(cat.department_types)
        assert set(limits) == set(STAGES)
        assert all(v["unit"] in UNITS and v["value"] > 0 for v in limits.values())


def test_catalog_contents_a_user_expects() -> None:
    cat = load_catalog()
    by_name = cat.classes.set_index("name")
    assert by_name.loc["违法搭建", "default_whistle"] == "enforcement"
    assert by_name.loc["路面塌陷", "default_whistle"] == "emergency"
    assert by_name.loc["暴露垃圾", "default_whistle"] is None
    assert cat.classes["default_whistle"].isna().mean() > 0.7
    assert by_name.loc["暴露垃圾", "time_limits"]["handle"] == {"value": 4, "unit": "work_hours"}
    for name in ("非法小广告", "施工扰民", "下水道堵塞或破损", "占道经营", "无照经营游商", "群租房",
                 "噪声扰民", "露天烧烤", "积雪积冰", "上水井盖", "路灯", "交通标志牌", "公厕",
                 "古树名木", "行道树"):
        assert name in by_name.index, name
    assert cat.lookup("component", "0109")["name"] == "路灯"
    with pytest.raises(InvalidInput) as err:
        cat.lookup("event", "9999")
    assert err.value.field == "event_code"


def test_calendar_knows_2026_holidays_and_adjusted_days() -> None:
    cal = load_catalog().calendar
    assert cal.seconds_per_day == 7 * 3600
    assert not cal.is_workday(date(2026, 2, 16))  # 除夕, 春节 holiday
    assert cal.is_workday(date(2026, 2, 14))  # Saturday, 调休 working day
    assert cal.is_workday(date(2026, 2, 28))
    assert not cal.is_workday(date(2026, 10, 7)) and cal.is_workday(date(2026, 10, 8))
    assert cal.is_workday(date(2026, 10, 10))  # Saturday, 调休
    assert not cal.is_workday(date(2026, 11, 21))  # an ordinary Saturday
    assert cal.holidays[date(2026, 5, 5)] == "劳动节"


def test_deadlines_across_lunch_weekend_and_holiday() -> None:
    cal = load_catalog().calendar
    # 2 working hours from 11:00 on a Friday: 1 h before lunch, 1 h after 13:30.
    assert cal.deadline(_at(2026, 11, 20, 11), 2, "work_hours") == _at(2026, 11, 20, 14, 30)
    # 1 working day from Friday 11:00 ends Monday 11:00.
    assert cal.deadline(_at(2026, 11, 20, 11), 1, "work_days") == _at(2026, 11, 23, 11)
    # 4 working hours from 16:00 before 国庆: 1.5 h, then Oct 8 09:00 + 2.5 h.
    assert cal.deadline(_at(2026, 9, 30, 16), 4, "work_hours") == _at(2026, 10, 8, 11, 30)
    # Friday 17:00 + 4 working hours runs into the 调休 Saturday 10 October.
    assert cal.deadline(_at(2026, 10, 9, 17), 4, "work_hours") == _at(2026, 10, 10, 14)
    # Reported at night: the clock starts at 09:00.
    assert cal.deadline(_at(2026, 11, 18, 22), 1, "work_hours") == _at(2026, 11, 19, 10)
    # Natural hours ignore the calendar.
    assert cal.deadline(_at(2026, 10, 1, 22), 4, "hours") == _at(2026, 10, 2, 2)


def test_working_time_is_vectorised_and_exact() -> None:
    cal = load_catalog().calendar
    starts = [_at(2026, 11, 20, 11), _at(2026, 11, 21, 3), _at(2026, 11, 19, 12, 15)]
    ns = np.array([int(pd.Timestamp(s).value) for s in starts], dtype=np.int64)
    out = cal.add_working_seconds(ns, [3600.0, 1800.0, 0.0])
    got = [pd.Timestamp(v, tz="UTC").tz_convert(TZ).to_pydatetime() for v in out]
    # 11:00 + 1 h ends at 12:00 sharp; Saturday 03:00 + 30 min -> Monday 09:30; + 0 -> start
    assert got == [_at(2026, 11, 20, 12), _at(2026, 11, 23, 9, 30), _at(2026, 11, 19, 12, 15)]



def test_a_schedule_equals_its_stages_one_after_another() -> None:
    """Consecutive stages computed in one pass land where chaining them one by one does,
    across lunch, nights, weekends, the National Day holiday and clock-hour stages."""
    cal = load_catalog().calendar
    rng = np.random.default_rng(7)
    units = ["work_hours", "work_days", "hours"]
    for _ in range(300):
        start = _at(2026, 9, 25, 0) + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 30)))
        limits = [(float(rng.choice([0.5, 1, 2, 4, 8, 16])), str(rng.choice(units)))
                  for _ in range(int(rng.integers(1, 5)))]
        chained, at = [], start
        for value, unit in limits:
            at = cal.schedule(at, [(value, unit)])[0]
            chained.append(at)
        assert cal.schedule(start, limits) == chained, (start, limits)


# -- bad files: each case mutates the real file and names the entry and field -------------

def _cls(data: dict[str, Any], major: int = 0, j: int = 0) -> dict[str, Any]:
    c: dict[str, Any] = data["majors"][major]["classes"][j]
    return c


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        keys = path.split("/")
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        keys = path.split("/")
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        del target[keys[-1]]
    return mutate


C0 = "majors/0/classes/0"
BAD_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("unknown dept type", _set(f"{C0}/departments/0/type", "firee"),
     "classes[event:0101]", "departments[0].type"),
    ("bad role", _set(f"{C0}/departments/1/role", "lead"),
     "classes[event:0101]", "departments[1].role"),
    ("two primaries", _set(f"{C0}/departments/1/role", "primary"),
     "classes[event:0101]", "departments"),
    ("no departments", _set(f"{C0}/departments", []), "classes[event:0101]", "departments"),
    ("dept twice", _set(f"{C0}/departments/1/type", "sanitation"),
     "classes[event:0101]", "departments[1].type"),
    ("3-digit code", _set(f"{C0}/code", "101"), "majors[0].classes[0]", "code"),
    ("code outside major", _set(f"{C0}/code", "0301"), "classes[event:0301]", "code"),
    ("minor 00", _set(f"{C0}/code", "0100"), "classes[event:0100]", "code"),
    ("duplicate code", _set("majors/0/classes/1/code", "0101"), "classes[event:0101]", "code"),
    ("unknown unit", _set(f"{C0}/time_limits/handle/unit", "fortnights"),
     "classes[event:0101]", "time_limits.handle.unit"),
    ("zero limit", _set(f"{C0}/time_limits/accept/value", 0),
     "classes[event:0101]", "time_limits.accept.value"),
    ("text limit", _set(f"{C0}/time_limits/accept/value", "1"),
     "classes[event:0101]", "time_limits.accept.value"),
    ("missing stage", _drop(f"{C0}/time_limits/verify"),
     "classes[event:0101]", "time_limits.verify"),
    ("unknown stage", _set(f"{C0}/time_limits/repair", {"value": 1, "unit": "hours"}),
     "classes[event:0101]", "time_limits.repair"),
    ("bad whistle", _set(f"{C0}/default_whistle", "loud"),
     "classes[event:0101]", "default_whistle"),
    ("empty name", _set(f"{C0}/name", " "), "classes[event:0101]", "name"),
    ("bad major code", _set("majors/0/code", "1"), "majors[0]", "code"),
    ("duplicate major", _set("majors/1/code", "01"), "majors[event:01]", "code"),
    ("bad kind", _set("majors/0/kind", "incident"), "majors[0]", "kind"),
    ("no classes", _set("majors/0/classes", []), "majors[event:01]", "classes"),
    ("bad dept type name", _set("department_types/Fire", "消防"), "department_types", "Fire"),
    ("bad timezone", _set("calendar/timezone", "Mars/Olympus"), "calendar", "timezone"),
    ("bad holiday date", _set("calendar/holidays/0/from", "2026-02-30"),
     "calendar", "holidays[0].from"),
    ("holiday ends early", _set("calendar/holidays/0/to", "2024-12-31"),
     "calendar", "holidays[0].to"),
    ("holiday and workday", _set("calendar/adjusted_working_days/0/date", "2025-01-01"),
     "calendar", "adjusted_working_days"),
    ("bad working hours", _set("calendar/working_hours/1/start", "11:00"),
     "calendar", "working_hours[1]"),
    ("bad hh:mm", _set("calendar/working_hours/0/end", "25:00"),
     "calendar", "working_hours[0].end"),
    ("bad weekday", _set("calendar/weekend", ["caturday"]), "calendar", "weekend"),
    ("no majors", _set("majors", []), "catalog", "majors"),
]


@pytest.mark.parametrize(("case", "mutate", "entry", "field"), BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])
def test_bad_file_names_entry_and_field(tmp_path: Path, case: str,
                                        mutate: Callable[[dict[str, Any]], None],
                                        entry: str, field: str) -> None:
    data = copy.deepcopy(RAW)
    mutate(data)
    path = tmp_path / "events.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        load_catalog(path)
    assert err.value.detail == {"entry": entry, "field": field}, case
    assert err.value.field == f"{entry}.{field}"
    assert f"{entry}.{field}" in err.value.message


def test_same_code_in_both_kinds_is_fine() -> None:
    classes = load_catalog().classes
    both = set(classes.loc[classes["kind"] == "event", "code"]) & set(
        classes.loc[classes["kind"] == "component", "code"])
    assert "0101" in both


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "events.json"
    bad.write_text('{"majors": [', encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        load_catalog(bad)
    assert err.value.field == "file" and "line 1" in err.value.message
    with pytest.raises(InvalidInput) as err:
        load_catalog(tmp_path / "nope.json")
    assert err.value.field == "path"
    top = tmp_path / "list.json"
    top.write_text("[]", encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        load_catalog(top)
    assert err.value.field == "catalog"
