"""The live feed: `GET /api/v1/events` (Server-Sent Events) and `GET /api/v1/events/recent`
(JSON, for polling clients and catching up), scoped per user (gis/events.py `visible`).

A stream sends each event as `id: N` / `event: TYPE` / `data: JSON`. A client that
reconnects with `Last-Event-ID` (EventSource does it by itself; `?last_event_id=` works
too) first gets the events it missed, replayed from `live_events` (kept 7 days), then the
live ones — without gaps or duplicates: the stream subscribes to the process's hub before
it replays, and drops a live event that the replay already sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from api.deps import ConnDep, engine_of, json_response
from api.live import Hub, StreamClosed, Subscription
from api.security import CurrentUser, OptionalUser
from gis import events
from gis.auth import Principal
from gis.errors import DatabaseUnavailable, GridOpsError, InvalidInput, Unauthenticated

router = APIRouter(tags=["events"])

RETRY_MS = 3000
HEARTBEAT_S = 15.0
REPLAY_CHUNK = 500
MAX_RECENT = 1000


def _hub(request: Request) -> Hub:
    hub: Hub | None = getattr(request.app.state, "hub", None)
    if hub is None:
        raise DatabaseUnavailable("the live feed is not running (no database was configured "
                                  "when the server started)")
    return hub


def _resume_point(header: str | None, query: int | None) -> int | None:
    """The id to resume after: the Last-Event-ID header, else the query parameter."""
    if header is not None and header.strip():
        try:
            value = int(header.strip())
        except ValueError:
            raise InvalidInput(f"Last-Event-ID must be an event id (an integer); got "
                               f"{header[:40]!r}", field="Last-Event-ID") from None
        if value < 0:
            raise InvalidInput("Last-Event-ID must not be negative", field="Last-Event-ID")
        return value
    return query


def _replay_chunk(engine: Engine, user: Principal, after: int) -> tuple[list[dict[str, Any]],
                                                                          int]:
    with engine.connect() as conn:
        return events.replay_visible(conn, user, after, REPLAY_CHUNK)


def _frame(event: dict[str, Any]) -> str:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n"


async def _stream(sub: Subscription, engine: Engine, user: Principal,
                  first: list[dict[str, Any]], cursor: int | None) -> AsyncIterator[str]:
    sent: set[int] = set()  # replayed ids: their live copies are dropped
    try:
        yield f"retry: {RETRY_MS}\n: gridops live feed (worker {os.getpid()})\n\n"
        chunk = first
        while True:
            for event in chunk:
                sent.add(event["id"])
                yield _frame(event)
            if cursor is None or len(chunk) < REPLAY_CHUNK:
                break
            try:
                chunk, cursor = await anyio.to_thread.run_sync(_replay_chunk, engine, user,
                                                               cursor)
            except (SQLAlchemyError, GridOpsError):  # the database went away: it retries
                return
        while True:
            left = (user.expires_at - datetime.now(UTC)).total_seconds()
            if left <= 0:  # the session expired: the reconnection will ask to sign in
                return
            try:
                live = await sub.next(min(HEARTBEAT_S, left))
            except StreamClosed:
                return
            if live is None:
                yield ": heartbeat\n\n"
            elif live["id"] not in sent and events.visible(user, live):
                yield _frame(live)
    finally:
        sub.unsubscribe()


@router.get("/events", summary="Live events (Server-Sent Events), scoped to you",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "an endless event stream"}})
async def stream_events(
    request: Request,
    user: OptionalUser,
    last_event_id_header: Annotated[str | None, Header(
        alias="Last-Event-ID", description="resume after this event id (sent by "
                                           "EventSource when it reconnects)")] = None,
    last_event_id: Annotated[int | None, Query(
        ge=0, description="resume after this event id (when the header cannot be sent)")
    ] = None,
) -> StreamingResponse:
    """New incidents, state changes, dispatches, whistles, team status and positions,
    boundary and zone changes — those you may see — as they are committed. Every signed-in
    role may listen; each sees the events of its own scope."""
    if user is None:
        raise Unauthenticated("sign in: send `Authorization: Bearer <token>` or the session "
                              "cookie", field="Authorization")
    after = _resume_point(last_event_id_header, last_event_id)
    hub = _hub(request)
    engine = engine_of(request.app)
    sub = hub.stream()  # before the replay: nothing committed in between is lost
    first: list[dict[str, Any]] = []
    cursor: int | None = None
    if after is not None:
        try:
            first, cursor = await anyio.to_thread.run_sync(_replay_chunk, engine, user,
                                                           after)
        except BaseException:
            sub.unsubscribe()
            raise
    return StreamingResponse(
        _stream(sub, engine, user, first, cursor), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/events/recent", summary="Recent live events, scoped to you (polling)")
def recent_events(
    conn: ConnDep,
    user: CurrentUser,
    after: Annotated[int | None, Query(
        ge=0, description="events after this id, oldest first; without it, the latest")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RECENT, description="at most this many")] = 100,
) -> Any:
    """Events you may see: after `after` (oldest first), or the latest `limit` ones. Each
    is {"id", "type", "codes", …} as on the stream."""
    if after is None:
        found = [e for e in events.latest(conn) if events.visible(user, e)][-limit:]
    else:
        found, _ = events.replay_visible(conn, user, after, limit)
    return json_response(found)
