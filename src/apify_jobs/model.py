"""The typed data every stage passes on: a resolved Job and JobFile. What happened to a job is its record
(`apify_jobs.record.JobResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

INPUT_LIMIT_BYTES = 9 * 1024 * 1024  # run-sync refuses larger bodies with 413
SYNC_WAIT_SECONDS = 300  # run-sync answers 408 after this while the run goes on
FOLLOW_MAX_WAIT = 3600.0  # how long a run past run-sync's 300 s is followed, by default


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial: float = 1.0
    max_wait: float = 30.0
    on: frozenset[str] = frozenset({"connection"})
    recover: bool = True

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RetryPolicy:
        backoff = raw.get("backoff", {})
        return cls(
            attempts=raw.get("attempts", cls.attempts),
            initial=backoff.get("initial", cls.initial),
            max_wait=backoff.get("max", cls.max_wait),
            on=frozenset(raw.get("on", ["connection"])),
            recover=raw.get("recover", cls.recover),
        )


@dataclass(frozen=True)
class HttpTimeouts:
    connect: float = 10.0
    read: float = 330.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> HttpTimeouts:
        return cls(connect=raw.get("connectTimeout", cls.connect), read=raw.get("readTimeout", cls.read))


@dataclass(frozen=True)
class Expectations:
    """What a job's output must be (`expect`): checked as it streams in, before it may replace the last good one."""

    non_empty: bool = True
    min_items: int | None = None
    max_items: int | None = None
    content_type: str | None = None
    schema: Any = None  # a JSON Schema (dict or bool), from `schema` or `schemaFile`
    schema_source: str | None = None  # "inline", or the schema file's path
    max_depth: int = 1000  # the readers' limits (outputs/readers.Limits): passing one is a violation
    max_item_bytes: int = 64 << 20
    # `expect:` as written (with the defaults'): a newly registered check reads its own key here, so that
    # adding one takes its check (outputs/expect.py) and its key in jobs.schema.json, nothing more
    written: dict[str, Any] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        parts = ["nonEmpty"] if self.non_empty else []
        parts += [f"minItems {self.min_items}"] if self.min_items is not None else []
        parts += [f"maxItems {self.max_items}"] if self.max_items is not None else []
        parts += [f"contentType {self.content_type}"] if self.content_type else []
        parts += [f"schema ({self.schema_source})"] if self.schema_source else []
        parts += [f"maxDepth {self.max_depth}"] if self.max_depth != Expectations.max_depth else []
        parts += [f"maxItemBytes {self.max_item_bytes}"] if self.max_item_bytes != Expectations.max_item_bytes else []
        return ", ".join(parts) or "nothing"

    def to_dict(self) -> dict[str, Any]:
        return {"nonEmpty": self.non_empty, "minItems": self.min_items, "maxItems": self.max_items,
                "contentType": self.content_type, "schema": self.schema_source}


@dataclass
class Job:
    name: str
    file: str
    task: str
    input: dict[str, Any]
    options: dict[str, Any]
    dataset: dict[str, Any] | None
    output: str | None
    needs: list[str]
    retry: RetryPolicy
    http: HttpTimeouts
    position: tuple[int, int] = (1, 1)
    follow: float | None = FOLLOW_MAX_WAIT  # seconds to follow a run past 408; None: `follow: false`
    expect: Expectations = field(default_factory=Expectations)
    actor: bool = False  # `task` holds an Actor's ID: /v2/actors/{actorId}/..., not /v2/actor-tasks/{actorTaskId}/...
    fan_out: dict[str, Any] | None = None  # a matrix over a needed job's output: expanded once that job succeeded
    # needed matrices and fan-outs by name → their jobs in expansion order (`needs.<name>[*]…` gathers them)
    groups: dict[str, list[str]] = field(default_factory=dict)
    max_age: float | None = None  # seconds (`refresh.maxAge`, or --max-age): with --resume, an older success runs again
    capacity_wait: float = 600.0  # seconds a start the account refuses may wait for room (`capacity.maxWait`)

    @property
    def endpoint(self) -> str:
        return "run-sync-get-dataset-items" if self.dataset is not None else "run-sync"


@dataclass
class JobFile:
    path: str
    sha256: str
    concurrency: int = 1
    fail_fast: bool = False
    jobs: list[Job] = field(default_factory=list)
    budget_usd: float | None = None  # `budget.maxTotalUsd`: at most this for this file's jobs in one run


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
