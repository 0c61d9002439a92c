"""`GET /api/v1/locate`: where a point falls — district, street, community, grid, building,
街巷 segment and chief, joint (联合哨) jurisdictions. No side effects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ConnDep
from api.routers.boundaries import AtQuery
from api.security import CurrentUser
from gis import features, placement
from gis.placement import PointCrs

router = APIRouter(tags=["placement"])


@router.get("/locate", summary="Place a point: jurisdictions, grid, building, street chief, "
                               "joint case")
def locate(
    conn: ConnDep,
    _user: CurrentUser,
    lon: Annotated[float, Query(description="longitude in `crs`", examples=[116.3355])],
    lat: Annotated[float, Query(description="latitude in `crs`", examples=[39.8748])],
    crs: Annotated[PointCrs, Query(description="wgs84 (GPS), gcj02 (Amap, WeChat) or "
                                               "bd09 (Baidu)")] = "wgs84",
    at: AtQuery = None,
) -> dict[str, Any]:
    """The placement of a point at `at` (default now), as stored on an incident."""
    point = placement.to_wgs84(lon, lat, crs)
    return placement.place(conn, point, features.parse_at(at))
