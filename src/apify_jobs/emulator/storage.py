"""Storages and task settings: key-value store records, dataset items, and a task's saved input."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from typing import Any

from apify_jobs.emulator.dataset_view import CONTENT_TYPES, UnsupportedFormat, render
from apify_jobs.emulator.handler import Handler, Request, route


def _product(index: int) -> bytes:
    """One generated dataset item; every one has the same size, so the whole length is known up front."""
    return b'{"url":"https://shop.example.com/p/%010d","title":"Product %010d","price":1%05d,"inStock":true}' % (
        index, index, index % 100000)


_LONG_FIELD = b',"padding":""'


def _generated(count: int, jsonl: bool, long_line: int = 0) -> Iterator[bytes]:
    separator = b"\n" if jsonl else b","
    yield b"" if jsonl else b"["
    middle = count // 2 if long_line else -1
    for start in range(0, count, 4096):
        end = min(start + 4096, count)
        if start <= middle < end:  # the long item: its padding streamed in 1 MiB pieces
            yield from _generated_block(start, middle, separator, last=False)
            item = _product(middle)
            yield item[:-1] + _LONG_FIELD[:-1]
            for offset in range(0, long_line, 1 << 20):
                yield b"y" * min(1 << 20, long_line - offset)
            yield b'"}' + (separator if middle + 1 < count or separator == b"\n" else b"")
            yield from _generated_block(middle + 1, end, separator, last=end >= count)
        else:
            yield from _generated_block(start, end, separator, last=end >= count)
    yield b"" if jsonl else b"]"


def _generated_block(start: int, end: int, separator: bytes, last: bool) -> Iterator[bytes]:
    if start < end:
        yield separator.join(_product(i) for i in range(start, end)) + (separator if not last or
                                                                          separator == b"\n" else b"")


_compressed: dict[tuple[int, bool], bytes] = {}
_compressing = threading.Lock()


def _gzipped(count: int, jsonl: bool) -> bytes:
    """The generated dataset gzip-compressed, made once per size (a 512 MiB dataset is ~30 MB compressed):
    compressing on the fly would make the emulator, not the client, what a benchmark measures."""
    with _compressing:
        if (count, jsonl) not in _compressed:
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
            pieces = [compressor.compress(block) for block in _generated(count, jsonl)]
            _compressed[(count, jsonl)] = b"".join([*pieces, compressor.flush()])
        return _compressed[(count, jsonl)]


def stream_generated(handler: Handler, count: int, query: dict[str, str], gzip: bool = False,
                     long_line: int | None = None) -> None:
    """A JSON (or JSONL) dataset of ``count`` generated items, streamed in blocks and never held whole; with
    ``gzip``, compressed for clients whose Accept-Encoding names gzip; with ``long_line``, the middle item
    has a field of that many bytes more (a 256 MiB JSONL line, streamed like the rest)."""
    jsonl = query.get("format") == "jsonl"
    size = len(_product(0))
    compressed = gzip and "gzip" in handler.headers.get("Accept-Encoding", "")
    body = _gzipped(count, jsonl) if compressed else None
    total = len(body) if body is not None else count * (size + 1) if jsonl else 2 + count * size + max(count - 1, 0)
    if body is None and long_line:
        total += len(_LONG_FIELD) + long_line
    handler.send_response(201 if handler.command == "POST" else 200)
    handler.send_header("Content-Type", CONTENT_TYPES["jsonl" if jsonl else "json"])
    handler.send_header("Content-Length", str(total))
    if body is not None:
        handler.send_header("Content-Encoding", "gzip")
    handler.end_headers()
    if body is not None:
        view = memoryview(body)
        for start in range(0, len(body), 1 << 20):
            handler.wfile.write(view[start:start + (1 << 20)])
    else:
        for block in _generated(count, jsonl, long_line or 0):
            handler.wfile.write(block)
    handler.state.count_streamed(total)


@route("GET", "/v2/key-value-stores/{store}/records/{key}")
def get_record(handler: Handler, request: Request) -> None:
    run = handler.run_for(request, "get-record", "Key-value store was not found", store_id=request.params["store"])
    key = request.params["key"]
    if run is None:
        return
    if key == "INPUT":
        handler.send_json(200, run.input)
    elif key == run.options.get("outputRecordKey", "OUTPUT") and run.body_bytes is not None:
        handler.stream_large(run.body_bytes, run.content_type)
    elif key == run.options.get("outputRecordKey", "OUTPUT") and run.output:
        handler.send(200, run.output, run.content_type)
    else:
        handler.error(404, "record-not-found", "Record was not found")


@route("GET", "/v2/datasets/{dataset}/items")
def dataset_items(handler: Handler, request: Request) -> None:
    run = handler.run_for(request, "dataset-items", "Dataset was not found", dataset_id=request.params["dataset"])
    if run is None:
        return
    if run.generated_items is not None:
        stream_generated(handler, run.generated_items, request.query, run.gzip, run.long_line)
        return
    send_items(handler, 200, run.items, request.query)


def send_items(handler: Handler, status: int, items: list[Any], query: dict[str, str]) -> None:
    """A run's dataset items as the query asks for them, or 400 for a format the emulator does not write."""
    try:
        body, content_type = render(items, query)
    except UnsupportedFormat as exc:
        handler.error(400, "invalid-parameter", str(exc))
        return
    handler.send(status, body, content_type)


@route("GET", "/v2/actor-tasks/{task}/input")
def task_input(handler: Handler, request: Request) -> None:
    handler.state.record_lookup("task-input", request.path, request.query, request.headers)
    if handler.scripted_failure("task-input"):
        return
    if not handler.state.script.platform.saved_input:
        handler.send_json(404, {"error": {"type": "record-not-found", "message": "the task's input cannot be read"}})
        return
    task = request.params["task"].replace("/", "~", 1)
    handler.send_json(200, handler.state.script.inputs.get(task, {}))


@route("GET", "/v2/users/me/limits")
def account_limits(handler: Handler, request: Request) -> None:
    handler.send_json(200, {"data": handler.state.limits()})


@route("GET", "/_emulator/stats")
def stats(handler: Handler, request: Request) -> None:
    handler.send_json(200, handler.state.stats())
