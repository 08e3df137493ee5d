"""The emulator's HTTP plumbing: the route table, and the ways of answering (whole, streamed, cut, dropped).

Each endpoint family lives in its own module (run_sync.py, runs.py, storage.py) and registers its routes here
by method and path pattern; a handler function gets the request and its path's named parts.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from apify_jobs.emulator.state import Run, State


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]  # the path's named parts, unquoted
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Endpoint = Callable[["Handler", Request], None]
_ROUTES: list[tuple[str, re.Pattern[str], Endpoint]] = []


def route(method: str, pattern: str) -> Callable[[Endpoint], Endpoint]:
    """Register an endpoint: ``pattern`` is the path with ``{name}`` for one segment."""
    compiled = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

    def register(endpoint: Endpoint) -> Endpoint:
        _ROUTES.append((method, compiled, endpoint))
        return endpoint

    return register


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State  # set on the class the server makes

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stdout
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, Nagle's algorithm and the client's
        # delayed ACK hold every small answer back by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client went away while sending: no request reached the API, none is counted
            self.close_connection = True
            return
        for route_method, pattern, endpoint in _ROUTES:
            match = pattern.match(parts.path) if route_method == method else None
            if match:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                request = Request(method, parts.path, params, dict(parse_qsl(parts.query)),
                                  dict(self.headers.items()), body)
                endpoint(self, request)
                return
        self.error(404, "page-not-found", f"Page not found: {method} {parts.path}")

    def run_for(self, request: Request, kind: str, missing: str, **match: str) -> Run | None:
        """Count a look-up of ``kind`` and find the run it is about; None (after a 404 saying ``missing``) if none."""
        self.state.record_lookup(kind, request.path, request.query, request.headers)
        if self.scripted_failure(kind):
            return None
        run = self.state.run_by(**match)
        if run is None:
            self.error(404, "record-not-found", missing)
        return run

    def scripted_failure(self, kind: str) -> bool:
        """Answer with the script's next failure for this kind of look-up, if any; True if it did."""
        failure = self.state.scripted_failure(kind)
        if failure is None:
            return False
        if failure == "drop":
            self.drop()
        elif failure == 429:
            self.error(429, "rate-limit-exceeded", "You have exceeded the rate limit.", {"Retry-After": "0"})
        else:
            self.error(int(failure), "internal-server-error", f"Emulated answer {failure}")
        return True

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header, from the platform's clock (which a script may skew)."""
        from email.utils import format_datetime

        return format_datetime(self.state.clock(), usegmt=True) if timestamp is None else \
            super().date_time_string(timestamp)

    # --- ways of answering ------------------------------------------------------------------------
    def send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8",
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, data: Any) -> None:
        self.send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"))

    def error(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps({"error": {"type": error_type, "message": message}}).encode(), headers=headers)

    def drop(self) -> None:
        """Cut the connection with a reset, as a NAT gateway or a crashing proxy would."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send_partial(self, payload: bytes, content_type: str) -> None:
        padded = payload if len(payload) > 64 else payload + b" " * 64
        self.send_response(201)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(padded)))
        self.end_headers()
        self.wfile.write(padded[: len(padded) // 2])
        self.drop()

    def trickle(self, payload: bytes, content_type: str, bytes_per_second: float) -> None:
        """A server that keeps the connection alive with a byte now and then, and never finishes in time."""
        self.send_response(201)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            for index in range(len(payload)):
                self.wfile.write(payload[index:index + 1])
                self.wfile.flush()
                time.sleep(1 / bytes_per_second)
        except OSError:
            pass  # the client gave up, as it should

    def stream_large(self, total: int, content_type: str, cut: int | None = None) -> None:
        """``total`` generated bytes, streamed in blocks; with ``cut``, the connection drops after that many."""
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(total))
        self.end_headers()
        block = b"x" * (1 << 20)
        sent, stop = 0, total if cut is None else cut
        while sent < stop:
            piece = block[: min(len(block), stop - sent)]
            self.wfile.write(piece)
            sent += len(piece)
        self.state.count_streamed(sent)
        if sent < total:
            self.drop()
