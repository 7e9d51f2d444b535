"""A running app for the platform webhook tests: the real ``build_app`` under uvicorn on a loopback port, backed
by a real SQLite file, with a keep-alive client. Payload files live in ``tests/payloads`` (each test file names
their sources)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bot.http.app import build_app
from bot.platforms.base import Decoders
from bot.settings import load_settings
from bot.storage import ContactStore, open_store
from tests.store_support import stored_contacts

PAYLOADS = Path(__file__).with_name("payloads")


@dataclass
class App:
    """A running app: its URL, its store and a client."""

    url: str
    store: ContactStore
    client: httpx.Client
    decoders: Decoders  # where its platform requests are decoded (bot.platforms.decoding)

    def stored(self, source: str) -> dict[str, dict[str, Any]]:
        """The stored contacts of ``source`` by id."""
        return {row["id"]: row for row in stored_contacts(self.store) if row["source"] == source}


@pytest.fixture
def start_app(db_path: Path) -> Iterator[Callable[..., App]]:
    """Start the app with settings overrides; every app started is stopped after the test."""
    running: list[tuple[uvicorn.Server, threading.Thread, App]] = []

    def _start(**overrides: Any) -> App:
        settings = load_settings(database_url=f"sqlite:///{db_path}", **overrides)
        store = open_store(settings.database_url)
        app = build_app(settings, store)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        handle = App(url, store, httpx.Client(base_url=url, timeout=30), app.state.platform_decoders)
        running.append((server, thread, handle))
        return handle

    yield _start
    for server, thread, handle in running:
        handle.client.close()
        server.should_exit = True
        thread.join(timeout=10)
        handle.store.close()
