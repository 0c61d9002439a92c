"""Live-feed latency: time from sending POST /api/v1/incidents to the incident's arrival on
Server-Sent-Event streams (GET /api/v1/events), against `gridops serve --workers 2` — one
stream held on each worker process, so the path through PostgreSQL NOTIFY to every worker
is measured. Target (issue 7): ≤ 1 s.

    python -m bench.live --db URL [--n 100] [--port 8766]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.intake import PROJECT, bearer, libpq, sample_points, server

TARGET_MS = 1000.0
DEFAULT_PORT = 8766


class _Stream:
    """One SSE connection read on a thread: when each incident.created arrived."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.conn.request("GET", "/api/v1/events",
                          headers={"Authorization": f"Bearer {token}"})
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise RuntimeError(f"GET /api/v1/events: {self.response.status}")
        self.arrived: dict[int, float] = {}
        self.pid: int | None = None
        self.ready = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                line = self.response.readline()
                if not line:
                    return
                now = time.perf_counter()
                text = line.decode().rstrip("\r\n")
                if text.startswith(": gridops live feed (worker "):
                    self.pid = int(text.rsplit(" ", 1)[1].rstrip(")"))
                    self.ready.set()
                elif text.startswith("data: "):
                    event = json.loads(text[6:])
                    if event.get("type") == "incident.created":
                        with self._changed:
                            self.arrived[int(event["incident_id"])] = now
                            self._changed.notify_all()
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            return
        finally:
            self.ready.set()

    def wait_for(self, incident_id: int, timeout: float) -> float | None:
        """When the incident arrived (perf_counter), or None after `timeout`."""
        deadline = time.perf_counter() + timeout
        with self._changed:
            while incident_id not in self.arrived:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return self.arrived[incident_id]

    def close(self) -> None:
        if self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self.conn.close()


def _one_per_worker(port: int, token: str, workers: int, attempts: int = 200) -> list[_Stream]:
    """Streams until every worker process holds one (the kernel picks the worker)."""
    kept: dict[int, _Stream] = {}
    for _ in range(attempts):
        stream = _Stream(port, token)
        stream.ready.wait(10)
        if stream.pid is None or stream.pid in kept:
            stream.close()
            time.sleep(0.02)
            continue
        kept[stream.pid] = stream
        if len(kept) == workers:
            break
    return list(kept.values())


def _stats(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan")}
    arr = np.array(values_ms)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "max_ms": float(arr.max())}


def bench_live(db_url: str, n: int = 100, say: Callable[[str], Any] = print, *,
               port: int = DEFAULT_PORT, workers: int = 2, username: str = "demo_admin",
               password: str = "demo-admin-2026", log: Path | None = None) -> dict[str, Any]:
    """POST `n` incidents one after another; for each, the time from sending the request
    to its arrival on a stream of every worker. Returns p50/p95/max (ms) of the arrival
    on the first stream ("first") and on the last of them ("all_workers"), the POST
    response time ("post"), the number lost (never arrived within 10 s) and the target."""
    points = sample_points(libpq(db_url), max(n, 1))
    log = log or PROJECT / ".gridops" / "bench-live-serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"live feed: gridops serve --workers {workers} on port {port}, {n} incidents …")
    first: list[float] = []
    every: list[float] = []
    post: list[float] = []
    lost = 0
    with server(db_url, workers, port, log):
        token = bearer(port, username, password)
        streams = _one_per_worker(port, token, workers)
        try:
            if len(streams) < workers:
                say(f"  only {len(streams)} of {workers} workers hold a stream")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            for i in range(n):
                x, y = points[i % len(points)]
                body = json.dumps({"event_code": "0101", "lon": x, "lat": y, "source": "12345",
                                   "description": "bench: live feed latency"})
                sent = time.perf_counter()
                conn.request("POST", "/api/v1/incidents", body=body, headers=headers)
                response = conn.getresponse()
                data = json.loads(response.read())
                post.append((time.perf_counter() - sent) * 1000.0)
                if response.status != 201:
                    raise RuntimeError(f"POST /api/v1/incidents: {response.status} {data}")
                incident_id = int(data["incident"]["id"])
                arrivals = [s.wait_for(incident_id, 10.0) for s in streams]
                if any(a is None for a in arrivals):
                    lost += 1
                    continue
                times = [(a - sent) * 1000.0 for a in arrivals if a is not None]
                first.append(min(times))
                every.append(max(times))
            conn.close()
        finally:
            for s in streams:
                s.close()
    everywhere, posted = _stats(every), _stats(post)
    say(f"  arrival on every worker's stream: p50 {everywhere['p50_ms']:.1f} ms, "
        f"p95 {everywhere['p95_ms']:.1f} ms, max {everywhere['max_ms']:.1f} ms "
        f"(POST p50 {posted['p50_ms']:.1f} ms; lost {lost}; target ≤ {TARGET_MS:.0f} ms)")
    return {"n": n, "workers": workers, "streams": len(streams), "lost": lost,
            "first": _stats(first), "all_workers": everywhere, "post": posted,
            "target_ms": TARGET_MS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", default=os.environ.get("DATABASE_URL"), required=False)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.db:
        parser.error("--db (or DATABASE_URL) is required")
    print(json.dumps(bench_live(args.db, args.n, port=args.port, workers=args.workers),
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
