"""Authentication on a real PostGIS: tokens, cookies + CSRF, expiry, tampering, revocation,
throttling, rate limits, request ids and the audit trail of sign-ins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.security import CSRF_COOKIE, SESSION_COOKIE
from api.settings import Settings
from gis import auth, users
from gis.audit import Actor
from tests.auth_world import PASSWORD, World, bearer, build_world, token


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


@pytest.fixture
def client(settings: Settings, world: World) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        yield c


def test_password_flow_returns_an_expiring_bearer_token(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token",
                           data={"username": "op_xc", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 480 * 60
    me = client.get("/api/v1/auth/me",
                    headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == "op_xc"
    assert me.json()["roles"] == ["operator"]
    assert me.json()["scope_codes"] == ["110102"]
    assert me.json()["expires_at"] == body["expires_at"]


@pytest.mark.parametrize("username", ["op_xc", "nobody"])
def test_wrong_credentials_are_401_naming_the_field(client: TestClient, username: str) -> None:
    response = client.post("/api/v1/auth/token",
                           data={"username": username, "password": "wrong password"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    [error] = response.json()["detail"]
    assert error["field"] == "password"
    assert "username or password is wrong" in error["msg"]


def test_missing_form_fields_are_422_naming_them(client: TestClient) -> None:
    response = client.post("/api/v1/auth/token", data={"username": "op_xc"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["detail"]] == ["password"]


def test_requests_without_credentials_are_401(client: TestClient) -> None:
    response = client.get("/api/v1/incidents")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "sign in" in response.json()["detail"][0]["msg"]


def test_tampered_and_forged_tokens_are_rejected(client: TestClient, settings: Settings) -> None:
    good = token(client, "op_xc")
    session_id, _, signature = good.rpartition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    other_session = ("x" if session_id[0] != "x" else "y") + session_id[1:]
    forged = auth.token_for(b"not the server's key at all, 32+ bytes", session_id)
    for bad in (f"{session_id}.{flipped}", f"{other_session}.{signature}", forged,
                "garbage", session_id):
        response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, bad
        assert "signature" in response.json()["detail"][0]["msg"]
    assert client.get("/api/v1/auth/me",
                      headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_expired_token_is_rejected(client: TestClient, engine: Engine) -> None:
    headers = bearer(client, "op_xc")
    with engine.begin() as conn:
        conn.execute(text("UPDATE auth_sessions SET created_at = now() - interval '9 hours', "
                          "expires_at = now() - interval '1 hour'"))
    response = client.get("/api/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"][0]["msg"]


def test_logout_revokes_the_token(client: TestClient, engine: Engine) -> None:
    headers = bearer(client, "op_xc")
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 200
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM auth_sessions "
                                "WHERE revoked_at IS NOT NULL")) == 1


def test_disabling_a_user_or_changing_the_password_ends_their_sessions(
        client: TestClient, engine: Engine) -> None:
    op, viewer = bearer(client, "op_xc"), bearer(client, "viewer")
    with engine.begin() as conn:
        users.disable_user(conn, "op_xc", by=Actor("test"))
        users.set_password(conn, "viewer", "a new password", by=Actor("test"))
    assert client.get("/api/v1/auth/me", headers=op).status_code == 401
    assert client.get("/api/v1/auth/me", headers=viewer).status_code == 401
    assert client.post("/api/v1/auth/token", data={"username": "op_xc", "password": PASSWORD}
                       ).status_code == 401
    assert token(client, "viewer", "a new password")


def test_browser_login_sets_secure_httponly_cookie_and_csrf(client: TestClient) -> None:
    response = client.post("/api/v1/auth/login",
                           json={"username": "op_xc", "password": PASSWORD})
    assert response.status_code == 200
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(f"{SESSION_COOKIE}="))
    csrf = next(c for c in cookies if c.startswith(f"{CSRF_COOKIE}="))
    assert "HttpOnly" in session and "Secure" in session and "samesite=lax" in session.lower()
    assert "HttpOnly" not in csrf and "Secure" in csrf
    assert response.json()["csrf_token"] == client.cookies[CSRF_COOKIE]
    assert response.json()["user"]["session"] == "cookie"
    # The cookie authenticates reads on its own.
    assert client.get("/api/v1/auth/me").json()["username"] == "op_xc"


def test_cookie_requests_that_change_state_need_the_csrf_header(client: TestClient) -> None:
    csrf = client.post("/api/v1/auth/login",
                       json={"username": "op_xc", "password": PASSWORD}).json()["csrf_token"]
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = client.post("/api/v1/auth/logout", headers=headers)
        assert response.status_code == 403
        [error] = response.json()["detail"]
        assert error["field"] == "X-CSRF-Token"
        assert "CSRF" in error["msg"]
    assert client.get("/api/v1/auth/me").status_code == 200  # still signed in
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/api/v1/auth/me").status_code == 401


def test_a_csrf_value_of_another_session_is_rejected(client: TestClient, settings: Settings
                                                     ) -> None:
    other = TestClient(client.app, base_url="https://testserver")
    their_csrf = other.post("/api/v1/auth/login",
                            json={"username": "viewer", "password": PASSWORD}
                            ).json()["csrf_token"]
    client.post("/api/v1/auth/login", json={"username": "op_xc", "password": PASSWORD})
    response = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": their_csrf})
    assert response.status_code == 403


def test_logins_are_throttled_after_repeated_failures(
        engine: Engine, world: World, settings: Settings) -> None:
    throttled = settings.model_copy(update={"login_max_failures": 3})
    with TestClient(create_app(throttled), base_url="https://testserver") as client:
        for _ in range(3):
            assert client.post("/api/v1/auth/token", data={
                "username": "op_xc", "password": "guess"}).status_code == 401
        response = client.post("/api/v1/auth/token",
                               data={"username": "op_xc", "password": PASSWORD})
        assert response.status_code == 429  # even the right password, while throttled
        assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
        assert "too many failed logins" in response.json()["detail"][0]["msg"]
        # Another account is unaffected; the window passing lifts the throttle.
        assert token(client, "op_ft")
        with engine.begin() as conn:
            conn.execute(text("UPDATE login_failures SET at = at - interval '16 minutes'"))
        assert token(client, "op_xc")
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM login_failures "
                                    "WHERE username = 'op_xc'")) == 0


def test_health_is_public_and_rate_limited(settings: Settings) -> None:
    limited = settings.model_copy(update={"public_rate_per_minute": 3})
    with TestClient(create_app(limited)) as client:
        for _ in range(3):
            assert client.get("/api/v1/health").status_code == 200
        response = client.get("/api/v1/health")
        assert response.status_code == 429
        assert 0 < int(response.headers["Retry-After"]) <= 60
        assert "rate limit" in response.json()["detail"][0]["msg"]


def test_sign_ins_and_outs_are_audited_with_the_request_id(
        client: TestClient, engine: Engine) -> None:
    response = client.post("/api/v1/auth/token", data={"username": "op_xc",
                                                        "password": PASSWORD},
                           headers={"X-Request-ID": "req-login-1"})
    assert response.headers["X-Request-ID"] == "req-login-1"
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    logout = client.post("/api/v1/auth/logout", headers=headers)
    generated = logout.headers["X-Request-ID"]
    assert len(generated) == 32
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT action, actor, request_id, user_id IS NOT NULL FROM audit_log "
            "WHERE action LIKE 'auth.%' ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("auth.login", "op_xc", "req-login-1", True),
                                        ("auth.logout", "op_xc", generated, True)]

