"""A local fake of Slack's Web API and of ``response_url`` endpoints, for tests that drive the real server.

It records every call (path, method, parsed body, headers) and can be told to fail a given number of times
(429 with Retry-After, 500, ...) before answering normally. Point ``SLACK_API_URL`` at ``fake.api_url`` and
put ``fake.response_url(...)`` in the signed requests. It also answers what ``files_upload_v2`` needs (an upload
URL that accepts bytes, a completion with the file) and gives each successful chat.postMessage its own ``ts``;
``conversations.open`` answers a direct-message channel, and ``uploads()`` gives the uploaded bytes as text.
The ``fake`` fixture (tests/conftest.py) runs one for a test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Call:
    """One request the fake received."""

    path: str  # "/api/chat.postMessage" or "/respond/<name>"
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def method(self) -> str:
        """The Web API method (``views.publish``) or the response_url name."""
        return self.path.rsplit("/", 1)[-1]


@dataclass
class _Failure:
    status: int
    times: int
    retry_after: int | None


class FakeSlack:
    """Start with ``with FakeSlack() as fake:``; ``fake.calls`` lists what it received, in order."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.answers: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._stalls: dict[str, list[_Failure]] = {}
        self._lock = threading.Condition()
        self._ts = itertools.count(1)
        self._files = itertools.count(1)
        self.history: dict[str, list[dict[str, Any]]] = {}  # channel -> what chat.postMessage posted there
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    # --- set-up ----------------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self.base}/respond/{name}"

    def answer(self, method: str, body: dict[str, Any]) -> None:
        """What the Web API ``method`` answers (default ``{"ok": true}``)."""
        self.answers[method] = body

    def answer_pages(self, method: str, pages: list[dict[str, Any]]) -> None:
        """``method`` answers with ``pages`` in turn, linked by ``response_metadata.next_cursor`` (Slack's
        cursor pagination): a request with ``cursor=N`` gets page N."""
        self.answers[method] = {"pages": pages}

    def fail(self, path_end: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        """The next ``times`` requests whose path ends with ``path_end`` get ``status`` (with Retry-After)."""
        self._failures.setdefault(path_end, []).append(_Failure(status, times, retry_after))

    def stall(self, path_end: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests whose path ends with ``path_end`` are handled (and recorded) at once, but
        answered only ``seconds`` later: a slow Slack that did the work although the client gave up waiting."""
        self._stalls.setdefault(path_end, []).append(_Failure(0, times, round(seconds * 1000)))

    # --- reading what happened -------------------------------------------------------------------------

    def calls_to(self, path_end: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.path.endswith(path_end)]

    def wait_for(self, path_end: str, count: int = 1, timeout: float = 10.0, status: int | None = 200) -> list[Call]:
        """Wait until ``count`` calls (with ``status``; None: any) to ``path_end`` arrived; return them all."""
        deadline = time.monotonic() + timeout

        def matching() -> list[Call]:
            return [c for c in self.calls if c.path.endswith(path_end) and (status is None or c.status == status)]

        with self._lock:
            while len(found := matching()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c.path, c.status) for c in self.calls]
                    raise AssertionError(f"waited {timeout}s for {count} call(s) to {path_end}; got {seen}")
                self._lock.wait(left)
            return found

    def uploads(self) -> dict[str, str]:
        """The bytes uploaded through ``files_upload_v2``, as text, by file id (in upload order)."""
        with self._lock:
            return {
                c.path.rsplit("/", 1)[-1]: c.body["content"].decode("utf-8", "replace")
                for c in self.calls
                if c.path.startswith("/upload/")
            }

    def reply(self, name: str = "r1", timeout: float = 10.0) -> dict[str, Any]:
        """The (single, successful) message posted to response_url ``name``."""
        calls = self.wait_for(f"/respond/{name}", timeout=timeout)
        return calls[-1].body

    def posts(self, status: int | None = 200) -> list[Call]:
        """The chat.postMessage calls (with ``status``; None: any)."""
        return [c for c in self.calls_to("chat.postMessage") if status is None or c.status == status]

    # --- serving ---------------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        if request.path.startswith("/upload/"):
            self._upload(request)
            return
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length).decode("utf-8") if length else ""
        content_type = request.headers.get("Content-Type", "")
        body: dict[str, Any]
        if "json" in content_type and raw:
            body = json.loads(raw)
        else:
            body = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(raw).items()}
        path, _, query = request.path.partition("?")
        if query:  # a GET method (conversations.history) sends its arguments in the query string
            body = {**{k: v[0] if len(v) == 1 else v for k, v in parse_qs(query).items()}, **body}
        status, headers, answer = self._decide(path, body)
        with self._lock:
            self.calls.append(Call(path, body, dict(request.headers.items()), status))
            self._lock.notify_all()
        delay_ms = self._take(self._stalls, path)
        if delay_ms:
            time.sleep(delay_ms / 1000)
        payload = json.dumps(answer).encode() if path.startswith("/api/") else (b"ok" if status == 200 else b"error")
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Type", "application/json" if path.startswith("/api/") else "text/plain")
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a stall)
            request.wfile.write(payload)

    def _take(self, table: dict[str, list[_Failure]], path: str) -> int | None:
        """The ``retry_after`` of the first matching entry of ``table``, using up one of its ``times``."""
        with self._lock:
            for path_end, entries in table.items():
                if path.endswith(path_end) and entries:
                    entry = entries[0]
                    entry.times -= 1
                    if entry.times <= 0:
                        entries.pop(0)
                    return entry.retry_after if entry.retry_after is not None else 0
        return None

    def _decide(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            for path_end, failures in self._failures.items():
                if path.endswith(path_end) and failures:
                    failure = failures[0]
                    failure.times -= 1
                    if failure.times <= 0:
                        failures.pop(0)
                    headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                    error = "ratelimited" if failure.status == 429 else "fatal_error"
                    return failure.status, headers, {"ok": False, "error": error}
            method = path.rsplit("/", 1)[-1]
            if method in self.answers and "pages" in self.answers[method]:  # cursor pagination
                pages = self.answers[method]["pages"]
                number = int(body.get("cursor") or 0)
                more = {"next_cursor": str(number + 1) if number + 1 < len(pages) else ""}
                return 200, {}, {**pages[number], "response_metadata": more}
            if method in self.answers:
                return 200, {}, self.answers[method]
            if method == "chat.postMessage":
                ts = f"1700000000.{next(self._ts):06d}"
                posted = {"ts": ts, "text": body.get("text", ""), "metadata": body.get("metadata")}
                self.history.setdefault(str(body.get("channel")), []).insert(0, posted)
                return 200, {}, {"ok": True, "ts": ts}
            if method == "conversations.open":
                return 200, {}, {"ok": True, "channel": {"id": "D0DIRECT"}}
            if method == "conversations.history":  # newest first, with metadata, as Slack answers
                return 200, {}, {"ok": True, "messages": list(self.history.get(str(body.get("channel")), []))}
            if method == "files.getUploadURLExternal":
                file_id = f"F{next(self._files):04d}"
                return 200, {}, {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}
            if method == "files.completeUploadExternal":
                return 200, {}, {"ok": True, "files": [{"id": "F0001", "title": "chart"}]}
            return 200, {}, {"ok": True}

    def _upload(self, request: BaseHTTPRequestHandler) -> None:
        """The upload URL of ``files.getUploadURLExternal``: takes the bytes, records their size and kind."""
        length = int(request.headers.get("Content-Length") or 0)
        data = request.rfile.read(length) if length else b""
        path = request.path.split("?", 1)[0]
        status, headers, _ = self._decide(path, {})
        with self._lock:
            body = {"bytes": len(data), "png": data.startswith(b"\x89PNG"), "content": data}
            self.calls.append(Call(path, body, dict(request.headers.items()), status))
            self._lock.notify_all()
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", "2")
        request.end_headers()
        request.wfile.write(b"OK")

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
