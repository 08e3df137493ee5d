"""The executor through its `run=` seam: caps, needs, fail-fast, a batch stopped by 401/403, interrupts and its
worker threads — no sockets, a fake job runner that records what it was asked to run."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

from apify_jobs.api.client import ApiClient
from apify_jobs.api.request import build_request
from apify_jobs.model import Job, JobFile
from apify_jobs.outputs.destination import LocalFolder
from apify_jobs.record import JobError, JobResult, Status
from apify_jobs.reports.progress import Progress
from apify_jobs.running.executor import Executor
from apify_jobs.running.runner import RunContext, new_result
from apify_jobs.running.selection import Selectors, select
from tests.helpers import make_job


class FakeRunner:
    """Runs a job by sleeping; fails the names in ``fail`` (with ``stops_batch`` for those in ``refuse``)."""

    def __init__(self, seconds: float = 0.02, fail: frozenset[str] = frozenset(), refuse: frozenset[str] = frozenset()):
        self.seconds, self.fail, self.refuse = seconds, fail, refuse
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.running = 0
        self.most = 0

    def __call__(self, job: Job, context: RunContext) -> JobResult:
        with self.lock:
            self.started.append(job.name)
            self.running += 1
            self.most = max(self.most, self.running)
        context.cancelled.wait(self.seconds)
        with self.lock:
            self.running -= 1
        result = new_result(job, build_request(job))
        if context.cancelled.is_set():  # as the real runner: a request cut off by Ctrl-C
            result.status, result.attempts = Status.CANCELLED, 1
        elif job.name in self.fail or job.name in self.refuse:
            result.status = Status.FAILED
            result.error = JobError("http-403" if job.name in self.refuse else "run-failed", "no",
                                    stops_batch=job.name in self.refuse)
        else:
            result.status = Status.SUCCEEDED
        return result


def files(tmp_path: Path, *groups: tuple[list[dict], int, bool]) -> list[JobFile]:
    out = []
    for index, (specs, concurrency, fail_fast) in enumerate(groups):
        jobs = []
        for spec in specs:
            job = make_job(tmp_path, {"task": "me~t", **{k: v for k, v in spec.items() if k != "needs"}})
            job.needs = spec.get("needs", [])
            jobs.append(job)
        out.append(JobFile(f"f{index}.yaml", "0" * 64, concurrency, fail_fast, jobs))
    return out


def execute(tmp_path: Path, job_files: list[JobFile], runner: FakeRunner, global_cap: int | None = None,
            fail_fast: bool = False) -> tuple[Executor, list[JobResult], str]:
    plan = select(job_files, Selectors(), global_cap, fail_fast)
    stream = io.StringIO()
    progress = Progress(len(plan.entries), stream=stream)
    context = RunContext(ApiClient(None, base_url="http://127.0.0.1:9"), LocalFolder(str(tmp_path / "out")))
    executor = Executor(plan, context, progress, run=runner)
    return executor, executor.run(), stream.getvalue()


def test_caps_of_files_and_of_the_run(tmp_path: Path) -> None:
    runner = FakeRunner(0.05)
    many = [{"name": f"a{i}"} for i in range(8)]
    _, results, _ = execute(tmp_path, files(tmp_path, (many, 3, False)), runner)
    assert runner.most == 3 and all(r.succeeded for r in results)
    runner = FakeRunner(0.05)
    _, results, _ = execute(tmp_path, files(tmp_path, (many, 3, False), ([{"name": "b"}, {"name": "c"}], 2, False)),
                            runner, global_cap=2)
    assert runner.most == 2 and len(results) == 10


def test_needs_wait_and_a_failed_need_skips(tmp_path: Path) -> None:
    runner = FakeRunner(fail=frozenset({"first"}))
    specs = [{"name": "second", "needs": ["first"]}, {"name": "first"}, {"name": "free"}]
    _, results, lines = execute(tmp_path, files(tmp_path, (specs, 4, False)), runner)
    by_name = {r.name: r for r in results}
    assert "second" not in runner.started
    assert by_name["second"].status is Status.SKIPPED and "needs first, which failed" in by_name["second"].error.message
    assert by_name["free"].succeeded and "skipped   second" in lines


def test_fail_fast_cancels_the_rest_with_a_line_each(tmp_path: Path) -> None:
    runner = FakeRunner(fail=frozenset({"a0"}))
    specs = [{"name": f"a{i}"} for i in range(4)]
    _, results, lines = execute(tmp_path, files(tmp_path, (specs, 1, True), ([{"name": "other"}], 1, False)), runner)
    assert sorted(runner.started) == ["a0", "other"]  # the other file is not stopped by this file's failFast
    cancelled = [r.name for r in results if r.status is Status.CANCELLED]
    assert cancelled == ["a1", "a2", "a3"]
    assert all(f"cancelled {name}" in lines for name in cancelled)


def test_a_refused_job_stops_every_file(tmp_path: Path) -> None:
    runner = FakeRunner(refuse=frozenset({"a0"}))
    _, results, lines = execute(tmp_path, files(tmp_path, ([{"name": f"a{i}"} for i in range(3)], 1, False),
                                                ([{"name": f"b{i}"} for i in range(3)], 1, False)), runner,
                                global_cap=1)
    assert runner.started == ["a0"]
    assert sum(r.status is Status.CANCELLED for r in results) == 5 and lines.count("cancelled ") == 5


def test_interrupt_cancels_running_and_waiting_jobs(tmp_path: Path) -> None:
    runner = FakeRunner(600.0)  # ended only by the interrupt: a job that ran its course would succeed
    plan_files = files(tmp_path, ([{"name": f"a{i}"} for i in range(4)], 2, False))
    plan = select(plan_files, Selectors(), None, False)
    context = RunContext(ApiClient(None, base_url="http://127.0.0.1:9"), LocalFolder(str(tmp_path / "out")))
    executor = Executor(plan, context, Progress(4, stream=io.StringIO()), run=runner)
    threading.Timer(0.2, executor.interrupt).start()
    results = executor.run()
    assert [r.status for r in results] == [Status.CANCELLED] * 4 and runner.started == ["a0", "a1"]
    assert [r.attempts for r in results] == [1, 1, 0, 0]  # the running two were sent; the others never


def test_worker_threads_end_when_run_returns(tmp_path: Path) -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("worker-")}
    for _ in range(3):
        execute(tmp_path, files(tmp_path, ([{"name": f"a{i}"} for i in range(6)], 3, False)), FakeRunner(0.0))
    after = {t for t in threading.enumerate() if t.name.startswith("worker-")}
    assert after <= before


class SlowJournal:
    """A state whose commits take ``seconds``: when each job's record began and was committed."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.committed: dict[str, float] = {}

    def lease(self, job: str) -> str | None:
        return None

    def record(self, seq: int, result: JobResult) -> None:
        time.sleep(self.seconds)
        self.committed[result.name] = time.monotonic()

    def record_all(self, decided: list[tuple[int, JobResult]]) -> None:
        for seq, result in decided:
            self.record(seq, result)


class TimedRunner(FakeRunner):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.began: dict[str, float] = {}

    def __call__(self, job: Job, context: RunContext) -> JobResult:
        self.began[job.name] = time.monotonic()
        return super().__call__(job, context)


def execute_with(tmp_path: Path, job_files: list[JobFile], runner: FakeRunner, journal: SlowJournal,
                 fail_fast: bool = False) -> list[JobResult]:
    plan = select(job_files, Selectors(), None, fail_fast)
    context = RunContext(ApiClient(None, base_url="http://127.0.0.1:9"), LocalFolder(str(tmp_path / "out")))
    return Executor(plan, context, Progress(len(plan.entries), stream=io.StringIO()), run=runner,
                    journal=journal).run()


def test_a_slow_commit_frees_the_slot_but_needs_wait_for_it(tmp_path: Path) -> None:
    """The slot (the account's concurrent runs) is free when a run is over; a job that needs it starts only
    once its result is committed, and the batch ends only when every result is."""
    runner, journal = TimedRunner(0.01), SlowJournal(0.3)
    specs = [{"name": "a"}, {"name": "b"}, {"name": "after", "needs": ["a"]}]
    results = execute_with(tmp_path, files(tmp_path, (specs, 1, False)), runner, journal)
    assert runner.most == 1 and all(r.succeeded for r in results) and set(journal.committed) == {"a", "b", "after"}
    assert runner.began["b"] < journal.committed["a"]  # b did not wait for a's commit
    assert runner.began["after"] >= journal.committed["a"]  # but what needs a did


def test_fail_fast_is_decided_before_the_slot_is_free(tmp_path: Path) -> None:
    runner = FakeRunner(0.01, fail=frozenset({"a0"}))
    specs = [{"name": f"a{i}"} for i in range(4)]
    results = execute_with(tmp_path, files(tmp_path, (specs, 1, True)), runner, SlowJournal(0.3))
    assert runner.started == ["a0"]  # nothing started while a0's failure was being committed
    assert [r.status for r in results].count(Status.CANCELLED) == 3


def test_a_state_that_cannot_be_written_stops_the_batch_without_a_thread_traceback(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    from apify_jobs.running.state import StateError

    crashed: list[object] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)

    class FullDisk(SlowJournal):
        def record(self, seq: int, result: JobResult) -> None:
            raise StateError("cannot write the state: database or disk is full")

    runner = FakeRunner(0.01)
    plan = select(files(tmp_path, ([{"name": f"a{i}"} for i in range(4)], 1, False)), Selectors(), None, False)
    context = RunContext(ApiClient(None, base_url="http://127.0.0.1:9"), LocalFolder(str(tmp_path / "out")))
    executor = Executor(plan, context, Progress(len(plan.entries), stream=io.StringIO()), run=runner,
                        journal=FullDisk(0))
    results = executor.run()
    # a1 may have started as a0's slot came free, before a0's record failed; nothing after that
    assert runner.started[0] == "a0" and len(runner.started) <= 2 and crashed == []
    assert isinstance(executor.journal_failure, StateError)
    assert all(r.status is Status.CANCELLED for r in results if r.name not in runner.started)


def test_a_wide_batch_shortens_the_switch_interval_while_it_runs_and_only_then(tmp_path: Path) -> None:
    """Hundreds of workers take the interpreter lock in turns of 0.2 ms, not 5 ms (bench/run.py --only wide:
    1.30 -> 1.19 x ideal); a narrow batch keeps Python's own, and the setting is restored either way."""
    import sys

    from apify_jobs.running.executor import WIDE_SWITCH_INTERVAL, WIDE_WORKERS

    before = sys.getswitchinterval()
    seen: list[float] = []

    class Recording(FakeRunner):
        def __call__(self, job: Job, context: RunContext) -> JobResult:
            seen.append(sys.getswitchinterval())
            return super().__call__(job, context)

    wide = [{"name": f"w{i}"} for i in range(WIDE_WORKERS)]
    execute(tmp_path, files(tmp_path, (wide, WIDE_WORKERS, False)), Recording(0))
    assert {round(s, 6) for s in seen} == {WIDE_SWITCH_INTERVAL} and sys.getswitchinterval() == before
    seen.clear()
    execute(tmp_path, files(tmp_path, ([{"name": f"n{i}"} for i in range(8)], 8, False)), Recording(0))
    assert set(seen) == {before} and sys.getswitchinterval() == before


def test_the_main_thread_is_woken_when_the_batch_ends_not_after_every_job(tmp_path: Path) -> None:
    """Workers start what can start (the next job, the jobs that needed a finished one); waking the main thread
    after each job as well cost two GIL hand-offs a job for nothing. Needs still run in order."""
    wakes = []

    class Counting(threading.Condition):
        def notify_all(self) -> None:
            wakes.append(1)
            super().notify_all()

    runner = FakeRunner(0.001)
    specs = [{"name": f"a{i}", "needs": [f"a{i - 1}"] if i % 2 else []} for i in range(40)]
    plan = select(files(tmp_path, (specs, 1, False)), Selectors(), None, False)
    context = RunContext(ApiClient(None, base_url="http://127.0.0.1:9"), LocalFolder(str(tmp_path / "out")))
    executor = Executor(plan, context, Progress(len(plan.entries), stream=io.StringIO()), run=runner)
    executor._changed = Counting()
    results = executor.run()
    assert all(r.succeeded for r in results) and len(results) == 40
    assert all(runner.started.index(f"a{i}") > runner.started.index(f"a{i - 1}") for i in range(1, 40, 2))
    assert len(wakes) <= 2, len(wakes)  # the end of the batch (the last job's two steps may both see it)
