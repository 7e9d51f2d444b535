"""Hostile clients cost bounded memory and time: oversized bodies on the public Slack endpoint, slow and stalled
clients, a full server. Driven over real sockets against the real app under uvicorn."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.slack.app import EVENTS_MAX_BODY_BYTES
from bot.storage import ContactStore
from tests.fake_slack import FakeSlack
from tests.slack_support import SlackServer, running, slack_settings
from tests.test_serve import Process, start_serve
from tests.test_serve import processes as processes


@pytest.fixture
def events_server(fake: FakeSlack, store: ContactStore, database_url: str) -> Iterator[SlackServer]:
    with running(slack_settings(database_url, fake.api_url), store) as server:
        yield server


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    return host, int(port)


def _read_answer(conn: socket.socket) -> bytes:
    received = b""
    conn.settimeout(10)
    while chunk := conn.recv(65536):
        received += chunk
        if b"\r\n\r\n" in received and b"connection: close" not in received.lower():
            break
    return received


class _Reader(threading.Thread):
    """Reads what the server sends while the test is still sending (a server may answer before the body ends)."""

    def __init__(self, conn: socket.socket):
        super().__init__(daemon=True)
        self.conn = conn
        self.received = b""

    def run(self) -> None:
        try:
            while chunk := self.conn.recv(65536):
                self.received += chunk
        except OSError:
            pass


def stream_chunked(
    url: str, path: str, headers: dict[str, str], total: int, piece: int = 64 * 1024
) -> tuple[int, bytes]:
    """POST an unsigned chunked body of up to ``total`` bytes, stopping as soon as the server answers or closes.
    Returns (bytes of body sent, the server's answer)."""
    head = [f"POST {path} HTTP/1.1", "Host: test", "Transfer-Encoding: chunked"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sent = 0
    chunk = b"%x\r\n%s\r\n" % (piece, b"x" * piece)
    with socket.create_connection(_address(url), timeout=10) as conn:
        reader = _Reader(conn)
        reader.start()
        conn.sendall("\r\n".join([*head, "", ""]).encode())
        try:
            while sent < total and not reader.received and reader.is_alive():
                conn.sendall(chunk)
                sent += piece
            else:
                conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed its side: read what it said
        reader.join(10)
        return sent, reader.received


def test_slack_events_refuses_a_huge_chunked_body_before_reading_it(events_server: SlackServer) -> None:
    """Defect 1: an unsigned 64 MiB chunked body was read whole (memory) before the signature was checked."""
    total = 64 * 1024 * 1024
    sent, answer = stream_chunked(
        events_server.url, "/slack/events", {"Content-Type": "application/x-www-form-urlencoded"}, total
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"Slack never sends that much" in answer
    assert sent < 16 * EVENTS_MAX_BODY_BYTES  # refused early: only socket buffers' worth went past the cap


def test_slack_events_refuses_a_declared_huge_body_at_once(events_server: SlackServer) -> None:
    head = [
        "POST /slack/events HTTP/1.1",
        "Host: test",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {200 * 1024 * 1024}",
    ]
    with socket.create_connection(_address(events_server.url), timeout=10) as conn:
        conn.sendall("\r\n".join([*head, "", ""]).encode() + b"x" * 1000)
        answer = _read_answer(conn)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"connection: close" in answer.lower()


def test_slack_events_still_answers_signed_requests_within_the_cap(events_server: SlackServer, fake: FakeSlack) -> None:
    response = events_server.command("help", response_url=fake.response_url("h"))
    assert response.status_code == 200
    assert fake.reply("h")


@pytest.fixture
def guarded_serve(tmp_path: Path, processes: list[Process]) -> Process:  # (the HTTP edge: one backend is enough)
    """The real ``acr-bot serve`` with small limits: 20 connections, 1 s for headers, 1 s for a body."""
    server = start_serve(
        f"sqlite:///{tmp_path / 'acr.db'}",
        tmp_path / "serve.log",
        HTTP_MAX_CONNECTIONS="20",
        HTTP_HEADER_TIMEOUT_SECONDS="1",
        HTTP_BODY_TIMEOUT_SECONDS="1",
        SCHEDULER_ENABLED="false",
    )
    processes.append(server)
    return server


def _healthz(url: str) -> int:
    return httpx.get(url + "/healthz", timeout=5).status_code


def test_stalled_connections_get_503_not_a_reset_and_are_closed_after_the_header_timeout(
    guarded_serve: Process,
) -> None:
    """Defect 7: 1,100 stalled connections made /healthz and real senders fail until the clients gave up."""
    stalled = []
    try:
        for _ in range(30):  # more than HTTP_MAX_CONNECTIONS, each with half a request line
            conn = socket.create_connection(_address(guarded_serve.url), timeout=5)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            stalled.append(conn)
        assert _healthz(guarded_serve.url) == 503  # full: a clear answer, not a reset
        started = time.monotonic()
        for conn in stalled:  # each is closed by the server once its headers are late
            assert conn.recv(100) == b""
        assert time.monotonic() - started < 5
        assert _healthz(guarded_serve.url) == 200
    finally:
        for conn in stalled:
            conn.close()


def test_a_trickling_request_is_cut_off_and_a_slow_body_gets_408(guarded_serve: Process) -> None:
    host, port = _address(guarded_serve.url)
    with socket.create_connection((host, port), timeout=10) as conn:  # one byte at a time, forever
        started = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"y" * 100:
                conn.sendall(bytes([byte]))
                time.sleep(0.1)
        assert time.monotonic() - started < 4
    head = b"POST /webhooks/interactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(head + b"Content-Length: 1000\r\n\r\n" + b"[" * 10)  # ...and the rest never comes
        answer = _read_answer(conn)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"did not arrive within 1 s" in answer
    assert _healthz(guarded_serve.url) == 200
