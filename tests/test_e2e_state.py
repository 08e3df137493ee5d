"""The durable state with real processes: kills, partial runs, shards into one folder, collisions,
pre-flight, pipes, fail-fast, file modes, leases, leftovers and a state that cannot be read. The emulator
counts every POST."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import REPO, run_process
from tests.helpers import job_file, jobs_by_name, leftovers, read_report, until

REPORT_SCHEMA = json.loads((REPO / "schema" / "report.schema.json").read_text())


def batch(tmp_path: Path, count: int, concurrency: int = 4, name: str = "jobs.yaml") -> Path:
    body = "".join(f"  - {{name: j{i}, task: me~t, input: {{n: {i}}}}}\n" for i in range(count))
    return job_file(tmp_path, f"concurrency: {concurrency}\njobs:\n{body}", name)


def succeeded(out: Path) -> int:
    """How many jobs the state shows as finished (0 before it exists)."""
    try:
        with sqlite3.connect(f"file:{out / '.apify-jobs' / 'state.sqlite3'}?mode=ro", uri=True) as state:
            return int(state.execute("SELECT count(*) FROM results WHERE status = 'succeeded'").fetchone()[0])
    except sqlite3.Error:
        return 0


def sent_names(server) -> Counter[str]:
    return Counter(f"j{json.loads(r['body'])['n']}" for r in server.state.run_sync_requests())


def start(path: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "apify_jobs", "run", str(path), "--out-dir", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# The emulator's listing shows a run at once: "no run" may be concluded a second after an attempt.
QUICK_SETTLE = {"APIFY_JOBS_SETTLE_SECONDS": "1"}


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_at_a_random_instant_then_resume_pays_for_each_job_once(emulator, tmp_path: Path, seed: int) -> None:
    """Jobs in flight at the kill had their attempts written ahead: --resume adopts their runs (no POST for
    them) and sends only the jobs that were never sent."""
    server = emulator({"default": {"latency": 0.05, "bodyBytes": 2_000_000}})
    path, out = batch(tmp_path, 24), tmp_path / "out"
    process = start(path, out)
    target = random.Random(seed).randint(1, 12)  # killed once the state shows this many finished: mid-batch, by events
    assert until(lambda: succeeded(out) >= target, 60)
    process.kill()
    process.wait(10)
    first = sent_names(server)
    state = sqlite3.connect(out / ".apify-jobs" / "state.sqlite3")
    finished = {row[0] for row in state.execute("SELECT job FROM results WHERE status = 'succeeded'")}
    state.close()
    assert finished and len(finished) < 24  # killed in the middle
    for name in finished:  # the state holds nothing that had not finished: each of its outputs is whole
        assert (out / f"{name}.bin").stat().st_size == 2_000_000
    in_flight = set(first) - finished
    result = run_process("run", str(path), "--out-dir", str(out), "--resume", env=QUICK_SETTLE)
    assert result.returncode == 0, result.stderr
    again = sent_names(server) - first
    assert set(again) == {f"j{i}" for i in range(24)} - set(first)  # only what was never sent
    assert sorted(sent_names(server).values()) == [1] * 24  # every job paid for exactly once
    assert leftovers(out) == []  # the killed run's temporary files are gone
    report = read_report(out)
    assert report["totals"]["succeeded"] == 24 and {e["name"] for e in report["jobs"] if e.get("resumed")} == finished
    adopted = {e["name"] for e in report["jobs"] if (e.get("recovery") or {}).get("adopted")}
    assert adopted == in_flight
    for name in in_flight:  # an adopted output is whole too
        assert (out / f"{name}.bin").stat().st_size == 2_000_000
    jsonschema.validate(report, REPORT_SCHEMA)


def test_report_is_rebuilt_after_a_kill(emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~slow": {"latency": 30}}})
    path = job_file(tmp_path, "concurrency: 3\njobs:\n  - {name: a, task: me~t}\n  - {name: b, task: me~t}\n"
                              "  - {name: slow, task: me~slow}\n")
    out = tmp_path / "out"
    process = start(path, out)
    assert until(lambda: len(server.state.requests) >= 3)
    time.sleep(0.5)
    process.kill()
    process.wait(10)
    assert not (out / "report.json").exists()
    result = run_process("report", "--out-dir", str(out), "--junit", str(tmp_path / "junit.xml"), "--json",
                         str(out / "report.json"))
    assert result.returncode == 0 and "killed before it finished" in result.stdout
    report = read_report(out)
    assert [e["name"] for e in report["jobs"]] == ["a", "b"] and report["complete"] is False
    jsonschema.validate(report, REPORT_SCHEMA)
    assert (tmp_path / "junit.xml").read_text().count("<testcase") == 2


def test_only_then_resume_resends_nothing_that_succeeded(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path, out = batch(tmp_path, 6), tmp_path / "out"
    assert cli("run", path, "--out-dir", out)[0] == 0
    assert cli("run", path, "--out-dir", out, "--only", "j1")[0] == 0  # the report now lists only j1
    before = sent_names(server)
    code, _, _ = cli("run", path, "--out-dir", out, "--resume")
    assert code == 0 and sent_names(server) == before  # nothing re-sent
    assert read_report(out)["totals"]["succeeded"] == 6


def test_a_changed_request_is_run_again_and_a_changed_output_fetched_again(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path, out = batch(tmp_path, 3), tmp_path / "out"
    assert cli("run", path, "--out-dir", out)[0] == 0
    original = (out / "j0.json").read_bytes()
    (out / "j0.json").write_text("tampered")
    path.write_text(path.read_text().replace("{n: 2}", "{n: 2, more: true}"))
    assert cli("run", path, "--out-dir", out, "--resume")[0] == 0
    again = sorted((json.loads(r["body"]) for r in server.state.run_sync_requests()[3:]), key=lambda b: b["n"])
    assert again == [{"n": 2, "more": True}] and (out / "j0.json").read_bytes() == original


def test_two_shard_processes_into_one_folder_then_resume_sends_nothing(emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.02}})
    path, out = batch(tmp_path, 20), tmp_path / "out"
    shards = [start(path, out, "--shard", f"{i}/2") for i in (1, 2)]
    for process in shards:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    assert sum(sent_names(server).values()) == 20
    result = run_process("run", str(path), "--out-dir", str(out), "--resume")
    assert result.returncode == 0 and sum(sent_names(server).values()) == 20
    report = read_report(out)
    assert len(report["jobs"]) == 20 and all(e.get("resumed") for e in report["jobs"])
    every = run_process("report", "--out-dir", str(out), "--run", "all", "--json", str(tmp_path / "all.json"))
    assert every.returncode == 0
    assert len(json.loads((tmp_path / "all.json").read_text())["jobs"]) == 20


def test_a_job_run_by_another_live_process_is_skipped_not_sent_twice(emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 2}})
    path, out = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), tmp_path / "out"
    first = start(path, out)
    assert until(lambda: bool(server.state.requests))
    second = run_process("run", str(path), "--out-dir", str(out), "--report", str(tmp_path / "second.json"))
    first.communicate(timeout=30)
    entry = jobs_by_name(json.loads((tmp_path / "second.json").read_text()))["a"]
    assert len(server.state.requests) == 1 and second.returncode == 1
    assert entry["status"] == "skipped" and entry["error"]["message"] == f"running in process {first.pid}"


def test_a_dead_process_does_not_hold_its_lease_and_its_run_is_adopted(emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 3}})
    path, out = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), tmp_path / "out"
    first = start(path, out)
    assert until(lambda: bool(server.state.requests))
    first.kill()
    first.wait(10)
    result = run_process("run", str(path), "--out-dir", str(out))  # no --resume: the state still knows
    assert result.returncode == 0 and len(server.state.run_sync_requests()) == 1, result.stderr
    entry = jobs_by_name(read_report(out))["a"]
    assert entry["recovery"]["adopted"] is True and entry["recovery"]["runId"] == server.state.runs[0].id
    assert entry["attempts"] == 0 and len(entry["attemptIds"]) == 1


def test_a_job_that_would_overwrite_the_report_or_state_is_refused_at_validate(cli, tmp_path: Path) -> None:
    path = job_file(tmp_path, "jobs:\n  - {name: report, task: me~t}\n  - {name: b, task: me~t, output: report.json}\n"
                              "  - {name: c, task: me~t, output: .apify-jobs/x.json}\n")
    code, _, err = cli("validate", path)
    assert code == 2 and err.count("over the report, report.json") == 2 and "over the state folder" in err


def test_report_or_junit_over_an_output_is_refused_before_sending(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path, out = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, output: a.json}\n  - {name: b, task: me~t}\n"), \
        tmp_path / "out"
    for flag, target in (("--report", out / "a.json"), ("--junit", out / "b.xml"), ("--junit", out / "report.json")):
        code, _, err = cli("run", path, "--out-dir", out, flag, target)
        assert code == 2 and flag in err, err
    assert server.state.requests == []


def test_an_unwritable_output_folder_sends_nothing(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    (tmp_path / "blocked").write_text("a file where the output folder should be")
    code, _, err = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir",
                       tmp_path / "blocked" / "out")
    assert code == 2 and "nothing was sent" in err and server.state.requests == []


def test_a_closed_stdout_keeps_the_report_and_the_exit_status(emulator, tmp_path: Path) -> None:
    emulator({"tasks": {"me~bad": {"respond": "run-failed"}}})
    body = "".join(f"  - {{name: j{i}, task: me~t}}\n" for i in range(30)) + "  - {name: bad, task: me~bad}\n"
    path, out = job_file(tmp_path, f"jobs:\n{body}"), tmp_path / "out"
    command = f"{sys.executable} -m apify_jobs run {path} --out-dir {out} | head -1; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert read_report(out)["totals"]["failed"] == 1 and len(read_report(out)["jobs"]) == 31


def test_fail_fast_on_the_command_line_stops_every_file(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~bad": {"respond": "run-failed"}}})
    first = job_file(tmp_path, "jobs:\n  - {name: bad, task: me~bad}\n  - {name: a2, task: me~t}\n", "a.yaml")
    second = job_file(tmp_path, "jobs:\n  - {name: b1, task: me~t}\n  - {name: b2, task: me~t}\n", "b.yaml")
    code, _, _ = cli("run", first, second, "--out-dir", tmp_path / "out", "--fail-fast", "--concurrency", "1")
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert code == 1 and len(server.state.requests) == 1
    assert {n: jobs[n]["status"] for n in ("a2", "b1", "b2")} == {n: "cancelled" for n in ("a2", "b1", "b2")}


def test_outputs_and_reports_get_the_mode_the_umask_allows(emulator, tmp_path: Path) -> None:
    emulator()
    out = tmp_path / "out"
    (out).mkdir()
    (out / "a.json").write_text("old")
    (out / "a.json").chmod(0o600)
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, output: a.json}\n")
    command = f"umask 022 && {sys.executable} -m apify_jobs run {path} --out-dir {out} --junit {out / 'j.xml'}"
    assert subprocess.run(["bash", "-c", command], capture_output=True, timeout=60).returncode == 0
    for name in ("a.json", "report.json", "j.xml"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def test_a_cancelled_job_keeps_when_it_started_and_its_attempt_ids(emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 30}})
    path, out = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), tmp_path / "out"
    process = start(path, out, "--no-run-facts")
    assert until(lambda: bool(server.state.requests))
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    entry = jobs_by_name(read_report(out))["a"]
    agent = server.state.requests[0]["headers"]["User-Agent"]
    assert process.returncode == 130 and entry["status"] == "cancelled" and entry["startedAt"]
    assert entry["attemptIds"] and agent.endswith(f"(+{entry['attemptIds'][0]})")


def test_leftovers_of_a_killed_run_are_removed_and_counted(cli, emulator, tmp_path: Path) -> None:
    emulator()
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = out / f".a.json.{dead.stdout.strip()}.k2j3h4.part"
    with open(leftover, "wb") as stream:
        os.posix_fallocate(stream.fileno(), 0, 3 << 20)
    mine = out / f".b.json.{os.getpid()}.zz9.part"  # a live process's download: not touched
    mine.write_bytes(b"x")
    stranger = out / "notes.part"  # not ours
    stranger.write_bytes(b"x")
    code, _, err = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", out)
    assert code == 0 and not leftover.exists() and mine.exists() and stranger.exists()
    assert "removed 1 temporary file" in err and "3.0 MiB freed" in err


@pytest.mark.parametrize("damage", ["garbage", "newer"])
def test_a_state_that_cannot_be_read_is_one_line_and_exit_2(cli, emulator, tmp_path: Path, damage: str) -> None:
    server = emulator()
    out = tmp_path / "out"
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n")
    assert cli("run", path, "--out-dir", out)[0] == 0
    state = out / ".apify-jobs" / "state.sqlite3"
    for extra in state.parent.glob("state.sqlite3-*"):
        extra.unlink()
    if damage == "garbage":
        state.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(state) as db:
            db.execute("PRAGMA user_version = 99")
    code, _, err = cli("run", path, "--out-dir", out, "--resume")
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(server.state.requests) == 1
    assert ("newer apify-jobs" if damage == "newer" else "cannot be read") in err


def test_plan_resume_shows_what_would_run(cli, emulator, tmp_path: Path) -> None:
    emulator()
    path, out = batch(tmp_path, 2), tmp_path / "out"
    code, stdout, _ = cli("plan", path, "--out-dir", out, "--resume")
    assert code == 0 and stdout.count("resume: run") == 2 and not out.exists()
    assert cli("run", path, "--out-dir", out, "--only", "j0")[0] == 0
    code, stdout, _ = cli("plan", path, "--out-dir", out, "--resume", "--json")
    planned = {p["name"]: p for p in json.loads(stdout)}
    assert planned["j0"]["resume"] == "skip" and planned["j0"]["succeededAt"] and planned["j1"]["resume"] == "run"


def test_shards_that_ran_apart_merge_into_one_folder_and_report(emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.01}})
    path = batch(tmp_path, 15)
    folders = [tmp_path / f"shard{i}" for i in (1, 2, 3)]
    shards = [start(path, folder, "--shard", f"{i}/3") for i, folder in enumerate(folders, 1)]
    for process in shards:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    assert sum(sent_names(server).values()) == 15
    merged = tmp_path / "merged"
    result = run_process("report", "--merge", *map(str, folders), "--out-dir", str(merged), "--junit",
                         str(tmp_path / "junit.xml"))
    assert result.returncode == 0, result.stderr
    report = read_report(merged)
    jsonschema.validate(report, REPORT_SCHEMA)
    assert sorted(e["name"] for e in report["jobs"]) == sorted(f"j{i}" for i in range(15))
    for entry in report["jobs"]:
        output = Path(entry["output"]["path"])
        assert output.parent == merged and json.loads(output.read_text())["input"] == {"n": int(entry["name"][1:])}
    assert (tmp_path / "junit.xml").read_text().count("<testcase") == 15
    again = run_process("run", str(path), "--out-dir", str(merged), "--resume")
    assert again.returncode == 0 and sum(sent_names(server).values()) == 15  # nothing sent again


def test_a_damaged_artifact_is_refused_by_the_merge(emulator, tmp_path: Path) -> None:
    emulator()
    path = batch(tmp_path, 4)
    folders = [tmp_path / "one", tmp_path / "two"]
    for i, folder in enumerate(folders, 1):
        assert run_process("run", str(path), "--out-dir", str(folder), "--shard", f"{i}/2").returncode == 0
    damaged = next(folders[0].glob("j*.json"))
    damaged.write_text("changed on the way")
    result = run_process("report", "--merge", *map(str, folders), "--out-dir", str(tmp_path / "merged"))
    assert result.returncode == 2 and str(damaged) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "merged").exists()


def test_two_different_successes_of_one_request_are_a_conflict(emulator, tmp_path: Path) -> None:
    server = emulator()
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n  - {name: b, task: me~t}\n")
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_process("run", str(path), "--out-dir", str(one)).returncode == 0
    server.state.script.tasks["me~t"] = [type(server.state.script.default)(output={"different": True})]
    assert run_process("run", str(path), "--out-dir", str(two)).returncode == 0
    result = run_process("report", "--merge", str(one), str(two), "--out-dir", str(tmp_path / "merged"))
    assert result.returncode == 1 and result.stderr.count("conflict: ") == 2 and "not merged" in result.stderr


def test_resume_finds_outputs_by_their_key_from_any_folder_and_any_spelling(emulator, tmp_path: Path) -> None:
    """Outputs are recorded by their key in the output folder: --resume from another working folder, or with the
    folder spelled another way, sends nothing; a state copied elsewhere, without its outputs, resumes nothing."""
    server = emulator()
    (tmp_path / "sub").mkdir()
    path = batch(tmp_path, 3)
    first = run_process("run", "jobs.yaml", "--out-dir", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for cwd, out in ((tmp_path / "sub", "../out"), (tmp_path, str(tmp_path / "out")), (tmp_path, "./out/")):
        again = run_process("run", str(path), "--out-dir", out, "--resume", cwd=cwd)
        assert again.returncode == 0, again.stderr
        report = read_report(cwd / out)
        assert {e["name"] for e in report["jobs"] if e.get("resumed")} == {"j0", "j1", "j2"}
        assert all(os.path.exists(cwd / e["output"]["path"]) for e in report["jobs"])
    assert len(server.state.run_sync_requests()) == 3
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".apify-jobs").mkdir()
    for name in os.listdir(tmp_path / "out" / ".apify-jobs"):
        (elsewhere / ".apify-jobs" / name).write_bytes((tmp_path / "out" / ".apify-jobs" / name).read_bytes())
    copied = run_process("run", str(path), "--out-dir", str(elsewhere), "--resume")
    jobs = read_report(elsewhere)["jobs"]
    assert copied.returncode == 0 and not any(e.get("resumed") for e in jobs)  # no output there: none resumed
    assert all(e["refetched"] and (elsewhere / e["output"]["key"]).exists() for e in jobs)  # fetched from the runs
    assert len(server.state.run_sync_requests()) == 3


def test_the_state_can_live_in_a_folder_of_its_own(emulator, tmp_path: Path) -> None:
    server = emulator()
    path, out, kept = batch(tmp_path, 2), tmp_path / "out", tmp_path / "cache" / "state"
    assert run_process("run", str(path), "--out-dir", str(out), "--state-dir", str(kept)).returncode == 0
    assert (kept / "state.sqlite3").exists() and not (out / ".apify-jobs").exists()
    again = run_process("run", str(path), "--out-dir", str(out), "--state-dir", str(kept), "--resume")
    assert again.returncode == 0 and len(server.state.run_sync_requests()) == 2
    rebuilt = run_process("report", "--out-dir", str(out), "--state-dir", str(kept), "--json", str(tmp_path / "r.json"))
    assert rebuilt.returncode == 0 and json.loads((tmp_path / "r.json").read_text())["totals"]["succeeded"] == 2


def test_warnings_never_change_which_jobs_run(emulator, tmp_path: Path) -> None:
    """A file with only warnings (a credential from ${{ env.X }}, retry.on without connection): every job is
    planned and run."""
    server = emulator()
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, input: {apiKey: '${{ env.MY_KEY }}'}}\n"
                              "  - {name: b, task: me~t, retry: {on: [rate-limit]}}\n"
                              "  - {name: c, task: me~t, input: {q: '${{ vars.q }}'}}\n")
    env = {"MY_KEY": "k-not-secret"}
    plan = run_process("plan", str(path), "--var", "q=x", "--json", env=env)
    assert plan.returncode == 0 and [j["name"] for j in json.loads(plan.stdout)] == ["a", "b", "c"]
    assert plan.stderr.count("warning:") == 2
    result = run_process("run", str(path), "--var", "q=x", "--out-dir", str(tmp_path / "out"), env=env)
    assert result.returncode == 0 and len(server.state.run_sync_requests()) == 3
    assert sorted(e["name"] for e in read_report(tmp_path / "out")["jobs"] if e["status"] == "succeeded") == ["a", "b", "c"]



@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_runs_in_flight_when_the_runner_stopped_are_adopted_not_paid_again(emulator, tmp_path: Path,
                                                                           stop: signal.Signals) -> None:
    """kill -9 (a cancelled CI job) or Ctrl-C while two runs go on: the next --resume adopts both runs (their
    output collected when they end) and sends only the job that was never sent."""
    server = emulator({"tasks": {"me~slow": {"latency": 2}}})
    path = job_file(tmp_path, "concurrency: 2\njobs:\n  - {name: a, task: me~slow, input: {n: 1}}\n"
                              "  - {name: b, task: me~slow, input: {n: 2}}\n  - {name: c, task: me~t, input: {n: 3}}\n")
    out = tmp_path / "out"
    process = start(path, out)
    assert until(lambda: len(server.state.run_sync_requests()) == 2)
    process.send_signal(stop)
    process.wait(20)
    assert len(server.state.run_sync_requests()) == 2
    plan = run_process("plan", str(path), "--out-dir", str(out), "--resume")
    assert plan.returncode == 0 and plan.stdout.count("look for the run of attempt") + \
        plan.stdout.count("adopt run") == 2, plan.stdout
    result = run_process("run", str(path), "--out-dir", str(out), "--resume", env=QUICK_SETTLE)
    assert result.returncode == 0, result.stderr
    assert len(server.state.run_sync_requests()) == 3 and len(server.state.runs) == 3  # c only
    report = jobs_by_name(read_report(out))
    assert {name for name, e in report.items() if (e.get("recovery") or {}).get("adopted")} == {"a", "b"}
    assert json.loads((out / "a.json").read_text())["input"] == {"n": 1}


def test_abort_stops_the_runs_a_killed_runner_left_going(emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~slow": {"latency": 30}}})
    path, out = job_file(tmp_path, "jobs:\n  - {name: a, task: me~slow}\n"), tmp_path / "out"
    process = start(path, out)
    assert until(lambda: len(server.state.run_sync_requests()) == 1)
    process.kill()
    process.wait(10)
    aborted = run_process("abort", "--out-dir", str(out))
    [going] = server.state.runs
    assert aborted.returncode == 0 and going.id in aborted.stderr and going.status == "ABORTED", aborted.stderr
    again = run_process("abort", "--out-dir", str(out))
    assert again.returncode == 0 and "nothing to abort" in again.stdout
    assert "in flight" not in run_process("plan", str(path), "--out-dir", str(out), "--resume").stdout
    assert len(server.state.run_sync_requests()) == 1


FAN_OUT_ONCE = """
concurrency: 4
jobs:
  - {name: list, task: me~list, expect: {nonEmpty: false}}
  - name: each
    task: me~each
    needs: [list]
    matrix: {n: "${{ needs.list.output[*].n }}"}
    input: {n: "${{ matrix.n }}"}
"""


@pytest.mark.parametrize("fan_out", [False, True])
def test_two_processes_resuming_into_one_folder_send_each_job_once(emulator, tmp_path: Path, fan_out: bool) -> None:
    """Leases are taken before anything is decided, and a fan-out's jobs are leased when it expands: two
    `run --resume` into one folder at once never send a job twice."""
    server = emulator({"tasks": {"me~list": {"output": [{"n": i} for i in range(8)]}, "me~each": {"latency": 0.3},
                                 "me~t": {"latency": 0.1}}})
    path, out = (job_file(tmp_path, FAN_OUT_ONCE) if fan_out else batch(tmp_path, 40)), tmp_path / "out"
    if fan_out:  # `list` succeeded earlier: both processes resume it and expand the fan-out at once
        assert run_process("run", str(path), "--out-dir", str(out), "--only", "list").returncode == 0
    first, second = start(path, out, "--resume"), start(path, out, "--resume")
    for process in (first, second):
        process.communicate(timeout=120)
    bodies = [json.loads(r["body"])["n"] for r in server.state.run_sync_requests("me~each" if fan_out else "me~t")]
    assert sorted(bodies) == list(range(8 if fan_out else 40))  # each job once, between the two processes
    final = run_process("run", str(path), "--out-dir", str(out), "--resume")
    assert final.returncode == 0 and len(server.state.run_sync_requests()) == (9 if fan_out else 40)


def test_two_jobs_that_could_write_one_file_are_refused_before_anything_is_sent(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path = job_file(tmp_path, "jobs:\n  - {name: x, task: me~t}\n  - {name: y, task: me~t, output: x.json}\n")
    for command in ("validate", "plan", "run"):
        code, _, err = cli(command, path, *(["--out-dir", tmp_path / "out"] if command != "validate" else []))
        assert code == 2 and "job 'y' and job 'x'" in err and "can both write 'x.json'" in err, err
    assert server.state.run_sync_requests() == []


def test_a_fan_out_whose_outputs_would_leave_the_folder_is_refused_with_nothing_sent(cli, emulator,
                                                                                    tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~list": {"output": [{"n": "../../escaped"}, {"n": "ok"}]}}})
    path = job_file(tmp_path, """
        jobs:
          - {name: list, task: me~list}
          - name: each
            task: me~each
            needs: [list]
            matrix: {n: "${{ needs.list.output[*].n }}"}
            output: "${{ matrix.n }}.json"
        """)
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    each = jobs_by_name(read_report(tmp_path / "out"))["each"]
    assert code == 1 and each["error"]["type"] == "output-failed" and "leaves the output folder" in \
        each["error"]["message"]
    assert server.state.run_sync_requests("me~each") == [] and not (tmp_path / "escaped.json").exists()


def test_lost_outputs_are_fetched_again_from_their_runs_not_paid_for_again(emulator, tmp_path: Path) -> None:
    """A CI cache kept the state but not the outputs: --resume fetches each output again from its run (dataset
    items with the job's parameters, or the output record), byte for byte, and sends nothing; where the
    platform no longer has the data, the job runs again and says why."""
    server = emulator({"tasks": {"me~ds": {"items": [{"a": 1}, {"a": 2}, {"a": 3}]}}})
    path = job_file(tmp_path, "jobs:\n  - {name: rec, task: me~t, input: {q: 1}}\n"
                              "  - {name: items, task: me~ds, dataset: {format: jsonl, limit: 2}}\n"
                              "  - {name: gone, task: me~gone}\n")
    out = tmp_path / "out"
    assert run_process("run", str(path), "--out-dir", str(out)).returncode == 0
    kept = {name: (out / name).read_bytes() for name in ("rec.json", "items.jsonl", "gone.json")}
    for name in kept:
        (out / name).unlink()
    gone = next(run for run in server.state.runs if run.task == "me~gone")
    server.state.runs.remove(gone)  # past the account's data retention: the platform no longer has its data
    result = run_process("run", str(path), "--out-dir", str(out), "--resume")
    assert result.returncode == 0, result.stderr
    assert len(server.state.run_sync_requests()) == 4  # only `gone` ran again
    assert {name: (out / name).read_bytes() for name in kept} == kept  # byte-identical
    jobs = jobs_by_name(read_report(out))
    assert jobs["rec"]["refetched"] and jobs["items"]["refetched"] and not jobs["gone"].get("refetched")
    assert jobs["rec"]["attempts"] == 0 and jobs["gone"]["attempts"] == 1
    assert "cannot be fetched again" in jobs["gone"]["note"] or "no longer has" in jobs["gone"]["note"]


def _shard(cli, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    assert cli("run", batch(tmp_path, 2, name=f"{name}.yaml"), "--out-dir", folder, "--no-run-facts")[0] == 0
    return folder


def _nothing_written(merged: Path) -> bool:
    return not merged.exists() or not any(merged.iterdir())


@pytest.mark.parametrize("attack", ["symlinked output", "key out of the shard", "into a link to a source",
                                    "into a source's subfolder"])
def test_a_hostile_artifact_merges_nothing(cli, emulator, tmp_path: Path, attack: str) -> None:
    """Downloaded artifacts are untrusted: every shard is checked before anything is written."""
    import sqlite3

    emulator()
    shard = _shard(cli, tmp_path, "shard")
    merged = tmp_path / "merged"
    secret = tmp_path / "outside.txt"
    secret.write_text("a file of the runner, not of the shard")
    if attack == "symlinked output":
        (shard / "j0.json").unlink()
        os.symlink(secret, shard / "j0.json")
    elif attack == "key out of the shard":
        with sqlite3.connect(shard / ".apify-jobs" / "state.sqlite3") as db:
            db.execute("UPDATE results SET entry = replace(entry, '\"key\": \"j0.json\"', '\"key\": \"../../x/j0.json\"')")
    elif attack == "into a link to a source":
        os.symlink(shard, merged)
    else:
        merged = shard / "sub"
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = cli("report", "--merge", shard, "--out-dir", merged)
    assert code == 2 and ("nothing was merged" in err or "give a new folder" in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside the folders either
    if attack not in ("into a link to a source", "into a source's subfolder"):
        assert _nothing_written(merged)
    assert not (tmp_path.parent / "x").exists()
