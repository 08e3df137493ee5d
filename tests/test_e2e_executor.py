"""Scheduling end to end against the emulator: caps, order, needs, fail-fast, selection, resume, reports, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

from tests.helpers import job_file, jobs_by_name, leftovers, on_a_terminal, read_report


def names_in_order(server) -> list[str]:
    return [json.loads(r["body"])["name"] for r in server.state.run_sync_requests()]


def test_file_concurrency_and_global_cap_hold(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.15}})
    jobs = "\n".join(f"  - {{name: a{i}, task: me~a, input: {{name: a{i}}}}}" for i in range(12))
    a = job_file(tmp_path, f"concurrency: 6\njobs:\n{jobs}\n", "a.yaml")
    jobs_b = "\n".join(f"  - {{name: b{i}, task: me~b, input: {{name: b{i}}}}}" for i in range(12))
    b = job_file(tmp_path, f"concurrency: 6\njobs:\n{jobs_b}\n", "b.yaml")
    code, _, _ = cli("run", a, b, "--out-dir", tmp_path / "out", "--concurrency", "4")
    assert code == 0 and server.state.max_in_flight == 4 and len(server.state.requests) == 24
    server.state.max_in_flight = 0
    code, _, _ = cli("run", a, "--out-dir", tmp_path / "out2")
    assert code == 0 and server.state.max_in_flight == 6


def test_the_concurrency_flag_raises_a_files_own_value(cli, emulator, tmp_path: Path) -> None:
    """`--concurrency 6` on a file without `concurrency` (1): six at once, as xargs -P 6 would."""
    server = emulator({"default": {"latency": 0.3}})
    jobs = "\n".join(f"  - {{name: j{i}, task: me~t, input: {{name: j{i}}}}}" for i in range(6))
    code, _, _ = cli("run", job_file(tmp_path, f"jobs:\n{jobs}\n"), "--out-dir", tmp_path / "out", "--concurrency", "6")
    assert code == 0 and server.state.max_in_flight == 6 and len(server.state.requests) == 6


def test_sequence_runs_in_listed_order_one_at_a_time(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.02}})
    order = ["z", "b", "m", "a", "q"]
    jobs = "\n".join(f"  - {{name: {n}, task: me~t, input: {{name: {n}}}}}" for n in order)
    code, _, _ = cli("run", job_file(tmp_path, f"jobs:\n{jobs}\n"), "--out-dir", tmp_path / "out")
    assert code == 0 and names_in_order(server) == order and server.state.max_in_flight == 1


def test_needs_order_and_skipping(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~bad": {"respond": "run-failed"}}, "default": {"latency": 0.05}})
    path = job_file(tmp_path, """
        concurrency: 4
        jobs:
          - {name: last, task: me~t, input: {name: last}, needs: [first, second]}
          - {name: first, task: me~t, input: {name: first}}
          - {name: second, task: me~t, input: {name: second}, needs: [first]}
          - {name: broken, task: me~bad, input: {name: broken}}
          - {name: after-broken, task: me~t, input: {name: after-broken}, needs: [broken]}
          - {name: after-after, task: me~t, input: {name: after-after}, needs: [after-broken]}
        """)
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    sent = names_in_order(server)
    assert code == 1
    assert sent.index("first") < sent.index("second") < sent.index("last")
    assert "after-broken" not in sent and "after-after" not in sent
    report = jobs_by_name(read_report(tmp_path / "out"))
    assert report["after-broken"]["status"] == "skipped" and report["after-after"]["status"] == "skipped"
    assert "needs broken, which failed" in report["after-broken"]["error"]["message"]
    assert report["last"]["status"] == "succeeded"


def test_fail_fast_cancels_the_rest_of_that_file_only(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~bad": {"respond": "run-failed"}}})
    strict = job_file(tmp_path, """
        failFast: true
        jobs:
          - {name: s1, task: me~t, input: {name: s1}}
          - {name: s2, task: me~bad, input: {name: s2}}
          - {name: s3, task: me~t, input: {name: s3}}
        """, "strict.yaml")
    loose = job_file(tmp_path, "jobs:\n  - {name: l1, task: me~bad, input: {name: l1}}\n"
                               "  - {name: l2, task: me~t, input: {name: l2}}\n", "loose.yaml")
    code, _, _ = cli("run", strict, loose, "--out-dir", tmp_path / "out")
    report = jobs_by_name(read_report(tmp_path / "out"))
    assert code == 1 and set(names_in_order(server)) == {"s1", "s2", "l1", "l2"}
    assert report["s3"]["status"] == "cancelled" and report["l2"]["status"] == "succeeded"
    server.state.requests.clear()
    code, _, _ = cli("run", loose, "--fail-fast", "--out-dir", tmp_path / "out2")
    assert names_in_order(server) == ["l1"]
    assert jobs_by_name(read_report(tmp_path / "out2"))["l2"]["status"] == "cancelled"


def test_only_selects_by_glob_and_says_what_it_did_not_wait_for(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path = job_file(tmp_path, """
        jobs:
          - {name: maps, task: me~t, matrix: {city: [Prague, Brno]}, input: {name: "${{ matrix.city }}"}}
          - {name: summary, task: me~t, input: {name: summary}, needs: [maps]}
        """)
    code, _, err = cli("run", path, "--only", "maps-b*", "--only", "summary", "--out-dir", tmp_path / "out")
    assert code == 0 and names_in_order(server) == ["Brno", "summary"]
    assert "not selected, so not waited for: maps-prague" in err
    code, _, err = cli("run", path, "--only", "nothing*", "--out-dir", tmp_path / "out")
    assert code == 2 and "matches no job" in err


def test_shards_cover_every_job_exactly_once(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    jobs = "\n".join(f"  - {{name: job{i}, task: me~t, input: {{name: job{i}}}}}" for i in range(30))
    path = job_file(tmp_path, f"concurrency: 8\njobs:\n{jobs}\n")
    seen: list[str] = []
    for shard in range(1, 4):
        server.state.requests.clear()
        assert cli("run", path, "--shard", f"{shard}/3", "--out-dir", tmp_path / f"out{shard}")[0] == 0
        seen += names_in_order(server)
        assert len(names_in_order(server)) == 10  # 30 jobs dealt evenly
    assert sorted(seen) == sorted(f"job{i}" for i in range(30))


def test_a_job_and_its_needs_share_a_shard(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    chains = "".join(f"  - {{name: c{i}-a, task: me~t, input: {{name: c{i}-a}}}}\n"
                     f"  - {{name: c{i}-b, task: me~t, input: {{name: c{i}-b}}, needs: [c{i}-a]}}\n" for i in range(12))
    path = job_file(tmp_path, "concurrency: 4\njobs:\n" + chains)
    seen = []
    for shard in (1, 2):
        server.state.requests.clear()
        code, _, err = cli("run", path, "--shard", f"{shard}/2", "--out-dir", tmp_path / f"o{shard}")
        sent = names_in_order(server)
        assert code == 0 and "not waited for" not in err
        for name in sent:
            partner = name[:-1] + ("b" if name.endswith("a") else "a")
            assert partner in sent  # never split from its chain
        assert all(sent.index(f"{n[:-2]}-a") < sent.index(f"{n[:-2]}-b") for n in sent if n.endswith("-b"))
        seen += sent
    assert sorted(seen) == sorted(f"c{i}-{x}" for i in range(12) for x in "ab")


def test_resume_reruns_only_what_is_not_done(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~flaky": [{"respond": "run-failed"}, {}]}})
    path = job_file(tmp_path, """
        jobs:
          - {name: ok, task: me~t, input: {name: ok}}
          - {name: tampered, task: me~t, input: {name: tampered}}
          - {name: flaky, task: me~flaky, input: {name: flaky}}
          - {name: changed, task: me~t, input: {name: changed}}
        """)
    out = tmp_path / "out"
    assert cli("run", path, "--out-dir", out)[0] == 1
    (out / "tampered.json").write_text("edited by hand")
    path.write_text(path.read_text().replace("{name: changed}", "{name: changed, v: 2}"))
    server.state.requests.clear()
    code, stdout, _ = cli("run", path, "--out-dir", out, "--resume")
    assert code == 0 and sorted(names_in_order(server)) == ["changed", "flaky"]  # `tampered` is fetched again
    report = jobs_by_name(read_report(out))
    assert report["tampered"]["refetched"] is True and json.loads((out / "tampered.json").read_text())["input"] == \
        {"name": "tampered"}
    assert report["ok"]["resumed"] is True and report["ok"]["status"] == "succeeded"
    assert "resumed" not in report["flaky"] and report["flaky"]["status"] == "succeeded"
    server.state.requests.clear()
    assert cli("run", path, "--out-dir", out, "--resume")[0] == 0 and names_in_order(server) == []


def test_junit_is_valid_and_lists_every_outcome(cli, emulator, tmp_path: Path) -> None:
    emulator({"tasks": {"me~bad": {"respond": "run-failed"}}})
    path = job_file(tmp_path, """
        jobs:
          - {name: good, task: me~t}
          - {name: bad, task: me~bad}
          - {name: later, task: me~t, needs: [bad]}
        """)
    junit = tmp_path / "junit.xml"
    assert cli("run", path, "--out-dir", tmp_path / "out", "--junit", junit)[0] == 1
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["good"].find("failure") is None and cases["good"].find("skipped") is None
    assert cases["bad"].find("failure").get("type") == "run-failed"
    assert cases["later"].find("skipped") is not None


def test_auth_failure_stops_the_batch(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"respond": "status", "status": 401, "errorType": "token-not-valid"}})
    jobs = "\n".join(f"  - {{name: j{i}, task: me~t}}" for i in range(10))
    code, stdout, _ = cli("run", job_file(tmp_path, f"jobs:\n{jobs}\n"), "--out-dir", tmp_path / "out")
    report = read_report(tmp_path / "out")
    assert code == 1 and len(server.state.requests) == 1
    assert report["totals"]["failed"] == 1 and report["totals"]["cancelled"] == 9
    jobs = jobs_by_name(report)  # the reason once, where it happened; the others point there
    assert "check APIFY_TOKEN" in jobs["j0"]["error"]["message"]
    assert jobs["j5"]["error"]["message"] == "not sent: the batch stopped (see j0)"


def test_progress_lines_and_summary_without_a_terminal(cli, emulator, tmp_path: Path) -> None:
    emulator()
    code, stdout, stderr = cli("run", job_file(tmp_path, "jobs:\n  - {name: only, task: me~t}\n"), "--out-dir", tmp_path / "o")
    assert code == 0 and "start  only" in stderr and "succeeded only" in stderr
    assert stdout.splitlines()[0].split() == ["JOB", "STATUS", "TRIES", "TIME", "OUTPUT", "/", "ERROR"]
    code, stdout, stderr = cli("run", job_file(tmp_path, "jobs:\n  - {name: only, task: me~t}\n"), "-q",
                               "--out-dir", tmp_path / "o")
    assert code == 0 and stdout.strip() == "" and stderr == ""


def test_missing_token_is_a_usage_error(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("APIFY_TOKEN", raising=False)
    code, _, err = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"))
    assert code == 2 and "APIFY_TOKEN is not set" in err


def test_ctrl_c_cancels_writes_the_report_and_exits_130(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("tasks:\n  me~slow: {latency: 30}\n  me~big: {latency: 0.3, bodyBytes: 300000000}\n")
    path = job_file(tmp_path, """
        concurrency: 3
        jobs:
          - {name: quick, task: me~t}
          - {name: slow, task: me~slow}
          - {name: big, task: me~big}
          - {name: later, task: me~t, needs: [slow]}
        """)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "apify_jobs", "run", str(path), "--out-dir", str(out), "--emulator",
                                "--emulator-script", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               text=True)
    deadline = time.monotonic() + 20
    while not (out / "quick.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.6)  # let `big` start streaming
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr  # (communicate's timeout only guards against a hang)
    report = jobs_by_name(read_report(out))
    assert report["quick"]["status"] == "succeeded" and (out / "quick.json").exists()
    assert report["slow"]["status"] == "cancelled" and "may still be running" in report["slow"]["error"]["message"]
    assert report["later"]["status"] == "cancelled" and "never sent" in report["later"]["error"]["message"]
    assert report["big"]["status"] in ("cancelled", "succeeded")
    assert leftovers(tmp_path) == [] and not (out / "slow.json").exists()
    if report["big"]["status"] == "cancelled":
        assert not (out / "big.bin").exists()


def test_live_display_on_a_terminal(tmp_path: Path) -> None:
    path = job_file(tmp_path, "concurrency: 2\njobs:\n  - {name: one, task: me~slow}\n  - {name: two, task: me~slow}\n")
    script = tmp_path / "script.yaml"
    script.write_text("default: {latency: 0.8}\n")
    text = on_a_terminal(["run", str(path), "--out-dir", str(tmp_path / "out"), "--emulator", "--emulator-script",
                          str(script)], {})
    assert "0/2 done, 0 failed, 2 running" in text and "one" in text and "two" in text
    assert "start  one" not in text  # a terminal gets the live display, not one line per event


def test_a_waiting_job_holds_no_slot(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    path = job_file(tmp_path, """
        jobs:
          - {name: later, task: me~t, input: {name: later}, needs: [first]}
          - {name: first, task: me~t, input: {name: first}}
        """)
    code, _, _ = cli("run", path, "--out-dir", tmp_path / "out")
    assert code == 0 and names_in_order(server) == ["first", "later"]


def test_verbose_logs_every_attempt(cli, emulator, tmp_path: Path) -> None:
    emulator({"tasks": {"me~t": [{"drop": "before-response"}, {}]}})
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, retry: {backoff: {initial: 0, max: 0}}}\n")
    code, _, err = cli("run", path, "--out-dir", tmp_path / "out", "-v")
    assert code == 0
    assert "INFO: a: attempt 1: POST http://127.0.0.1:" in err and "INFO: a: attempt 2: POST" in err
    assert "WARNING: a: attempt 1 of 3 failed (connection-dropped" in err
