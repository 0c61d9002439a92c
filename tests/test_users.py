"""User accounts: argon2 hashes, validation, audit in the same transaction, the CLI, and the
production guards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis import users
from gis.audit import Actor
from gis.errors import Conflict, InvalidInput, NotFound

TEST = Actor("test")
SQUARE = "MULTIPOLYGON(((116.3 39.9,116.31 39.9,116.31 39.91,116.3 39.91,116.3 39.9)))"


@pytest.fixture
def xicheng(engine: Engine) -> Engine:
    """A database holding the district 西城 (110102), for scopes."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) VALUES "
                          "('district', '110102', '西城区', ST_GeomFromText(:w, 4326))"),
                     {"w": SQUARE})
    return engine


def audit_actions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT action FROM audit_log ORDER BY id")))


def test_add_hashes_with_argon2_and_audits(xicheng: Engine) -> None:
    with xicheng.begin() as conn:
        user = users.add_user(conn, username="op_xc", password="correct horse", by=TEST,
                              roles=["operator", "viewer"], scope_codes=["110102"])
    assert user["roles"] == ["operator", "viewer"] and user["scope_codes"] == ["110102"]
    assert "password_hash" not in user
    with xicheng.connect() as conn:
        stored = conn.scalar(text("SELECT password_hash FROM users WHERE username = 'op_xc'"))
    assert stored.startswith("$argon2id$")
    assert users.verify_password(stored, "correct horse")
    assert not users.verify_password(stored, "wrong horse")
    assert not users.verify_password("not a hash", "correct horse")
    assert audit_actions(xicheng) == ["user.add"]


@pytest.mark.parametrize(
    ("kwargs", "field", "error"),
    [
        ({"username": "x"}, "username", InvalidInput),
        ({"password": "short"}, "password", InvalidInput),
        ({"roles": ["boss"]}, "role", InvalidInput),
        ({"roles": []}, "role", InvalidInput),
        ({"scope_codes": ["110105"]}, "scope", InvalidInput),
        ({"roles": ["dispatcher"]}, "department", InvalidInput),
        ({"roles": ["dispatcher"], "department_code": "nope"}, "department", InvalidInput),
        ({"roles": ["street_chief"]}, "person", InvalidInput),
        ({"roles": ["street_chief"], "person_id": 99}, "person", InvalidInput),
        ({"username": "taken"}, "username", Conflict),
    ],
)
def test_bad_users_are_refused_naming_the_field_and_write_nothing(
    xicheng: Engine, kwargs: dict[str, object], field: str, error: type[Exception]
) -> None:
    with xicheng.begin() as conn:
        users.add_user(conn, username="taken", password="long enough", roles=["viewer"],
                       by=TEST)
    spec: dict[str, object] = {"username": "new_user", "password": "long enough",
                               "roles": ["viewer"], "by": TEST, **kwargs}
    with pytest.raises(error) as raised, xicheng.begin() as conn:
        users.add_user(conn, **spec)  # type: ignore[arg-type]
    assert raised.value.field == field  # type: ignore[attr-defined]
    with xicheng.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM users")) == 1
    assert audit_actions(xicheng) == ["user.add"]  # the failed add wrote no audit row


def test_passwd_and_disable_are_audited(xicheng: Engine) -> None:
    with xicheng.begin() as conn:
        users.add_user(conn, username="chief", password="long enough", roles=["viewer"],
                       by=TEST)
        users.set_password(conn, "chief", "another long one", by=TEST)
        users.disable_user(conn, "chief", by=TEST)
    with xicheng.connect() as conn:
        row = conn.execute(text("SELECT password_hash, is_active FROM users")).one()
    assert users.verify_password(row.password_hash, "another long one")
    assert row.is_active is False
    assert audit_actions(xicheng) == ["user.add", "user.passwd", "user.disable"]
    with pytest.raises(NotFound), xicheng.begin() as conn:
        users.disable_user(conn, "nobody", by=TEST)


def test_cli_users(db_url: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "api.cli", "users", *args],
                              env={**os.environ, "DATABASE_URL": db_url}, capture_output=True,
                              text=True, timeout=120, check=False)

    created = cli("add", "planner1", "--role", "planner,viewer", "--password", "long enough")
    assert created.returncode == 0, created.stderr
    assert "user planner1 created" in created.stdout
    refused = cli("add", "bad", "--role", "boss", "--password", "long enough")
    assert refused.returncode == 1 and "role: boss" in refused.stderr
    listed = cli("list")
    assert "planner1" in listed.stdout and "planner, viewer" in listed.stdout
    assert "argon2" not in listed.stdout
    assert cli("disable", "planner1").returncode == 0
    assert "no" in cli("list").stdout


@pytest.mark.parametrize("secret", [None, "changeme", "short-secret"])
def test_production_refuses_a_default_or_missing_secret(secret: str | None) -> None:
    with pytest.raises(ValidationError, match="GRIDOPS_SECRET_KEY"):
        Settings(env="production", secret_key=secret, database_url="postgresql://x/y")


def test_production_refuses_to_start_with_demo_users(settings: Settings, engine: Engine) -> None:
    production = settings.model_copy(update={"env": "production"})
    production = Settings(**{**production.model_dump(), "secret_key": "k" * 48})
    with engine.begin() as conn:
        users.add_user(conn, username="demo_op", password="demo-demo", roles=["operator"],
                       is_demo=True, by=TEST)
    with pytest.raises(RuntimeError, match="demo users present"), \
            TestClient(create_app(production)):
        pass
    with engine.begin() as conn:
        users.disable_user(conn, "demo_op", by=TEST)
    with TestClient(create_app(production)) as client:
        assert client.get("/api/v1/health").status_code == 200
