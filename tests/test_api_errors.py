"""One error table: domain errors, bad requests and database failures become clear 4xx/503
answers, never a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.deps import ConnDep
from api.errors import STATUS_CODES, status_for
from api.settings import Settings
from gis import errors, migrate
from tests.auth_world import sign_in


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """The real app plus two probe routes that raise what the domain and database raise."""
    application = create_app(settings)

    @application.get("/probe/domain/{kind}")
    def raise_domain_error(kind: str) -> None:
        cls = getattr(errors, kind)
        raise cls(f"{kind} happened to team_id 7", field="team_id", detail={"row": 3})

    @application.get("/probe/sql")
    def run_sql(conn: ConnDep, value: str) -> int | None:
        return conn.scalar(text("SELECT CAST(:value AS integer)"), {"value": value})

    return application


@pytest.fixture
def client(app: FastAPI, engine: Engine) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        sign_in(test_client, engine)
        yield test_client


@pytest.mark.parametrize(
    ("kind", "status"),
    [("InvalidInput", 422), ("NotFound", 404), ("Conflict", 409), ("ImportRejected", 422),
     ("GridOpsError", 400)],
)
def test_domain_errors_map_to_status_and_name_the_field(
    client: TestClient, kind: str, status: int
) -> None:
    response = client.get(f"/probe/domain/{kind}")
    assert response.status_code == status
    body = response.json()
    assert body["detail"] == [{
        "loc": ["body", "team_id"], "field": "team_id",
        "msg": f"{kind} happened to team_id 7",
        "type": {"InvalidInput": "invalid_input", "NotFound": "not_found",
                 "Conflict": "conflict", "ImportRejected": "import_rejected",
                 "GridOpsError": "grid_ops_error"}[kind],
    }]
    assert body["report"] == {"row": 3}


def test_database_unavailable_from_the_domain_is_503(client: TestClient) -> None:
    response = client.get("/probe/domain/DatabaseUnavailable")
    assert response.status_code == 503
    assert response.json() == {
        "detail": "database unavailable: DatabaseUnavailable happened to team_id 7"}
    assert response.headers["retry-after"]


def test_the_table_covers_every_domain_error() -> None:
    domain = [cls for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, errors.GridOpsError)]
    for cls in domain:
        assert status_for(cls("x")) < 500 or cls in (
            errors.DatabaseUnavailable, errors.ClusterError, errors.MissingSystemPackages,
            errors.MissingExtension)
    assert STATUS_CODES[errors.InvalidInput] == 422
    assert status_for(errors.MissingExtension("x")) == 503


def test_request_validation_errors_keep_fastapi_shape_and_name_the_field(
    client: TestClient,
) -> None:
    response = client.get("/api/v1/jurisdictions", params={"limit": "x", "level": "town"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert {entry["field"] for entry in detail} == {"limit", "level"}
    for entry in detail:
        assert entry["loc"] == ["query", entry["field"]]
        assert entry["msg"].startswith(f"{entry['field']}: ")
        assert entry["type"] and "input" in entry
    missing = client.get("/probe/sql")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["msg"] == "value: Field required"


def test_a_value_postgresql_rejects_is_422_not_500(client: TestClient) -> None:
    response = client.get("/probe/sql", params={"value": "12"})
    assert response.status_code == 200 and response.json() == 12
    response = client.get("/probe/sql", params={"value": "twelve"})
    assert response.status_code == 422
    msg = response.json()["detail"][0]["msg"]
    assert msg == 'invalid input syntax for type integer: "twelve"'


def test_unknown_routes_keep_the_plain_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_database_down_is_503_with_a_readable_detail(tmp_path: Path) -> None:
    url = f"postgresql://gridops:secret@127.0.0.1:{closed_port()}/gridops"
    settings = Settings(env="test", database_url=url, home=tmp_path / "home")
    with TestClient(create_app(settings)) as client:
        for path in ("/api/v1/jurisdictions", "/api/v1/grids/110102020001001"):
            response = client.get(path)
            assert response.status_code == 503
            detail = response.json()["detail"]
            assert detail.startswith("database unavailable: ")
            assert "127.0.0.1" in detail and "secret" not in detail
            assert response.headers["retry-after"]
        assert client.get("/login").status_code == 200  # the login page needs no database
        assert client.get("/", follow_redirects=False).status_code == 303  # to /login


def test_local_cluster_not_set_up_is_503_naming_the_fix(tmp_path: Path) -> None:
    settings = Settings(env="test", database_url=None, home=tmp_path / "fresh-home")
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/jurisdictions")
        assert response.status_code == 503
        assert "gridops db up" in response.json()["detail"]
        health = client.get("/api/v1/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"


def test_statement_timeout_is_503_with_a_readable_message(
    settings: Settings, engine: Engine
) -> None:
    quick = settings.model_copy(update={"statement_timeout_ms": 200})
    with TestClient(create_app(quick)) as client, engine.begin() as blocker:
        sign_in(client, engine)
        # Another session holds the table: the API's query waits past its timeout.
        blocker.execute(text("LOCK TABLE jurisdictions IN ACCESS EXCLUSIVE MODE"))
        response = client.get("/api/v1/jurisdictions")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail.startswith("database unavailable: the query took longer than the "
                             "statement timeout (200 ms)")


def test_missing_schema_is_503_telling_to_migrate(
    settings: Settings, db_url: str, engine: Engine
) -> None:
    with TestClient(create_app(settings)) as client:
        sign_in(client, engine)
        engine.dispose()
        migrate.downgrade(db_url, "base")
        response = client.get("/api/v1/grids")
    assert response.status_code == 503
    assert "run `gridops db migrate`" in response.json()["detail"]
