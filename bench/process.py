"""Servers the benchmarks start and stop: a command in its own process group, waited for
until it answers, ended (TERM, then KILL) when the block ends; tipg's settings."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def running(name: str, argv: Sequence[str], *, port: int, ready_path: str,
            env: Mapping[str, str], log: Path, cwd: Path | None = None,
            timeout_s: float = 90.0) -> Iterator[str]:
    """Run `argv` until the block ends; yields its base URL once GET `ready_path` on
    `port` answers 200 (RuntimeError naming `log` if it never does)."""
    with log.open("w") as out:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=out,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", ready_path)
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {log}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


TIPG_TABLES = ("grids", "buildings")


@contextmanager
def tipg(dsn: str, port: int, log: Path, properties: Mapping[str, Sequence[str]],
         **settings: str) -> Iterator[str]:
    """tipg (PyPI) serving public.grids and public.buildings only, with `properties` per
    table and extra TIPG_* `settings` (e.g. TIPG_TILE_BUFFER="64")."""
    parsed = urllib.parse.urlsplit(dsn)
    env = {**os.environ,
           "DATABASE_URL": urllib.parse.urlunsplit(parsed._replace(scheme="postgresql")),
           "TIPG_DB_SCHEMAS": '["public"]',
           "TIPG_DB_TABLES": json.dumps([f"public.{t}" for t in TIPG_TABLES]),
           "TIPG_DB_FUNCTIONS": "[]", "TIPG_DB_SPATIAL_EXTENT": "false",
           "TIPG_DB_DATETIME_EXTENT": "false", **settings,
           **{f"TIPG_TABLE_CONFIG__public_{t}__properties": json.dumps(list(p))
              for t, p in properties.items()}}
    with running("tipg", [sys.executable, "-m", "uvicorn", "tipg.main:app", "--port",
                          str(port), "--log-level", "warning"],
                 port=port, ready_path="/collections/public.grids", env=env, log=log,
                 timeout_s=120.0) as base:
        yield base
