"""The per-process live-event hub: one background thread LISTENs on PostgreSQL's
`gridops_events` channel and fans each event out to subscribers — callbacks (e.g. the tile
cache) and the asyncio queues of Server-Sent-Events clients.

Every API worker process runs its own hub; events travel between processes through
PostgreSQL (gis/events.py), never through an in-process bus. When the LISTEN connection
drops (PostgreSQL restarted, backend terminated) the hub reconnects with backoff and then
replays from `live_events` what was committed meanwhile, so subscribers miss nothing;
events are delivered once each (by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import make_url

from gis.database import normalise_url
from gis.events import CHANNEL

logger = logging.getLogger(__name__)

Event = dict[str, Any]
Callback = Callable[[Event], None]

APPLICATION_NAME = "gridops-live"
IDLE_CHECK_S = 30.0  # an idle connection is checked this often (dead peers send nothing)
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
SEEN_KEPT = 20_000  # ids remembered to deliver each event once
# After a reconnection, also replay this many ids below the newest seen: transactions commit
# out of id order, so an older id can become visible after a newer one was delivered.
LOOKBACK_IDS = 2_000
REPLAY_PAGE = 1_000
STREAM_QUEUE = 2_000  # events queued for one SSE client before it is cut off (it reconnects)

_HUBS: weakref.WeakSet[Hub] = weakref.WeakSet()
_patch_lock = threading.Lock()
_patched = False


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy or libpq database URL as a libpq URL for psycopg2.connect."""
    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(
        hide_password=False)


class StreamClosed(Exception):
    """The stream ended: the server is shutting down, or the client fell too far behind."""


class Subscription:
    """The asyncio side of one SSE client: the hub thread hands events over to the loop
    (call_soon_threadsafe); the client awaits them with `next`."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._maxsize = maxsize
        self._hub = hub
        self.overflowed = False
        self.closed = False

    def deliver(self, event: Event) -> None:
        """Called on the hub thread."""
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(self._put, event)

    def close_soon(self) -> None:
        """End the stream (from any thread)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._put, None)

    def _put(self, event: Event | None) -> None:
        if self.closed:
            return
        if event is None:
            self.closed = True
        elif self._queue.qsize() >= self._maxsize:
            self.overflowed = self.closed = True
            event = None
        self._queue.put_nowait(event)

    async def next(self, timeout: float) -> Event | None:
        """The next event, or None after `timeout` seconds; StreamClosed once ended."""
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if event is None:
            raise StreamClosed("overflow" if self.overflowed else "closed")
        return event

    def unsubscribe(self) -> None:
        self._hub._drop_stream(self)


class Hub:
    """LISTEN on one connection in one thread; fan events out to subscribers."""

    def __init__(self, url: str, *, backoff_min_s: float = BACKOFF_MIN_S) -> None:
        self.dsn = libpq_dsn(url)
        self.backoff_min_s = backoff_min_s
        self._callbacks: list[Callback] = []
        # weak: a stream whose response was dropped unstarted goes away with it
        self._streams: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._floor: int | None = None  # events up to this id predate the hub
        self.last_id = 0  # the newest event id delivered (or present at start)
        self.connected = threading.Event()
        self.connections = 0  # LISTEN connections made (1 + reconnections)
        self.replayed = 0  # events delivered from the table after a reconnection
        self.backend_pid: int | None = None

    # -- subscribers ---------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call `callback(event)` for every event (on the hub thread: be quick, do not
        modify the event — it is shared; exceptions are logged). Returns the unsubscribe
        function."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def stream(self, maxsize: int = STREAM_QUEUE) -> Subscription:
        """A subscription for an asyncio consumer on the running loop (an SSE client);
        call `unsubscribe()` when done."""
        sub = Subscription(self, asyncio.get_running_loop(), maxsize)
        with self._lock:
            self._streams.add(sub)
        return sub

    def _drop_stream(self, sub: Subscription) -> None:
        with self._lock:
            self._streams.discard(sub)

    def close_streams(self, loop: asyncio.AbstractEventLoop | None = None) -> int:
        """End the SSE streams (those on `loop`, or all): the server is shutting down."""
        with self._lock:
            subs = [s for s in self._streams if loop is None or s.loop is loop]
        for sub in subs:
            sub.close_soon()
        return len(subs)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the listening thread (once)."""
        if self._thread is not None:
            return
        _patch_uvicorn_shutdown()
        _HUBS.add(self)
        self._thread = threading.Thread(target=self._run, name="gridops-live-hub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, close its connection and end every stream."""
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the live-event hub did not stop within %s s", timeout)
        self.close_streams()
        _HUBS.discard(self)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def wait_connected(self, timeout: float) -> bool:
        """Block until the hub listens (tests, benchmarks)."""
        return self.connected.wait(timeout)

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.backoff_min_s
        while not self._stop.is_set():
            conn = None
            try:
                conn = psycopg2.connect(self.dsn, application_name=APPLICATION_NAME,
                                        connect_timeout=5)
                conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
                    cur.execute("SELECT pg_backend_pid()")
                    self.backend_pid = int(cur.fetchone()[0])
                self.connections += 1
                self._catch_up(conn)
                self.connected.set()
                backoff = self.backoff_min_s
                self._listen(conn)
            except psycopg2.Error as exc:
                if not self._stop.is_set():
                    logger.warning("live events: %s; reconnecting in %.1f s",
                                   str(exc).strip() or type(exc).__name__, backoff)
            except Exception:  # a bug must not end the feed for good: log, start afresh
                logger.exception("live events: the hub failed; reconnecting in %.1f s",
                                 backoff)
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(psycopg2.Error):
                        conn.close()
            if self._stop.is_set():
                break
            self._sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _sleep(self, seconds: float) -> None:
        """Wait, waking early on stop."""
        select.select([self._wake_r], [], [], seconds)

    def _listen(self, conn: Any) -> None:
        idle_since = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([conn, self._wake_r], [], [], IDLE_CHECK_S)
            if self._wake_r in ready:
                return
            if not ready:  # nothing for a while: make sure the peer is still there
                if time.monotonic() - idle_since >= IDLE_CHECK_S:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                    idle_since = time.monotonic()
                continue
            conn.poll()
            notes = list(conn.notifies)
            conn.notifies.clear()
            for note in notes:
                event = self._parse(conn, note.payload)
                if event is not None:
                    self._deliver(event)
            idle_since = time.monotonic()

    def _parse(self, conn: Any, payload: str) -> Event | None:
        try:
            event: Event = json.loads(payload)
            event_id = int(event["id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("live events: ignoring a malformed notification %.200r", payload)
            return None
        if event.get("truncated"):  # too big for NOTIFY: read the row
            with conn.cursor() as cur:
                cur.execute("SELECT id, type, codes, payload FROM live_events WHERE id = %s",
                            (event_id,))
                row = cur.fetchone()
            if row is None:
                return None
            event = {**(row[3] or {}), "id": int(row[0]), "type": row[1],
                     "codes": list(row[2] or [])}
        return event

    def _catch_up(self, conn: Any) -> None:
        """First connection: start after the newest event. Later ones: replay what was
        committed while disconnected (ids not delivered yet)."""
        with conn.cursor() as cur:
            if self._floor is None:
                cur.execute("SELECT coalesce(max(id), 0) FROM live_events")
                self._floor = self.last_id = int(cur.fetchone()[0])
                return
            after = max(self._floor, self.last_id - LOOKBACK_IDS)
            while True:
                cur.execute("SELECT id, type, codes, payload FROM live_events WHERE id > %s "
                            "ORDER BY id LIMIT %s", (after, REPLAY_PAGE))
                rows = cur.fetchall()
                for row in rows:
                    after = int(row[0])
                    self.replayed += after not in self._seen
                    self._deliver({**(row[3] or {}), "id": after, "type": row[1],
                                   "codes": list(row[2] or [])})
                if len(rows) < REPLAY_PAGE:
                    return

    def _deliver(self, event: Event) -> None:
        event_id = int(event["id"])
        if event_id in self._seen:
            return
        self._seen[event_id] = None
        if len(self._seen) > SEEN_KEPT:
            self._seen.popitem(last=False)
        self.last_id = max(self.last_id, event_id)
        with self._lock:
            callbacks = list(self._callbacks)
            streams = list(self._streams)
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                logger.exception("live events: a subscriber failed on event %s", event_id)
        for sub in streams:
            sub.deliver(event)


def _patch_uvicorn_shutdown() -> None:
    """Make uvicorn end open SSE streams when it shuts down: it waits for every open
    response before running the lifespan shutdown, and an event stream never ends by
    itself. The wrapper ends the streams served on the shutting-down server's loop."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        _patched = True
        try:
            import uvicorn
        except ImportError:  # pragma: no cover - another server
            return
        original = getattr(uvicorn.Server, "shutdown", None)
        if original is None:  # pragma: no cover - a different uvicorn
            return

        async def shutdown(self: Any, *args: Any, **kwargs: Any) -> None:
            loop = asyncio.get_running_loop()
            for hub in list(_HUBS):
                hub.close_streams(loop)
            await original(self, *args, **kwargs)

        uvicorn.Server.shutdown = shutdown  # type: ignore[method-assign]
