"""A patrol's GPS track: checking a batch of fixes (numpy over the batch's arrays), and
rebuilding the cleaned track and its street coverage (one set-based SQL statement over the
patrol's stored fixes, window functions for the speeds).

Cleaning (docs/patrols.md): a fix whose accuracy is worse than `max_accuracy_m` is dropped
as `accuracy`; among the remaining fixes, ordered by time, a fix is dropped as `speed` when
the speed from the previous one and the speed to the next one both exceed `max_speed_mps`
(a spike that jumps away and back); a fix with a single neighbour is dropped when the speed
to that neighbour is too high. Speeds are metres on the spheroid (geography) over seconds.
Raw fixes are never deleted: each keeps `kept` and `drop_reason`. The track is a
LineStringM of the kept fixes (M = epoch seconds of the fix time), NULL with fewer than two
distinct kept positions; coverage is `gridops_street_coverage` of the patrol's street.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, text

from gis.crs import bd09_to_wgs84, gcj02_to_wgs84
from gis.errors import Conflict, InvalidInput
from gis.features import CHINA_TZ
from gis.placement import POINT_CRS

MAX_FIXES = 1000
CLOCK_SKEW = timedelta(minutes=2)  # how far in the future (database clock) a fix may be
EARLY_FIX = timedelta(minutes=5)  # how long before the patrol's start a fix may be
MAX_ACCURACY_VALUE = 1e6  # metres; anything larger is garbage (and overflows `real`)
METRIC_SRID = 4548  # CGCS2000 3° Gauss-Krüger CM 117°E (Settings.metric_crs)
DROP_REASONS = ("accuracy", "speed")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Fix:
    """One GPS fix as the phone sends it (`crs` wgs84, gcj02 or bd09)."""

    at: datetime
    lon: float
    lat: float
    accuracy_m: float | None = None
    crs: str = "wgs84"


@dataclass(frozen=True)
class Batch:
    """A checked batch: its distinct fixes (the first of each time) in WGS84, as JSON rows
    for `jsonb_to_recordset`, and how many the caller sent."""

    rows_json: str
    distinct: int
    received: int


@dataclass(frozen=True)
class Rebuilt:
    """The patrol after a rebuild: fixes kept and dropped, coverage, track vertices."""

    kept: int
    dropped: int
    coverage: float
    track_points: int


def _micros(fixes: Sequence[Fix]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Epoch microseconds of each fix time (0 where naive) and which are naive."""
    naive = np.array([f.at.tzinfo is None or f.at.utcoffset() is None for f in fixes])
    micros = np.array([0 if bad else (f.at - _EPOCH) // _MICROSECOND
                       for f, bad in zip(fixes, naive, strict=True)], dtype=np.int64)
    return micros, naive


def _problems(checks: list[tuple[npt.NDArray[np.bool_], str, str]]) -> list[dict[str, Any]]:
    """Every (index, field, reason) flagged by the masks, in index then rule order."""
    found = sorted((int(i), f"fixes[{int(i)}].{name}", order, reason)
                   for order, (mask, name, reason) in enumerate(checks)
                   for i in np.flatnonzero(mask))
    seen: set[tuple[int, str]] = set()
    unique: list[dict[str, Any]] = []
    for index, field, _, reason in found:
        if (index, field) not in seen:  # one reason per field (the first rule that fails)
            seen.add((index, field))
            unique.append({"index": index, "field": field, "reason": reason})
    return unique


def check_batch(fixes: Sequence[Fix], *, now: datetime, started_at: datetime,
                ended_at: datetime | None) -> Batch:
    """Check a batch of fixes (all or nothing) and convert them to WGS84.

    InvalidInput naming the first bad fix (`fixes[3].at`, `fixes[0].lon` …; every problem
    in `detail`): a time without an offset, more than CLOCK_SKEW ahead of `now` (the
    database clock), or more than EARLY_FIX before `started_at`; coordinates not finite,
    out of range or swapped; a negative or absurd accuracy; an unknown crs; an empty batch
    or more than MAX_FIXES. Conflict naming the first fix after `ended_at` when the patrol
    has ended (late fixes up to the end are welcome). A time repeated within the batch
    keeps its first fix."""
    if not 1 <= len(fixes) <= MAX_FIXES:
        raise InvalidInput(f"send 1 to {MAX_FIXES} fixes; got {len(fixes)}", field="fixes")
    micros, naive = _micros(fixes)
    lon = np.array([f.lon for f in fixes], dtype=np.float64)
    lat = np.array([f.lat for f in fixes], dtype=np.float64)
    accuracy = np.array([np.nan if f.accuracy_m is None else f.accuracy_m for f in fixes],
                        dtype=np.float64)
    given = np.array([f.accuracy_m is not None for f in fixes])
    crs = np.array([f.crs for f in fixes], dtype=object)

    def us(moment: datetime) -> int:
        return int((moment - _EPOCH) // _MICROSECOND)

    finite = np.isfinite(lon) & np.isfinite(lat)
    swapped = finite & (np.abs(lat) > 90) & (np.abs(lon) <= 90)
    lon_out = finite & ~swapped & (np.abs(lon) > 180)
    lat_out = finite & ~swapped & ~lon_out & (np.abs(lat) > 90)
    earliest = started_at - EARLY_FIX
    problems = _problems([
        (naive, "at", "must be an ISO 8601 datetime with an offset, e.g. "
                      "2026-11-20T16:40:00+08:00"),
        (~naive & (micros > us(now + CLOCK_SKEW)), "at",
         f"is in the future (more than {CLOCK_SKEW.total_seconds():.0f} s ahead of the "
         f"server clock {now.astimezone(CHINA_TZ).isoformat(timespec='seconds')})"),
        (~naive & (micros < us(earliest)), "at",
         "is before the patrol started (started "
         f"{started_at.astimezone(CHINA_TZ).isoformat(timespec='seconds')}; fixes may be "
         f"at most {EARLY_FIX.total_seconds() / 60:.0f} min earlier)"),
        (~np.isfinite(lon), "lon", "must be a finite number"),
        (~np.isfinite(lat), "lat", "must be a finite number"),
        (swapped, "lat", "is out of range: lon and lat look swapped"),
        (lon_out, "lon", "must be within -180..180 (WGS84 degrees, not metres)"),
        (lat_out, "lat", "must be within -90..90 (WGS84 degrees, not metres)"),
        (given & ~(np.isfinite(accuracy) & (accuracy >= 0)
                   & (np.nan_to_num(accuracy) <= MAX_ACCURACY_VALUE)),
         "accuracy_m", f"must be a number from 0 to {MAX_ACCURACY_VALUE:g} metres"),
        (~np.isin(crs, POINT_CRS), "crs", f"must be one of {', '.join(POINT_CRS)}"),
    ])
    if problems:
        worst = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise InvalidInput(f"{worst['field']} {worst['reason']}{more}", field=worst["field"],
                           detail={"problems": problems})
    if ended_at is not None:
        late = np.flatnonzero(micros > us(ended_at))
        if late.size:
            i = int(late[0])
            raise Conflict(
                f"fixes[{i}].at is after the patrol ended "
                f"({ended_at.astimezone(CHINA_TZ).isoformat(timespec='seconds')}); an ended "
                f"patrol takes only fixes up to its end ({late.size} of {len(fixes)} are "
                "later)", field=f"fixes[{i}].at")
    for name, convert in (("gcj02", gcj02_to_wgs84), ("bd09", bd09_to_wgs84)):
        mask = crs == name
        if mask.any():
            lon[mask], lat[mask] = convert(lon[mask], lat[mask])
    _, first = np.unique(micros, return_index=True)  # a repeated time: the first fix stands
    rows = [{"at": fixes[i].at.isoformat(), "lon": float(lon[i]), "lat": float(lat[i]),
             "accuracy_m": None if fixes[i].accuracy_m is None else float(accuracy[i])}
            for i in first.tolist()]
    return Batch(json.dumps(rows), len(rows), len(fixes))


# Store a checked batch; a fix at a time already stored for the patrol is ignored.
_STORE = text("""
    INSERT INTO patrol_points (patrol_id, at, geom, accuracy_m, kept, district_code)
    SELECT :patrol_id, b.at, ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326), b.accuracy_m,
           true, :district
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS b(at timestamptz, lon float8, lat float8, accuracy_m real)
    ON CONFLICT (patrol_id, at) DO NOTHING
""")


def store(conn: Connection, patrol_id: int, district_code: str, batch: Batch) -> int:
    """Insert the batch's fixes (kept until the next rebuild says otherwise); how many were
    new."""
    return int(conn.execute(_STORE, {"patrol_id": patrol_id, "district": district_code,
                                     "rows": batch.rows_json}).rowcount)


# One statement: the verdict of every stored fix (accuracy, then the speed in from the
# previous and out to the next accuracy-kept fix), the changed verdicts written back, the
# track rebuilt from the kept fixes (M = epoch seconds) and the street's coverage.
_REBUILD = text("""
    WITH pts AS (
        SELECT at, geom, coalesce(accuracy_m > :max_accuracy, false) AS inaccurate
        FROM patrol_points WHERE patrol_id = :patrol_id),
    seq AS (
        SELECT at,
               ST_Distance(geom::geography, (lag(geom) OVER w)::geography)
                 / CAST(extract(epoch FROM at - lag(at) OVER w) AS float8) AS v_in,
               ST_Distance(geom::geography, (lead(geom) OVER w)::geography)
                 / CAST(extract(epoch FROM lead(at) OVER w - at) AS float8) AS v_out
        FROM pts WHERE NOT inaccurate
        WINDOW w AS (ORDER BY at)),
    verdict AS (
        SELECT p.at, p.geom,
               CASE WHEN p.inaccurate THEN 'accuracy'
                    WHEN coalesce(s.v_in, s.v_out) IS NOT NULL
                         AND coalesce(s.v_in > :max_speed, true)
                         AND coalesce(s.v_out > :max_speed, true) THEN 'speed'
               END AS reason
        FROM pts p LEFT JOIN seq s ON s.at = p.at),
    marked AS (
        UPDATE patrol_points pp SET kept = v.reason IS NULL, drop_reason = v.reason
        FROM verdict v
        WHERE pp.patrol_id = :patrol_id AND pp.at = v.at
          AND (pp.kept <> (v.reason IS NULL) OR pp.drop_reason IS DISTINCT FROM v.reason)
        RETURNING 1),
    line AS (
        SELECT ST_SetSRID(ST_MakeLine(ST_MakePointM(ST_X(geom), ST_Y(geom),
                                                    CAST(extract(epoch FROM at) AS float8))
                                      ORDER BY at), 4326) AS g,
               count(*) AS n
        FROM verdict WHERE reason IS NULL),
    track AS (SELECT CASE WHEN n >= 2 AND ST_IsValid(g) THEN g END AS g FROM line),
    saved AS (
        UPDATE patrols pa
        SET track = t.g, coverage = gridops_street_coverage(s.geom, t.g, :radius, :srid)
        FROM track t, streets s
        WHERE pa.id = :patrol_id AND s.id = pa.street_id
        RETURNING pa.coverage, coalesce(ST_NPoints(pa.track), 0) AS track_points)
    SELECT (SELECT count(*) FROM verdict WHERE reason IS NULL) AS kept,
           (SELECT count(*) FROM verdict WHERE reason IS NOT NULL) AS dropped,
           (SELECT count(*) FROM marked) AS changed,
           saved.coverage, saved.track_points
    FROM saved
""")


def rebuild(conn: Connection, patrol_id: int, *, max_accuracy_m: float,
            max_speed_mps: float, radius_m: float, srid: int = METRIC_SRID) -> Rebuilt:
    """Re-clean every stored fix of the patrol, rebuild its track and coverage (caller
    holds the patrol's row lock and commits)."""
    row = conn.execute(_REBUILD, {"patrol_id": patrol_id, "max_accuracy": max_accuracy_m,
                                  "max_speed": max_speed_mps, "radius": radius_m,
                                  "srid": srid}).one()
    return Rebuilt(int(row.kept), int(row.dropped), float(row.coverage or 0.0),
                   int(row.track_points))


def counts(conn: Connection, patrol_id: int) -> Rebuilt:
    """The patrol as it stands (no rebuild): fixes kept and dropped, coverage, vertices."""
    row = conn.execute(text("""
        SELECT (SELECT count(*) FILTER (WHERE kept) FROM patrol_points
                WHERE patrol_id = :id) AS kept,
               (SELECT count(*) FILTER (WHERE NOT kept) FROM patrol_points
                WHERE patrol_id = :id) AS dropped,
               coverage, coalesce(ST_NPoints(track), 0) AS track_points
        FROM patrols WHERE id = :id
    """), {"id": patrol_id}).one()
    return Rebuilt(int(row.kept), int(row.dropped), float(row.coverage or 0.0),
                   int(row.track_points))
