"""`GET /api/v1/dashboard`: the command page's dashboard (today's counts, open and overdue
cases, 三率, top streets) over the incidents the reader may see. Definitions: gis/dashboard.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api.deps import ConnDep, json_response
from api.security import require_role
from gis import dashboard
from gis.auth import Principal

router = APIRouter(tags=["dashboard"])

DashboardReader = Annotated[Principal, Depends(require_role("admin", "operator", "planner",
                                                            "viewer"))]


@router.get("/dashboard", summary="Today's counts, open and overdue cases, 三率, top streets")
def get_dashboard(
    conn: ConnDep,
    user: DashboardReader,
    days: Annotated[int, Query(ge=1, le=dashboard.MAX_DAYS,
                               description="三率 over the last `days` days' follow-ups")] = 30,
    top: Annotated[int, Query(ge=1, le=dashboard.MAX_TOP,
                              description="how many streets to list")] = 5,
) -> JSONResponse:
    """Counts since 00:00 Beijing time today, the open backlog (pending, overdue, joint,
    supervised), 响应率/解决率/满意率 of recent follow-ups and the streets with the most open
    cases — all within your scope."""
    return json_response(dashboard.dashboard(conn, user, days=days, top=top))
