"""Scheduling: which job starts when, under the caps, `needs`, fail-fast and Ctrl-C.

A pool of daemon worker threads, as many as jobs may run at once, runs the jobs; the worker whose job
ended starts the next ready job itself (no hand-off through the main thread), so a job that is waiting
never holds a slot. The main thread only waits, and on Ctrl-C abandons the running requests at once
instead of waiting for them (daemon threads do not hold the process open).
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from apify_jobs.model import Job, now
from apify_jobs.outputs.paths import placement_problem
from apify_jobs.record import JobResult, Status
from apify_jobs.running.admission import Decision
from apify_jobs.running.needs import NeedsValueFailed, expand
from apify_jobs.running.runner import RunContext, decided, facts_of, run_job
from apify_jobs.running.selection import Plan, Planned


class Progress(Protocol):
    """What the executor tells whoever shows progress (`reports/progress.py` implements it): running/ knows
    nothing of how it is shown."""

    total: int

    def start(self, name: str) -> None: ...

    def finish(self, result: JobResult) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...


# With hundreds of workers, answers arrive in waves and each waits for the interpreter lock: under Python's
# 5 ms switch interval a job whose answer came in waits behind a convoy of others. 0.2 ms lets each be handled
# as it arrives: 2,000 jobs x 1 s at concurrency 256 went from 1.30 to 1.19 x the ideal (bench/run.py --only
# wide, alternating A/B runs). At 50 workers it gained nothing, and one at a time it cost ~5 % (more hand-offs
# between a finishing job's thread and the next one's), so it applies only to wide batches.
WIDE_WORKERS = 100
WIDE_SWITCH_INTERVAL = 0.0002
GRACE_SECONDS = 1.0  # after Ctrl-C, how long a job that is just finishing may still report success


class Journal(Protocol):
    """Where each decided job is recorded the moment it is decided (the durable state)."""

    def take_leases(self, jobs: list[str]) -> None:
        """Take these jobs for this process, in one transaction (those another live process holds are not)."""

    def lease(self, job: str) -> str | None:
        """Take the job for this process; None, or who runs it already."""

    def record(self, seq: int, result: JobResult) -> None: ...

    def record_all(self, decided: list[tuple[int, JobResult]]) -> None:
        """Many at once (the jobs --resume decided before the batch), in one commit."""


class _NoJournal:
    def take_leases(self, jobs: list[str]) -> None:
        pass

    def lease(self, job: str) -> str | None:
        return None

    def record(self, seq: int, result: JobResult) -> None:
        pass

    def record_all(self, decided: list[tuple[int, JobResult]]) -> None:
        pass


def _stop_reason(result: JobResult) -> str:
    """Why the batch stopped, and what to fix."""
    if result.http_status == 401:
        return "HTTP 401: the token was refused, and every other job would be too; check APIFY_TOKEN"
    if result.http_status == 403:
        return (f"HTTP 403: the token lacks permission for {result.task}, and the rest of the batch would likely "
                "be refused too; check the token's permissions")
    return (result.error.message if result.error else "the connection to the API cannot be set up") + \
        "; every other job would fail the same way"


class Executor:
    def __init__(self, plan: Plan, context: RunContext, progress: Progress,
                 run: Callable[[Job, RunContext], JobResult] = run_job, journal: Journal | None = None):
        self.plan = plan
        self.context = context
        self.progress = progress
        self._run = run
        self._journal: Journal = journal or _NoJournal()
        self._changed = threading.Condition()
        self._running_per_file = [0] * len(plan.file_caps)
        self._running = 0  # jobs holding a slot: sent, or about to be
        self._recording: set[int] = set()  # jobs whose run is over and whose result is being committed (seq)
        self._stopped_files: set[int] = set()
        self._stop_all: str | None = None
        self._work_queue: queue.SimpleQueue[Planned | None] = queue.SimpleQueue()
        self._pending: collections.deque[Planned] = collections.deque()  # in plan order
        self._by_name: dict[str, Planned] = {}
        self.journal_failure: Exception | None = None  # the state could not record a result: the batch stopped
        self.interrupted = False
        self.signal = signal.SIGINT  # what interrupted the batch (SIGTERM: exit 143, not 130)

    def _workers(self) -> int:
        """Enough threads for the most jobs that can ever run at once (starting one per job is slower)."""
        per_file = [0] * len(self.plan.file_caps)
        for entry in self.plan.entries:
            # a fan-out may become as many jobs as its file lets run at once
            per_file[entry.file_index] += self.plan.file_caps[entry.file_index] if entry.job.fan_out is not None \
                else entry.result is None
        most = sum(min(count, cap) for count, cap in zip(per_file, self.plan.file_caps, strict=False))
        most = max(1, min(most, self.plan.global_cap or most))
        # A few more than can run at once: a job's thread commits its result after its slot is free again.
        return most + min(most, 8)

    def interrupt(self) -> None:
        """Ctrl-C: start nothing more, abandon what runs, remove partial downloads."""
        self.interrupted = True
        self.context.cancelled.set()
        with self._changed:
            self._changed.notify_all()

    def run(self) -> list[JobResult]:
        workers = self._workers()
        switch = sys.getswitchinterval()
        if workers >= WIDE_WORKERS:
            sys.setswitchinterval(WIDE_SWITCH_INTERVAL)
        try:
            return self._run_workers(workers)
        finally:
            sys.setswitchinterval(switch)

    def _run_workers(self, count: int) -> list[JobResult]:
        by_name = self._by_name = {entry.job.name: entry for entry in self.plan.entries}
        self._pending = collections.deque(entry for entry in self.plan.entries if entry.result is None)
        resumed = [(entry.seq, entry.result) for entry in self.plan.entries if entry.result is not None]
        self._journal.record_all(resumed)
        for _, result in resumed:
            self.context.finished[result.name] = result
        workers: list[threading.Thread] = []
        try:
            # The first jobs are queued before the workers start, and each worker takes one as it starts:
            # starting 58 threads takes ~7 ms (Thread.start waits for each), which the first POSTs waited for.
            with self._changed:
                self._start_ready(by_name)
            for number in range(count):
                workers.append(threading.Thread(target=self._work, name=f"worker-{number}", daemon=True))
                workers[-1].start()
            with self._changed:
                while not self.interrupted:
                    self._start_ready(by_name)
                    if not self._pending and self._running == 0 and not self._recording:
                        break
                    self._changed.wait(0.25)
                    self.progress.tick()
            if self.interrupted:
                self._abandon()
        finally:
            # Each worker ends after the job it holds; after an interrupt that job may still be stuck in a
            # request, so only idle workers are waited for.
            for _ in workers:
                self._work_queue.put(None)
            if not self.interrupted:
                for worker in workers:
                    worker.join()
        return [entry.result for entry in self.plan.entries if entry.result is not None]

    # Called with self._changed held; each call looks only at the jobs not yet started or decided.
    def _start_ready(self, by_name: dict[str, Planned]) -> None:
        pending, waiting = self._pending, []
        while pending:
            if not self._stop_all and self._no_slot_left():
                # Nothing more can start until a job ends: what is left waits, unlooked at and uncopied (looking
                # at, or copying, all of 20,000 waiting jobs each time one ends made large batches quadratic).
                break
            entry = pending.popleft()
            job = entry.job
            if self._stop_all or entry.file_index in self._stopped_files:
                reason = self._stop_all or "an earlier job of this file failed and failFast is on"
                self._decide(entry, self._decided(job, Status.CANCELLED, reason))
                continue
            needs = [by_name[n] for n in job.needs if n in by_name]
            blocked = next((n.result for n in needs if n.result is not None and not n.result.succeeded), None)
            if blocked is not None:
                self._decide(entry, self._decided(job, Status.SKIPPED, f"needs {blocked.name}, which {blocked.status}"))
                continue
            if job.fan_out is not None:  # a matrix over a needed output: expanded, never run itself
                if any(n.result is None for n in needs):
                    waiting.append(entry)
                else:
                    waiting.extend(self._expand(entry, by_name))
                continue
            full = (self._running_per_file[entry.file_index] >= self.plan.file_caps[entry.file_index]
                    or (self.plan.global_cap is not None and self._running >= self.plan.global_cap))
            if full or any(n.result is None for n in needs):
                waiting.append(entry)
                continue
            admission = self.context.admission
            if admission is not None:  # the account's room and the budgets
                decision, why = admission.decide(job)
                if decision is Decision.WAIT:
                    waiting.append(entry)
                    continue
                if decision is Decision.SKIP:
                    self._decide(entry, self._decided(job, Status.SKIPPED, why, "budget"))
                    continue
            holder = self._journal.lease(job.name)
            if holder is not None:  # another live process runs this job into the same folder
                if admission is not None:
                    admission.release(job, ran=False)
                self._decide(entry, self._decided(job, Status.SKIPPED, holder))
                continue
            entry.started = True
            entry.started_at = now()
            self._running += 1
            self._running_per_file[entry.file_index] += 1
            self.progress.start(job.name)
            self._work_queue.put(entry)
        pending.extendleft(reversed(waiting))  # the jobs looked at that wait, ahead of the rest, in plan order

    def _expand(self, entry: Planned, by_name: dict[str, Planned]) -> list[Planned]:
        """A fan-out's jobs take its place (and the place it had in other jobs' needs); those to run are returned."""
        template = entry.job
        try:
            jobs = expand(template, self.context.finished, lambda result: facts_of(result, self.context), set(by_name),
                          self.context.destination)
        except NeedsValueFailed as failure:
            self._decide(entry, self._decided(template, Status.FAILED, failure.message, failure.error_type))
            return []
        if not jobs:
            self._decide(entry, self._decided(template, Status.SKIPPED, f"the fan-out is over zero items (from "
                                                                        f"{', '.join(template.needs)}); nothing to run"))
            return []
        problem = placement_problem(jobs, [e.job for e in self.plan.entries if e is not entry])
        if problem is not None:  # found before anything of the fan-out is sent
            kind, message = problem
            self._decide(entry, self._decided(template, Status.FAILED, f"{message}; nothing of the fan-out was sent",
                                              kind))
            return []
        next_seq = max(e.seq for e in self.plan.entries) + 1
        children = [Planned(job, entry.file_index, next_seq + n) for n, job in enumerate(jobs)]
        at = self.plan.entries.index(entry)
        self.plan.entries[at:at + 1] = children
        del by_name[template.name]
        for child in children:
            by_name[child.job.name] = child
        for other in self.plan.entries:
            if template.name in other.job.needs:
                other.job.needs = [n for n in other.job.needs if n != template.name] + [c.job.name for c in children]
                other.job.groups = {**other.job.groups, template.name: [c.job.name for c in children]}
        self.progress.total += len(children) - 1
        # Leased before anything is decided of them, as the plan's jobs are (two processes expanding one
        # fan-out into one folder run each child once).
        try:
            self._journal.take_leases([child.job.name for child in children])
            for child in children:
                earlier = self.context.resume_check(child.job) if self.context.resume_check else None
                if earlier is not None:
                    self._decide(child, earlier)
        except Exception as exc:  # a state that cannot be written: the batch stops, as for a result (a worker
            self.journal_failure = self.journal_failure or exc  # expands too: raised, it ended the thread)
            self._stop_all = self._stop_all or f"not sent: the state could not lease the jobs of {template.name}"
        return [child for child in children if child.result is None]

    def _no_slot_left(self) -> bool:
        if self.plan.global_cap is not None and self._running >= self.plan.global_cap:
            return True
        if self.context.admission is not None and self.context.admission.full():
            return True
        return all(running >= cap for running, cap in zip(self._running_per_file, self.plan.file_caps, strict=True))

    def _work(self) -> None:
        while (entry := self._work_queue.get()) is not None:
            self._finish(entry)

    def _finish(self, entry: Planned) -> None:
        try:
            result = self._run(entry.job, self.context)
        except Exception as exc:  # a bug must not hang the batch: report it as this job's failure
            result = self._decided(entry.job, Status.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        if self.context.admission is not None:  # its slot, memory and budget share are free again
            cost = result.run.usage_total_usd if result.run is not None else None
            self.context.admission.release(entry.job, cost, ran=bool(result.attempt_ids))
        with self._changed:
            keep = entry.result is None and not (self.interrupted and not result.succeeded)
            # Its run is over: the slot is free for the next job now, not after the commit below (waiting for
            # it cost 256-wide batches ~10 % of their time), and a failure stops what it stops before anything
            # else can start.
            self._running -= 1
            self._running_per_file[entry.file_index] -= 1
            if keep:
                self._recording.add(entry.seq)
                self._stop_after(entry, result)
            # The next job starts from here, not after the main thread wakes up to start it: that hand-off left
            # ~9 % of the slots idle, 256 jobs wide.
            self._move_on()
        if not keep:
            return  # _abandon() records it as cancelled
        try:
            # Recorded before the job counts as done (needs wait for it, and a kill from here on finds it in
            # the state), outside the scheduler's lock, so that other jobs' results share the commit.
            self._record(entry, result)
        finally:
            with self._changed:
                self._recording.discard(entry.seq)
                entry.result = result
                self.context.finished[entry.job.name] = result
                self._move_on()  # the jobs that needed this one start here too
        self.progress.finish(result)

    def _move_on(self) -> None:
        """After a job's slot came free or its result was recorded (with self._changed held): start what can
        start, and wake the main thread only when it has something to do (the batch is over, or an interrupt
        waits for the jobs to end); woken after every job as well, it cost two GIL hand-offs a job for nothing."""
        if not self.interrupted:
            self._start_ready(self._by_name)
        if self.interrupted or (not self._pending and self._running == 0 and not self._recording):
            self._changed.notify_all()

    def _stop_after(self, entry: Planned, result: JobResult) -> None:
        if result.status is not Status.FAILED:
            return
        if result.error is not None and result.error.stops_batch:
            # The reason is said once, by the job that failed; the others point at it (1,000 cancelled jobs
            # repeating a TLS failure's reason were 2,000 long lines).
            result.error = dataclasses.replace(result.error, message=f"{result.error.message}; the batch stops: "
                                                                     f"{_stop_reason(result)}")
            self._stop_all = f"not sent: the batch stopped (see {entry.job.name})"

        elif self.plan.fail_fast_all:
            self._stop_all = f"not sent: {entry.job.name} failed and --fail-fast is on"
        elif self.plan.file_fail_fast[entry.file_index]:
            self._stopped_files.add(entry.file_index)

    def _abandon(self) -> None:
        self.context.destination.cancel()
        with self._changed:
            self._changed.wait_for(lambda: self._running == 0 and not self._recording, timeout=GRACE_SECONDS)
            for entry in self.plan.entries:
                if entry.result is not None or entry.seq in self._recording:
                    continue
                if entry.started:
                    result = self._decided(entry.job, Status.CANCELLED, "interrupted while running; the platform "
                                                                        "may still be running it")
                    # What helps find its run later: when it started, and each attempt's identity.
                    result.started_at = entry.started_at
                    result.attempt_ids = [a.id for a in self.context.attempts.of_job(entry.job.name)]
                    result.attempts = max(len(result.attempt_ids), 1)
                else:
                    result = self._decided(entry.job, Status.CANCELLED, "interrupted before it started; never sent")
                self._record(entry, result)
                entry.result = result

    def _decide(self, entry: Planned, result: JobResult) -> None:
        """A job decided without running (cancelled or skipped): recorded, shown, done."""
        self._record(entry, result)
        entry.result = result
        self.context.finished[entry.job.name] = result
        self.progress.finish(result)

    def _record(self, entry: Planned, result: JobResult) -> None:
        """Record through the journal; a state that cannot be written (a full disk) stops the batch, and `run`
        says so in one line once the threads are done (raised here, it would end a worker thread)."""
        try:
            self._journal.record(entry.seq, result)
        except Exception as exc:
            with self._changed:  # re-entrant for the scheduler's own calls
                self.journal_failure = self.journal_failure or exc
                self._stop_all = self._stop_all or f"not sent: the state could not record {entry.job.name}"

    def _decided(self, job: Job, status: Status, message: str, error_type: str | None = None) -> JobResult:
        return decided(job, self.context.base_url, status, message, error_type)
