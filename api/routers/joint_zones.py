"""Joint (联合哨) zones: planners add hand-drawn zones next to the derived ones."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import ConnDep
from api.security import Planner, actor_of
from gis import joint_zones

router = APIRouter(tags=["joint zones"])


class DrawnZone(BaseModel):
    level: Literal["district", "street"]
    code_a: str = Field(description="one jurisdiction (6-digit district or 9-digit street)")
    code_b: str = Field(description="the other jurisdiction of the same level")
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon, WGS84")


@router.post("/joint-zones", status_code=status.HTTP_201_CREATED,
             summary="Add a hand-drawn joint zone (planners)")
def add_zone(request: Request, conn: ConnDep, user: Planner, body: DrawnZone) -> JSONResponse:
    """Store a drawn zone between two jurisdictions in force; kept across rebuilds of the
    derived zones. 422 names the bad field."""
    zone = joint_zones.add_drawn_zone(conn, level=body.level, code_a=body.code_a,
                                      code_b=body.code_b, geom_geojson=body.geometry,
                                      by=actor_of(request, user))
    conn.commit()
    return JSONResponse(jsonable_encoder(zone), status_code=201)
