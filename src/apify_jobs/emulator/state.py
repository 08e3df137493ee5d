"""What the emulator saw and keeps: the requests (which tests count) and the runs it 'started'."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apify_jobs.emulator.script import Behaviour, Script

USD_PER_RUN, USD_PER_SECOND = 0.0005, 0.0001  # invented prices: enough for cost figures to add up in tests


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Run:
    id: str
    task: str
    input: Any  # the run's INPUT record: the task's saved input with the request's keys replacing its own
    options: dict[str, str]
    started_at: datetime
    status: str
    output: bytes
    content_type: str
    items: list[Any]
    user_agent: str | None = None
    origin: str = "API"
    listed_from: float = 0.0  # monotonic time from which the listing shows it
    body_bytes: int | None = None  # a large generated output (`bodyBytes`), made on the fly, never held
    generated_items: int | None = None  # a large generated dataset (`generatedItems`), made on the fly
    gzip: bool = False  # the generated dataset is served gzip-compressed to clients that accept it
    long_line: int | None = None  # one generated item that much longer (`longLine`)
    cost_usd: float | None = None  # the account's `costPerRunUsd`, when the script sets one
    charged_events: dict[str, tuple[int, float]] | None = None  # pay-per-event: no usageTotalUsd is shown
    actor: bool = False  # started through /v2/acts/{actorId}/..., not a task
    finished_at: datetime | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def store_id(self) -> str:
        return f"kvs{self.id}"

    @property
    def dataset_id(self) -> str:
        return f"ds{self.id}"

    def _events(self) -> dict[str, Any]:
        """What the run endpoint (not the listing) shows of a pay-per-event run: its events and their prices."""
        events = self.charged_events or {}
        return {"chargedEventCounts": {name: count for name, (count, _) in events.items()},
                "pricingInfo": {"pricingModel": "PAY_PER_EVENT", "pricingPerEvent": {"actorChargeEvents": {
                    name: {"eventTitle": name, "eventDescription": name, "eventPriceUsd": price}
                    for name, (_, price) in events.items()}}}}

    def usage_usd(self, now: datetime) -> float:
        if self.cost_usd is not None:
            return self.cost_usd
        seconds = ((self.finished_at or now) - self.started_at).total_seconds()
        return round(USD_PER_RUN + max(seconds, 0.0) * USD_PER_SECOND, 6)

    def as_api(self, now: datetime, record_agent: bool = True, full: bool = False) -> dict[str, Any]:
        """The run object, as the listing (RunShort) and the run endpoint show it."""
        options = {"build": self.options.get("build", "latest"),
                   "timeoutSecs": int(float(self.options.get("timeout", 3600))),
                   "memoryMbytes": int(float(self.options.get("memory", 1024)))}
        return {"id": self.id, "actId": self.task if self.actor else "emulatedActor00001",
                "actorTaskId": None if self.actor else self.task, "status": self.status,
                "startedAt": iso(self.started_at), "finishedAt": iso(self.finished_at) if self.finished_at else None,
                "buildId": "emulatedBuild0001", "buildNumber": "0.0.1",
                "meta": {"origin": self.origin, "userAgent": self.user_agent if record_agent else None},
                "usageTotalUsd": None if self.charged_events else self.usage_usd(now),
                **(self._events() if full and self.charged_events else {}),
                "defaultKeyValueStoreId": self.store_id, "defaultDatasetId": self.dataset_id,
                "defaultRequestQueueId": f"rq{self.id}", "options": options}


class State:
    """What the emulator saw: counts the tests assert on, and the runs it 'started'."""

    def __init__(self, script: Script):
        self.script = script
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # run-sync requests: what costs money
        self.lookups: list[dict[str, Any]] = []  # everything else: listings, run polls, records, aborts
        self.per_task: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.refused = 0  # starts the account's limits refused
        self.max_running = 0  # runs at once, at most (what an account limit bounds)
        self.streamed_bytes = 0  # body bytes of large generated answers, as sent (compressed when gzip)
        self.runs: list[Run] = []
        self.random = random.Random(script.seed)
        self._failures = {kind: list(answers) for kind, answers in script.platform.failures.items()}

    def clock(self) -> datetime:
        """The platform's clock: this machine's, moved by the script's `clockSkew`."""
        return datetime.now(UTC) + timedelta(seconds=self.script.platform.clock_skew)

    def scripted_failure(self, kind: str) -> int | str | None:
        """The next scripted failure of a look-up of ``kind`` (a status, or "drop"), if any is left."""
        with self.lock:
            pending = self._failures.get(kind)
            return pending.pop(0) if pending else None

    def record_lookup(self, kind: str, path: str, query: dict[str, str], headers: dict[str, str]) -> None:
        with self.lock:
            self.lookups.append({"kind": kind, "path": path, "query": query, "headers": headers})

    def fault(self, behaviour: Behaviour) -> str | None:
        """A random drop for this request, if the behaviour asks for them."""
        with self.lock:
            if behaviour.fault_rate <= 0 or self.random.random() >= behaviour.fault_rate:
                return None
            return self.random.choice(("before-response", "mid-body"))

    def run_by(self, **match: str) -> Run | None:
        """The run whose ``id``, ``store_id`` or ``dataset_id`` is the given one."""
        with self.lock:
            return next((r for r in self.runs if all(getattr(r, k) == v for k, v in match.items())), None)

    def shown(self, run: Run) -> dict[str, Any]:
        """A run as the API shows it now."""
        return run.as_api(self.clock(), self.script.platform.record_user_agent)

    def shown_whole(self, run: Run) -> dict[str, Any]:
        """A run as `GET /v2/actor-runs/{id}` shows it: with what the listing leaves out."""
        return run.as_api(self.clock(), self.script.platform.record_user_agent, full=True)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": len(self.requests), "perTask": dict(self.per_task), "inFlight": self.in_flight,
                    "maxInFlight": self.max_in_flight, "runs": len(self.runs), "refused": self.refused,
                    "maxRunning": self.max_running,
                    "streamedBytes": self.streamed_bytes}

    def count_refusal(self) -> None:
        with self.lock:
            self.refused += 1

    def note_running(self) -> None:
        """After a run started: how many run at once, at most."""
        with self.lock:
            self.max_running = max(self.max_running, sum(r.status == "RUNNING" for r in self.runs))

    def limits(self) -> dict[str, Any]:
        """`GET /v2/users/me/limits`: the scripted account (unlimited where the script says nothing)."""
        account = self.script.account
        unlimited = account.UNLIMITED
        with self.lock:
            running = [r for r in self.runs if r.status == "RUNNING"]
            memory_gb = sum(float(r.options.get("memory", 1024)) for r in running) / 1024
        limits = {"maxMonthlyUsageUsd": account.max_monthly_usage_usd if account.max_monthly_usage_usd is not None
                  else unlimited, "maxMonthlyActorComputeUnits": unlimited, "maxMonthlyExternalDataTransferGbytes":
                  unlimited, "maxMonthlyProxySerps": unlimited, "maxMonthlyResidentialProxyGbytes": unlimited,
                  "maxActorMemoryGbytes": account.memory_mbytes / 1024 if account.memory_mbytes is not None
                  else unlimited, "maxActorCount": unlimited, "maxActorTaskCount": unlimited,
                  "maxConcurrentActorJobs": account.max_concurrent_runs if account.max_concurrent_runs is not None
                  else unlimited, "maxTeamAccountSeatCount": unlimited, "dataRetentionDays": 7}
        current = {"monthlyUsageUsd": account.monthly_usage_usd, "monthlyActorComputeUnits": 0,
                   "monthlyExternalDataTransferGbytes": 0, "monthlyProxySerps": 0, "monthlyResidentialProxyGbytes": 0,
                   "actorMemoryGbytes": memory_gb, "actorCount": 1, "actorTaskCount": 1,
                   "activeActorJobCount": len(running), "teamAccountSeatCount": 1}
        now = self.clock()
        return {"monthlyUsageCycle": {"startAt": iso(now.replace(day=1)), "endAt": iso(now)}, "limits": limits,
                "current": current}

    def count_streamed(self, size: int) -> None:
        with self.lock:
            self.streamed_bytes += size

    def run_sync_requests(self, task: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["kind"] == "run-sync" and (task is None or r["task"] == task)]

    def lookups_of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.lookups if r["kind"] == kind]
