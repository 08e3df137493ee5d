"""Admission: which job may start now, by the account's limits and the run's budget.

A run's start can be refused by the account (its concurrent runs, its memory): such a refusal starts no run
and costs nothing, so it is a matter of when, not a failure. The account's free run slots and memory are read
once at the start (`GET /v2/users/me/limits`); a job starts only while its memory fits and a slot is free. A
refusal all the same (runs started elsewhere) makes the job wait: until a job of the batch ends, or a
back-off passes, for at most its `capacity.maxWait`.

The budget (`budget.maxTotalUsd`, `--max-cost-usd`) adds up what this run's finished jobs cost and what the
jobs in flight may still cost (their `maxTotalChargeUsd`); a job that could take the total past it is not
started. A job without a cap can take the total past the budget by its own cost: `plan` warns about them.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from typing import Any

from apify_jobs.model import Job


@dataclass(frozen=True)
class AccountLimits:
    """What `GET /v2/users/me/limits` says of the account, now."""

    max_runs: int | None
    active_runs: int
    max_memory_gb: float | None
    memory_in_use_gb: float
    monthly_usd: float | None = None
    max_monthly_usd: float | None = None

    @classmethod
    def from_answer(cls, data: Any) -> AccountLimits:
        data = data.get("data") if isinstance(data, dict) else None
        data = data if isinstance(data, dict) else {}
        limits = data.get("limits") if isinstance(data.get("limits"), dict) else {}
        current = data.get("current") if isinstance(data.get("current"), dict) else {}

        def number(table: dict[str, Any], key: str) -> float | None:
            value = table.get(key)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        runs = number(limits, "maxConcurrentActorJobs")
        return cls(int(runs) if runs is not None else None, int(number(current, "activeActorJobCount") or 0),
                   number(limits, "maxActorMemoryGbytes"), number(current, "actorMemoryGbytes") or 0.0,
                   number(current, "monthlyUsageUsd"), number(limits, "maxMonthlyUsageUsd"))

    @property
    def free_runs(self) -> int | None:
        return None if self.max_runs is None else max(self.max_runs - self.active_runs, 0)

    @property
    def free_memory_mb(self) -> float | None:
        return None if self.max_memory_gb is None else max(self.max_memory_gb - self.memory_in_use_gb, 0.0) * 1024

    def describe(self) -> str:
        allows = [f"{self.max_runs:,} runs" if self.max_runs is not None else "",
                  f"{self.max_memory_gb:,g} GB" if self.max_memory_gb is not None else ""]
        going = f"; {self.active_runs} run{'s' * (self.active_runs != 1)} going now" if self.active_runs else ""
        return f"the account allows {' and '.join(a for a in allows if a) or 'any number of runs'}{going}"


class Decision(enum.Enum):
    START = "start"
    WAIT = "wait"
    SKIP = "skip"


def memory_mb(job: Job) -> float:
    """The memory a job's run asks for: `options.memory` (MB); 0 when its task's default decides (unknown)."""
    memory = job.options.get("memory")
    return float(memory) if isinstance(memory, (int, float)) and not isinstance(memory, bool) else 0.0


def cost_cap(job: Job) -> float | None:
    cap = job.options.get("maxTotalChargeUsd")
    return float(cap) if isinstance(cap, (int, float)) and not isinstance(cap, bool) else None


@dataclass
class _Purse:
    """One budget: the run's (--max-cost-usd) or a file's (`budget.maxTotalUsd`)."""

    budget: float
    name: str
    spent: float = 0.0  # what its finished jobs cost
    reserved: float = 0.0  # the caps of its jobs in flight

    @property
    def left(self) -> float:
        return self.budget - self.spent - self.reserved


def worst_case(jobs: list[Job]) -> tuple[float, list[str]]:
    """What ``jobs`` could cost at most, as far as their caps say: the sum of the caps, and the names of the
    jobs without one (unbounded; a fan-out, whose count is known only once it expands, among them)."""
    caps = [None if job.fan_out is not None else cost_cap(job) for job in jobs]
    return sum(cap for cap in caps if cap is not None), [job.name for job, cap in zip(jobs, caps, strict=True)
                                                          if cap is None]


class Admission:
    """Counts what runs now (slots, memory, money in flight) against the account's limits and the budgets."""

    def __init__(self, limits: AccountLimits | None = None, run_budget: float | None = None,
                 file_budgets: dict[str, float] | None = None):
        self.limits = limits
        self.slots = limits.free_runs if limits else None  # None: no limit known
        self.memory = limits.free_memory_mb if limits else None
        self._run_purse = _Purse(run_budget, "the run's --max-cost-usd") if run_budget is not None else None
        self._file_purses = {file: _Purse(amount, f"{file}'s budget") for file, amount in (file_budgets or {}).items()}
        self.skipped_for_budget = 0
        self._running = 0
        self._memory_used = 0.0
        self._changed = threading.Condition()

    @property
    def budgeted(self) -> bool:
        return self._run_purse is not None or bool(self._file_purses)

    @property
    def spent(self) -> float:
        """What this run's finished jobs cost, as far as any budget counted it."""
        purses = [self._run_purse] if self._run_purse else list(self._file_purses.values())
        return sum(purse.spent for purse in purses)

    def _purses(self, job: Job) -> list[_Purse]:
        return [p for p in (self._run_purse, self._file_purses.get(job.file)) if p is not None]

    def decide(self, job: Job) -> tuple[Decision, str]:
        """START (and counted as running), WAIT (for a slot, memory or money in flight), or SKIP (why)."""
        with self._changed:
            cap = cost_cap(job) or 0.0
            for purse in self._purses(job):
                if purse.spent >= purse.budget or (cap > purse.left and not self._running):
                    self.skipped_for_budget += 1
                    return Decision.SKIP, (f"budget: not started, it could cost up to ${cap:g} and "
                                           f"${max(purse.left, 0):.4f} of {purse.name} (${purse.budget:g}) is left"
                                           if cap and purse.spent < purse.budget else
                                           f"budget: ${purse.spent:.4f} of {purse.name} (${purse.budget:g}) is spent")
                if cap > purse.left:
                    return Decision.WAIT, "budget"
            if self.slots is not None and self._running >= self.slots:
                return Decision.WAIT, "account runs"
            need = memory_mb(job)
            if self.memory is not None and need and self._memory_used + need > self.memory and self._running:
                return Decision.WAIT, "account memory"
            self._take(job)
            return Decision.START, ""

    def _take(self, job: Job) -> None:
        self._running += 1
        self._memory_used += memory_mb(job)
        for purse in self._purses(job):
            purse.reserved += cost_cap(job) or 0.0

    def full(self) -> bool:
        """No job can start until one ends (every account slot taken)."""
        with self._changed:
            return self.slots is not None and self._running >= self.slots

    def release(self, job: Job, cost: float | None = None, ran: bool = True) -> None:
        """``job`` no longer runs; ``cost``: what its run cost (final or preliminary; None: unknown, its cap
        counts); ``ran``: False when no run started (a refusal, or decided before sending)."""
        with self._changed:
            cap = cost_cap(job) or 0.0
            self._running -= 1
            self._memory_used -= memory_mb(job)
            for purse in self._purses(job):
                purse.reserved -= cap
                if ran:
                    purse.spent += cost if cost is not None else cap
            self._changed.notify_all()

    def refused(self, job: Job, until: float, cancelled: threading.Event) -> bool:
        """The account refused ``job``'s start (no run, nothing billed): it waits, without a slot, until a job
        of the batch ends or a back-off passes, then is admitted again. False when ``until`` (monotonic) passed
        first, or the batch was cancelled (it counts as running again either way: the caller releases it)."""
        self.release(job, ran=False)
        pause = 1.0
        with self._changed:
            self.slots = self._running if self.slots is None else min(self.slots, self._running)  # the account is full
            while True:
                if cancelled.is_set() or time.monotonic() >= until:
                    self._take(job)
                    return False
                ended = self._changed.wait(min(pause, max(until - time.monotonic(), 0.0)))
                if not ended:  # a back-off passed with no job ending: try one more run than now
                    self.slots = max(self.slots or 0, self._running + 1)
                    pause = min(pause * 2, 30.0)
                if self.slots is None or self._running < self.slots:
                    self._take(job)
                    return True
