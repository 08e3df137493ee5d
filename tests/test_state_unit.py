"""The state's reading and writing in bulk, without a run: results recorded many at once, and report entries
read back a batch at a time in the order the run selected them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apify_jobs.api.request import build_request
from apify_jobs.record import Status
from apify_jobs.reports import report
from apify_jobs.reports.report import ReportOf
from apify_jobs.running import state as state_module
from apify_jobs.running.runner import new_result
from apify_jobs.running.state import State
from tests.helpers import make_job


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A state holding ``count`` results (every third failed), read back 4 entries at a time."""
    monkeypatch.setattr(state_module.StoredEntries, "BATCH", 4)
    opened: list[State] = []

    def _recorded(count: int) -> State:
        opened.append(record(tmp_path, count))
        return opened[-1]

    yield _recorded
    for state in opened:
        state.close()


def record(tmp_path: Path, count: int) -> State:
    state = State(str(tmp_path / "out"))
    state.begin({}, [])
    results = []
    for index in range(count):
        job = make_job(tmp_path, {"name": f"job{index}", "task": "me~t"})
        result = new_result(job, build_request(job))
        result.status = Status.SUCCEEDED if index % 3 else Status.FAILED
        results.append((count - index, result))  # seq runs backwards: entries come in seq order
    state.record_all(results)
    return state


def test_entries_are_read_a_batch_at_a_time_in_the_order_selected(recorded) -> None:
    state = recorded(11)
    _, entries = state.entries("last")
    names = [entry.name for entry in entries]
    assert len(entries) == 11 and names == [f"job{i}" for i in reversed(range(11))]
    assert [entry.name for entry in entries] == names  # iterable again, read again
    _, every = state.entries("all")
    assert sorted(entry.name for entry in every) == sorted(names)


def test_the_streamed_report_is_the_document_with_one_job_a_line(recorded) -> None:
    _, entries = recorded(10).entries("last")
    text = "".join(report.json_text(ReportOf(entries)))
    document = json.loads(text)
    assert document["totals"]["jobs"] == 10 and document["totals"]["failed"] == 4
    assert document["totals"]["succeeded"] == 6
    job_lines = [line for line in text.splitlines() if line.startswith('    {"name": ')]
    assert len(job_lines) == 10 and [json.loads(line.rstrip(","))["name"] for line in job_lines] == \
        [job["name"] for job in document["jobs"]]
    empty = json.loads("".join(report.json_text(ReportOf([]))))
    assert empty["jobs"] == [] and empty["totals"]["jobs"] == 0


def test_a_group_commit_leader_commits_once_then_hands_over_to_those_who_arrived_meanwhile() -> None:
    """A write-ahead leader must not go on committing for threads arriving after it (its POST waits meanwhile):
    it commits what waits, returns, and the first thread that arrived during its commit leads the next one."""
    import threading

    first_commit_started, others_arrived = threading.Event(), threading.Event()
    commits: list[tuple[str, list[int]]] = []

    def commit(rows: list[tuple[int]]) -> None:
        commits.append((threading.current_thread().name, sorted(r[0] for r in rows)))
        if len(commits) == 1:
            first_commit_started.set()
            assert others_arrived.wait(10)

    group = state_module._GroupCommit(commit, "test")
    returned: list[str] = []

    def submit(number: int) -> None:
        group.submit([(number,)])
        returned.append(threading.current_thread().name)

    leader = threading.Thread(target=submit, args=(0,), name="leader")
    leader.start()
    assert first_commit_started.wait(10)
    followers = [threading.Thread(target=submit, args=(n,), name=f"follower-{n}") for n in (1, 2, 3)]
    for follower in followers:
        follower.start()
    # each has queued its rows (under the group's lock) once the lock is free and three rows wait
    while len(group._waiting) < 3:
        threading.Event().wait(0.001)
    others_arrived.set()
    for thread in [leader, *followers]:
        thread.join(10)
    assert commits[0] == ("leader", [0])
    assert len(commits) == 2 and commits[1][0].startswith("follower-") and commits[1][1] == [1, 2, 3]
    assert sorted(returned) == ["follower-1", "follower-2", "follower-3", "leader"]


@pytest.mark.parametrize(("count", "inserts"), [(1, 1), (4, 1), (13, 3), (64, 1), (64 + 13, 4), (200, 4)])
def test_attempts_committed_together_are_all_in_flight_in_one_statement_or_one_transaction(
        tmp_path: Path, count: int, inserts: int) -> None:
    """A group of attempts goes in as one INSERT when its size is a power of two up to ROWS_A_STATEMENT (no BEGIN
    and COMMIT around it), else as a few of those in one transaction; every one is there, open, as written."""
    state = State(str(tmp_path / "out"))
    try:
        state.begin({}, [])
        statements: list[str] = []
        state._ahead_db.set_trace_callback(statements.append)
        rows = [(f"attempt-{n}", f"job{n}", "key", state.invocation, 1, "me~t", 0, 1.0 + n, 4242, "elsewhere")
                for n in range(count)]
        state._commit_attempts(rows)
        state._ahead_db.set_trace_callback(None)
        assert sum(s.startswith("INSERT") for s in statements) == inserts
        if inserts == 1:
            assert len(statements) == 1
        else:
            assert statements[0].startswith("BEGIN") and statements[-1] == "COMMIT"
        stored = sorted((a.id, a.job, a.sent_at) for a in state.in_flight())
        assert stored == sorted((f"attempt-{n}", f"job{n}", 1.0 + n) for n in range(count))
    finally:
        state.close()


def test_results_committed_together_release_their_leases_in_the_same_transaction(tmp_path: Path) -> None:
    """Every result stored, every lease released, and the whole group in one transaction (a kill between cannot
    leave a released lease without its result)."""
    state = record(tmp_path, 0)
    try:
        names = [f"job{n}" for n in range(200)]
        state.take_leases(names)
        assert state._db.execute("SELECT count(*) FROM leases").fetchone()[0] == 200
        statements: list[str] = []
        state._db.set_trace_callback(statements.append)
        results = []
        for seq, name in enumerate(names):
            job = make_job(tmp_path, {"name": name, "task": "me~t"})
            result = new_result(job, build_request(job))
            result.status = Status.SUCCEEDED
            results.append((seq, result))
        state.record_all(results)
        state._db.set_trace_callback(None)
        assert statements[0].startswith("BEGIN") and statements[-1] == "COMMIT"
        assert state._db.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
        assert sorted(r.name for r in state.entries(str(state.invocation))[1]) == sorted(names)
    finally:
        state.close()
