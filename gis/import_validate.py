"""Validating import features: attributes, geometries (vectorised shapely), duplicates in the
file, and — on the staged rows in PostGIS — parents, containment and clashes with the
database. Every problem becomes an `Issue` naming the feature, its code, the field and why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gis.crs import InputCrs
from gis.errors import InvalidInput
from gis.import_read import CHINA_TZ, OPTION_FOR, Kind

ObjectArray = npt.NDArray[np.object_]
BoolArray = npt.NDArray[np.bool_]
Reason = str | Callable[[int], str] | Sequence[str] | ObjectArray

DEFAULT_VALID_FROM = datetime(2000, 1, 1, tzinfo=CHINA_TZ)
METRIC_SRID = 4548  # CGCS2000 / 3-degree Gauss-Kruger CM 117E: metres around Beijing
MAX_OUTSIDE_SHARE = 0.01  # a child may stick out of its parent by at most 1% of its area
MAX_OUTSIDE_M2 = 10.0  # ... and at most 10 m²
MAX_REPAIR_AREA_CHANGE = 0.01  # make_valid may change the area by at most 1%

TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
              5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}
FAMILY_IDS: dict[Kind, tuple[int, int]] = {
    "jurisdictions": (3, 6), "grids": (3, 6), "buildings": (3, 6), "streets": (1, 5),
}
LEVELS = {
    "district": "district", "区": "district", "县": "district", "市辖区": "district",
    "street": "street", "街道": "street", "乡": "street", "镇": "street", "乡镇": "street",
    "community": "community", "社区": "community", "村": "community",
}
LEVEL_DIGITS = {"district": 6, "street": 9, "community": 12}
PARENT_LEVEL = {"street": "district", "community": "street"}
ROAD_CLASSES = {
    "arterial": "arterial", "secondary": "secondary", "branch": "branch", "alley": "alley",
    "主干道": "arterial", "主干路": "arterial", "次干道": "secondary", "次干路": "secondary",
    "支路": "branch", "胡同": "alley", "小巷": "alley", "巷": "alley",
}
_GEOS_REASON = re.compile(r"^(?P<what>[^\[]+)\[(?P<at>[^\]]*)\]\s*$")


@dataclass
class Issue:
    """One problem with one feature (feature None: the file as a whole)."""

    feature: int | None
    code: str | None
    field: str
    reason: str
    action: Literal["rejected", "repaired"] = "rejected"

    def describe(self) -> str:
        """`feature 3 (code 110102020), field geometry: self-intersection at (...)`."""
        if self.feature is None:
            where = "file"
        else:
            where = f"feature {self.feature}" + (f" (code {self.code})" if self.code else "")
        return f"{where}, field {self.field}: {self.reason}"


class IssueList:
    """Collects issues for masks over the features (positions 0..n-1, features 1..n)."""

    def __init__(self, codes: Sequence[str | None]) -> None:
        self.codes = list(codes)
        self.items: list[Issue] = []
        self.rejected = np.zeros(len(self.codes), dtype=bool)

    def add(self, mask: npt.ArrayLike, field: str, reason: Reason,
            action: Literal["rejected", "repaired"] = "rejected") -> None:
        """An issue for each position where `mask` holds.

        `reason`: one text for all, one text per position, or a function of the position
        (called only where the mask holds).
        """
        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        for position in positions.tolist():
            if isinstance(reason, str):
                why = reason
            elif callable(reason):
                why = reason(position)
            else:
                why = str(reason[position])
            self.items.append(Issue(position + 1, self.codes[position], field, why, action))
        if action == "rejected":
            self.rejected[positions] = True

    def add_rows(self, rows: Sequence[tuple[int, str]], field: str) -> None:
        """Issues from (feature, reason) rows, e.g. from SQL."""
        for feature, reason in rows:
            self.items.append(Issue(feature, self.codes[feature - 1], field, reason))
            self.rejected[feature - 1] = True


# -- attributes ---------------------------------------------------------------------------


def pick(mask: npt.ArrayLike, yes: Any, no: Any) -> ObjectArray:
    """An object array: `yes` where `mask` holds, else `no` (scalars or arrays)."""
    chosen = np.asarray(mask, dtype=np.bool_)
    out = np.empty(len(chosen), dtype=object)
    out[:] = no if not isinstance(no, np.ndarray) else no.astype(object)
    out[chosen] = yes[chosen] if isinstance(yes, np.ndarray) else yes
    return out


def _as_text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).strip() or None


def text_values(series: pd.Series) -> ObjectArray:
    """Values as stripped text (numbers without a trailing .0), None where missing."""
    return np.array([_as_text(value) for value in series.tolist()], dtype=object)


def _instant(value: Any) -> datetime | Literal[False] | None:
    """A timezone-aware datetime, None when missing, False when unreadable."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return False
    if not isinstance(value, datetime):
        return False
    return value if value.tzinfo else value.replace(tzinfo=CHINA_TZ)


def _digits(values: ObjectArray, lengths: npt.ArrayLike) -> BoolArray:
    pattern = pd.Series(values, dtype=object).fillna("")
    expected = np.asarray(lengths)
    return np.asarray(pattern.str.fullmatch(r"[0-9]+").to_numpy(dtype=bool)
                      & (pattern.str.len().to_numpy() == expected))


def _whole_numbers(series: pd.Series, field: str, low: int, high: int | None,
                   issues: IssueList) -> pd.Series:
    raw = text_values(series)
    present = pd.notna(raw)
    numbers = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce")
    values = numbers.to_numpy(dtype=float, na_value=np.nan)
    good = np.isfinite(values) & (values == np.floor(values)) & (values >= low)
    if high is not None:
        good &= values <= high
    bad = present & ~good
    limit = f"between {low} and {high}" if high is not None else f"of at least {low}"
    values_in = series.to_numpy(dtype=object)
    issues.add(bad, field, lambda i: f"{values_in[i]!r} is not a whole number {limit}")
    return pd.Series(np.where(good, values, np.nan)).astype("Int64")


def normalise_attributes(
    frame: pd.DataFrame,
    kind: Kind,
    mapping: dict[str, str],
    *,
    level: str | None = None,
    valid_from: datetime | None = None,
) -> tuple[pd.DataFrame, IssueList]:
    """The staging table (one row per feature, target columns) and the issues found."""
    n = len(frame)

    def column(target: str) -> ObjectArray:
        return text_values(frame[mapping[target]]) if target in mapping else np.full(n, None)

    def field(target: str) -> str:
        return mapping.get(target, target)

    codes = column("code")
    issues = IssueList(codes.tolist())
    table = pd.DataFrame({"feature": np.arange(1, n + 1), "code": codes})
    for target in ("level", "parent_code", "parent_level", "households", "floors",
                   "district_code", "grid_code", "road_class", "valid_from", "valid_to"):
        table[target] = None
    names = column("name")
    table["name"] = names
    if kind in ("jurisdictions", "streets"):
        issues.add(pd.isna(names), field("name"), "name is missing")

    if kind == "jurisdictions":
        _jurisdiction_codes(table, column("level"), level, issues, field)
    elif kind == "grids":
        valid = _digits(codes, 15)
        issues.add(pd.notna(codes) & ~valid, field("code"),
                   lambda i: f"code {codes[i]} is not a 15-digit grid code "
                             "(community code + 3 digits)")
        table["parent_code"] = pick(valid, np.array([c[:12] if c else None for c in codes],
                                                     dtype=object), None)
        table["parent_level"] = pick(valid, "community", None)
    if kind in ("jurisdictions", "grids"):
        _check_parent_field(table, column("parent_code"), issues, field("parent_code"))
        _validity(table, frame, mapping, valid_from, issues)
    if kind in ("grids", "buildings"):
        households = (_whole_numbers(frame[mapping["households"]], field("households"), 0, None,
                                     issues)
                      if "households" in mapping else pd.Series(np.zeros(n)).astype("Int64"))
        table["households"] = households.fillna(0).array
    if kind == "buildings":
        if "floors" in mapping:
            table["floors"] = _whole_numbers(frame[mapping["floors"]], field("floors"), 1, 200,
                                             issues).array
        _district_and_grid(table, column("district_code"), column("grid_code"), issues, field)
    if kind == "streets":
        _district_and_grid(table, column("district_code"), np.full(n, None), issues, field)
        raw = column("road_class")
        classes = np.array([ROAD_CLASSES.get(v.casefold()) if v else None for v in raw],
                           dtype=object)
        table["road_class"] = classes
        accepted = "arterial/主干道, secondary/次干道, branch/支路, alley/胡同/小巷"
        issues.add(pd.isna(raw), field("road_class"), f"road class is missing (use {accepted})")
        issues.add(pd.notna(raw) & pd.isna(classes), field("road_class"),
                   lambda i: f"unknown road class {raw[i]!r} (use {accepted})")
    table["properties"] = _properties(frame, mapping)
    return table, issues


def _jurisdiction_codes(table: pd.DataFrame, given_levels: ObjectArray, fixed: str | None,
                        issues: IssueList, field: Any) -> None:
    codes = table["code"].to_numpy(dtype=object)
    fixed_level = None
    if fixed is not None:
        fixed_level = LEVELS.get(fixed.strip().casefold())
        if fixed_level is None:
            raise InvalidInput(f"unknown level {fixed!r}: use district, street or community",
                               field="level")
    from_field = np.array([LEVELS.get(v.casefold()) if v else None for v in given_levels],
                          dtype=object)
    issues.add(pd.notna(given_levels) & pd.isna(from_field), field("level"),
               lambda i: f"unknown level {given_levels[i]!r} "
                         "(use district/区, street/街道, community/社区)")
    by_length = {6: "district", 9: "street", 12: "community"}
    inferred = [by_length.get(len(c)) if c and c.isdigit() else None for c in codes]
    unknown = pd.notna(given_levels) & pd.isna(from_field)  # already reported
    levels = np.array(
        [f if f else (None if bad else (fixed_level or guess))
         for f, bad, guess in zip(from_field, unknown, inferred, strict=True)],
        dtype=object)
    expected = np.array([LEVEL_DIGITS[v] if v else -1 for v in levels])
    valid = _digits(codes, expected)

    def reason(i: int) -> str:
        if levels[i]:
            return f"code {codes[i]} is not a {LEVEL_DIGITS[levels[i]]}-digit {levels[i]} code"
        return (f"code {codes[i]} is not a 6-, 9- or 12-digit division code "
                "(district, street, community)")

    issues.add(pd.notna(codes) & ~valid & ~unknown, field("code"), reason)
    issues.add(pd.isna(codes), field("code"), "code is missing")
    table["level"] = levels
    parents = [
        (c[: LEVEL_DIGITS[PARENT_LEVEL[lv]]] if ok and lv in PARENT_LEVEL else None)
        for c, lv, ok in zip(codes, levels, valid, strict=True)
    ]
    table["parent_code"] = np.array(parents, dtype=object)
    table["parent_level"] = np.array(
        [PARENT_LEVEL[lv] if p else None for p, lv in zip(parents, levels, strict=True)],
        dtype=object)


def _check_parent_field(table: pd.DataFrame, given: ObjectArray, issues: IssueList,
                        field: str) -> None:
    """When the file names each feature's parent, the code must extend it."""
    derived = table["parent_code"].to_numpy(dtype=object)
    codes = table["code"].to_numpy(dtype=object)
    wrong = pd.notna(given) & pd.notna(derived) & (given != derived)
    issues.add(wrong, field, lambda i: f"code {codes[i]} does not extend its parent code "
                                       f"{given[i]}")


def _validity(table: pd.DataFrame, frame: pd.DataFrame, mapping: dict[str, str],
              valid_from: datetime | None, issues: IssueList) -> None:
    n = len(table)
    if valid_from is not None:  # --valid-from describes new versions, open-ended
        if valid_from.tzinfo is None:
            valid_from = valid_from.replace(tzinfo=CHINA_TZ)
        table["valid_from"] = np.full(n, valid_from, dtype=object)
        table["valid_to"] = np.full(n, None, dtype=object)
        return
    for target in ("valid_from", "valid_to"):
        if target not in mapping:
            continue
        raw = frame[mapping[target]].tolist()
        parsed = [_instant(value) for value in raw]
        issues.add([p is False for p in parsed], mapping[target], _not_a_date(raw))
        table[target] = np.array([p if p else None for p in parsed], dtype=object)
    starts = table["valid_from"].to_numpy(dtype=object)
    table["valid_from"] = pick(pd.isna(starts), DEFAULT_VALID_FROM, starts)
    start = pd.to_datetime(table["valid_from"], utc=True)
    end = pd.to_datetime(table["valid_to"], utc=True)
    starts, ends = table["valid_from"].to_numpy(), table["valid_to"].to_numpy()
    issues.add((end.notna() & (end <= start)).to_numpy(), mapping.get("valid_to", "valid_to"),
               lambda i: f"valid_to {ends[i]} is not after valid_from {starts[i]}")


def _not_a_date(values: list[Any]) -> Callable[[int], str]:
    return lambda i: f"{values[i]!r} is not an ISO 8601 date or date-time"


def _district_and_grid(table: pd.DataFrame, districts: ObjectArray, grids: ObjectArray,
                       issues: IssueList, field: Any) -> None:
    district_ok = _digits(districts, 6)
    issues.add(pd.notna(districts) & ~district_ok, field("district_code"),
               lambda i: f"district code {districts[i]} is not 6 digits")
    grid_ok = _digits(grids, 15)
    issues.add(pd.notna(grids) & ~grid_ok, field("grid_code"),
               lambda i: f"grid code {grids[i]} is not 15 digits")
    from_grid = np.array([g[:6] if ok else None for g, ok in zip(grids, grid_ok, strict=True)],
                         dtype=object)
    clash = district_ok & grid_ok & (districts != from_grid)
    issues.add(clash, field("grid_code"),
               lambda i: f"grid {grids[i]} is not in district {districts[i]}")
    table["district_code"] = pick(district_ok, districts, from_grid)
    table["grid_code"] = pick(grid_ok, grids, None)


def _properties(frame: pd.DataFrame, mapping: dict[str, str]) -> ObjectArray:
    """Unmapped source fields, kept as JSON in the properties column."""
    used = set(mapping.values())
    geometry = frame.geometry.name if hasattr(frame, "geometry") else None
    rest = [c for c in frame.columns if c not in used and c != geometry]
    if not rest:
        return np.full(len(frame), "{}", dtype=object)
    records = json.loads(pd.DataFrame(frame[rest]).to_json(
        orient="records", date_format="iso", force_ascii=False, default_handler=str))
    return np.array([json.dumps({k: v for k, v in r.items() if v is not None},
                                ensure_ascii=False) for r in records], dtype=object)


def check_duplicates_in_file(table: pd.DataFrame, kind: Kind, issues: IssueList,
                             field: str) -> None:
    """The same code twice in one file (for versioned kinds: with overlapping validity)."""
    rows = table[table["code"].notna()].copy()
    if rows.empty:
        return
    if kind in ("jurisdictions", "grids"):
        rows["start"] = pd.to_datetime(rows["valid_from"], utc=True)
        rows["end"] = pd.to_datetime(rows["valid_to"], utc=True)
        rows = rows.sort_values(["code", "start", "feature"])
        group = rows.groupby("code", sort=False)
        previous_end = group["end"].shift()
        previous = group["feature"].shift()
        has_previous = group.cumcount() > 0
        clash = has_previous & (previous_end.isna() | (previous_end > rows["start"]))
    else:
        rows = rows.sort_values("feature")
        previous = rows.groupby("code")["feature"].transform("first")
        clash = rows["code"].duplicated(keep="first")
    mask = np.zeros(len(table), dtype=bool)
    reasons = np.full(len(table), "", dtype=object)
    positions = rows.loc[clash, "feature"].to_numpy() - 1
    mask[positions] = True
    reasons[positions] = [
        f"duplicate code {code}: feature {int(p)} has the same code"
        + (" with an overlapping validity" if kind in ("jurisdictions", "grids") else "")
        for code, p in zip(rows.loc[clash, "code"], previous[clash], strict=True)
    ]
    issues.add(mask, field, reasons)


# -- geometries ---------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:.7f}".rstrip("0").rstrip(".") if np.isfinite(value) else str(value)


def describe_geos_reason(reason: str) -> str:
    """`Self-intersection[116.3 39.9]` → `self-intersection at (116.3 39.9)`."""
    match = _GEOS_REASON.match(reason)
    if not match:
        return reason[:1].lower() + reason[1:]
    what = match["what"].strip()
    what = what[:1].lower() + what[1:]
    try:
        at = " ".join(_number(float(part)) for part in match["at"].split())
    except ValueError:
        at = match["at"]
    return f"{what} at ({at})"


def _simple_parts(geoms: ObjectArray) -> tuple[ObjectArray, npt.NDArray[np.intp]]:
    """All simple parts (two levels of nesting undone) and the index of their geometry."""
    parts, index = shapely.get_parts(geoms, return_index=True)
    inner, inner_index = shapely.get_parts(parts, return_index=True)
    return np.asarray(inner, dtype=object), np.asarray(index)[inner_index]


def to_multi(geoms: ObjectArray, kind: Kind) -> ObjectArray:
    """Polygons → MultiPolygon, LineStrings → MultiLineString; None stays None."""
    out = np.full(len(geoms), None, dtype=object)
    present = np.flatnonzero(~shapely.is_missing(geoms))
    if present.size == 0:
        return out
    parts, index = _simple_parts(geoms[present])
    keep = ~shapely.is_empty(parts)
    build = shapely.multilinestrings if kind == "streets" else shapely.multipolygons
    target = np.full(len(present), None, dtype=object)
    build(parts[keep], indices=index[keep], out=target)
    out[present] = target
    return out


def _polygonal(geoms: ObjectArray) -> ObjectArray:
    """The polygonal part of each geometry (as MultiPolygon), None when there is none."""
    out = np.full(len(geoms), None, dtype=object)
    if len(geoms) == 0:
        return out
    parts, index = _simple_parts(geoms)
    keep = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)
    shapely.multipolygons(parts[keep], indices=index[keep], out=out)
    return out


def check_geometries(source: ObjectArray, converted: ObjectArray, kind: Kind, crs: InputCrs,
                     issues: IssueList) -> tuple[ObjectArray, int]:
    """Check and repair geometries in WGS84; return (geometries to load, None where rejected;
    number repaired)."""
    family = FAMILY_IDS[kind]
    expected = " or ".join(TYPE_NAMES[t] for t in family)
    type_ids = shapely.get_type_id(converted)
    empty = shapely.is_missing(converted) | shapely.is_empty(converted)
    issues.add(empty, "geometry", "empty geometry (the feature has no coordinates)")
    ok = ~empty

    collection = ok & (type_ids == 7)
    wrong = ok & ~np.isin(type_ids, family) & ~collection
    families = {"polygon" if t in (3, 6) else "line" if t in (1, 2, 5) else "point"
                for t in np.unique(type_ids[ok & ~collection])}
    if collection.any():
        families.add("collection")
    mix = (f" (the file mixes {' and '.join(sorted(families))} geometries)"
           if len(families) > 1 else "")
    issues.add(wrong, "geometry", lambda i: f"wrong geometry type {TYPE_NAMES[int(type_ids[i])]}"
                                            f"; {kind} need {expected}{mix}")
    if collection.any():
        positions = np.flatnonzero(collection)
        parts, index = shapely.get_parts(converted[positions], return_index=True)
        names = pd.Series([TYPE_NAMES[int(t)] for t in shapely.get_type_id(parts)])
        kinds = names.groupby(np.asarray(index)).agg(lambda s: ", ".join(sorted(set(s))))
        reasons = np.full(len(converted), "", dtype=object)
        reasons[positions[kinds.index.to_numpy()]] = [
            f"mixed geometry types in one feature (GeometryCollection of {k}); {kind} need "
            f"{expected}" for k in kinds]
        issues.add(collection, "geometry", reasons)
    ok &= ~wrong & ~collection

    _check_coordinates(source, converted, crs, ok, issues)
    ok &= ~issues.rejected

    result = converted.copy()
    result[~ok] = None
    repaired = _check_validity(result, ok, kind, issues)
    result[issues.rejected] = None
    return to_multi(result, kind), repaired


def _check_coordinates(source: ObjectArray, converted: ObjectArray, crs: InputCrs,
                       ok: BoolArray, issues: IssueList) -> None:
    """Coordinates must land in lon/lat range; wrong CRSs show up here."""
    n = len(converted)
    after = np.full((n, 4), np.nan)
    before = np.full((n, 4), np.nan)
    after[ok] = shapely.bounds(converted[ok])
    before[ok] = shapely.bounds(source[ok])
    in_range = (np.isfinite(after).all(axis=1) & (after[:, 0] >= -180) & (after[:, 2] <= 180)
                & (after[:, 1] >= -90) & (after[:, 3] <= 90))
    looks_lonlat = ((np.abs(before[:, [0, 2]]) <= 180).all(axis=1)
                    & (np.abs(before[:, [1, 3]]) <= 90).all(axis=1))
    out_of_range = ok & ~in_range
    lonlat_as_metres = ok & in_range & looks_lonlat & crs.is_projected

    def where(i: int) -> str:
        return f"x={_number(before[i, 0])}, y={_number(before[i, 1])}"

    if crs.is_projected:
        issues.add(out_of_range, "geometry",
                   lambda i: f"coordinates ({where(i)}) cannot be converted from {crs.name} to "
                             "longitude/latitude; check --crs")
    else:
        issues.add(out_of_range, "geometry",
                   lambda i: f"coordinates look projected ({where(i)}), not longitude/latitude "
                             f"in {crs.name}; pass --crs with the file's coordinate system "
                             "(e.g. --crs EPSG:4548)")
    issues.add(lonlat_as_metres, "geometry",
               lambda i: f"coordinates look like longitude/latitude ({where(i)}) but {crs.name} "
                         "is projected (metres); pass --crs wgs84 (or the file's real "
                         "coordinate system)")


def _check_validity(geoms: ObjectArray, ok: BoolArray, kind: Kind, issues: IssueList) -> int:
    """Repair invalid polygons in place when make_valid keeps the area; reject the rest."""
    positions = np.flatnonzero(ok)
    invalid = positions[~shapely.is_valid(geoms[positions])]
    if invalid.size == 0:
        return 0
    before = geoms[invalid]
    reasons = [describe_geos_reason(r) for r in shapely.is_valid_reason(before)]
    messages = np.full(len(geoms), "", dtype=object)
    if kind == "streets":
        messages[invalid] = reasons
        issues.add(np.isin(np.arange(len(geoms)), invalid), "geometry", messages)
        return 0
    fixed = _polygonal(shapely.make_valid(before, method="structure", keep_collapsed=False))
    has_area = ~shapely.is_missing(fixed)
    old_area = np.abs(shapely.area(before))
    new_area = np.where(has_area, shapely.area(fixed), 0.0)
    change = np.abs(new_area - old_area) / np.where(new_area > 0, new_area, 1.0)
    keep = has_area & (new_area > 0) & (change <= MAX_REPAIR_AREA_CHANGE)
    keep &= np.asarray(shapely.is_valid(pick(keep, fixed, None)), dtype=np.bool_)
    for i, position in enumerate(invalid):
        if keep[i]:
            messages[position] = (f"{reasons[i]}; repaired with make_valid "
                                  f"(area changed by {change[i]:.2%})")
        elif has_area[i] and new_area[i] > 0:
            messages[position] = (f"{reasons[i]}; cannot be repaired without changing the area "
                                  f"by {change[i]:.0%}: fix the geometry in the source")
        else:
            messages[position] = f"{reasons[i]}; cannot be repaired into a polygon"
    repaired_mask = np.zeros(len(geoms), dtype=bool)
    repaired_mask[invalid[keep]] = True
    rejected_mask = np.zeros(len(geoms), dtype=bool)
    rejected_mask[invalid[~keep]] = True
    geoms[invalid[keep]] = fixed[keep]
    issues.add(repaired_mask, "geometry", messages, action="repaired")
    issues.add(rejected_mask, "geometry", messages)
    return int(keep.sum())


# -- against the database (on the staged rows) --------------------------------------------

# The current district holding the largest part of each feature (area, or length for lines).
DERIVE_DISTRICT = """
UPDATE import_staging s SET district_code = best.code
FROM (
  SELECT DISTINCT ON (s2.feature) s2.feature, j.code
  FROM import_staging s2
  JOIN jurisdictions j ON j.level = 'district' AND j.valid_from <= now()
    AND (j.valid_to IS NULL OR j.valid_to > now()) AND ST_Intersects(j.geom, s2.geom)
  WHERE s2.district_code IS NULL AND s2.geom IS NOT NULL
  ORDER BY s2.feature, CASE
    WHEN ST_CoveredBy(s2.geom, j.geom) THEN 'infinity'::float8
    WHEN ST_Dimension(s2.geom) = 2 THEN ST_Area(ST_Intersection(j.geom, s2.geom))
    ELSE ST_Length(ST_Intersection(j.geom, s2.geom)) END DESC, j.code
) best
WHERE s.feature = best.feature
"""
NO_DISTRICT = """
SELECT feature FROM import_staging WHERE district_code IS NULL AND geom IS NOT NULL
ORDER BY feature
"""
DUPLICATE_UNVERSIONED = """
SELECT s.feature, s.code FROM import_staging s
WHERE s.code IS NOT NULL AND (
  (:kind = 'buildings' AND EXISTS (SELECT 1 FROM buildings b WHERE b.code = s.code))
  OR (:kind = 'streets' AND EXISTS (SELECT 1 FROM streets t WHERE t.code = s.code)))
ORDER BY s.feature
"""
# An open version is closed by a later version in the file (a boundary revision); any
# other overlap with a stored version of the same code is a duplicate (reported once,
# against the latest such version).
DUPLICATE_VERSIONED = """
WITH existing AS (
  SELECT code, valid_from, valid_to FROM jurisdictions
  WHERE :kind = 'jurisdictions' AND code IN (SELECT code FROM import_staging)
  UNION ALL
  SELECT code, valid_from, valid_to FROM grids
  WHERE :kind = 'grids' AND code IN (SELECT code FROM import_staging)
), kept AS (
  SELECT e.code, e.valid_from, e.valid_to, coalesce(e.valid_to, (
    SELECT min(s.valid_from) FROM import_staging s
    WHERE s.code = e.code AND s.valid_from > e.valid_from)) AS kept_to
  FROM existing e
)
SELECT DISTINCT ON (s.feature)
       s.feature, s.code, k.valid_from, k.valid_to, k.kept_to IS NULL AS still_open
FROM import_staging s
JOIN kept k ON k.code = s.code
  AND tstzrange(k.valid_from, k.kept_to) && tstzrange(s.valid_from, s.valid_to)
ORDER BY s.feature, k.valid_from DESC
"""
MISSING_PARENT = """
SELECT s.feature, s.parent_level, s.parent_code FROM import_staging s
WHERE s.parent_code IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM import_staging p
                  WHERE p.code = s.parent_code AND p.level = s.parent_level)
  AND NOT EXISTS (SELECT 1 FROM jurisdictions j
                  WHERE j.code = s.parent_code AND j.level = s.parent_level)
ORDER BY s.feature
"""
# The parent version: from the file if there, else the stored one in force when the
# child starts, else the latest stored one.
OUTSIDE_PARENT = """
SELECT s.feature, s.parent_level, s.parent_code, o.outside_m2, o.area_m2
FROM import_staging s
CROSS JOIN LATERAL (
  SELECT c.geom FROM (
    SELECT p.geom, CASE WHEN tstzrange(p.valid_from, p.valid_to) @> s.valid_from
                        THEN 0 ELSE 1 END AS rank, p.valid_from
    FROM import_staging p
    WHERE p.code = s.parent_code AND p.level = s.parent_level AND p.geom IS NOT NULL
    UNION ALL
    SELECT j.geom, CASE WHEN tstzrange(j.valid_from, j.valid_to) @> s.valid_from
                        THEN 2 ELSE 3 END, j.valid_from
    FROM jurisdictions j WHERE j.code = s.parent_code AND j.level = s.parent_level
  ) c ORDER BY c.rank, c.valid_from DESC LIMIT 1
) parent
CROSS JOIN LATERAL (
  SELECT ST_Area(ST_Difference(ST_Transform(s.geom, :srid), ST_Transform(parent.geom, :srid)))
           AS outside_m2,
         ST_Area(ST_Transform(s.geom, :srid)) AS area_m2
) o
WHERE s.geom IS NOT NULL AND s.parent_code IS NOT NULL
  AND NOT ST_CoveredBy(s.geom, parent.geom)
  AND (o.outside_m2 > :max_m2 OR o.outside_m2 > :max_share * o.area_m2)
ORDER BY s.feature
"""


def _when(value: datetime) -> str:
    return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M%z")


def check_against_database(conn: Connection, kind: Kind, mapping: dict[str, str],
                           issues: IssueList) -> None:
    """Checks that need PostGIS, on the rows staged in `import_staging`."""
    code_field = mapping.get("code", "code")
    if kind in ("buildings", "streets"):
        conn.execute(text(DERIVE_DISTRICT))
        missing = conn.execute(text(NO_DISTRICT)).scalars().all()
        issues.add_rows(
            [(f, "no current district contains this feature; import the districts first or "
                 f"map the district field with {OPTION_FOR['district_code']}") for f in missing],
            "district_code")
        rows = conn.execute(text(DUPLICATE_UNVERSIONED), {"kind": kind}).all()
        issues.add_rows([(r.feature, f"duplicate code {r.code}: {kind} already holds this code")
                         for r in rows], code_field)
        return
    duplicates = []
    for r in conn.execute(text(DUPLICATE_VERSIONED), {"kind": kind}):
        if r.still_open:
            reason = (f"duplicate code {r.code}: the database already has a version in force "
                      f"since {_when(r.valid_from)}; to add a boundary revision, import the "
                      f"new version with --valid-from later than that")
        else:
            until = _when(r.valid_to) if r.valid_to else "now"
            reason = (f"duplicate code {r.code}: the database already has a version valid "
                      f"{_when(r.valid_from)} – {until} that overlaps this feature's validity")
        duplicates.append((r.feature, reason))
    issues.add_rows(duplicates, code_field)
    parent_field = mapping.get("parent_code", code_field)
    rows = conn.execute(text(MISSING_PARENT)).all()
    issues.add_rows([(r.feature, f"parent {r.parent_level} {r.parent_code} exists neither in "
                                 "the file nor in the database") for r in rows], parent_field)
    rows = conn.execute(text(OUTSIDE_PARENT), {
        "srid": METRIC_SRID, "max_m2": MAX_OUTSIDE_M2, "max_share": MAX_OUTSIDE_SHARE}).all()
    issues.add_rows([
        (r.feature, f"lies partly outside its parent {r.parent_level} {r.parent_code}: "
                    f"{r.outside_m2:,.0f} m² ({r.outside_m2 / r.area_m2:.1%} of its area) "
                    f"outside it; the tolerance is {MAX_OUTSIDE_SHARE:.0%} of the area and "
                    f"{MAX_OUTSIDE_M2:g} m²")
        for r in rows], "geometry")
