"""The app starts from explicit settings; health, OpenAPI docs and the map page are served."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.routers.pages import INSTALL_HINT, swagger_installed
from api.settings import Settings
from gis import migrate
from tests.auth_world import sign_in


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        sign_in(test_client, engine)  # the map page needs a signed-in user
        yield test_client


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def down_settings(tmp_path: Path) -> Settings:
    """Settings whose database URL points at a closed port."""
    url = f"postgresql://gridops:secret@127.0.0.1:{closed_port()}/gridops"
    return Settings(env="test", database_url=url, home=tmp_path / "home")


def test_health_reports_versions_and_migration_head(client: TestClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["postgresql"].startswith("15")
    assert body["postgis"].startswith("3.")
    assert body["pgrouting"].startswith("3.")
    head = migrate.head_revision()
    assert head is not None
    assert body["migration"] == {"current": head, "head": head}
    assert "detail" not in body


def test_health_is_503_not_500_when_the_database_is_unreachable(tmp_path: Path) -> None:
    with TestClient(create_app(down_settings(tmp_path))) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["detail"].startswith("database unavailable: ")
    assert "refused" in body["detail"] or "connect" in body["detail"]
    assert response.headers["retry-after"]


def test_health_is_degraded_when_the_schema_is_behind_the_code(
    settings: Settings, db_url: str
) -> None:
    migrate.downgrade(db_url, "base")
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["migration"] == {"current": None, "head": migrate.head_revision()}
    assert "gridops db migrate" in body["detail"]


def test_openapi_document_and_docs_page(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "GridOps API"
    assert {"/api/v1/health", "/api/v1/jurisdictions", "/api/v1/jurisdictions/{code}",
            "/api/v1/grids", "/api/v1/grids/{code}"} <= set(schema["paths"])
    assert "/" not in schema["paths"]  # pages stay out of the API description
    params = {p["name"] for p in schema["paths"]["/api/v1/jurisdictions"]["get"]["parameters"]}
    assert {"level", "parent", "bbox", "at", "limit", "after"} <= params
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text  # no CDN
    if swagger_installed():
        assert '"/vendor/swagger-ui/swagger-ui-bundle.js"' in docs.text
        assert client.get("/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
        assert client.get("/vendor/swagger-ui/swagger-ui.css").status_code == 200
    else:
        assert "npm ci --prefix web" in docs.text


def test_map_page_has_the_map_container_and_local_assets(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'id="map"' in html
    assert 'lang="zh-CN"' in html
    assert 'id="lang-toggle"' in html
    assert "/static/command/main.js" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    assert client.get("/static/command/main.js").status_code == 200
    layers = client.get("/static/command/map.js")
    assert layers.status_code == 200 and "/tiles/" in layers.text  # vector tiles
    live = client.get("/static/command/live.js")
    assert live.status_code == 200 and "/api/v1/events" in live.text  # the live feed
    assert client.get("/static/command/command.css").status_code == 200


def test_maplibre_is_served_locally(client: TestClient) -> None:
    html = client.get("/").text
    assert '<script src="/vendor/maplibre-gl/maplibre-gl.js">' in html
    script = client.get("/vendor/maplibre-gl/maplibre-gl.js")
    assert script.status_code == 200
    assert "maplibre" in script.text[:5000].lower()
    assert client.get("/vendor/maplibre-gl/maplibre-gl.css").status_code == 200


def notice_tag(html: str) -> str:
    """The opening tag of the 'MapLibre missing' notice."""
    match = re.search(r'<div id="maplibre-missing"[^>]*>', html)
    assert match is not None
    return match.group(0)


def render_index(settings: Settings, **context: object) -> str:
    """The map page template rendered with `context` over the defaults."""
    templates = create_app(settings).state.templates
    defaults = {"api_base": "/api/v1", "basemap_url": None, "maplibre_installed": True,
                "install_hint": INSTALL_HINT, "page_max": 1000, "csrf_cookie": "gridops_csrf",
                "login_path": "/login"}
    return str(templates.get_template("index.html").render(**{**defaults, **context}))


def test_map_page_explains_how_to_install_maplibre_when_missing(settings: Settings) -> None:
    html = render_index(settings, maplibre_installed=False)
    assert "/vendor/maplibre-gl" not in html
    assert "run `make demo` / `npm ci --prefix web`" in html
    assert "hidden" not in notice_tag(html)
    assert "hidden" in notice_tag(render_index(settings, maplibre_installed=True))


def test_map_page_uses_a_raster_basemap_only_when_configured(
    settings: Settings, client: TestClient
) -> None:
    html = render_index(settings, basemap_url="http://tiles.example.test/{z}/{x}/{y}.png")
    assert '"basemapUrl": "http://tiles.example.test/{z}/{x}/{y}.png"' in html
    assert '"basemapUrl": null' in client.get("/").text
