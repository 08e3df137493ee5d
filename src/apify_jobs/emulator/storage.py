"""Storages and task settings: key-value store records, dataset items, and a task's saved input."""

from __future__ import annotations

import csv
import io
import json
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
        writer.writerow(["taskId", "input", "options"])
        for item in items:
            writer.writerow([item["taskId"], json.dumps(item["input"]), json.dumps(item["options"])])
        return text.getvalue().encode("utf-8"), content_type
    if format_ == "jsonl":
        return b"".join(json.dumps(i).encode() + b"\n" for i in items), content_type
    return json.dumps(items, ensure_ascii=False).encode("utf-8"), CONTENT_TYPES["json"]


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
    elif key == run.options.get("outputRecordKey", "OUTPUT"):
        handler.send(200, run.output, run.content_type)
    else:
        handler.error(404, "record-not-found", "Record was not found")


@route("GET", "/v2/datasets/{dataset}/items")
def dataset_items(handler: Handler, request: Request) -> None:
    run = handler.run_for(request, "dataset-items", "Dataset was not found", dataset_id=request.params["dataset"])
    if run is None:
        return
    body, content_type = items_as(run.items, request.query.get("format", "json"))
    handler.send(200, body, content_type)


@route("GET", "/v2/actor-tasks/{task}/input")
def task_input(handler: Handler, request: Request) -> None:
    handler.state.record_lookup("task-input", request.path, request.query, request.headers)
    if handler.scripted_failure("task-input"):
        return
    task = request.params["task"].replace("/", "~", 1)
    handler.send_json(200, handler.state.script.inputs.get(task, {}))


@route("GET", "/_emulator/stats")
def stats(handler: Handler, request: Request) -> None:
    handler.send_json(200, handler.state.stats())
