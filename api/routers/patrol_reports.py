"""(stub: being written)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
pages_router = APIRouter(include_in_schema=False)  # HTML pages, outside /api/v1
