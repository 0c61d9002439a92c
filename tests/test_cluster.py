"""Lifecycle of a self-managed cluster and of `gridops db` against real PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from gis import migrate
from gis.cluster import LocalCluster, ensure_system_packages
from gis.database import ensure_extensions, make_engine
from gis.errors import MissingExtension, MissingSystemPackages
from gis.provision import provision

GRIDOPS = [sys.executable, "-m", "api.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path) -> LocalCluster:
    c = LocalCluster(root=tmp_path / "pg", port=free_port())
    yield c
    c.stop(lambda m: None)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDOPS, *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=180, check=False)


def test_up_twice_status_down(cluster: LocalCluster) -> None:
    url = provision(None, cluster, lambda m: None)
    first_pid = cluster.running_pid()
    assert first_pid
    assert provision(None, cluster, lambda m: None) == url  # idempotent
    assert cluster.running_pid() == first_pid
    engine = make_engine(url)
    with engine.connect() as conn:
        extensions = set(conn.scalars(text("SELECT extname FROM pg_extension")))
        listen = conn.scalar(text("SHOW listen_addresses"))
    engine.dispose()
    assert {"postgis", "pgrouting", "btree_gist"} <= extensions
    assert listen == "127.0.0.1"
    assert (cluster.socket_dir / f".s.PGSQL.{cluster.port}").exists()
    assert cluster.stop(lambda m: None) is True
    assert cluster.running_pid() is None
    assert not cluster.pid_file.exists()
    assert cluster.stop(lambda m: None) is False  # stopping a stopped cluster is fine


def test_up_after_killed_postmaster_and_stale_pid_file(cluster: LocalCluster) -> None:
    url = provision(None, cluster, lambda m: None)
    pid = cluster.running_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.pid_file.exists(), "a crash leaves the pid file behind"
    assert cluster.running_pid() is None
    # Make it nastier: the stale pid now belongs to a live, unrelated process.
    lines = cluster.pid_file.read_text().splitlines()
    cluster.pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")
    time.sleep(1)  # let orphaned backends notice the postmaster died and exit
    assert provision(None, cluster, lambda m: None) == url
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT postgis_lib_version()")).startswith("3.")
    engine.dispose()


def test_missing_extension_is_named(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MissingExtension, match="no_such_extension"), engine.begin() as conn:
        ensure_extensions(conn, ("postgis", "no_such_extension"))


def test_cli_lifecycle(tmp_path: Path) -> None:
    env = {"GRIDOPS_HOME": str(tmp_path / "home"), "GRIDOPS_PG_PORT": str(free_port())}
    env.pop("DATABASE_URL", None)
    os.environ.pop("DATABASE_URL", None)
    try:
        for _ in range(2):
            up = run_cli("db", "up", env=env)
            assert up.returncode == 0, up.stderr + up.stdout
            assert "database ready" in up.stdout
        migrated = run_cli("db", "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr + migrated.stdout
        status = run_cli("db", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert "running" in status.stdout and "postgis   3." in status.stdout
        head = migrate.head_revision()
        assert f"migration {head} (head {head})" in status.stdout
        insert = run_cli("db", "psql", "-c", "INSERT INTO audit_log (actor, action, object_type) "
                         "VALUES ('test', 'probe', 'none')", env=env)
        assert insert.returncode == 0, insert.stderr
        reset = run_cli("db", "reset", "--yes", env=env)
        assert reset.returncode == 0 and "database reset" in reset.stdout, reset.stderr
        psql = run_cli("db", "psql", "-tAc", "SELECT count(*) FROM audit_log", env=env)
        assert psql.returncode == 0 and psql.stdout.strip() == "0", psql.stderr
        down = run_cli("db", "down", env=env)
        assert down.returncode == 0 and "stopped" in down.stdout
        stopped = run_cli("db", "status", env=env)
        assert stopped.returncode == 3 and "stopped" in stopped.stdout
        info = run_cli("demo", "info", env=env)
        assert info.returncode == 1 and "is not running; run `gridops db up`" in info.stderr
    finally:
        run_cli("db", "down", env=env)


def test_cli_with_database_url(db_url: str) -> None:
    env = {"DATABASE_URL": db_url}
    up = run_cli("db", "up", env=env)
    assert up.returncode == 0 and "database ready" in up.stdout, up.stderr
    down = run_cli("db", "down", env=env)
    assert down.returncode == 1
    assert "DATABASE_URL is set" in down.stderr
    unreachable = run_cli("db", "up", env={"DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x"})
    assert unreachable.returncode == 1
    assert "cannot reach PostgreSQL" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_deep_project_folder_gets_a_short_socket_dir(tmp_path: Path) -> None:
    cluster = LocalCluster(root=tmp_path / ("deep-" * 16) / "pg", port=free_port())
    try:
        url = provision(None, cluster, lambda m: None)
        assert not cluster.socket_dir.is_relative_to(cluster.root)
        assert (cluster.socket_dir / f".s.PGSQL.{cluster.port}").exists()
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT 1")) == 1
        engine.dispose()
    finally:
        cluster.stop(lambda m: None)



def test_missing_packages_when_not_root_name_the_apt_command() -> None:
    missing = {"postgresql-15-no-such-package": Path("/nonexistent/marker")}
    logged: list[str] = []
    with pytest.raises(MissingSystemPackages) as raised:
        ensure_system_packages(logged.append, packages=missing, as_root=False)
    assert ("sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends "
            "postgresql-15-no-such-package'") in raised.value.message
    assert logged == []  # nothing was attempted
    ensure_system_packages(logged.append, as_root=False)  # all real packages present: no-op
