"""Storages and task settings: key-value store records, dataset items, and a task's saved input."""

from __future__ import annotations

import csv
import io
import json
import threading
import zlib
from collections.abc import Iterator
from typing import Any

from apify_jobs.emulator.handler import Handler, Request, route

CONTENT_TYPES = {"json": "application/json; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8",
                 "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8",
                 "xml": "application/xml; charset=utf-8", "rss": "application/rss+xml; charset=utf-8",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def items_as(items: list[Any], format_: str) -> tuple[bytes, str]:
    """Dataset items in a format of the items endpoint (json, jsonl, csv; others fall back to json)."""
    content_type = CONTENT_TYPES.get(format_, CONTENT_TYPES["json"])
    if format_ == "csv":
        text = io.StringIO()
        writer = csv.writer(text)
        columns = list(dict.fromkeys(key for item in items if isinstance(item, dict) for key in item))
        writer.writerow(columns)
        for item in items:
            row = item if isinstance(item, dict) else {}
            writer.writerow([value if isinstance(value := row.get(column, ""), str) else json.dumps(value)
                             for column in columns])
        return text.getvalue().encode("utf-8"), content_type
    if format_ == "jsonl":
        return b"".join(json.dumps(i).encode() + b"\n" for i in items), content_type
    return json.dumps(items, ensure_ascii=False).encode("utf-8"), CONTENT_TYPES["json"]


def _product(index: int) -> bytes:
    """One generated dataset item; every one has the same size, so the whole length is known up front."""
    return b'{"url":"https://shop.example.com/p/%010d","title":"Product %010d","price":1%05d,"inStock":true}' % (
        index, index, index % 100000)


def _generated(count: int, jsonl: bool) -> Iterator[bytes]:
    separator = b"\n" if jsonl else b","
    yield b"" if jsonl else b"["
    for start in range(0, count, 4096):
        block = separator.join(_product(i) for i in range(start, min(start + 4096, count)))
        last = start + 4096 >= count
        yield block + (separator if not last or jsonl else b"")
    yield b"" if jsonl else b"]"


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


def stream_generated(handler: Handler, count: int, query: dict[str, str], gzip: bool = False) -> None:
    """A JSON (or JSONL) dataset of ``count`` generated items, streamed in blocks and never held whole; with
    ``gzip``, compressed for clients whose Accept-Encoding names gzip."""
    jsonl = query.get("format") == "jsonl"
    size = len(_product(0))
    compressed = gzip and "gzip" in handler.headers.get("Accept-Encoding", "")
    body = _gzipped(count, jsonl) if compressed else None
    total = len(body) if body is not None else count * (size + 1) if jsonl else 2 + count * size + max(count - 1, 0)
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
        for block in _generated(count, jsonl):
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
        stream_generated(handler, run.generated_items, request.query, run.gzip)
        return
    body, content_type = items_as(run.items, request.query.get("format", "json"))
    handler.send(200, body, content_type)


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


@route("GET", "/_emulator/stats")
def stats(handler: Handler, request: Request) -> None:
    handler.send_json(200, handler.state.stats())
