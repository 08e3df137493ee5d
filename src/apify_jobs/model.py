"""The typed data every stage passes on: a resolved Job and JobFile, and the JobResult that says what happened."""

from __future__ import annotations

import enum
import json
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

    def describe(self) -> str:
        parts = ["nonEmpty"] if self.non_empty else []
        parts += [f"minItems {self.min_items}"] if self.min_items is not None else []
        parts += [f"maxItems {self.max_items}"] if self.max_items is not None else []
        parts += [f"contentType {self.content_type}"] if self.content_type else []
        parts += [f"schema ({self.schema_source})"] if self.schema_source else []
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


# --- what happened ------------------------------------------------------------------------------

class Status(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


def console_url(run_id: str) -> str:
    return f"https://console.apify.com/view/runs/{run_id}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class WrittenOutput:
    path: str  # as the user named the output folder (not resolved through links)
    bytes: int
    sha256: str
    content_type: str | None


@dataclass(frozen=True)
class JobError:
    """Why a job did not succeed. ``stops_batch`` comes from the failure's class (401/403) and is never reported."""

    type: str
    message: str
    run_id: str | None = None
    stops_batch: bool = field(default=False, compare=False)
    violations: int | None = None  # expectation-failed: how many in all (the message names the first few)

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.run_id:
            entry["runId"] = self.run_id
        if self.violations is not None:
            entry["violations"] = self.violations
        return entry


@dataclass(frozen=True)
class RecoveryLook:
    """One look for the run an attempt started (after a drop, or a 408 followed)."""

    attempt: int
    found: str  # none | one | several | unknown
    run_ids: list[str]
    note: str
    method: str = "identity"  # identity | input (the fallback where the platform records no user agent)

    def to_dict(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "found": self.found, "runIds": self.run_ids, "note": self.note,
                "method": self.method}


@dataclass
class Recovery:
    adopted: bool = False
    run_id: str | None = None
    looks: list[RecoveryLook] = field(default_factory=list)
    followed: bool = False  # adopted after a 408, not after a drop

    def to_dict(self) -> dict[str, Any]:
        return {"adopted": self.adopted, "runId": self.run_id, "followed": self.followed,
                "looks": [look.to_dict() for look in self.looks]}


@dataclass(frozen=True)
class RunFacts:
    """A run as the platform's run listing shows it, found by an attempt's identity."""

    run_id: str
    status: str | None = None
    usage_total_usd: float | None = None
    dataset_id: str | None = None
    store_id: str | None = None
    preliminary: bool = False  # it had just finished: the platform may still revise its cost

    @property
    def console_url(self) -> str:
        return console_url(self.run_id)

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"runId": self.run_id, "runStatus": self.status, "usageTotalUsd": self.usage_total_usd,
                                 "defaultDatasetId": self.dataset_id, "defaultKeyValueStoreId": self.store_id,
                                 "consoleUrl": self.console_url}
        if self.preliminary:
            entry["usagePreliminary"] = True
        return entry


@dataclass
class GoingRun:
    """A run a cancelled job started that was still going when the batch was interrupted."""

    job: str
    run_id: str
    aborted: bool = False

    @property
    def console_url(self) -> str:
        return console_url(self.run_id)


@dataclass
class JobResult:
    name: str
    task: str  # the task's ID, or the Actor's when ``actor``
    file: str
    endpoint: str
    query: dict[str, str]
    input_sha256: str
    status: Status = Status.CANCELLED
    attempts: int = 0
    http_status: int | None = None
    error: JobError | None = None
    output: WrittenOutput | None = None
    rejected: WrittenOutput | None = None  # an output that failed its expectations, kept beside the target
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    resumed: bool = False
    note: str | None = None
    recovery: Recovery | None = None
    attempt_ids: list[str] = field(default_factory=list)  # each attempt's identity, in order
    run: RunFacts | None = None  # the run of the last attempt that started one (run facts)
    other_runs: list[RunFacts] = field(default_factory=list)  # runs earlier attempts started (paid for too)
    facts_note: str | None = None  # why no run facts are shown
    # The earlier report entry this job was resumed from, as JSON: 20,000 of them decoded are ~60 MB.
    previous_json: str | None = None
    actor: bool = False

    @property
    def previous(self) -> dict[str, Any] | None:
        return None if self.previous_json is None else dict(json.loads(self.previous_json))

    @property
    def runs(self) -> list[RunFacts]:
        return [*self.other_runs, *([self.run] if self.run else [])]

    @property
    def succeeded(self) -> bool:
        return self.status is Status.SUCCEEDED

    @property
    def empty_output(self) -> bool:
        return self.output is not None and self.output.bytes == 0

    def to_dict(self) -> dict[str, Any]:
        if self.previous is not None:
            return {**self.previous, "resumed": True}
        entry: dict[str, Any] = {
            "name": self.name, "task": None if self.actor else self.task, "file": self.file,
            "status": self.status.value,
            "attempts": self.attempts, "httpStatus": self.http_status,
            "error": self.error.to_dict() if self.error else None, "output": None,
            "request": {"endpoint": self.endpoint, "query": self.query, "inputSha256": self.input_sha256},
            "startedAt": self.started_at, "finishedAt": self.finished_at, "durationMs": self.duration_ms,
        }
        if self.output:
            entry["output"] = {"path": self.output.path, "bytes": self.output.bytes, "sha256": self.output.sha256,
                               "contentType": self.output.content_type, "empty": self.empty_output}
        if self.actor:
            entry["actor"] = self.task
        if self.rejected:
            entry["rejected"] = {"path": self.rejected.path, "bytes": self.rejected.bytes,
                                 "sha256": self.rejected.sha256, "contentType": self.rejected.content_type}
        if self.resumed:
            entry["resumed"] = True
        if self.note:
            entry["note"] = self.note
        entry["recovery"] = self.recovery.to_dict() if self.recovery else None
        entry["attemptIds"] = self.attempt_ids
        if self.run:
            entry.update(self.run.to_dict())
        if self.other_runs:
            entry["otherRuns"] = [run.to_dict() for run in self.other_runs]
        if self.facts_note:
            entry["runFactsNote"] = self.facts_note
        return entry
