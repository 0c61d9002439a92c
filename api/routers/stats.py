"""Evaluation (考核): indicator tables (JSON or CSV), street offices' ratings of departments
(reverse evaluation) and follow-up results (回访). Definitions: docs/evaluation.md."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import ConnDep, IncidentId, SettingsDep
from api.security import Commander, actor_of, require_role
from gis import features, stats
from gis.auth import Principal
from gis.errors import InvalidInput
from gis.stats import GroupBy, Satisfaction

router = APIRouter(tags=["stats"])

StatsReader = Annotated[Principal, Depends(require_role("admin", "operator", "planner",
                                                        "viewer"))]
RatingReader = Annotated[Principal, Depends(require_role("admin", "operator", "planner",
                                                          "viewer", "dispatcher"))]
DepartmentId = Annotated[int, Path(ge=1, description="department id")]
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def csv_bytes(header: tuple[str, ...], rows: list[dict[str, Any]]) -> bytes:
    """CSV with a header row, UTF-8 with a byte order mark (so Excel reads the Chinese);
    null cells are empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if row[name] is None else row[name] for name in header])
    return out.getvalue().encode("utf-8-sig")


def _instant(value: str, field: str) -> datetime:
    """A window bound: an ISO date or datetime (no offset = Beijing); never empty."""
    if not value.strip():
        raise InvalidInput(f"{field} is required: an ISO date or datetime such as 2025-03-01",
                           field=field)
    return features.parse_at(value, field)


@router.get("/stats", summary="Evaluation indicators (考核) per group, as JSON or CSV",
            responses={200: {"content": {"text/csv": {}},
                             "description": "rows per group (`format=csv`: a CSV file)"}})
def get_stats(
    conn: ConnDep,
    settings: SettingsDep,
    user: StatsReader,
    by: Annotated[GroupBy, Query(description="group by department, street, grid, team or "
                                             "event_class")],
    date_from: Annotated[str, Query(alias="from", description="window start (inclusive), "
                                    "ISO date or datetime; no offset = Beijing")],
    date_to: Annotated[str, Query(alias="to", description="window end (exclusive); at most "
                                  f"{stats.MAX_WINDOW_DAYS} days after `from`")],
    district: Annotated[str | None, Query(description="only this district (6 digits)")] = None,
    output: Annotated[Literal["json", "csv"], Query(
        alias="format", description="json (default) or csv (UTF-8 with BOM, for Excel)")] = "json",
) -> Response:
    """上报/立案/派遣/结案 counts and 按期处置率, 按期结案率, 返工率, 延期率, 准确派遣率, 报到率,
    median arrival, 响应率/解决率/满意率 over the incidents reported in [from, to) in your
    scope; by=department adds the street offices' rating and the composite score."""
    start = _instant(date_from, "from")
    end = _instant(date_to, "to")
    code = features.opt_code(district, ("district",), "district")
    weight = settings.reverse_rating_weight
    rows = stats.stats(conn, user, by, start, end, code, weight=weight)
    if output == "csv":
        name = f"stats-{by}-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        return Response(csv_bytes(stats.columns(by), rows), media_type=CSV_MEDIA_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    body: dict[str, Any] = {"by": by, "from": start, "to": end, "district": code,
                            "columns": stats.columns(by), "rows": rows}
    if by == "department":
        body["reverse_rating_weight"] = weight
    return JSONResponse(jsonable_encoder(body))


class RatingIn(BaseModel):
    """A street office's monthly rating of a department (反向考核)."""

    street_code: str = Field(description="the rating street office (街道), 9 digits",
                             examples=["110101001"])
    period: str = Field(description="the month rated, YYYY-MM", examples=["2025-03"])
    score: float = Field(ge=0, le=100, description="0 (worst) to 100 (best)")
    comment: str | None = Field(default=None, max_length=stats.MAX_TEXT)


class Rating(BaseModel):
    id: int
    department_id: int
    street_code: str
    period: str
    score: float
    comment: str | None
    rated_by: int | None
    rated_at: datetime


@router.post("/departments/{department_id}/ratings", response_model=Rating,
             status_code=status.HTTP_201_CREATED,
             summary="Rate a department for a month (street offices' reverse evaluation)",
             responses={200: {"description": "replaced the street's earlier rating of "
                                             "that month"}})
def rate_department(request: Request, response: Response, conn: ConnDep, user: Commander,
                    department_id: DepartmentId, body: RatingIn) -> Rating:
    """One rating per (department, street, month); admins, or operators whose scope holds
    the street or its district. Rating again replaces the earlier one (200)."""
    row = stats.rate_department(conn, department_id, body.street_code, body.period,
                                body.score, body.comment, actor_of(request, user), user)
    conn.commit()
    if not row.pop("created"):
        response.status_code = status.HTTP_200_OK
    return Rating(**row)


class Ratings(BaseModel):
    department: dict[str, Any]
    ratings: list[Rating]
    average: float | None


@router.get("/departments/{department_id}/ratings", response_model=Ratings,
            summary="A department's ratings by street offices")
def list_ratings(conn: ConnDep, user: RatingReader, department_id: DepartmentId) -> Ratings:
    """The ratings you may read (your scope's streets; a dispatcher: their own department),
    newest month first, with their mean."""
    result = stats.list_ratings(conn, user, department_id)
    return Ratings(department=result["department"],
                   ratings=[Rating(**r) for r in result["ratings"]], average=result["average"])


class FollowupIn(BaseModel):
    """The result of the follow-up call (回访) to the reporter of a closed case."""

    responded: bool = Field(description="the reporter was contacted about the case (响应)")
    resolved: bool = Field(description="the problem is solved (解决)")
    satisfaction: Satisfaction = Field(description="满意 / 基本满意 / 不满意")
    note: str | None = Field(default=None, max_length=stats.MAX_TEXT)


class Followup(BaseModel):
    incident_id: int
    at: datetime
    responded: bool
    resolved: bool
    satisfaction: str
    note: str | None
    recorded_by: int | None


@router.post("/incidents/{incident_id}/followup", response_model=Followup,
             status_code=status.HTTP_201_CREATED,
             summary="Record the follow-up (回访) of a closed incident",
             responses={200: {"description": "replaced the earlier follow-up"},
                        404: {"description": "no such incident, or not in your scope"},
                        409: {"description": "the incident is not closed"}})
def record_followup(request: Request, response: Response, conn: ConnDep, user: Commander,
                    incident_id: IncidentId, body: FollowupIn) -> Followup:
    """Responded, resolved and satisfaction of a closed case in your scope (feeds 响应率,
    解决率, 满意率); recording again replaces the earlier result (200)."""
    row = stats.record_followup(conn, incident_id, body.responded, body.resolved,
                                body.satisfaction, body.note, actor_of(request, user), user)
    conn.commit()
    if not row.pop("created"):
        response.status_code = status.HTTP_200_OK
    return Followup(**row)
