"""The one typed record of what happened to a job: `JobResult` and the types it holds.

The state stores records, `--resume`, `needs` values and `report --merge` read them back, and report.json,
JUnit, HTML and Markdown are views of them. A record round-trips through ``to_dict``/``from_dict`` (its
dict form is the report entry that `schema/report.schema.json` describes); this module is the only one
that knows the entry's keys. ``RECORD_VERSION`` is stored with every record: a state written by a newer
version of the record is refused, never misread.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RECORD_VERSION = 1


class RecordError(ValueError):
    """A stored record cannot be read (damaged, or written by a newer apify-jobs)."""


class Status(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


def console_url(run_id: str) -> str:
    return f"https://console.apify.com/view/runs/{run_id}"


@dataclass(frozen=True)
class WrittenOutput:
    path: str  # as the user named the output folder (not resolved through links): for people to follow
    bytes: int
    sha256: str
    content_type: str | None
    key: str | None = None  # its place relative to the destination's root: what --resume and merges read
    items: int | None = None  # how many items it holds, when a check counted them (minItems, maxItems, schema)

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.path, "bytes": self.bytes, "sha256": self.sha256,
                                 "contentType": self.content_type}
        if self.key is not None:
            entry["key"] = self.key
        if self.items is not None:
            entry["items"] = self.items
        return entry

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WrittenOutput:
        key, items = raw.get("key"), raw.get("items")
        return cls(str(raw["path"]), int(raw["bytes"]), str(raw["sha256"]), raw.get("contentType"),
                   None if key is None else str(key), None if items is None else int(items))


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

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobError:
        return cls(str(raw["type"]), str(raw.get("message", "")), raw.get("runId"), violations=raw.get("violations"))


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

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RecoveryLook:
        return cls(int(raw["attempt"]), str(raw["found"]), list(raw.get("runIds") or []), str(raw.get("note", "")),
                   str(raw.get("method", "identity")))


@dataclass
class Recovery:
    adopted: bool = False
    run_id: str | None = None
    looks: list[RecoveryLook] = field(default_factory=list)
    followed: bool = False  # adopted after a 408, not after a drop

    def to_dict(self) -> dict[str, Any]:
        return {"adopted": self.adopted, "runId": self.run_id, "followed": self.followed,
                "looks": [look.to_dict() for look in self.looks]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Recovery:
        return cls(bool(raw.get("adopted")), raw.get("runId"), [RecoveryLook.from_dict(look) for look in
                                                                raw.get("looks") or []], bool(raw.get("followed")))


@dataclass(frozen=True)
class RunFacts:
    """A run as the platform's run listing shows it, found by an attempt's identity."""

    run_id: str
    status: str | None = None
    usage_total_usd: float | None = None
    dataset_id: str | None = None
    store_id: str | None = None
    preliminary: bool = False  # it had just finished: the platform may still revise its cost
    build_number: str | None = None  # the Actor build it ran (with the input's sha256: what makes it reproducible)

    @property
    def console_url(self) -> str:
        return console_url(self.run_id)

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"runId": self.run_id, "runStatus": self.status, "usageTotalUsd": self.usage_total_usd,
                                 "defaultDatasetId": self.dataset_id, "defaultKeyValueStoreId": self.store_id,
                                 "consoleUrl": self.console_url}
        if self.preliminary:
            entry["usagePreliminary"] = True
        if self.build_number is not None:
            entry["buildNumber"] = self.build_number
        return entry

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunFacts:
        usage = raw.get("usageTotalUsd")
        return cls(str(raw["runId"]), raw.get("runStatus"), float(usage) if isinstance(usage, (int, float)) else None,
                   raw.get("defaultDatasetId"), raw.get("defaultKeyValueStoreId"), bool(raw.get("usagePreliminary")),
                   raw.get("buildNumber"))


@dataclass
class GoingRun:
    """A run a cancelled job started that was still going when the batch was interrupted."""

    job: str
    run_id: str
    aborted: bool = False

    @property
    def console_url(self) -> str:
        return console_url(self.run_id)

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "runId": self.run_id, "consoleUrl": self.console_url, "aborted": self.aborted}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GoingRun:
        return cls(str(raw["job"]), str(raw.get("runId") or raw.get("run_id")), bool(raw.get("aborted")))


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
    refetched: bool = False  # not run: its earlier run's output fetched again (the file was missing or changed)
    from_run: int | None = None  # resumed: the run of the tool (its number in the state) whose result it carries
    note: str | None = None
    recovery: Recovery | None = None
    attempt_ids: list[str] = field(default_factory=list)  # each attempt's identity, in order
    run: RunFacts | None = None  # the run of the last attempt that started one (run facts)
    other_runs: list[RunFacts] = field(default_factory=list)  # runs earlier attempts started (paid for too)
    facts_note: str | None = None  # why no run facts are shown
    actor: bool = False
    # A resumed job: the earlier record it stands on (marked resumed, its output where it is now), as JSON:
    # 20,000 of them decoded are ~60 MB. ``output`` and ``finished_at`` are that record's, for the state.
    previous_json: str | None = None

    @property
    def previous(self) -> JobResult | None:
        """The earlier record a resumed job stands on."""
        return None if self.previous_json is None else from_json(self.previous_json)

    @property
    def effective(self) -> JobResult:
        """What this result says: a resumed job's earlier record (marked resumed), else itself."""
        earlier = self.previous
        return self if earlier is None else earlier

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
        if self.previous_json is not None:
            return self.effective.to_dict()
        entry: dict[str, Any] = {
            "name": self.name, "task": None if self.actor else self.task, "file": self.file,
            "status": self.status.value,
            "attempts": self.attempts, "httpStatus": self.http_status,
            "error": self.error.to_dict() if self.error else None, "output": None,
            "request": {"endpoint": self.endpoint, "query": self.query, "inputSha256": self.input_sha256},
            "startedAt": self.started_at, "finishedAt": self.finished_at, "durationMs": self.duration_ms,
        }
        if self.output:
            entry["output"] = {**self.output.to_dict(), "empty": self.empty_output}
        if self.actor:
            entry["actor"] = self.task
        if self.rejected:
            entry["rejected"] = self.rejected.to_dict()
        if self.resumed:
            entry["resumed"] = True
        if self.refetched:
            entry["refetched"] = True
        if self.from_run is not None:
            entry["fromRun"] = self.from_run
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

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobResult:
        request = raw.get("request") or {}
        actor = raw.get("actor") is not None
        return cls(
            name=str(raw["name"]), task=str(raw["actor"] if actor else raw.get("task")), file=str(raw.get("file", "")),
            endpoint=str(request.get("endpoint", "run-sync")), query=dict(request.get("query") or {}),
            input_sha256=str(request.get("inputSha256", "")), status=Status(raw["status"]),
            attempts=int(raw.get("attempts") or 0), http_status=raw.get("httpStatus"),
            error=JobError.from_dict(raw["error"]) if raw.get("error") else None,
            output=WrittenOutput.from_dict(raw["output"]) if raw.get("output") else None,
            rejected=WrittenOutput.from_dict(raw["rejected"]) if raw.get("rejected") else None,
            started_at=raw.get("startedAt"), finished_at=raw.get("finishedAt"), duration_ms=raw.get("durationMs"),
            resumed=bool(raw.get("resumed")), refetched=bool(raw.get("refetched")), from_run=raw.get("fromRun"),
            note=raw.get("note"),
            recovery=Recovery.from_dict(raw["recovery"]) if raw.get("recovery") else None,
            attempt_ids=list(raw.get("attemptIds") or []),
            run=RunFacts.from_dict(raw) if raw.get("runId") else None,
            other_runs=[RunFacts.from_dict(run) for run in raw.get("otherRuns") or []],
            facts_note=raw.get("runFactsNote"), actor=actor)


def resumed_from(text: str, shown: str, key: str, from_run: int | None = None) -> tuple[str, WrittenOutput, int | None]:
    """A stored record of a success, marked resumed (from run ``from_run`` of the tool), its output where it is
    now (``shown``, ``key``): as JSON, with its output and the run it comes from (a resumed record's own, when
    it was resumed before). Works on the dict form, not the record: a --resume of 20,000 jobs does this 20,000
    times."""
    try:
        entry = json.loads(text)
        output = {**entry["output"], "path": shown, "key": key}
        written = WrittenOutput.from_dict(output)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecordError(f"a stored record is damaged ({type(exc).__name__}: {str(exc)[:80]})") from None
    entry.update(output=output, resumed=True)
    if from_run is not None and "fromRun" not in entry:
        entry["fromRun"] = from_run
    return json.dumps(entry, ensure_ascii=False), written, entry.get("fromRun")


# Identifiers the tool itself made, never a secret, that --resume stands on: a short secret masked inside an
# output's sha256 or file name would make a finished job look unfinished (sent again). What the platform sent
# (run and storage IDs, links, statuses) is masked like any text from outside: a server may echo a secret.
_NOT_MASKED = ("status", "startedAt", "finishedAt", "attemptIds", "fromRun")
_NOT_MASKED_INSIDE: dict[str, tuple[str, ...]] = {"output": ("sha256", "key", "path"),
                                                  "rejected": ("sha256", "key", "path"),
                                                  "request": ("inputSha256", "endpoint")}


def to_json(result: JobResult, mask: Callable[[Any], Any] | None = None) -> str:
    """A record as JSON; ``mask`` (a Redactor's `values`) masks every string before it is serialized, but for
    the identifiers above. The JSON text is never masked afterwards: a secret as short as `1` or `true` masked
    in it made it invalid (a report that did not parse, a state "damaged" for every later run)."""
    entry = result.to_dict()
    if mask is not None:
        entry = {key: value if key in _NOT_MASKED else _masked(value, mask, _NOT_MASKED_INSIDE.get(key, ()))
                 for key, value in entry.items()}
    return json.dumps(entry, ensure_ascii=False)


def _masked(value: Any, mask: Callable[[Any], Any], keep: tuple[str, ...]) -> Any:
    if not keep or not isinstance(value, dict):
        return mask(value)
    return {key: item if key in keep else mask(item) for key, item in value.items()}


def from_json(text: str, version: int = RECORD_VERSION) -> JobResult:
    """A stored record; RecordError when it was written by a newer apify-jobs or is damaged."""
    if version > RECORD_VERSION:
        raise RecordError(f"a record of version {version} (this apify-jobs reads up to {RECORD_VERSION}); "
                          "upgrade apify-jobs")
    try:
        return JobResult.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RecordError(f"a stored record is damaged ({type(exc).__name__}: {str(exc)[:80]})") from None
