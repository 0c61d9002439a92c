"""Boundary dispute reports (边界争议报告). Domain logic lives in gis/boundary_report*.py."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["reports"])
