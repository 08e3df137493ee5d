"""What a resolved job file holds: the values every later step (plan, run, report) works from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RETRY_CLASSES = ("connection", "rate-limit", "capacity", "server-error")
INPUT_LIMIT_BYTES = 9 * 1024 * 1024  # run-sync refuses larger bodies with 413
SYNC_WAIT_SECONDS = 300  # run-sync answers 408 after this while the run goes on


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    initial: float = 1.0
    max_wait: float = 30.0
    on: frozenset[str] = frozenset({"connection"})
    recover: bool = True

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RetryPolicy":
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
    def from_dict(cls, raw: dict[str, Any]) -> "HttpTimeouts":
        return cls(connect=raw.get("connectTimeout", cls.connect), read=raw.get("readTimeout", cls.read))


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
