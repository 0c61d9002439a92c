"""Latency under load: N concurrent clients (threads), each sending requests back to back
(closed loop) or at a fixed pace (open loop: latency counted from the planned send time, so
a slow server cannot hide its queue). One client = one connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Send = Callable[[int], bool]  # request number -> ok
Connect = Callable[[int], Send]  # client number -> its send function


@dataclass(frozen=True)
class Latency:
    """Milliseconds per request, after the warm-up, with throughput and failures."""

    clients: int
    mode: str
    requests: int
    failures: int
    seconds: float
    p50: float
    p90: float
    p99: float
    max: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(connect: Connect, clients: int, seconds: float, warmup: float,
        pace: float | None = None) -> Latency:
    """Run `clients` clients for warmup + seconds; pace = seconds between one client's
    requests (None: back to back)."""
    barrier = threading.Barrier(clients + 1)
    samples: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    start = [0.0]

    def client(k: int) -> None:
        send = connect(k)
        barrier.wait()
        begin = start[0]
        measure_from, stop = begin + warmup, begin + warmup + seconds
        rng = np.random.default_rng(k)
        planned = begin + (rng.uniform(0, pace) if pace else 0.0)
        i = 0
        while True:
            if pace:
                delay = planned - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = planned
                planned += pace
            else:
                sent = time.perf_counter()
            if sent >= stop:
                break
            ok = send(k * 1_000_000 + i)
            done = time.perf_counter()
            i += 1
            if sent >= measure_from:
                samples[k].append((done - sent) * 1000.0)
                failures[k] += not ok

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    start[0] = time.perf_counter() + 0.05
    barrier.wait()
    for t in threads:
        t.join()
    values = np.array([v for s in samples for v in s]) if any(samples) else np.zeros(1)
    return Latency(clients=clients, mode="paced" if pace else "back to back",
                   requests=int(sum(len(s) for s in samples)), failures=sum(failures),
                   seconds=seconds, p50=float(np.percentile(values, 50)),
                   p90=float(np.percentile(values, 90)), p99=float(np.percentile(values, 99)),
                   max=float(values.max()))
