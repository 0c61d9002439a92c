"""HTML pages: the map (`GET /`) and the API docs (`GET /docs`). Front-end assets come from
web/node_modules (npm) and are served locally, never from a CDN."""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api.deps import SettingsDep, TemplatesDep
from api.settings import PROJECT_ROOT

WEB_DIR = PROJECT_ROOT / "web"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
MAPLIBRE_DIR = WEB_DIR / "node_modules" / "maplibre-gl" / "dist"
SWAGGER_DIR = WEB_DIR / "node_modules" / "swagger-ui-dist"
INSTALL_HINT = "run `make demo` / `npm ci --prefix web`"

router = APIRouter(include_in_schema=False)


def maplibre_installed(folder: Path = MAPLIBRE_DIR) -> bool:
    """Whether MapLibre GL JS is installed under web/node_modules."""
    return (folder / "maplibre-gl.js").is_file()


def swagger_installed(folder: Path = SWAGGER_DIR) -> bool:
    """Whether Swagger UI is installed under web/node_modules."""
    return (folder / "swagger-ui-bundle.js").is_file()


@router.get("/", response_class=HTMLResponse)
def index(request: Request, settings: SettingsDep, templates: TemplatesDep) -> HTMLResponse:
    """The boundary map: districts, streets, communities and grids from /api/v1."""
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "api_base": "/api/v1",
            "basemap_url": getattr(settings, "basemap_url", None),
            "maplibre_installed": maplibre_installed(),
            "install_hint": INSTALL_HINT,
            "page_max": settings.page_max,
        },
    )


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    """Swagger UI for the OpenAPI document, with its assets from /vendor/swagger-ui."""
    title = f"{request.app.title} — docs"
    if not swagger_installed():
        return HTMLResponse(
            f"<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{escape(title)}"
            f"</title><h1>{escape(title)}</h1><p>Swagger UI is not installed: "
            f"{escape(INSTALL_HINT)}. The API description is at "
            "<a href=\"/openapi.json\">/openapi.json</a>.</p></html>"
        )
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=title,
        swagger_js_url="/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/vendor/swagger-ui/favicon-32x32.png",
    )
