"""Lifecycle of the project's own PostGIS cluster (initdb, start, stop, status).

The cluster lives in a git-ignored project folder, listens on 127.0.0.1 on a project
port and on a socket inside that folder. When run as root it is owned by, and run as,
an unprivileged OS user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gis.errors import ClusterError, MissingSystemPackages

PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
PG_SHARE = Path(f"/usr/share/postgresql/{PG_VERSION}")

# Debian package -> a file whose presence proves it is installed.
SYSTEM_PACKAGES: dict[str, Path] = {
    f"postgresql-{PG_VERSION}": PG_BIN / "initdb",
    f"postgresql-{PG_VERSION}-postgis-3": PG_SHARE / "extension" / "postgis.control",
    f"postgresql-{PG_VERSION}-pgrouting": PG_SHARE / "extension" / "pgrouting.control",
    "gdal-bin": Path("/usr/bin/ogr2ogr"),
}
EXTENSIONS = ("postgis", "pgrouting", "btree_gist")
SERVICE_USER = "gridops"
DB_NAME = "gridops"
DB_USER = "gridops"

LogFn = Callable[[str], None]


def missing_packages(packages: dict[str, Path] = SYSTEM_PACKAGES) -> list[str]:
    """Debian packages of `packages` (package -> marker file) that are not installed."""
    return [pkg for pkg, marker in packages.items() if not marker.exists()]


def apt_command(packages: list[str]) -> str:
    return "apt-get update && apt-get install -y --no-install-recommends " + " ".join(packages)


def ensure_system_packages(
    log: LogFn, packages: dict[str, Path] = SYSTEM_PACKAGES, as_root: bool | None = None
) -> None:
    """Install missing Debian packages when root; otherwise raise with the exact command."""
    missing = missing_packages(packages)
    if not missing:
        return
    if not (os.geteuid() == 0 if as_root is None else as_root):
        raise MissingSystemPackages(
            f"missing Debian packages: {', '.join(missing)}; install them with: "
            f"sudo sh -c '{apt_command(missing)}'"
        )
    log(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(["sh", "-c", apt_command(missing)], env=env, check=False)
    still = missing_packages(packages)
    if result.returncode != 0 or still:
        raise MissingSystemPackages(
            f"apt-get failed (exit {result.returncode}); still missing: {', '.join(still)}"
        )


@dataclass(frozen=True)
class LocalCluster:
    """A PostgreSQL cluster in `root` (e.g. <project>/.gridops/pg) on `port`."""

    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """<root>/run, or a short folder under /tmp when that path is too long for a
        Unix socket name (107 bytes)."""
        own = self.root.resolve() / "run"
        if len(str(own / f".s.PGSQL.{self.port}.lock")) <= 100:
            return own
        digest = hashlib.sha1(str(own).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"gridops-{digest}"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "postgresql.log"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str = DB_NAME) -> str:
        """SQLAlchemy URL over TCP with the generated password."""
        return f"postgresql+psycopg2://{DB_USER}:{self.password()}@127.0.0.1:{self.port}/{database}"

    # -- state -----------------------------------------------------------------

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and self.password_file.exists()

    def running_pid(self) -> int | None:
        """The postmaster's pid when it is really running, else None."""
        try:
            pid = int(self.pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if _is_postmaster(pid, self.data_dir) else None

    # -- lifecycle -------------------------------------------------------------

    def init(self, log: LogFn) -> None:
        """initdb into data_dir (no-op when already initialised)."""
        if self.initialized():
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ClusterError(
                f"{self.data_dir} is not empty but holds no cluster; remove it or run "
                "`gridops db down --purge`"
            )
        for d in (self.root, self.data_dir, self.log_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        user = _service_user()
        if user:
            _grant_traverse(self.root, user, log)
            _chown_tree(self.root, user)
        log(f"initdb {self.data_dir}" + (f" as OS user {user}" if user else ""))
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D", str(self.data_dir),
                "-U", DB_USER,
                "--encoding=UTF8", "--locale=C.UTF-8",
                "--auth-local=trust", "--auth-host=scram-sha-256",
                f"--pwfile={self.password_file}",
            ],
            user,
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# gridops: project cluster settings\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
                "shared_buffers = 512MB\n"
                "work_mem = 32MB\n"
                "maintenance_work_mem = 512MB\n"
                "fsync = on\n"
                "logging_collector = off\n"
            )
        if user:
            _chown_tree(self.root, user)

    def start(self, log: LogFn) -> None:
        """Start the postmaster unless it is already running; clear a stale pid file."""
        if self.running_pid():
            log(f"cluster already running on port {self.port}")
            return
        if self.pid_file.exists():
            log(f"removing stale pid file {self.pid_file}")
            self.pid_file.unlink()
            for lock in self.socket_dir.glob(f".s.PGSQL.{self.port}*"):
                lock.unlink()
        if _port_in_use(self.port):
            raise ClusterError(
                f"port {self.port} on 127.0.0.1 is taken by another process; set "
                "GRIDOPS_PG_PORT to a free port"
            )
        user = _service_user()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if user:
            _grant_traverse(self.root, user, log)
            _chown_tree(self.socket_dir, user)
        result = self._run(
            [
                str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60",
                "-D", str(self.data_dir), "-l", str(self.log_file),
            ],
            user,
            check=False,
        )
        if result.returncode != 0 or not self.running_pid():
            raise ClusterError(
                f"PostgreSQL did not start (exit {result.returncode}); last log lines:\n"
                + _tail(self.log_file)
            )
        log(f"cluster started on 127.0.0.1:{self.port}")

    def stop(self, log: LogFn) -> bool:
        """Stop a running postmaster (fast shutdown). False when it was not running."""
        pid = self.running_pid()
        if not pid:
            if self.pid_file.exists():
                self.pid_file.unlink()
            return False
        result = self._run(
            [str(PG_BIN / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast",
             "-D", str(self.data_dir)],
            _service_user(),
            check=False,
        )
        if result.returncode != 0 and self.running_pid():
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown; WAL replay on next start
            _wait_gone(pid)
        log("cluster stopped")
        return True

    def purge(self) -> None:
        """Delete the cluster's files (it must be stopped)."""
        if self.running_pid():
            raise ClusterError("the cluster is running; stop it first")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(
        self, cmd: list[str], user: str | None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # Drop to the service user's own group too: with root's gid the group bits of
        # root-owned parents (often ---) would apply instead of the o+x we grant.
        result = subprocess.run(
            cmd, cwd=self.root, capture_output=True, text=True, check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            user=user, group=user, extra_groups=[] if user else None,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"{Path(cmd[0]).name} failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result


def _service_user() -> str | None:
    """The OS user to run PostgreSQL as: None when not root, else `gridops` (created)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVICE_USER],
            check=True,
        )
    return SERVICE_USER


def _chown_tree(root: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for path in [root, *root.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _grant_traverse(path: Path, user: str, log: LogFn) -> None:
    """Let `user` reach `path`: add o+x (traverse only, no listing) where it is missing."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
            log(f"granted traverse permission (o+x) on {parent} so {user} can reach the cluster")


def _is_postmaster(pid: int, data_dir: Path) -> bool:
    """True when `pid` is a live postgres process serving `data_dir`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if not cmdline or not cmdline[0].endswith(b"postgres"):
        return False
    try:
        cwd = Path(f"/proc/{pid}/cwd").resolve()
    except OSError:
        return True
    return cwd == data_dir.resolve()


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"
