"""The exact HTTP request a job sends: shared by `plan` (which prints it) and `run` (which sends it)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from apify_jobs.model import Job

DEFAULT_BASE_URL = "https://api.apify.com"


@dataclass(frozen=True)
class RunRequest:
    job: Job
    method: str
    url: str
    endpoint: str
    query: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def input_sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def query_value(value: Any) -> str:
    """One query parameter as the API reads it: true/false, 2 not 2.0, lists comma-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(query_value(v) for v in value)
    return str(value)


def encode_webhooks(webhooks: list[dict[str, Any]]) -> str:
    packed = json.dumps(webhooks, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(packed).decode("ascii")


def build_query(job: Job) -> tuple[tuple[str, str], ...]:
    pairs = []
    for key, value in job.options.items():
        pairs.append((key, encode_webhooks(value) if key == "webhooks" else query_value(value)))
    for key, value in (job.dataset or {}).items():
        pairs.append((key, query_value(value)))
    return tuple(pairs)


def encode_body(job_input: dict[str, Any]) -> bytes:
    return json.dumps(job_input, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def target_path(target: str, actor: bool) -> str:
    """The API path of a task, or of an Actor run directly (`/v2/actors/`, the canonical prefix; the API
    description calls `/v2/acts/` a deprecated alias)."""
    return f"/v2/actors/{quote(target, safe='~')}" if actor else f"/v2/actor-tasks/{quote(target, safe='~')}"


def build_request(job: Job, base_url: str = DEFAULT_BASE_URL) -> RunRequest:
    query = build_query(job)
    path = f"{target_path(job.task, job.actor)}/{job.endpoint}"
    url = base_url.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
    return RunRequest(job, "POST", url, job.endpoint, query, encode_body(job.input))
