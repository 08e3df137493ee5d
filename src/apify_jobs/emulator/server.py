"""A small local stand-in for the Apify API: both run-sync endpoints, the run look-ups recovery needs, and
scripted faults. It is what `--emulator`, the end-to-end tests and the benchmarks talk to over real sockets.
It is not the platform: it runs no Actor, it only answers the way the API answers.
"""

from __future__ import annotations

import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

# The endpoint modules register their routes on import.
from apify_jobs.emulator import run_sync, runs, storage  # noqa: F401
from apify_jobs.emulator.handler import Handler
from apify_jobs.emulator.script import Script
from apify_jobs.emulator.state import State


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-answer is normal here (drops are what we emulate): no traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            print(f"apify-jobs emulator: {type(error).__name__}: {error}", file=sys.stderr)


class Emulator:
    """The emulator on a loopback port, served from a background thread. Use as a context manager."""

    def __init__(self, script: Script | None = None, host: str = "127.0.0.1", port: int = 0):
        self.state = State(script or Script())
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self._server = _Server((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="emulator", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Emulator:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self.close()

    def close(self) -> None:
        self._server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
