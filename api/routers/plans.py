"""Grid plans (网格调整方案): create, import, 多网合一 merge, edit, validate, diff, approve,
apply; and the planner page. Domain logic lives in gis/plans*.py."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["grid plans"])
pages_router = APIRouter(include_in_schema=False)  # the planner page, outside /api/v1
