"""A real HTTP server for browser tests: uvicorn serving the app in a background thread, on a
socket bound here (port 0), so there is no race for a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.settings import Settings

START_TIMEOUT_S = 20.0


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 until the block ends; yields its base URL once it answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    server = uvicorn.Server(uvicorn.Config(app=app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    try:
        _wait_until_answering(url, thread)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_until_answering(url: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if not thread.is_alive():
            raise RuntimeError(f"the test server at {url} stopped while starting")
        try:
            if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test server at {url} did not answer in {START_TIMEOUT_S} s")
        time.sleep(0.05)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """The app for this test's settings (and fresh database), served over HTTP: its URL."""
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture
def live_server_for() -> Callable[[Settings], AbstractContextManager[str]]:
    """Serve the app for other settings: `with live_server_for(settings) as url: ...`."""
    return lambda settings: serve(create_app(settings))
