"""Importing jurisdictions, grids, buildings and streets from GeoJSON, GeoPackage and
Shapefile; exporting them back (gis/export.py).

A file loads whole or not at all: it is read (gis/import_read.py), converted to WGS84
(gis/crs.py), validated (gis/import_validate.py), staged with COPY and loaded in one
transaction (gis/import_load.py). Anything rejected raises `ImportRejected` with the
report as `detail`, and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import psycopg2
import shapely
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from gis import events, import_load
from gis.crs import geometries_to_wgs84, parse_crs
from gis.errors import DatabaseUnavailable, ImportRejected, InvalidInput
from gis.export import export_layer
from gis.import_read import KINDS, Kind, map_fields, read_source, resolve_crs
from gis.import_validate import (
    Issue,
    IssueList,
    check_against_database,
    check_duplicates_in_file,
    check_geometries,
    normalise_attributes,
)
from gis.joint_zones import rebuild_joint_zones

__all__ = ["KINDS", "ImportOptions", "ImportReport", "Issue", "Kind", "export_layer",
           "import_file"]


@dataclass
class ImportOptions:
    """How to read a file: CRS, layer, field mapping and what to stamp on the rows."""

    crs: str | None = None
    layer: str | None = None
    fields: dict[str, str] = field(default_factory=dict)  # target column -> source field name
    level: str | None = None  # jurisdictions: fixed level when the file has no level field
    valid_from: datetime | None = None
    source: str | None = None  # default: file name
    synthetic: bool = False
    dry_run: bool = False
    actor: str = "cli"


@dataclass
class ImportReport:
    """What happened to a file: counts and every issue (repairs included)."""

    kind: Kind
    path: Path
    features: int
    loaded: int
    issues: list[Issue]
    repaired: int = 0
    revised: int = 0  # stored versions closed by a boundary revision
    dry_run: bool = False

    @property
    def rejected(self) -> list[Issue]:
        """The issues that stop the file from loading."""
        return [issue for issue in self.issues if issue.action == "rejected"]

    def summary(self) -> str:
        """One line: what was loaded, or why nothing was."""
        if self.rejected:
            count = len(self.rejected)
            return (f"rejected: {count} problem{'s' if count != 1 else ''}; "
                    "nothing was loaded")
        extra = []
        if self.repaired:
            extra.append(f"{self.repaired} repaired")
        if self.revised:
            extra.append(f"{self.revised} earlier version{'s' if self.revised != 1 else ''} "
                         "closed")
        note = f" ({', '.join(extra)})" if extra else ""
        if self.dry_run:
            return f"dry run: {self.features} features would load{note}; nothing was loaded"
        return f"loaded {self.loaded} features into {self.kind}{note}"


def import_file(engine: Engine, kind: Kind, path: Path, options: ImportOptions) -> ImportReport:
    """Validate `path` and load it as `kind` in one transaction (nothing on --dry-run).

    Raises ImportRejected (detail: the ImportReport) when any feature or the file is
    rejected; InvalidInput for a bad option (unknown kind, CRS or level).
    """
    if kind not in KINDS:
        raise InvalidInput(f"unknown layer {kind!r}: use {', '.join(KINDS)}", field="kind")
    given_crs = parse_crs(options.crs) if options.crs else None
    path = Path(path)
    report = ImportReport(kind=kind, path=path, features=0, loaded=0, issues=[],
                          dry_run=options.dry_run)
    try:
        source = read_source(path, options.layer)
        report.features = len(source.frame)
        if report.features == 0:
            raise InvalidInput("the file has no features", field="file")
        crs = resolve_crs(source, given_crs)
    except InvalidInput as exc:
        report.issues.append(Issue(None, None, exc.field or "file", _without_name(exc, path)))
        _reject(report)
    frame = source.frame
    mapping, problems = map_fields([str(c) for c in frame.columns if c != frame.geometry.name],
                                   kind, options.fields)
    if problems:
        report.issues.extend(Issue(None, None, name, reason) for name, reason in problems)
        _reject(report)

    table, issues = normalise_attributes(frame, kind, mapping, level=options.level,
                                         valid_from=options.valid_from)
    check_duplicates_in_file(table, kind, issues, mapping.get("code", "code"))
    original = shapely.force_2d(frame.geometry.to_numpy())
    converted = geometries_to_wgs84(original, crs)
    geoms, report.repaired = check_geometries(original, converted, kind, crs, issues)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            import_load.stage(conn, table, geoms)
            check_against_database(conn, kind, mapping, issues)
            report.issues = _ordered(issues)
            if report.rejected:
                _reject(report)  # leaving the block rolls back
            report.revised = import_load.close_revised_versions(conn, kind)
            report.loaded = import_load.insert_rows(
                conn, kind, source=options.source or path.name, synthetic=options.synthetic)
            import_load.append_audit(conn, kind, options.actor, {
                "file": str(path), "layer": source.layer, "crs": crs.name,
                "features": report.features, "repaired": report.repaired,
                "revised": report.revised, "source": options.source or path.name,
            })
            conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # deferred checks now
            if report.loaded or report.revised:
                _announce(conn, kind, report)
            if kind == "jurisdictions" and report.loaded:  # new boundaries: new joint zones
                rebuild_joint_zones(conn)
            if options.dry_run:
                transaction.rollback()
                report.loaded = 0
    except OperationalError as exc:
        if _pgcode(exc) is None:
            raise DatabaseUnavailable(f"cannot import {path.name}: the database is unreachable: "
                                      f"{_db_reason(exc)}") from exc
        _database_refused(report, exc, issues)
    except (DBAPIError, psycopg2.Error) as exc:  # COPY runs on the raw psycopg2 cursor
        _database_refused(report, exc, issues)
    return report


# Tile layers by imported kind (jurisdictions: by level).
_LAYERS = {"grids": ["grids"], "buildings": ["buildings"], "streets": ["lanes"]}
_LEVEL_LAYERS = {"district": "districts", "street": "streets", "community": "communities"}
# What the import touched: the staged features and the stored versions of their codes
# (a revision may shrink a boundary), their districts and (jurisdictions) levels.
_TOUCHED = """
    WITH touched AS (
      SELECT s.geom, s.code, s.district_code, s.level FROM import_staging s
      {revised})
    SELECT ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)), ST_XMax(ST_Extent(geom)),
           ST_YMax(ST_Extent(geom)),
           coalesce(array_agg(DISTINCT coalesce(district_code, left(code, 6)))
                    FILTER (WHERE coalesce(district_code, code) IS NOT NULL), '{{}}'),
           coalesce(array_agg(DISTINCT level) FILTER (WHERE level IS NOT NULL), '{{}}')
    FROM touched
"""
_REVISED = {
    "jurisdictions": "UNION ALL SELECT j.geom, j.code, NULL, j.level FROM jurisdictions j "
                     "JOIN import_staging s ON s.code = j.code",
    "grids": "UNION ALL SELECT g.geom, g.code, NULL, NULL FROM grids g "
             "JOIN import_staging s ON s.code = g.code",
}


def _announce(conn: Connection, kind: Kind, report: ImportReport) -> None:
    """A live event boundaries.changed (gis/events.py): the layers, districts and extent
    the import changed (delivered on commit; never on a dry run, which rolls back)."""
    sql = _TOUCHED.format(revised=_REVISED.get(kind, ""))
    *box, codes, levels = conn.execute(text(sql)).one()
    layers = ([_LEVEL_LAYERS[v] for v in sorted(levels) if v in _LEVEL_LAYERS]
              if kind == "jurisdictions" else _LAYERS.get(kind, []))
    events.emit(conn, "boundaries.changed", codes, kind=kind, layers=layers,
                bbox=events.bbox(*box), loaded=report.loaded, revised=report.revised)


def _ordered(issues: IssueList) -> list[Issue]:
    return sorted(issues.items, key=lambda i: (i.feature or 0, i.action != "rejected"))


def _database_refused(report: ImportReport, exc: DBAPIError | psycopg2.Error,
                      issues: IssueList) -> NoReturn:
    """A constraint the checks did not foresee: report it readably, nothing loaded."""
    report.issues = [*_ordered(issues), Issue(None, None, "database",
                                              f"the database refused the data: {_db_reason(exc)}")]
    report.loaded = 0
    _reject(report, exc)


def _reject(report: ImportReport, cause: BaseException | None = None) -> NoReturn:
    name = report.path.name
    rejected = report.rejected
    if len(rejected) == 1:
        message = f"{name}: {rejected[0].describe()}; nothing was loaded"
        if rejected[0].feature is None:
            message = f"{name}: {rejected[0].reason}; nothing was loaded"
    else:
        message = (f"{name}: {len(rejected)} problems, nothing was loaded; first: "
                   f"{rejected[0].describe()}")
    raise ImportRejected(message, field="file", detail=report) from cause


def _without_name(exc: InvalidInput, path: Path) -> str:
    """Messages from the reader start with the file name; the report names the file anyway."""
    for prefix in (f"{path}: ", f"{path.name}: "):
        if exc.message.startswith(prefix):
            return exc.message[len(prefix):]
    return exc.message


def _pgcode(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "pgcode", None)


def _db_reason(exc: DBAPIError | psycopg2.Error) -> str:
    """PostgreSQL's own message (and detail, but not the failing row's bytes)."""
    error: Any = exc.orig if isinstance(exc, DBAPIError) else exc
    diag: Any = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None)
    detail = getattr(diag, "message_detail", None)
    reason = primary or (str(error).strip().splitlines()[0] if error else str(exc))
    if detail and not detail.startswith("Failing row"):
        reason += f" ({detail})"
    return str(reason)
