"""Bulk import of incident history from a CSV file shaped like a 12345 hotline export: every
row is checked (vectorised, each problem naming its column), the good rows are placed with
`place_many`, given their case state and stage deadlines, and loaded with COPY — incidents,
their 'report' case events, one audit row and one change notification, all in the caller's
transaction. Bad rows never hold back good ones: each is written to the rejects file with
its line number, its fields and the reasons.

Each row's idempotency key is a hash of what it reports (time, class, point, text, source,
address), so importing a file again, or a file that overlaps an earlier one, skips the rows
already loaded instead of duplicating them.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection, text

from gis import audit, catalog, events
from gis.audit import Actor
from gis.copy import copy_rows
from gis.crs import bd09_to_wgs84, gcj02_to_wgs84
from gis.errors import InvalidInput
from gis.intake import MAX_DESCRIPTION, TRUSTED_SOURCES
from gis.placement import POINT_CRS
from gis.placement_bulk import COLUMNS, PlacementIndex, place_many
from gis.workcalendar import WorkCalendar

# Header names accepted for each column (case-insensitive), English and Chinese.
ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("time", "reported_at", "report_time", "datetime", "时间", "受理时间", "来电时间",
             "上报时间", "发生时间"),
    "class_code": ("class_code", "event_code", "code", "类别代码", "分类代码", "小类代码"),
    "class": ("class", "event_class", "category", "类别", "分类"),
    "class_name": ("class_name", "event_name", "小类", "小类名称", "问题分类", "事件类型"),
    "kind": ("kind", "event_kind", "事部件", "案件类型"),
    "lon": ("lon", "lng", "long", "longitude", "经度"),
    "lat": ("lat", "latitude", "纬度"),
    "crs": ("crs", "坐标系"),
    "address": ("address", "地址", "事发地址", "详细地址"),
    "text": ("text", "description", "content", "诉求内容", "问题描述", "内容", "描述"),
    "source": ("source", "channel", "来源", "渠道"),
}
REQUIRED = ("time", "lon", "lat", "text")
SOURCES = ("12345", "grid_worker", "street_chief", "steward", "citizen", "sensor", "other")
SOURCE_ALIASES = {"12345热线": "12345", "热线": "12345", "网格员": "grid_worker",
                  "街巷长": "street_chief", "街长": "street_chief", "巷长": "street_chief",
                  "小巷管家": "steward", "市民": "citizen", "群众": "citizen",
                  "传感器": "sensor", "其他": "other"}
KIND_ALIASES = {"event": "event", "事件": "event", "component": "component", "部件": "component"}
CRS_ALIASES = {"wgs84": "wgs84", "wgs-84": "wgs84", "gps": "wgs84", "gcj02": "gcj02",
               "gcj-02": "gcj02", "bd09": "bd09", "bd-09": "bd09", "bd09ll": "bd09"}
MAX_ADDRESS = 500
DEFAULT_SOURCE = "12345"
CHUNK = 200_000  # rows per placement / COPY step (progress and memory)
_TIME_FORMAT = "ISO 8601 or YYYY-MM-DD HH:MM:SS (Beijing time)"
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)

Progress = Callable[[str, int, int], None]  # (what, done, total)


def no_progress(what: str, done: int, total: int) -> None:
    """A Progress that shows nothing."""


@dataclass(frozen=True)
class ImportResult:
    """What an import did: rows read, loaded, rejected, skipped as already loaded."""

    path: Path
    rows: int
    loaded: int
    rejected: int
    duplicates: int
    rejects_path: Path | None
    incident_ids: tuple[int, int] | None  # first and last id loaded
    rejects: pd.DataFrame = field(repr=False)  # line, field, reason, then the file's columns

    def summary(self) -> str:
        parts = [f"{self.loaded:,} loaded", f"{self.rejected:,} rejected"]
        if self.duplicates:
            parts.append(f"{self.duplicates:,} already loaded (skipped)")
        return f"{self.rows:,} row{'' if self.rows == 1 else 's'}: " + ", ".join(parts)


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """The file's rows as strings, the physical line of each, the column of each role, and
    the lines pandas could not split into the header's number of fields."""

    frame: pd.DataFrame
    lines: npt.NDArray[np.int64]
    columns: dict[str, str]
    broken: pd.DataFrame  # line, reason


def read_table(path: Path) -> _Table:
    """Read the CSV (UTF-8, with or without BOM, else GB18030) as strings."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file", field="file")
    if path.is_dir():
        raise InvalidInput(f"{path}: is a folder; name the CSV file", field="file")
    errors: list[str] = []
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding,
                                    on_bad_lines="warn", skip_blank_lines=False)
            break
        except UnicodeDecodeError as exc:
            errors.append(f"{encoding}: {exc.reason}")
        except pd.errors.EmptyDataError as exc:
            raise InvalidInput(f"{path.name}: the file is empty", field="file") from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise InvalidInput(f"{path.name}: not a readable CSV file: {exc}",
                               field="file") from exc
    else:
        raise InvalidInput(f"{path.name}: cannot decode the file ({'; '.join(errors)}); save "
                           "it as UTF-8", field="file")
    frame.columns = [str(c).strip() for c in frame.columns]
    columns = _columns(frame.columns, path.name)
    broken = sorted((int(m.group(1)), f"row: expected {m.group(2)} fields, saw {m.group(3)}")
                    for w in caught
                    if (m := re.match(r"Skipping line (\d+): expected (\d+) fields, saw (\d+)",
                                      str(w.message))))
    # pandas numbers rows (header = 1), not lines: line breaks inside quoted fields of
    # earlier records, and the skipped rows before a record, push it further down the file.
    skipped = np.array([row for row, _ in broken], dtype=np.int64)
    inner = np.zeros(len(frame), dtype=np.int64)
    for column in frame.columns:
        inner += frame[column].str.count("\n").to_numpy(dtype=np.int64)
    inner_before = np.concatenate([[0], np.cumsum(inner)])
    lines = 2 + np.arange(len(frame)) + inner_before[:-1]
    before = skipped - 2 - np.arange(len(skipped))  # records before each skipped row
    lines += np.searchsorted(before, np.arange(len(frame)), side="right")
    broken_lines = skipped + inner_before[np.clip(before, 0, len(frame))]
    broken = [(int(line), reason) for line, (_, reason) in zip(broken_lines, broken,
                                                                strict=True)]
    blank = (frame.apply(lambda col: col.str.strip()) == "").all(axis=1).to_numpy()
    return _Table(frame[~blank].reset_index(drop=True), lines[~blank], columns,
                  pd.DataFrame(broken, columns=["line", "reason"]))


def _columns(names: Sequence[str], file_name: str) -> dict[str, str]:
    """Role → header of the file, by the aliases."""
    lower = {n.lower(): n for n in names}
    found = {role: lower[a.lower()] for role, aliases in ALIASES.items()
             for a in aliases if a.lower() in lower}
    missing = [r for r in REQUIRED if r not in found]
    if not {"class_code", "class", "class_name"} & found.keys():
        missing.append("class (code or name)")
    if missing:
        raise InvalidInput(
            f"{file_name}: missing column(s) {', '.join(missing)}; the header has "
            f"{', '.join(names) or 'nothing'} (accepted names: "
            + "; ".join(f"{role}: {', '.join(a)}" for role, a in ALIASES.items()) + ")",
            field="file")
    return found


# -- checking -------------------------------------------------------------------------------


class _Problems:
    """Reasons per row, gathered column by column (vectorised)."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, "", dtype=object)
        self.fields = np.full(n, "", dtype=object)

    def add(self, mask: npt.NDArray[np.bool_], column: str, message: Any) -> None:
        if not mask.any():
            return
        text_ = (np.asarray(message, dtype=object)[mask] if not isinstance(message, str)
                 else message)
        sep = np.where(self.reason[mask] == "", "", "; ")
        self.reason[mask] = self.reason[mask] + sep + f"{column}: " + text_
        fsep = np.where(self.fields[mask] == "", "", ",")
        self.fields[mask] = self.fields[mask] + fsep + column

    @property
    def bad(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.reason != "", dtype=bool)


def _quoted(values: pd.Series) -> npt.NDArray[Any]:
    return np.asarray("'" + values.str.slice(0, 60) + "'", dtype=object)


def _times(values: pd.Series, now: pd.Timestamp, tz: str,
           problems: _Problems) -> npt.NDArray[np.int64]:
    """Report times as epoch ns (UTC; 0 where unreadable); naive values are local time in
    `tz` (the work calendar's: Beijing)."""
    raw = values.str.strip().str.replace("/", "-", regex=False)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    offset = raw.str.contains(_OFFSET, regex=True)
    if offset.any():
        out[offset] = pd.to_datetime(raw[offset], format="ISO8601", utc=True, errors="coerce")
    naive = ~offset & (raw != "")
    if naive.any():
        local = pd.to_datetime(raw[naive], format="ISO8601", errors="coerce")
        out[naive] = local.dt.tz_localize(tz, nonexistent="NaT",
                                          ambiguous="NaT").dt.tz_convert("UTC")
    empty = (raw == "").to_numpy()
    problems.add(empty, "time", "empty")
    unreadable = out.isna().to_numpy() & ~empty
    problems.add(unreadable, "time", _quoted(values) + f" is not a date-time (use {_TIME_FORMAT})")
    future = (out > now).to_numpy()
    problems.add(future, "time", _quoted(values) + " is in the future")
    return np.asarray(np.where(out.notna(), pd.DatetimeIndex(out).as_unit("ns").asi8, 0),
                      dtype=np.int64)


def _numbers(values: pd.Series, column: str, problems: _Problems) -> npt.NDArray[np.float64]:
    raw = values.str.strip()
    number = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    lowered = raw.str.lower()
    nan_text = lowered.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"]).to_numpy()
    empty = (raw == "").to_numpy()
    problems.add(empty, column, "empty")
    problems.add(np.isnan(number) & ~empty & ~nan_text, column,
                 _quoted(values) + " is not a number")
    problems.add(nan_text | np.isinf(number), column,
                 _quoted(values) + " is not a finite number")
    return number


def _points(frame: pd.DataFrame, columns: dict[str, str], default_crs: str,
            problems: _Problems) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64],
                                          npt.NDArray[Any]]:
    """WGS84 lon/lat of each row (NaN where the input is bad) and its input crs."""
    lon = _numbers(frame[columns["lon"]], "lon", problems)
    lat = _numbers(frame[columns["lat"]], "lat", problems)
    finite = np.isfinite(lon) & np.isfinite(lat)
    swapped = finite & (np.abs(lat) > 90) & (np.abs(lon) <= 90)
    problems.add(swapped, "lat", np.char.add(np.char.add(
        lat.astype(str), " is out of range: lon and lat look swapped (send lon="),
        np.char.add(np.char.add(lat.astype(str), ", lat="), np.char.add(lon.astype(str), ")"))))
    problems.add(finite & ~swapped & (np.abs(lon) > 180), "lon",
                 np.char.add(lon.astype(str), " is outside -180..180 (degrees, not metres)"))
    problems.add(finite & ~swapped & (np.abs(lat) > 90), "lat",
                 np.char.add(lat.astype(str), " is outside -90..90 (degrees, not metres)"))
    if "crs" in columns:
        given = frame[columns["crs"]].str.strip().str.lower()
        crs = given.map(CRS_ALIASES).where(given != "", default_crs)
        problems.add(crs.isna().to_numpy(), "crs", _quoted(frame[columns["crs"]])
                     + f" is unknown (use {', '.join(POINT_CRS)})")
        crs_values = crs.fillna(default_crs).to_numpy(dtype=object)
    else:
        crs_values = np.full(len(frame), default_crs, dtype=object)
    ok = finite & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    x, y = np.where(ok, lon, np.nan), np.where(ok, lat, np.nan)
    for name, convert in (("gcj02", gcj02_to_wgs84), ("bd09", bd09_to_wgs84)):
        rows = ok & (crs_values == name)
        if rows.any():
            x[rows], y[rows] = convert(lon[rows], lat[rows])
    return x, y, crs_values


@dataclass(frozen=True)
class _Classes:
    """The active event classes."""

    frame: pd.DataFrame  # id, kind, code, name, time_limits

    def resolve(self, conn: Connection, frame: pd.DataFrame, columns: dict[str, str],
                problems: _Problems) -> npt.NDArray[np.int64]:
        """Class row (index into `frame`) of each input row, -1 when unknown."""
        n = len(frame)
        value = pd.Series("", index=frame.index)
        for role in ("class_name", "class", "class_code"):  # the code wins when given
            if role in columns:
                given = frame[columns[role]].str.strip()
                value = given.where(given != "", value)
        kind = pd.Series("", index=frame.index)
        if "kind" in columns:
            raw_kind = frame[columns["kind"]].str.strip()
            kind = raw_kind.str.lower().map(KIND_ALIASES).fillna("")
            problems.add(((raw_kind != "") & (kind == "")).to_numpy(), "kind",
                         _quoted(raw_kind) + " must be event (事件) or component (部件)")
        empty = (value == "").to_numpy()
        problems.add(empty, "class", "empty (give a class code such as 0101 or a class name)")
        classes = self.frame
        is_code = value.str.fullmatch(r"\d{1,4}").to_numpy(dtype=bool)
        code = value.where(~is_code, value.str.zfill(4))
        code_kind = kind.where(kind != "", "event")
        by_code = pd.Series(np.arange(len(classes)),
                            index=pd.MultiIndex.from_frame(classes[["kind", "code"]]))
        hit = by_code.reindex(pd.MultiIndex.from_arrays([code_kind, code])).to_numpy()
        row = np.where(is_code & ~np.isnan(hit), np.nan_to_num(hit, nan=-1), -1)
        # Names: unique across kinds unless the kind is given.
        named = classes.assign(n=classes.groupby("name")["kind"].transform("size"))
        by_name_kind = pd.Series(np.arange(len(classes)),
                                 index=pd.MultiIndex.from_frame(classes[["kind", "name"]]))
        by_name_kind = by_name_kind[~by_name_kind.index.duplicated()]
        by_name = pd.Series(np.arange(len(classes)),
                            index=classes["name"])[(named["n"] == 1).to_numpy()]
        with_kind = by_name_kind.reindex(pd.MultiIndex.from_arrays([kind, value])).to_numpy()
        without = by_name.reindex(value).to_numpy()
        name_hit = np.where(kind != "", with_kind, without)
        row = np.where(~is_code & ~np.isnan(name_hit), np.nan_to_num(name_hit, nan=-1), row)
        ambiguous = (~is_code & (kind == "").to_numpy()
                     & value.isin(named.loc[named["n"] > 1, "name"]).to_numpy())
        problems.add(ambiguous, "class", _quoted(value)
                     + " names both an event and a component class; give the kind")
        unknown = (row < 0) & ~empty & ~ambiguous
        if unknown.any():
            pairs = pd.DataFrame({"kind": code_kind.where(is_code, kind), "value": value})
            lookup = pairs[unknown].drop_duplicates()
            lookup["hint"] = [_hint(conn, k, v, code=bool(re.fullmatch(r"\d{1,4}", v)))
                              for k, v in lookup.itertuples(index=False)]  # per distinct value
            message = pairs.merge(lookup, on=["kind", "value"], how="left")["hint"]
            problems.add(unknown, "class", message.fillna("").to_numpy(dtype=object))
        return np.asarray(row, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)


def _hint(conn: Connection, kind: str, value: str, *, code: bool) -> str:
    """'unknown … ; did you mean …' for one distinct unknown class value."""
    suggestions = catalog.suggest_codes(conn, value, kind=kind or None)
    what = f"unknown {kind or 'event or component'} class " + ("code" if code else "name")
    hint = ("; did you mean " + ", ".join(f"{s['code']} {s['name']}" for s in suggestions)
            if suggestions else "")
    return f"{what} {value!r}{hint}"


def _texts(frame: pd.DataFrame, columns: dict[str, str],
           problems: _Problems) -> tuple[pd.Series, pd.Series, npt.NDArray[Any]]:
    """Description, address and source of each row."""
    description = frame[columns["text"]].str.strip()
    problems.add((description == "").to_numpy(), "text", "empty")
    length = description.str.len().to_numpy()
    problems.add(length > MAX_DESCRIPTION, "text", np.char.add(
        length.astype(str), f" characters; at most {MAX_DESCRIPTION}"))
    if "address" in columns:
        address = frame[columns["address"]].str.strip()
        alen = address.str.len().to_numpy()
        problems.add(alen > MAX_ADDRESS, "address", np.char.add(
            alen.astype(str), f" characters; at most {MAX_ADDRESS}"))
        address = address.where(address != "", None)
    else:
        address = pd.Series(None, index=frame.index, dtype=object)
    if "source" in columns:
        raw = frame[columns["source"]].str.strip()
        source = raw.where(raw.isin(SOURCES), raw.map(SOURCE_ALIASES))
        source = source.where(raw != "", DEFAULT_SOURCE)
        problems.add(source.isna().to_numpy(), "source",
                     _quoted(raw) + f" is unknown (use {', '.join(SOURCES)})")
        sources = source.fillna(DEFAULT_SOURCE).to_numpy(dtype=object)
    else:
        sources = np.full(len(frame), DEFAULT_SOURCE, dtype=object)
    return description, address, sources


# -- deadlines ------------------------------------------------------------------------------


def stage_deadlines_json(calendar: WorkCalendar, start_ns: npt.NDArray[np.int64],
                         limits: Sequence[dict[str, Any]],
                         class_row: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Vectorised `catalog.stage_deadlines`: per row the JSON of {stage: ISO deadline} that
    intake stores, from the row's report time and its class's `limits`."""
    n = len(start_ns)
    at = start_ns.copy()
    pieces = np.full(n, "", dtype=object)
    for stage in catalog.STAGES:
        value = np.array([float(lim[stage]["value"]) if stage in lim else np.nan
                          for lim in limits])[class_row] if n else np.zeros(0)
        unit = np.array([str(lim[stage]["unit"]) if stage in lim else ""
                         for lim in limits], dtype=object)[class_row] if n else np.zeros(0)
        has = ~np.isnan(value)
        nxt = at.copy()
        clock = has & (unit == "hours")
        nxt[clock] = at[clock] + np.round(value[clock] * 3600e6).astype(np.int64) * 1000
        for name, per in (("work_hours", 3600.0), ("work_days", calendar.seconds_per_day)):
            rows = has & (unit == name)
            if rows.any():
                done = calendar.add_working_seconds(at[rows], value[rows] * per)
                nxt[rows] = (done + 500) // 1000 * 1000  # microseconds, as datetimes hold
        at = np.where(has, nxt, at)
        iso = _iso(at, calendar.timezone)
        sep = np.where(pieces == "", "", ", ").astype(object)
        pieces = np.where(has, pieces + sep + f'"{stage}": "' + iso + '"', pieces)
    return np.asarray("{" + pieces + "}", dtype=object)


def _iso(ns: npt.NDArray[np.int64], tz: str) -> npt.NDArray[Any]:
    """datetime.isoformat() of epoch-ns instants in `tz` (microseconds shown when not 0)."""
    local = pd.DatetimeIndex(ns, tz="UTC").tz_convert(tz).tz_localize(None)
    local_ns = local.asi8
    wall = np.datetime_as_string(local_ns.astype("datetime64[ns]").astype("datetime64[us]"),
                                 unit="us")
    if len(ns) == 0:
        return np.zeros(0, dtype=object)
    wall = np.where(np.char.endswith(wall, ".000000"), wall.astype("<U19"), wall)
    offset_min = (local_ns - ns) // 60_000_000_000
    signs = np.where(offset_min < 0, "-", "+")
    hours, minutes = np.divmod(np.abs(offset_min), 60)
    offset = np.char.add(np.char.add(signs, np.char.zfill(hours.astype(str), 2)),
                         np.char.add(":", np.char.zfill(minutes.astype(str), 2)))
    return np.asarray(np.char.add(wall.astype(str), offset), dtype=object)


# -- the import -----------------------------------------------------------------------------


def import_incidents(conn: Connection, path: Path, *, crs: str = "wgs84",
                     rejects_path: Path | None = None, by: Actor,
                     progress: Progress = no_progress) -> ImportResult:
    """Import the incidents of a CSV file on `conn` (the caller commits). Good rows load,
    bad rows go to `rejects_path` (default: next to the file, FILE.rejects.csv, written only
    when there are rejects). InvalidInput only for a file that cannot be read at all or an
    unknown `crs`."""
    default_crs = CRS_ALIASES.get(crs.strip().lower())
    if default_crs is None:
        raise InvalidInput(f"--crs must be one of {', '.join(POINT_CRS)}; got {crs!r}",
                           field="crs")
    table = read_table(path)
    frame, columns = table.frame, table.columns
    n = len(frame)
    progress("read", n, n)
    now = pd.Timestamp(conn.scalar(text("SELECT now()")))
    calendar = catalog.current_calendar(conn)
    problems = _Problems(n)
    reported = _times(frame[columns["time"]], now, calendar.timezone, problems)
    classes = _Classes(pd.DataFrame(conn.execute(text(
        "SELECT id, kind, code, name, time_limits FROM event_classes WHERE active "
        "ORDER BY kind, code")).mappings().all(), columns=["id", "kind", "code", "name",
                                                          "time_limits"]))
    class_row = classes.resolve(conn, frame, columns, problems)
    lon, lat, input_crs = _points(frame, columns, default_crs, problems)
    description, address, sources = _texts(frame, columns, problems)
    progress("check", n, n)
    placed = _place(conn, lon, lat, reported, problems, frame, columns, input_crs, progress)
    good = np.flatnonzero(~problems.bad)
    staged = pd.DataFrame({
        "line": table.lines[good],
        "source": sources[good],
        "event_class_id": classes.frame["id"].to_numpy(dtype=np.int64)[class_row[good]]
        if len(classes.frame) else np.zeros(len(good), dtype=np.int64),
        "description": description.to_numpy(dtype=object)[good],
        "address": address.to_numpy(dtype=object)[good],
        "reported_at": pd.DatetimeIndex(reported[good], tz="UTC"),
        "lon": lon[good], "lat": lat[good], "input_crs": input_crs[good],
    })
    staged["status"] = np.where(np.isin(staged["source"].to_numpy(dtype=object),
                                        list(TRUSTED_SOURCES)), "registered", "pending")
    chosen = placed.iloc[good].reset_index(drop=True)
    for target, column in (("district_code", "district_code"), ("street_code", "street_code"),
                           ("community_code", "community_code"), ("grid_code", "grid_code"),
                           ("grid_id", "grid_id"), ("building_id", "building_id"),
                           ("street_id", "segment_id"), ("chief_person_id", "chief_person_id"),
                           ("is_joint", "is_joint"), ("joint", "joint")):
        staged[target] = chosen[column].array
    staged["deadlines"] = stage_deadlines_json(
        calendar, reported[good], list(classes.frame["time_limits"]), class_row[good])
    staged["idempotency_key"] = _keys(staged, reported[good])
    progress("deadlines", n, n)
    loaded, duplicates, ids = _store(conn, staged, path, by, progress)
    rejects = _rejects(table, problems)
    written = None
    if len(rejects):
        written = rejects_path or path.with_name(path.name + ".rejects.csv")
        rejects.to_csv(written, index=False, encoding="utf-8-sig")
    result = ImportResult(path=path, rows=n + len(table.broken), loaded=loaded,
                          rejected=len(rejects), duplicates=duplicates, rejects_path=written,
                          incident_ids=ids, rejects=rejects)
    audit.record(conn, by, action="incident.import", object_type="incident", object_id=None,
                 after={"file": path.name, "rows": result.rows, "loaded": loaded,
                        "rejected": result.rejected, "duplicates": duplicates,
                        "first_id": ids[0] if ids else None, "last_id": ids[1] if ids else None})
    return result


def _place(conn: Connection, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64],
           reported: npt.NDArray[np.int64], problems: _Problems, frame: pd.DataFrame,
           columns: dict[str, str], input_crs: npt.NDArray[Any],
           progress: Progress) -> pd.DataFrame:
    """Placement of every row with a usable point and time (in chunks, one index), and
    'outside the service area' problems for the rest."""
    n = len(lon)
    usable = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat) & (reported != 0))
    parts: list[pd.DataFrame] = []
    index = None
    if usable.size:
        index = PlacementIndex.for_points(conn, lon[usable], lat[usable])
    progress("place", 0, n)
    for start in range(0, usable.size, CHUNK):
        rows = usable[start:start + CHUNK]
        part = place_many(conn, lon[rows], lat[rows], reported[rows].astype("datetime64[ns]"),
                          index=index)
        part.index = rows
        parts.append(part)
        progress("place", min(start + CHUNK, usable.size), usable.size)
    placed = (pd.concat(parts) if parts else pd.DataFrame(columns=COLUMNS)).reindex(
        np.arange(n))
    outside = np.zeros(n, dtype=bool)
    outside[usable] = placed["district_code"].iloc[usable].isna().to_numpy()
    if outside.any():
        extent = _service_area(conn)
        rows = np.flatnonzero(outside & (np.abs(lon) <= 90))  # could the pair be (lat, lon)?
        swapped_inside = np.zeros(n, dtype=bool)
        if rows.size:
            back = place_many(conn, lat[rows], lon[rows],
                              reported[rows].astype("datetime64[ns]"))
            swapped_inside[rows] = back["district_code"].notna().to_numpy()
        given = ("(" + frame[columns["lon"]].str.strip() + ", " + frame[columns["lat"]].str.strip()
                 + ") in " + pd.Series(input_crs, index=frame.index))
        problems.add(outside & swapped_inside, "lon", given
                     + f" is outside the service area ({extent}); lon and lat look swapped")
        problems.add(outside & ~swapped_inside, "lon", given
                     + f" is outside the service area ({extent})")
    _nesting(placed, problems)
    return placed


def _nesting(placed: pd.DataFrame, problems: _Problems) -> None:
    """Rows whose placement breaks the incidents table's nesting rules (a community in
    another street, ...): where boundaries overlap, the lowest code at each level can come
    from different parents. They are rejected (the table refuses them; so does POST)."""
    codes = {level: placed[f"{level}_code"].astype(object) for level in
             ("district", "street", "community", "grid")}
    for child, parent, digits in (("street", "district", 6), ("community", "street", 9),
                                  ("grid", "community", 12)):
        c, p = codes[child], codes[parent]
        bad = (c.notna() & (p.isna() | (c.str.slice(0, digits) != p))).to_numpy(dtype=bool)
        problems.add(bad, "lon", f"the boundary data overlap here: {child} " + c.fillna("")
                     + f" is not in {parent} " + p.fillna("-")
                     + f" (each level's lowest code was taken); fix the {child} or {parent} "
                       "boundaries")


def _service_area(conn: Connection) -> str:
    row = conn.execute(text("""
        SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
        FROM (SELECT ST_Extent(geom) AS e FROM jurisdictions
              WHERE level = 'district' AND valid_to IS NULL) x""")).one()
    if row[0] is None:
        return "no districts are loaded"
    return f"lon {row[0]:.3f}..{row[2]:.3f}, lat {row[1]:.3f}..{row[3]:.3f}"


def _keys(staged: pd.DataFrame, reported: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Idempotency key of each row: a 128-bit hash of what it reports."""
    what = pd.DataFrame({
        "t": reported, "c": staged["event_class_id"].to_numpy(),
        "x": np.round(staged["lon"].to_numpy(), 7), "y": np.round(staged["lat"].to_numpy(), 7),
        "d": staged["description"].astype(object), "s": staged["source"].astype(object),
        "a": staged["address"].astype(object).fillna(""),
    })
    h1 = pd.util.hash_pandas_object(what, index=False).to_numpy()
    h2 = pd.util.hash_pandas_object(what, index=False, hash_key="gridops-import-2").to_numpy()
    return np.asarray(np.char.add(np.char.add("import:", h1.astype(str)),
                                  np.char.add("-", h2.astype(str))), dtype=object)


_STAGING = """
    CREATE TEMP TABLE incident_import (
      line integer, idempotency_key text, source text, event_class_id integer,
      description text, address text, reported_at timestamptz, lon float8, lat float8,
      input_crs text, status text, district_code text, street_code text,
      community_code text, grid_code text, grid_id bigint, building_id bigint,
      street_id bigint, chief_person_id bigint, is_joint boolean, joint jsonb,
      deadlines jsonb
    ) ON COMMIT DROP
"""

_INSERT = """
    WITH added AS (
      INSERT INTO incidents (idempotency_key, source, event_class_id, description, address,
          reported_at, geom, input_crs, status, district_code, street_code, community_code,
          grid_code, grid_id, building_id, street_id, chief_person_id, is_joint, joint,
          deadlines, created_by)
      SELECT idempotency_key, source, event_class_id, description, address, reported_at,
             ST_SetSRID(ST_MakePoint(lon, lat), 4326), input_crs, status, district_code,
             street_code, community_code, grid_code, grid_id, building_id, street_id,
             chief_person_id, is_joint, joint, deadlines, :user_id
      FROM incident_import ORDER BY line
      ON CONFLICT (idempotency_key) DO NOTHING
      RETURNING id, reported_at, status, source, district_code, geom),
    events AS (
      INSERT INTO case_events (incident_id, at, actor_id, action, to_status, data,
                               district_code)
      SELECT id, reported_at, :user_id, 'report', status,
             jsonb_build_object('source', source, 'import', CAST(:file AS text)), district_code
      FROM added)
    SELECT count(*), min(id), max(id), coalesce(array_agg(DISTINCT district_code), '{}'),
           ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), ST_XMax(ST_Extent(geom)),
           ST_YMax(ST_Extent(geom))
    FROM added
"""


def _store(conn: Connection, staged: pd.DataFrame, path: Path, by: Actor,
           progress: Progress) -> tuple[int, int, tuple[int, int] | None]:
    """COPY the rows into a staging table, then insert the new ones (and their report
    events) in one statement; one change notification. (loaded, duplicates, id range)."""
    conn.execute(text("DROP TABLE IF EXISTS incident_import"))
    conn.execute(text(_STAGING))
    total = len(staged)
    progress("COPY", 0, total)
    for start in range(0, total, CHUNK):
        copy_rows(conn, "incident_import", staged.iloc[start:start + CHUNK])
        progress("COPY", min(start + CHUNK, total), total)
    count, first, last, districts, *box = conn.execute(text(_INSERT), {
        "user_id": by.user_id, "file": path.name}).one()
    conn.execute(text("DROP TABLE incident_import"))
    if count:
        events.emit(conn, "incidents.imported", districts, count=int(count),
                    first_id=int(first), last_id=int(last), layers=["incidents"],
                    bbox=events.bbox(*box))
    return int(count), total - int(count), (int(first), int(last)) if count else None


def _rejects(table: _Table, problems: _Problems) -> pd.DataFrame:
    """Bad rows: line, field(s), reason, then the row as read (and lines that could not be
    split into fields)."""
    bad = problems.bad
    rows = pd.DataFrame({"line": table.lines[bad], "field": problems.fields[bad],
                         "reason": problems.reason[bad]})
    rows = pd.concat([rows.reset_index(drop=True),
                      table.frame[bad].reset_index(drop=True)], axis=1)
    broken = table.broken.assign(field="row")
    out = pd.concat([rows, broken], ignore_index=True)
    return out.sort_values("line", kind="stable").reset_index(drop=True)
