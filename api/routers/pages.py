"""HTML pages: the login page (`GET /login`), the command page (`GET /`, signed-in users
only: map, incident list, card, dashboard, live feed — ES modules in web/static/command/),
the mobile patrol page of 街巷长 and 小巷管家 (`GET /patrol`, ES modules in
web/static/patrol/, with its offline service worker at `GET /patrol/sw.js`) and the API
docs (`GET /docs`, public). Front-end assets come from web/node_modules (npm)
and are served locally, never from a CDN."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from api.deps import SettingsDep, TemplatesDep
from api.security import CSRF_COOKIE, OptionalUser
from api.settings import PROJECT_ROOT

WEB_DIR = PROJECT_ROOT / "web"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
MAPLIBRE_DIR = WEB_DIR / "node_modules" / "maplibre-gl" / "dist"
SWAGGER_DIR = WEB_DIR / "node_modules" / "swagger-ui-dist"
INSTALL_HINT = "run `make demo` / `npm ci --prefix web`"
LOGIN_PATH = "/login"
PATROL_PATH = "/patrol"
PATROL_ROLE = "street_chief"  # 街巷长 and 小巷管家 sign in with this role
PATROL_SW = STATIC_DIR / "patrol" / "sw.js"
# A same-site path: one leading "/" (not "//" or "/\\", which browsers read as another
# host), no control characters (browsers drop tabs and newlines, "/\t/x" -> "//x").
_SAFE_NEXT = re.compile(r"/(?![/\\])[^\x00-\x1f\x7f\\]{0,2000}")
NO_STORE = {"Cache-Control": "no-store"}  # pages naming the user must not outlive a logout

router = APIRouter(include_in_schema=False)


def maplibre_installed(folder: Path = MAPLIBRE_DIR) -> bool:
    """Whether MapLibre GL JS is installed under web/node_modules."""
    return (folder / "maplibre-gl.js").is_file()


def swagger_installed(folder: Path = SWAGGER_DIR) -> bool:
    """Whether Swagger UI is installed under web/node_modules."""
    return (folder / "swagger-ui-bundle.js").is_file()


def safe_next(value: str | None) -> str:
    """Where to go after login: `value` if it is a same-site relative path, else "/"."""
    return value if value and _SAFE_NEXT.fullmatch(value) else "/"


def login_url(next_path: str) -> str:
    """The login page, coming back to `next_path` afterwards."""
    return f"{LOGIN_PATH}?{urlencode({'next': next_path}, safe='/')}"


@router.get(LOGIN_PATH, response_class=HTMLResponse)
def login(request: Request, templates: TemplatesDep,
          next_path: Annotated[str | None, Query(alias="next")] = None) -> Response:
    """The sign-in form; it posts JSON to /api/v1/auth/login (no database needed to render)."""
    return templates.TemplateResponse(
        request, "login.html",
        {"config": {"apiBase": "/api/v1", "next": safe_next(next_path), "csrfCookie": CSRF_COOKIE}},
        headers=NO_STORE)


def _here(request: Request) -> str:
    """This page's path and query (to come back to after signing in)."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


@router.get("/", response_class=HTMLResponse)
def index(request: Request, settings: SettingsDep, templates: TemplatesDep,
          user: OptionalUser) -> Response:
    """The command page (vector-tile map, incident list and card, dashboard, live feed)
    for a signed-in user; a user whose only role is street_chief goes to the patrol page,
    anyone not signed in to the login page (303)."""
    if user is None:
        return RedirectResponse(login_url(_here(request)), status_code=303, headers=NO_STORE)
    if user.roles == {PATROL_ROLE}:  # a 街巷长 / 小巷管家 and nothing else: the phone page
        return RedirectResponse(PATROL_PATH, status_code=303, headers=NO_STORE)
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "api_base": "/api/v1",
            "basemap_url": getattr(settings, "basemap_url", None),
            "maplibre_installed": maplibre_installed(),
            "install_hint": INSTALL_HINT,
            "page_max": settings.page_max,
            "user": user,
            "csrf_cookie": CSRF_COOKIE,
            "login_path": LOGIN_PATH,
        },
        headers=NO_STORE,
    )


@router.get(PATROL_PATH, response_class=HTMLResponse)
def patrol(request: Request, settings: SettingsDep, templates: TemplatesDep,
           user: OptionalUser) -> Response:
    """The mobile patrol page (日巡) for a signed-in 街巷长 or 小巷管家 (role street_chief);
    anyone else signed in gets a page saying it is not for them, anonymous visitors the
    login page (303)."""
    if user is None:
        return RedirectResponse(login_url(_here(request)), status_code=303, headers=NO_STORE)
    allowed = PATROL_ROLE in user.roles
    return templates.TemplateResponse(
        request,
        "patrol.html",
        {
            "allowed": allowed,
            "maplibre_installed": maplibre_installed(),
            "install_hint": INSTALL_HINT,
            "user": user,
            "config": {
                "apiBase": "/api/v1",
                "csrfCookie": CSRF_COOKIE,
                "loginPath": LOGIN_PATH,
                "userId": user.user_id,
                "userName": user.display_name or user.username,
                "allowed": allowed,
                "serviceWorker": f"{PATROL_PATH}/sw.js",
                "photoMaxBytes": settings.photo_max_bytes,
            },
        },
        headers=NO_STORE,
    )


@router.get(f"{PATROL_PATH}/sw.js")
def patrol_service_worker() -> FileResponse:
    """The patrol page's service worker: keeps the page and its scripts for reloads while
    offline. Served here (not under /static) so that it may control `/patrol`."""
    return FileResponse(PATROL_SW, media_type="text/javascript",
                        headers={"Service-Worker-Allowed": PATROL_PATH,
                                 "Cache-Control": "no-cache"})


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
