"""`gridops import incidents FILE.csv`: a 12345-style export on the demo city. Good rows load
placed (as POST /incidents would place them), with their case state, stage deadlines, report
events and one audit row; every bad row is listed with its line, column and reason; a second
import of the same rows loads nothing new. The library calls run in transactions that are
rolled back, so the shared city keeps only what the command-line test adds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text
from typer.testing import CliRunner

from api.cli import app
from gis import catalog
from gis.audit import Actor
from gis.crs import wgs84_to_gcj02
from gis.democity.city import STRADDLER_NAME
from gis.errors import InvalidInput
from gis.import_incidents import ImportResult, import_incidents
from gis.placement import place, to_wgs84

FIXTURE = Path(__file__).parent / "data" / "incidents_12345.csv"
BEIJING = ZoneInfo("Asia/Shanghai")
ACTOR = Actor("test:import")
# Line of each bad row of the fixture → the column its reason names.
BAD_LINES = {6: "time", 7: "class", 8: "class", 9: "lon", 10: "lat", 11: "lon", 12: "text",
             13: "source", 14: "crs", 15: "lon", 18: "time", 19: "row"}
GOOD_LINES = [2, 3, 4, 5, 16, 20]


@pytest.fixture
def conn(city: Engine) -> Iterator[Connection]:
    """A connection to the shared city inside a transaction that is rolled back."""
    with city.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


def run(conn: Connection, path: Path, tmp_path: Path, **options: object) -> ImportResult:
    return import_incidents(conn, path, rejects_path=tmp_path / "rejects.csv", by=ACTOR,
                            **options)  # type: ignore[arg-type]


def loaded(conn: Connection, result: ImportResult) -> list[dict[str, Any]]:
    assert result.incident_ids is not None
    return [dict(r) for r in conn.execute(text("""
        SELECT i.*, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, c.kind, c.code, c.time_limits
        FROM incidents i JOIN event_classes c ON c.id = i.event_class_id
        WHERE i.id BETWEEN :a AND :b ORDER BY i.id"""),
        {"a": result.incident_ids[0], "b": result.incident_ids[1]}).mappings()]


def test_good_rows_load_placed_and_bad_rows_are_listed(conn: Connection,
                                                       tmp_path: Path) -> None:
    result = run(conn, FIXTURE, tmp_path)
    assert (result.rows, result.loaded, result.rejected, result.duplicates) == (18, 6, 12, 0)
    assert result.summary() == "18 rows: 6 loaded, 12 rejected"
    # Each bad row once per problem column, with its physical line (the quoted line break in
    # line 16 and the skipped line 19 are counted), the reason naming the column.
    assert dict(zip(result.rejects["line"], result.rejects["field"], strict=True)) == BAD_LINES
    reasons = dict(zip(result.rejects["line"], result.rejects["reason"], strict=True))
    assert "is not a date-time" in reasons[6]
    assert reasons[7].startswith("class: unknown event class code '0199'; did you mean 01")
    assert "暴露垃圾" in reasons[8]  # closest names to 乱扔垃圾
    assert "'abc' is not a number" in reasons[9]
    assert "lon and lat look swapped" in reasons[10]
    assert "(121.47, 31.23) in wgs84 is outside the service area" in reasons[11]
    assert reasons[12] == "text: empty"
    assert "'wechat' is unknown" in reasons[13]
    assert "'utm50' is unknown" in reasons[14]
    assert "not a finite number" in reasons[15]
    assert "in the future" in reasons[18]
    assert reasons[19] == "row: expected 9 fields, saw 11"
    written = pd.read_csv(tmp_path / "rejects.csv", dtype=str, keep_default_na=False,
                          encoding="utf-8-sig")
    assert result.rejects_path == tmp_path / "rejects.csv"
    assert [int(v) for v in written["line"]] == sorted(BAD_LINES)
    assert written.loc[written["line"] == "13", "text"].item() == "来源不对"
    assert list(written.columns[:3]) == ["line", "field", "reason"]

    rows = loaded(conn, result)
    assert len(rows) == 6
    expected_status = ["pending", "registered", "pending", "pending", "pending", "registered"]
    assert [r["status"] for r in rows] == expected_status  # grid_worker, street_chief: 立案
    assert [r["source"] for r in rows] == ["12345", "grid_worker", "12345", "citizen", "12345",
                                           "street_chief"]
    assert [r["input_crs"] for r in rows] == ["wgs84", "gcj02", "bd09", "wgs84", "wgs84",
                                              "wgs84"]
    assert [(r["kind"], r["code"]) for r in rows] == [
        ("event", "0101"), ("event", "0501"), ("event", "0101"), ("component", "0109"),
        ("event", "0101"), ("event", "0504")]
    assert rows[4]["description"] == "带逗号和\n换行的描述"
    assert rows[4]["address"] == "东城区, 北新桥"
    assert rows[3]["address"] is None
    assert rows[1]["reported_at"] == datetime(2026, 6, 1, 10, 30, tzinfo=BEIJING)
    assert rows[2]["reported_at"] == datetime(2026, 6, 2, 14, 0, tzinfo=BEIJING)
    # The GCJ-02 row was moved back onto the WGS84 point it came from.
    assert rows[1]["lon"] == pytest.approx(116.417, abs=1e-6)
    assert rows[1]["lat"] == pytest.approx(39.928, abs=1e-6)
    calendar = catalog.current_calendar(conn)
    for row in rows:
        placed = place(conn, to_wgs84(row["lon"], row["lat"]), row["reported_at"])
        segment = placed["street_segment"] or {}
        assert (row["district_code"], row["street_code"], row["community_code"],
                row["grid_code"], row["grid_id"]) == (
            placed["district"]["code"], placed["street"]["code"], placed["community"]["code"],
            placed["grid"]["code"], placed["grid"]["id"])
        assert row["building_id"] == (placed["building"] or {}).get("id")
        assert row["street_id"] == segment.get("id")
        assert row["chief_person_id"] == (segment.get("chief") or {}).get("person_id")
        assert row["is_joint"] == placed["joint"]["is_joint"]
        deadlines = catalog.stage_deadlines(calendar, row["reported_at"], row["time_limits"])
        assert row["deadlines"] == {k: v.isoformat() for k, v in deadlines.items()}
    events = conn.execute(text("""
        SELECT e.action, e.to_status, e.at = i.reported_at, e.data->>'import'
        FROM case_events e JOIN incidents i ON i.id = e.incident_id
        WHERE e.incident_id BETWEEN :a AND :b ORDER BY e.incident_id"""),
        {"a": result.incident_ids[0], "b": result.incident_ids[1]}).all()
    assert [tuple(e) for e in events] == [("report", s, True, FIXTURE.name)
                                          for s in expected_status]
    audit = conn.execute(text("SELECT actor, after FROM audit_log WHERE action = "
                              "'incident.import' ORDER BY id DESC LIMIT 1")).one()
    assert audit[0] == ACTOR.name
    assert audit[1] | {} == {"file": FIXTURE.name, "rows": 18, "loaded": 6, "rejected": 12,
                             "duplicates": 0, "first_id": result.incident_ids[0],
                             "last_id": result.incident_ids[1]}


def test_importing_the_same_rows_again_loads_nothing_new(conn: Connection,
                                                          tmp_path: Path) -> None:
    first = run(conn, FIXTURE, tmp_path)
    again = run(conn, FIXTURE, tmp_path)
    assert (again.loaded, again.duplicates, again.rejected) == (0, 6, 12)
    assert again.incident_ids is None
    assert first.summary() != again.summary()
    assert "6 already loaded (skipped)" in again.summary()


def test_a_report_on_the_straddling_building_is_a_joint_case(conn: Connection,
                                                              tmp_path: Path) -> None:
    lon, lat = conn.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM buildings "
        "WHERE name = :n) b"), {"n": STRADDLER_NAME}).one()
    x, y = wgs84_to_gcj02(np.array([lon]), np.array([lat]))
    path = tmp_path / "joint.csv"
    pd.DataFrame({"time": ["2026-07-01 10:00:00"], "class": ["0101"], "lon": [x[0]],
                  "lat": [y[0]], "text": ["楼门口垃圾"]}).to_csv(path, index=False)
    result = run(conn, path, tmp_path, crs="gcj02")  # no crs column: --crs applies
    assert (result.loaded, result.rejected) == (1, 0)
    row = loaded(conn, result)[0]
    assert row["is_joint"]
    shares = {(j["level"], j["code"]): j["share"] for j in row["joint"]["jurisdictions"]}
    assert shares[("district", "110102")] == pytest.approx(1 / 3, abs=0.01)
    assert shares[("district", "110106")] == pytest.approx(2 / 3, abs=0.01)
    assert row["joint"] == place(conn, to_wgs84(lon, lat), row["reported_at"])["joint"]


def test_a_point_where_a_community_sticks_out_of_its_street_loads_nested(
        conn: Connection, tmp_path: Path) -> None:
    """Where a community sticks out of its street into another one, placement takes the
    grid's chain (codes nest), so the row loads like any other."""
    lon, lat = conn.execute(text("""
        SELECT ST_X(p), ST_Y(p) FROM (
          SELECT ST_PointOnSurface(ST_Difference(c.geom, s.geom)) AS p
          FROM jurisdictions c JOIN jurisdictions s
            ON s.code = left(c.code, 9) AND s.level = 'street' AND s.valid_to IS NULL
          WHERE c.level = 'community' AND c.valid_to IS NULL
            AND ST_Area(ST_Difference(c.geom, s.geom)::geography) > 50) x
        WHERE NOT ST_IsEmpty(p) LIMIT 1""")).one()
    path = tmp_path / "overlap.csv"
    pd.DataFrame({"time": ["2026-07-03 10:00:00"] * 2, "class": ["0101"] * 2,
                  "lon": [lon, 116.366], "lat": [lat, 39.912],
                  "text": ["重叠处", "正常"]}).to_csv(path, index=False)
    result = run(conn, path, tmp_path)
    assert (result.loaded, result.rejected) == (2, 0)
    stored = conn.execute(text("""
        SELECT street_code, community_code, grid_code FROM incidents
        WHERE description = '重叠处' ORDER BY id DESC LIMIT 1""")).one()
    assert stored[1][:9] == stored[0] and stored[2][:12] == stored[1]


def test_chinese_headers_gb18030_and_limits(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    frame = pd.DataFrame({
        "受理时间": ["2026-07-02 09:00:00", "2026-07-02 09:05:00", "2026-07-02 09:10:00",
                 "2026-07-02 09:15:00"],
        "小类": ["机动车乱停放", "暴露垃圾", "井盖", "路灯"],
        "事部件": ["", "事件", "部件", "部件"],
        "经度": ["116.366", "116.366", "116.366", "116.366"],
        "纬度": ["39.912", "39.912", "39.912", "39.912"],
        "诉求内容": ["车辆停在人行道上", "长" * 4001, "井盖丢失", "路灯不亮"],
        "来源": ["市民", "网格员", "12345热线", "微信"],
    })
    frame.to_csv(path, index=False, encoding="gb18030")
    result = run(conn, path, tmp_path)
    assert result.loaded == 1
    reasons = dict(zip(result.rejects["line"], result.rejects["reason"], strict=True))
    assert reasons[3] == "text: 4001 characters; at most 4000"
    assert reasons[4].startswith("class: unknown component class name '井盖'; did you mean")
    assert reasons[5] == ("source: '微信' is unknown (use 12345, grid_worker, street_chief, "
                          "steward, citizen, sensor, other)")
    row = loaded(conn, result)[0]
    assert (row["code"], row["source"], row["status"]) == ("0504", "citizen", "pending")


def test_a_file_without_a_needed_column_is_refused(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "nolat.csv"
    path.write_text("time,class,lon,text\n2026-07-01 10:00:00,0101,116.36,x\n")
    with pytest.raises(InvalidInput) as refused:
        run(conn, path, tmp_path)
    assert refused.value.field == "file"
    assert "missing column(s) lat" in refused.value.message
    with pytest.raises(InvalidInput, match="--crs must be one of"):
        run(conn, FIXTURE, tmp_path, crs="utm50")


def test_command_line_prints_the_summary_and_writes_the_rejects(city_url: str, city: Engine,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace("09:15:00", "09:16:40"),
                               lines[11]]) + "\n", encoding="utf-8")
    rejects = tmp_path / "bad.csv"
    env = {"DATABASE_URL": city_url, "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["import", "incidents", str(path), "--rejects",
                                      str(rejects)], env=env)
    assert result.exit_code == 0, result.output
    assert "small.csv: 2 rows: 1 loaded, 1 rejected" in result.output
    assert "text: empty" in result.output
    assert f"rejected rows written to {rejects}" in result.output.replace("\n", "")
    assert pd.read_csv(rejects, dtype=str)["line"].tolist() == ["3"]
    with city.connect() as conn:
        stored = conn.execute(text(
            "SELECT count(*) FROM incidents WHERE reported_at = :t AND description = :d"),
            {"t": datetime(2026, 6, 1, 9, 16, 40, tzinfo=BEIJING),
             "d": "路边垃圾无人清理"}).scalar()
    assert stored == 1
    only_bad = tmp_path / "bad_only.csv"
    only_bad.write_text("\n".join([lines[0], lines[11]]) + "\n", encoding="utf-8")
    failed = CliRunner().invoke(app, ["import", "incidents", str(only_bad)], env=env)
    assert failed.exit_code == 1, failed.output
    assert "bad_only.csv: 1 row: 0 loaded, 1 rejected" in failed.output, failed.exception
    assert (tmp_path / "bad_only.csv.rejects.csv").exists()
