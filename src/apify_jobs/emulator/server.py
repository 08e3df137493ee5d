"""A small local stand-in for the Apify API: both run-sync endpoints, the run look-ups drop recovery needs,
and scripted faults. It is what `--emulator`, the end-to-end tests and the benchmarks talk to over real
sockets. It is not the platform: it runs no Actor, it only answers the way the API answers.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from apify_jobs.model import INPUT_LIMIT_BYTES

RESPONSES = {"ok", "run-failed", "run-timeout", "rate-limit", "capacity", "server-error", "status"}
DROPS = {None, "before-response", "mid-body", "after-start"}
_CONTENT_TYPES = {"json": "application/json; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8",
                  "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8",
                  "xml": "application/xml; charset=utf-8", "rss": "application/rss+xml; charset=utf-8",
                  "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


@dataclass(frozen=True)
class Behaviour:
    """How the emulator answers one run-sync request."""

    latency: float = 0.0
    respond: str = "ok"
    status: int | None = None
    error_type: str | None = None
    retry_after: float | None = None
    html: bool = False
    drop: str | None = None
    body_bytes: int | None = None
    content_type: str | None = None
    run_status: str = "SUCCEEDED"
    message: str | None = None
    trickle: float | None = None
    fault_rate: float = 0.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Behaviour:
        known = {"latency", "respond", "status", "errorType", "retryAfter", "html", "drop", "bodyBytes",
                 "contentType", "runStatus", "message", "trickle", "faultRate"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown behaviour keys {sorted(unknown)}; known: {sorted(known)}")
        behaviour = cls(latency=float(raw.get("latency", 0)), respond=raw.get("respond", "ok"),
                        status=raw.get("status"), error_type=raw.get("errorType"), retry_after=raw.get("retryAfter"),
                        html=bool(raw.get("html", False)), drop=raw.get("drop"), body_bytes=raw.get("bodyBytes"),
                        content_type=raw.get("contentType"), run_status=raw.get("runStatus", "SUCCEEDED"),
                        message=raw.get("message"), trickle=raw.get("trickle"),
                        fault_rate=float(raw.get("faultRate", 0)))
        if behaviour.respond not in RESPONSES or behaviour.drop not in DROPS:
            raise ValueError(f"respond must be one of {sorted(RESPONSES)}, drop one of {sorted(d for d in DROPS if d)}")
        return behaviour


@dataclass
class Script:
    """Behaviours by task: one behaviour for every request, or a list (request n takes item n, the last repeats)."""

    tasks: dict[str, list[Behaviour]] = field(default_factory=dict)
    default: Behaviour = field(default_factory=Behaviour)
    seed: int = 0  # of the random faults (`faultRate`), so that a failing run can be replayed

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Script:
        raw = raw or {}
        tasks = {}
        for task, spec in (raw.get("tasks") or {}).items():
            steps = spec if isinstance(spec, list) else [spec]
            tasks[task.replace("/", "~", 1)] = [Behaviour.from_dict(step or {}) for step in steps]
        return cls(tasks, Behaviour.from_dict(raw.get("default") or {}), int(raw.get("seed", 0)))


    def behaviour(self, task: str, number: int) -> Behaviour:
        steps = self.tasks.get(task)
        if not steps:
            return self.default
        return steps[min(number, len(steps)) - 1]


@dataclass
class Run:
    id: str
    task: str
    input: Any
    options: dict[str, str]
    started_at: datetime
    status: str
    output: bytes
    content_type: str
    items: list[Any]
    body_bytes: int | None = None  # a large generated output (`bodyBytes`), made on the fly, never held
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def store_id(self) -> str:
        return f"kvs{self.id}"

    @property
    def dataset_id(self) -> str:
        return f"ds{self.id}"

    def as_api(self) -> dict[str, Any]:
        options = {"build": self.options.get("build", "latest"),
                   "timeoutSecs": int(float(self.options.get("timeout", 3600))),
                   "memoryMbytes": int(float(self.options.get("memory", 1024)))}
        return {"id": self.id, "actTaskId": self.task, "status": self.status,
                "startedAt": self.started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "defaultKeyValueStoreId": self.store_id, "defaultDatasetId": self.dataset_id, "options": options}


class State:
    """What the emulator saw: counts the tests assert on, and the runs it 'started'."""

    def __init__(self, script: Script):
        self.script = script
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.per_task: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.runs: list[Run] = []
        self.random = random.Random(script.seed)

    def fault(self, behaviour: Behaviour) -> str | None:
        """A random drop for this request, if the behaviour asks for them."""
        with self.lock:
            if behaviour.fault_rate <= 0 or self.random.random() >= behaviour.fault_rate:
                return None
            return self.random.choice(("before-response", "mid-body"))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": len(self.requests), "perTask": dict(self.per_task), "inFlight": self.in_flight,
                    "maxInFlight": self.max_in_flight, "runs": len(self.runs)}

    def run_sync_requests(self, task: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["kind"] == "run-sync" and (task is None or r["task"] == task)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stdout
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, Nagle's algorithm and the client's
        # delayed ACK hold every small answer back by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # --- plumbing -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps({"error": {"type": error_type, "message": message}}).encode(), headers=headers)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- routes -----------------------------------------------------------------------------------
    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(segments) == 4 and segments[:2] == ["v2", "actor-tasks"] and segments[3] in (
                "run-sync", "run-sync-get-dataset-items"):
            self._run_sync(segments[2], segments[3], dict(parse_qsl(parts.query)), body)
        else:
            self._error(404, "page-not-found", f"Page not found: POST {parts.path}")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        query = dict(parse_qsl(parts.query))
        state = self.server.state
        if segments == ["_emulator", "stats"]:
            self._send(200, json.dumps(state.stats()).encode())
        elif len(segments) == 4 and segments[:2] == ["v2", "actor-tasks"] and segments[3] == "runs":
            self._list_runs(segments[2], query)
        elif len(segments) == 3 and segments[:2] == ["v2", "actor-runs"]:
            self._get_run(segments[2], query)
        elif len(segments) == 5 and segments[:2] == ["v2", "key-value-stores"] and segments[3] == "records":
            run = self._run_by(lambda r: r.store_id == segments[2])
            if run is None:
                self._error(404, "record-not-found", "Key-value store was not found")
            elif segments[4] == "INPUT":
                self._send(200, json.dumps(run.input).encode())
            elif segments[4] == run.options.get("outputRecordKey", "OUTPUT") and run.body_bytes is not None:
                self._stream_large(run.body_bytes, run.content_type)
            elif segments[4] == run.options.get("outputRecordKey", "OUTPUT"):
                self._send(200, run.output, run.content_type)
            else:
                self._error(404, "record-not-found", "Record was not found")
        elif len(segments) == 4 and segments[:2] == ["v2", "datasets"] and segments[3] == "items":
            run = self._run_by(lambda r: r.dataset_id == segments[2])
            if run is None:
                self._error(404, "record-not-found", "Dataset was not found")
            else:
                body, content_type = _items(run.items, query.get("format", "json"))
                self._send(200, body, content_type)
        else:
            self._error(404, "page-not-found", f"Page not found: GET {parts.path}")

    def _run_by(self, match: Any) -> Run | None:
        with self.server.state.lock:
            return next((r for r in self.server.state.runs if match(r)), None)

    def _list_runs(self, task: str, query: dict[str, str]) -> None:
        task = task.replace("/", "~", 1)
        after = _parse_time(query.get("startedAfter"))
        with self.server.state.lock:
            runs = [r for r in self.server.state.runs if r.task == task and (after is None or r.started_at >= after)]
        if query.get("desc") in ("1", "true"):
            runs.reverse()
        items = [r.as_api() for r in runs]
        self._send(200, json.dumps({"data": {"total": len(items), "offset": 0, "limit": 1000, "count": len(items),
                                             "desc": query.get("desc") in ("1", "true"), "items": items}}).encode())

    def _get_run(self, run_id: str, query: dict[str, str]) -> None:
        run = self._run_by(lambda r: r.id == run_id)
        if run is None:
            self._error(404, "record-not-found", "Actor run was not found")
            return
        wait = min(float(query.get("waitForFinish") or 0), 60.0)
        run.finished.wait(wait)
        self._send(200, json.dumps({"data": run.as_api()}).encode())

    def _run_sync(self, task: str, endpoint: str, options: dict[str, str], body: bytes) -> None:
        state = self.server.state
        task = task.replace("/", "~", 1)
        with state.lock:
            state.per_task[task] = number = state.per_task.get(task, 0) + 1
            state.requests.append({"kind": "run-sync", "task": task, "endpoint": endpoint, "query": options,
                                   "body": body, "headers": dict(self.headers.items()), "number": number})
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        behaviour = state.script.behaviour(task, number)
        fault = state.fault(behaviour)
        if fault:
            behaviour = dataclasses.replace(behaviour, drop=fault)
        try:
            self._answer(behaviour, task, endpoint, options, body)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _answer(self, behaviour: Behaviour, task: str, endpoint: str, options: dict[str, str], body: bytes) -> None:
        if len(body) > INPUT_LIMIT_BYTES:
            self._error(413, "request-too-large", "The POST payload is too large (limit: 9437184 bytes)")
            return
        try:
            run_input = json.loads(body or b"{}")
        except ValueError:
            self._error(400, "invalid-input", "Input is not valid JSON")
            return
        if behaviour.drop == "before-response":
            time.sleep(behaviour.latency)
            self._drop()
            return
        refusal = {
            "rate-limit": (429, "rate-limit-exceeded",
                           behaviour.message or "You have exceeded the rate limit. Please try again later."),
            "capacity": (402, behaviour.error_type or "concurrent-runs-limit-exceeded", behaviour.message or
                         "By launching this job you will exceed the concurrent runs limit of your subscription."),
        }.get(behaviour.respond)
        if refusal:  # no run is started
            time.sleep(behaviour.latency)
            headers = {"Retry-After": str(behaviour.retry_after)} if behaviour.retry_after is not None else None
            self._error(behaviour.status or refusal[0], refusal[1], refusal[2], headers)
            return
        if behaviour.respond in ("server-error", "status"):
            time.sleep(behaviour.latency)
            status = behaviour.status or 500
            if behaviour.html:
                self._send(status, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
            else:
                self._error(status, behaviour.error_type or "internal-server-error",
                            behaviour.message or f"Emulated answer {status}")
            return
        run = self._start_run(behaviour, task, endpoint, options, run_input)
        if behaviour.drop == "after-start":  # the run goes on; the caller never hears of it
            self._drop()
            time.sleep(behaviour.latency)
            self._finish(run, behaviour)
            return
        time.sleep(behaviour.latency)
        self._finish(run, behaviour)
        if behaviour.respond == "run-failed" or run.status != "SUCCEEDED":
            self._error(400, "run-failed", f"Actor run did not succeed (run ID: {run.id}, status: {run.status})")
            return
        if behaviour.respond == "run-timeout":
            self._error(408, "run-timeout-exceeded", "Actor run exceeded the timeout of 300 seconds for this API endpoint")
            return
        if behaviour.body_bytes is not None:
            cut = behaviour.body_bytes // 2 if behaviour.drop == "mid-body" else None
            self._stream_large(behaviour.body_bytes, run.content_type, cut)
            return
        if behaviour.trickle:
            self._trickle(run.output, run.content_type, behaviour.trickle)
            return
        if endpoint == "run-sync":
            payload, content_type = run.output, run.content_type
        else:
            payload, content_type = _items(run.items, options.get("format", "json"))
        if behaviour.drop == "mid-body":
            self._send_partial(payload, content_type)
            return
        self._send(201, payload, content_type)

    def _start_run(self, behaviour: Behaviour, task: str, endpoint: str, options: dict[str, str],
                   run_input: Any) -> Run:
        echo = {"taskId": task, "input": run_input, "options": options}
        output = json.dumps(echo, ensure_ascii=False).encode("utf-8")
        run = Run(id=secrets.token_hex(9)[:17], task=task, input=run_input, options=options,
                  started_at=datetime.now(UTC), status="RUNNING", output=output,
                  content_type=behaviour.content_type or ("application/json; charset=utf-8" if behaviour.body_bytes is None
                                                          else "application/octet-stream"),
                  items=[echo], body_bytes=behaviour.body_bytes)
        with self.server.state.lock:
            self.server.state.runs.append(run)
        return run

    @staticmethod
    def _finish(run: Run, behaviour: Behaviour) -> None:
        run.status = "FAILED" if behaviour.respond == "run-failed" else behaviour.run_status
        run.finished.set()

    def _send_partial(self, payload: bytes, content_type: str) -> None:
        padded = payload if len(payload) > 64 else payload + b" " * 64
        self.send_response(201)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(padded)))
        self.end_headers()
        self.wfile.write(padded[: len(padded) // 2])
        self._drop()

    def _trickle(self, payload: bytes, content_type: str, bytes_per_second: float) -> None:
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

    def _stream_large(self, total: int, content_type: str, cut: int | None = None) -> None:
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
        if sent < total:
            self._drop()

def _items(items: list[Any], format_: str) -> tuple[bytes, str]:
    content_type = _CONTENT_TYPES.get(format_, _CONTENT_TYPES["json"])
    if format_ == "csv":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["taskId", "input", "options"])
        for item in items:
            writer.writerow([item["taskId"], json.dumps(item["input"]), json.dumps(item["options"])])
        return text.getvalue().encode("utf-8"), content_type
    if format_ == "jsonl":
        return b"".join(json.dumps(i).encode() + b"\n" for i in items), content_type
    return json.dumps(items, ensure_ascii=False).encode("utf-8"), _CONTENT_TYPES["json"]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    state: State

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-answer is normal here (drops are what we emulate): no traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            print(f"apify-jobs emulator: {type(error).__name__}: {error}", file=sys.stderr)


class Emulator:
    """The emulator on a loopback port, served from a background thread. Use as a context manager."""

    def __init__(self, script: Script | None = None, host: str = "127.0.0.1", port: int = 0):
        self.state = State(script or Script())
        self._server = _Server((host, port), _Handler)
        self._server.state = self.state
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



def load_script(path: str | None) -> Script:
    """The script at ``path`` (none: echo everything); a bad one is a usage error, one line."""
    from apify_jobs.errors import UsageError
    from apify_jobs.jobfile.yaml_loader import YamlError, load_file

    if not path:
        return Script()
    try:
        return Script.from_dict(load_file(path).data)
    except YamlError as exc:
        raise UsageError(f"emulator script: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"emulator script {path}: {exc}") from None
