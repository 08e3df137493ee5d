"""Run identity over real sockets: every attempt's run is found by its User-Agent, exactly; the emulator
counts every POST (money) and every look-up."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from apify_jobs.api import recovery
from tests.conftest import QUICK
from tests.helpers import job_file, jobs_by_name, leftovers, read_report, until

FAST = "backoff: {initial: 0, max: 0}"
ATTEMPT_ID = re.compile(r"^apify-jobs/[0-9.]+ \(\+([0-9a-f]{32})\)$")


def run(cli, tmp_path: Path, body: str, *extra: str):
    path = job_file(tmp_path, body)
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", path, "--out-dir", out, *extra)
    return code, jobs_by_name(read_report(out)), out, stdout + stderr


def test_every_attempt_carries_a_fresh_identity_that_the_report_keeps(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "before-response"}, {}]}})
    code, jobs, _, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, retry: {{{FAST}}}}}\n")
    agents = [r["headers"]["User-Agent"] for r in server.state.run_sync_requests()]
    ids = [ATTEMPT_ID.match(agent).group(1) for agent in agents]
    assert code == 0 and len(set(ids)) == 2 and jobs["a"]["attemptIds"] == ids


def test_a_job_never_adopts_the_run_of_another_job_with_a_larger_override(cli, emulator, tmp_path: Path) -> None:
    """`narrow`'s override is a subset of `wide`'s; `narrow`'s first attempt started nothing. Matching inputs
    by subset adopted `wide`'s run as `narrow`'s; by identity, `narrow` finds none and gets its own run."""
    server = emulator({"tasks": {"me~t": [{}, {"drop": "before-response"}, {}]}})
    code, jobs, out, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: wide, task: me~t, input: {{q: 1, extra: 2}}}}
          - {{name: narrow, task: me~t, input: {{q: 1}}, needs: [wide], retry: {{{FAST}}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 3} and len(server.state.runs) == 2
    assert jobs["narrow"]["recovery"]["adopted"] is False and jobs["narrow"]["recovery"]["looks"][0]["found"] == "none"
    assert json.loads((out / "narrow.json").read_text())["input"] == {"q": 1}
    assert jobs["narrow"]["runId"] == server.state.runs[1].id != jobs["wide"]["runId"]


def test_identical_jobs_both_dropped_each_adopt_their_own_run(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"drop": "after-start", "latency": 0.2}}})
    code, jobs, _, _ = run(cli, tmp_path, f"""
        concurrency: 2
        jobs:
          - {{name: one, task: me~t, input: {{same: true}}, retry: {{{FAST}}}}}
          - {{name: two, task: me~t, input: {{same: true}}, retry: {{{FAST}}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 2}
    adopted = {jobs[name]["recovery"]["runId"] for name in ("one", "two")}
    assert adopted == {r.id for r in server.state.runs}
    for name in ("one", "two"):  # each the run its own attempt started
        [run_] = [r for r in server.state.runs if r.id == jobs[name]["recovery"]["runId"]]
        assert run_.user_agent.endswith(f"(+{jobs[name]['attemptIds'][0]})")


@pytest.mark.parametrize("skew", [900, -900])
def test_clock_skew_of_fifteen_minutes_changes_nothing(cli, emulator, tmp_path: Path, skew: int) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start", "latency": 0.2}, {}]},
                       "platform": {"clockSkew": skew}})
    code, jobs, _, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, retry: {{{FAST}}}}}\n")
    assert code == 0 and server.state.per_task == {"me~t": 1} and len(server.state.runs) == 1
    assert jobs["a"]["recovery"]["runId"] == server.state.runs[0].id


@pytest.mark.parametrize("kind", ["get-run", "get-record", "dataset-items"])
@pytest.mark.parametrize("answers", [[503, 429], ["drop", 502]])
def test_failed_lookups_after_adoption_never_send_the_post_again(cli, emulator, tmp_path: Path, kind: str,
                                                                  answers: list) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start", "latency": 0.3}, {}]},
                       "platform": {"failures": {kind: answers}}})
    dataset = ", dataset: {format: json}" if kind == "dataset-items" else ""
    # The job opts into retrying every class: still, once the run is adopted, nothing re-sends the POST.
    code, jobs, out, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: a, task: me~t{dataset}, retry: {{{FAST}, on: [connection, server-error, rate-limit]}}}}
        """)
    assert code == 0 and server.state.per_task == {"me~t": 1}
    assert jobs["a"]["recovery"]["adopted"] is True and len(server.state.lookups_of(kind)) == 3


def test_lookups_that_keep_failing_end_as_recovery_failed_with_one_post(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start"}, {}]},
                       "platform": {"failures": {"get-record": [503] * 10}}})
    code, jobs, out, output = run(cli, tmp_path, f"""
        jobs:
          - {{name: a, task: me~t, retry: {{{FAST}, on: [connection, server-error, rate-limit]}}}}
        """)
    error = jobs["a"]["error"]
    assert code == 1 and server.state.per_task == {"me~t": 1}
    assert error["type"] == "recovery-failed" and error["runId"] == server.state.runs[0].id
    assert "GET /v2/key-value-stores/" in error["message"] and not (out / "a.json").exists()


@pytest.mark.parametrize("settings", [dataclasses.replace(QUICK, settle=0.0)])  # one look: its pages are counted
def test_a_listing_that_ignores_offset_ends_within_the_page_cap(cli, emulator, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(recovery, "PAGE", 3)  # so that a dozen runs need several pages
    server = emulator({"tasks": {"me~t": [*([{}] * 12), {"drop": "before-response"}, {}]},
                       "platform": {"listingIgnoresOffset": True}})
    jobs = "".join(f"  - {{name: f{i}, task: me~t}}\n" for i in range(12))
    code, report, _, _ = run(cli, tmp_path, f"jobs:\n{jobs}  - {{name: last, task: me~t, needs: [f11], retry: {{{FAST}}}}}\n")
    listings = server.state.lookups_of("list-runs")
    assert code == 0 and server.state.per_task == {"me~t": 14}
    assert report["last"]["recovery"]["looks"][0]["found"] == "none"
    # one look, stopped by a repeated page; then the run facts' own listing
    assert len(listings) <= 2 + 2


@pytest.mark.parametrize("settings", [dataclasses.replace(QUICK, settle=2.0, look_again=(0.3, 0.6, 1.2))])
def test_a_run_that_shows_late_in_the_listing_is_still_found(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start", "latency": 0.1}, {}]},
                       "platform": {"listingDelay": 0.6}})
    code, jobs, _, _ = run(cli, tmp_path, f"jobs:\n  - {{name: a, task: me~t, retry: {{{FAST}}}}}\n")
    looks = len(server.state.lookups_of("list-runs"))
    assert code == 0 and server.state.per_task == {"me~t": 1} and jobs["a"]["recovery"]["adopted"] is True
    assert looks >= 2  # the first look did not see it yet


def test_a_408_is_followed_to_the_runs_output(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"latency": 1.2, "syncLimit": 0.2}}})
    code, jobs, out, output = run(cli, tmp_path, "jobs:\n  - {name: a, task: me~t, input: {q: late}}\n")
    [started] = server.state.runs
    assert code == 0 and server.state.per_task == {"me~t": 1}
    assert jobs["a"]["runId"] == started.id and jobs["a"]["recovery"]["followed"] is True
    assert json.loads((out / "a.json").read_text())["input"] == {"q": "late"}
    assert "following the run" in output
    polls = [r["query"] for r in server.state.lookups_of("get-run")]
    assert polls and all(int(q["waitForFinish"]) >= 1 for q in polls)


def test_a_408_past_max_wait_fails_with_the_run_that_goes_on(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"latency": 5, "syncLimit": 0.2}}})
    code, jobs, out, output = run(cli, tmp_path, "jobs:\n  - {name: a, task: me~t, follow: {maxWait: 1}}\n")
    [going] = server.state.runs
    assert code == 1 and server.state.per_task == {"me~t": 1}
    assert not going.finished.is_set()  # the job gave up while its run went on (it ends 5 s after it started)
    error = jobs["a"]["error"]
    assert error["type"] == "follow-timeout" and error["runId"] == going.id and "goes on" in error["message"]
    assert going.id in output and not (out / "a.json").exists() and leftovers(tmp_path) == []
    assert len(server.state.lookups_of("get-run")) <= 3  # no faster than one poll a second


def test_run_facts_for_a_batch_cost_at_most_two_listings_per_task(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    jobs = "".join(f"  - {{name: j{i}, task: me~t{i % 3}, input: {{n: {i}}}}}\n" for i in range(50))
    code, report, _, output = run(cli, tmp_path, f"concurrency: 8\njobs:\n{jobs}")
    by_run = {r.id: r for r in server.state.runs}
    assert code == 0 and len(by_run) == 50
    for entry in report.values():
        started = by_run[entry["runId"]]
        assert started.user_agent.endswith(f"(+{entry['attemptIds'][-1]})")
        assert entry["runStatus"] == "SUCCEEDED" and entry["usageTotalUsd"] > 0
        assert entry["defaultDatasetId"] == started.dataset_id and entry["consoleUrl"].endswith(started.id)
    listings = [r["path"] for r in server.state.lookups_of("list-runs")]
    assert all(listings.count(f"/v2/actor-tasks/me~t{t}/runs") <= 2 for t in range(3))
    whole = read_report(tmp_path / "out")
    assert whole["totals"]["usageTotalUsd"] == pytest.approx(sum(e["usageTotalUsd"] for e in report.values()))
    assert "cost: $" in output


def test_no_run_facts_makes_no_lookups(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, jobs, _, _ = run(cli, tmp_path, "jobs:\n  - {name: a, task: me~t}\n", "--no-run-facts")
    assert code == 0 and server.state.lookups == [] and "runId" not in jobs["a"]


def test_failed_jobs_show_their_console_link_and_junit_carries_the_run(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"respond": "run-failed"}}})
    code, jobs, out, output = run(cli, tmp_path, "jobs:\n  - {name: a, task: me~t}\n", "--junit",
                                  str(tmp_path / "junit.xml"))
    run_id = server.state.runs[0].id
    assert code == 1 and f"a: https://console.apify.com/view/runs/{run_id}" in output
    junit = (tmp_path / "junit.xml").read_text()
    assert f'name="runId" value="{run_id}"' in junit and f"view/runs/{run_id}" in junit


def _interrupted_run(tmp_path: Path, emulator, *extra: str) -> tuple[subprocess.CompletedProcess, object]:
    server = emulator({"default": {"latency": 30}})
    path = job_file(tmp_path, "concurrency: 3\njobs:\n" + "".join(f"  - {{name: j{i}, task: me~t}}\n" for i in range(5)))
    process = subprocess.Popen([sys.executable, "-m", "apify_jobs", "run", str(path), "--out-dir", str(tmp_path / "out"),
                                *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert until(lambda: len(server.state.runs) >= 3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), server


def test_abort_on_interrupt_aborts_exactly_the_runs_in_flight(emulator, tmp_path: Path) -> None:
    done, server = _interrupted_run(tmp_path, emulator, "--abort-on-interrupt")
    aborted = {r["path"].split("/")[3] for r in server.state.lookups_of("abort-run")}
    assert done.returncode == 130 and server.state.per_task == {"me~t": 3}
    assert aborted == {r.id for r in server.state.runs} and all(r.status == "ABORTED" for r in server.state.runs)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(g["runId"] for g in report["runsStillGoing"] if g["aborted"]) == sorted(aborted)
    assert "runs aborted:" in done.stderr


def test_an_interrupt_lists_the_runs_still_going_without_aborting(emulator, tmp_path: Path) -> None:
    done, server = _interrupted_run(tmp_path, emulator)
    assert done.returncode == 130 and server.state.lookups_of("abort-run") == []
    assert all(r.id in done.stderr for r in server.state.runs) and "still going (and billed)" in done.stderr


def test_abort_on_interrupt_with_nothing_running_says_so(emulator, tmp_path: Path) -> None:
    """The only job is waiting out a 429's Retry-After: nothing runs on the platform."""
    server = emulator({"default": {"respond": "rate-limit", "retryAfter": 30}})
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, retry: {on: [rate-limit]}}\n")
    process = subprocess.Popen([sys.executable, "-m", "apify_jobs", "run", str(path), "--out-dir", str(tmp_path / "out"),
                                "--abort-on-interrupt"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert until(lambda: bool(server.state.requests))
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and server.state.per_task == {"me~t": 1}
    assert "no run is still going on the platform" in stderr and server.state.lookups_of("abort-run") == []


@pytest.mark.slow  # ~8 s: the first run's look-ups back off as the real settings do
def test_a_recovery_failed_job_is_adopted_by_the_next_run_not_sent_again(emulator, tmp_path: Path) -> None:
    """Its run exists; only fetching its output failed. The next `run --resume` (another process, as in CI)
    looks for it by identity and collects it: one POST for two invocations."""
    from tests.conftest import run_process

    server = emulator({"tasks": {"me~t": [{"drop": "after-start"}, {}]},
                       "platform": {"failures": {"get-record": [503] * 5}}})
    path = job_file(tmp_path, f"jobs:\n  - {{name: a, task: me~t, retry: {{{FAST}}}}}\n")
    out = tmp_path / "out"
    first = run_process("run", str(path), "--out-dir", str(out), "--no-run-facts")
    assert first.returncode == 1 and jobs_by_name(read_report(out))["a"]["error"]["type"] == "recovery-failed"
    assert server.state.per_task == {"me~t": 1} and len(server.state.lookups_of("get-record")) == 5
    second = run_process("run", str(path), "--out-dir", str(out), "--resume", "--no-run-facts")
    job = jobs_by_name(read_report(out))["a"]
    assert second.returncode == 0, second.stderr
    assert job["status"] == "succeeded" and server.state.per_task == {"me~t": 1}
    assert job["recovery"]["runId"] == server.state.runs[0].id and (out / "a.json").exists()


def test_run_facts_ask_a_page_sized_to_the_batch_and_page_on_when_others_started_runs_since(
        cli, emulator, tmp_path: Path, monkeypatch) -> None:
    """A task with a long history: the facts look-up asks for the batch's attempts and a margin, not a full page
    of 1,000 runs; runs others started since push ours past that page, and the next, full, page finds them."""
    from apify_jobs.running import run_facts

    server = emulator({})
    history = job_file(tmp_path, "jobs:\n" + "".join(f"  - {{name: h{i}, task: me~t, input: {{i: {i}}}}}\n"
                                                      for i in range(30)), "history.yaml")
    assert cli("run", history, "--out-dir", tmp_path / "history")[0] == 0
    server.state.lookups.clear()
    code, jobs, _, _ = run(cli, tmp_path, "jobs:\n  - {name: a, task: me~t}\n  - {name: b, task: me~t}\n")
    [listing] = server.state.lookups_of("list-runs")
    assert code == 0 and listing["query"]["limit"] == str(2 + run_facts.FIRST_PAGE_SLACK)
    assert all(jobs[name]["runId"] for name in "ab") and len(server.state.run_sync_requests()) == 32

    # Others start runs of the task between the batch and its look-up: 5 more than the first page's margin.
    monkeypatch.setattr(run_facts, "FIRST_PAGE_SLACK", 3)
    original = run_facts.find_runs

    def others_first(*args, **kwargs):
        for i in range(8):  # another team's runs of the task, started after ours
            request = urllib.request.Request(f"{server.url}/v2/actor-tasks/me~t/run-sync", data=json.dumps({"o": i}).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
            urllib.request.urlopen(request).close()
        server.state.lookups.clear()
        return original(*args, **kwargs)

    monkeypatch.setattr(run_facts, "find_runs", others_first)
    code, jobs, _, _ = run(cli, tmp_path, "jobs:\n  - {name: c, task: me~t}\n  - {name: d, task: me~t}\n")
    limits = [(look["query"]["offset"], look["query"]["limit"]) for look in server.state.lookups_of("list-runs")]
    assert code == 0 and all(jobs[name]["runId"] for name in "cd")
    assert limits == [("0", "5"), ("5", str(run_facts.PAGE))]


@pytest.mark.parametrize("large", [False, True])
def test_the_runs_of_several_tasks_are_looked_up_at_once_while_their_pages_are_small(monkeypatch, large: bool) -> None:
    """One listing per task, several at a time: 4 tasks whose listings take 0.2 s each are found in about one
    listing's time, not four. Pages too large to parse four at once (memory) are looked up one after another."""
    import threading

    from apify_jobs.api.identity import Attempt
    from apify_jobs.running import run_facts

    if large:
        monkeypatch.setattr(run_facts, "SMALL_PAGE", run_facts.FIRST_PAGE_SLACK)  # 1 attempt + the slack: large

    lock, at_once, most = threading.Lock(), [0], [0]

    class Listing:
        def __init__(self, task: str):
            self.headers: dict[str, str] = {}
            self.items = [{"id": f"run-{task}", "status": "SUCCEEDED",
                           "meta": {"userAgent": f"apify-jobs/1 (+{task.rjust(32, '0')})"}}]

        def __enter__(self):
            with lock:
                at_once[0] += 1
                most[0] = max(most[0], at_once[0])
            time.sleep(0.2)
            return self

        def __exit__(self, *exc):
            with lock:
                at_once[0] -= 1

        def json(self):
            return {"data": {"items": self.items}}

    class Client:
        def list_runs(self, task, **_):
            return Listing(task)

    attempts = [Attempt(f"{i}".rjust(32, "0"), f"job{i}", f"{i}", 1, started_run=True) for i in range(4)]
    began = time.monotonic()
    found = run_facts.find_runs(Client(), attempts, threading.Event(), QUICK)
    assert {a: f.run_id for a, f in found.items()} == {a.id: f"run-{a.task}" for a in attempts}
    assert most[0] == (1 if large else 4) and (large or time.monotonic() - began < 0.6)


def test_attempt_ids_are_128_random_bits_never_repeated_by_a_forked_child() -> None:
    """IDs come from a generator seeded once from the system's randomness (no system call before each POST);
    a child made by fork reseeds, so it cannot repeat its parent's next IDs."""
    import os

    from apify_jobs.api.identity import new_attempt_id

    ids = [new_attempt_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(writer, new_attempt_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    from_child = os.read(reader, 64).decode()
    os.close(reader)
    assert re.fullmatch(r"[0-9a-f]{32}", from_child) and from_child != new_attempt_id()
