"""Spend no more than the account allows and the user budgets, on the emulator's scripted account: admission by
the account's limits, capacity refusals that wait instead of failing, 402 that stops the batch, budgets, and
`plan`'s worst case. Each test counts the POSTs and the runs at once the emulator saw."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import job_file, jobs_by_name, read_report


def many(count: int, concurrency: int, extra: str = "") -> str:
    jobs = "".join(f"  - {{name: j{i:02d}, task: me~t, input: {{n: {i}}}{extra}}}\n" for i in range(count))
    return f"concurrency: {concurrency}\njobs:\n{jobs}"


def test_fifty_jobs_on_a_five_run_account_never_run_more_than_five_and_nothing_is_refused(cli, emulator,
                                                                                          tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.2}, "account": {"maxConcurrentRuns": 5}})
    code, _, err = cli("run", job_file(tmp_path, many(50, 50)), "--out-dir", tmp_path / "out", "--no-run-facts")
    stats = server.state.stats()
    assert code == 0 and len(jobs_by_name(read_report(tmp_path / "out"))) == 50
    assert stats["maxRunning"] <= 5 and stats["refused"] == 0 and len(server.state.run_sync_requests()) == 50
    assert "the account allows 5 runs" in err


def test_without_the_look_up_refusals_wait_for_room_and_no_job_is_lost(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.2}, "account": {"maxConcurrentRuns": 3}})
    code, _, _ = cli("run", job_file(tmp_path, many(12, 12)), "--out-dir", tmp_path / "out", "--no-run-facts",
                     "--no-account-limits")
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    stats = server.state.stats()
    assert code == 0 and all(job["status"] == "succeeded" for job in jobs.values()) and len(jobs) == 12
    assert stats["maxRunning"] <= 3 and stats["refused"] > 0
    assert len(server.state.runs) == 12  # refusals started no run: each job's run started once
    assert len(server.state.run_sync_requests()) == 12 + stats["refused"]


def test_memory_admission_keeps_the_account_within_its_memory(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.2}, "account": {"memoryMbytes": 4096}})
    code, _, _ = cli("run", job_file(tmp_path, many(8, 8, ", options: {memory: 2048}")), "--out-dir", tmp_path / "out",
                     "--no-run-facts")
    stats = server.state.stats()
    assert code == 0 and stats["maxRunning"] == 2 and stats["refused"] == 0 and len(server.state.runs) == 8


def test_a_refusal_that_lasts_past_max_wait_fails_capacity_exceeded(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"respond": "capacity"}}})
    text = "jobs:\n  - {name: a, task: me~t, capacity: {maxWait: 2s}}\n"
    code, _, _ = cli("run", job_file(tmp_path, text), "--out-dir", tmp_path / "out", "--no-run-facts")
    job = jobs_by_name(read_report(tmp_path / "out"))["a"]
    assert code == 1 and job["error"]["type"] == "capacity-exceeded" and "Raise capacity.maxWait" in job["error"]["message"]
    assert len(server.state.runs) == 0 and 2 <= server.state.per_task["me~t"] <= 4  # re-tried as room may come


def test_no_credit_stops_the_batch(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"account": {"monthlyUsageUsd": 10, "maxMonthlyUsageUsd": 10}})
    code, _, _ = cli("run", job_file(tmp_path, many(6, 1)), "--out-dir", tmp_path / "out", "--no-run-facts")
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert code == 1 and len(server.state.run_sync_requests()) == 1 and len(server.state.runs) == 0
    assert jobs["j00"]["httpStatus"] == 402 and "the batch stops" in jobs["j00"]["error"]["message"]
    assert all(jobs[f"j{i:02d}"]["status"] == "cancelled" for i in range(1, 6))


def test_a_budget_stops_starting_jobs_and_says_what_was_spent(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.05}, "account": {"costPerRunUsd": 0.08}})
    text = "budget: {maxTotalUsd: 0.35}\n" + many(6, 1, ", options: {maxTotalChargeUsd: 0.1}")
    code, _, err = cli("run", job_file(tmp_path, text), "--out-dir", tmp_path / "out")
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    ran = [name for name, job in jobs.items() if job["status"] == "succeeded"]
    skipped = [job for job in jobs.values() if job["status"] == "skipped"]
    assert code == 1 and len(server.state.runs) == len(ran) and 3 <= len(ran) < 6
    assert skipped and all(job["error"]["type"] == "budget" for job in skipped)
    assert "budget: $" in err and "not started for the budget" in err
    spent = sum(job["usageTotalUsd"] for job in jobs.values() if job["status"] == "succeeded")
    assert spent <= 0.35


def test_the_run_budget_flag_holds_without_caps_once_spent(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"default": {"latency": 0.05}, "account": {"costPerRunUsd": 0.5}})
    code, _, _ = cli("run", job_file(tmp_path, many(5, 1)), "--out-dir", tmp_path / "out", "--max-cost-usd", "0.4")
    jobs = jobs_by_name(read_report(tmp_path / "out"))
    assert code == 1 and len(server.state.runs) == 1  # the first run spent the budget; nothing more started
    assert sum(job["status"] == "skipped" for job in jobs.values()) == 4


def test_plan_prints_the_worst_case_and_warns_about_uncapped_jobs(cli, tmp_path: Path) -> None:
    text = ("budget: {maxTotalUsd: 5}\njobs:\n  - {name: a, task: me~a, options: {maxTotalChargeUsd: 1.5}}\n"
            "  - {name: b, task: me~b, options: {maxTotalChargeUsd: 2}}\n  - {name: c, task: me~c}\n")
    code, out, _ = cli("plan", job_file(tmp_path, text))
    assert code == 0 and "worst case: $3.50 + unbounded (1 job without options.maxTotalChargeUsd)" in out
    assert "warning: a budget is set, but c can cost any amount" in out


def test_validate_warns_about_caps_in_the_input(cli, tmp_path: Path) -> None:
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~a, input: {maxTotalChargeUsd: 2}}\n")
    code, out, err = cli("validate", path)
    assert code == 0 and "input.maxTotalChargeUsd is the Actor's own input: it caps no spending" in out + err


def test_the_account_limits_reach_the_report_only_as_what_ran(cli, emulator, tmp_path: Path) -> None:
    emulator({"account": {"maxConcurrentRuns": 2, "memoryMbytes": 8192}})
    code, _, err = cli("run", job_file(tmp_path, many(2, 2)), "--out-dir", tmp_path / "out", "--no-run-facts")
    assert code == 0 and "the account allows 2 runs and 8 GB" in err
    json.loads((tmp_path / "out" / "report.json").read_text())


def test_a_pay_per_event_run_costs_its_events_times_their_prices_and_unknown_is_never_zero(cli, emulator,
                                                                                          tmp_path: Path) -> None:
    emulator({"tasks": {"me~ppe": {"chargedEvents": {"result": [10, 0.002], "start": [1, 0.05]}}}})
    code, stdout, _ = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~ppe}\n"), "--out-dir",
                          tmp_path / "out")
    report = read_report(tmp_path / "out")
    assert code == 0 and jobs_by_name(report)["a"]["usageTotalUsd"] == 0.07 and report["totals"]["usageTotalUsd"] == 0.07
    assert "this run's cost: $0.0700" in stdout


def test_a_run_of_unknown_cost_is_said_so(tmp_path: Path) -> None:
    from apify_jobs.record import JobResult, RunFacts, Status
    from apify_jobs.reports.report import Totals
    from apify_jobs.running.run_facts import event_cost

    known = JobResult("a", "t", "f", "run-sync", {}, "", Status.SUCCEEDED, 1, run=RunFacts("r1", "SUCCEEDED", 0.5))
    unknown = JobResult("b", "t", "f", "run-sync", {}, "", Status.SUCCEEDED, 1, run=RunFacts("r2", "SUCCEEDED"))
    assert Totals.of([known, unknown]).cost_text == "$0.5000 and 1 run of unknown cost"
    assert Totals.of([unknown]).cost_text == "unknown (1 run of unknown cost)"
    tiered = {"chargedEventCounts": {"x": 3}, "pricingInfo": {"pricingModel": "PAY_PER_EVENT", "pricingPerEvent": {
        "actorChargeEvents": {"x": {"eventTitle": "x", "eventDescription": "x", "eventTieredPricingUsd": {}}}}}}
    assert event_cost(tiered) is None  # a tier price the run does not say: unknown, not $0


def test_the_emulator_mode_takes_a_script_and_marks_what_is_emulated(cli, tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("tasks:\n  me~bad: {respond: run-failed}\n")
    path = job_file(tmp_path, "jobs:\n  - {name: good, task: me~good}\n  - {name: bad, task: me~bad}\n")
    code, stdout, _ = cli("run", path, "--out-dir", tmp_path / "out", "--emulator", "--script", script)
    assert code == 1 and "(emulated: no money was spent)" in stdout
    assert "no console page" in stdout and "console.apify.com" not in stdout
    code, _, err = cli("run", path, "--out-dir", tmp_path / "out2", "--script", script)
    assert code == 2 and "add --emulator" in err


def test_preliminary_costs_are_read_again_once_settled(emulator, tmp_path: Path, capsys, monkeypatch) -> None:
    """A run that just ended shows a preliminary cost; the run facts read it again `cost_settle` later."""
    import dataclasses

    from apify_jobs.environment import Environment
    from apify_jobs.main import main
    from tests.conftest import QUICK

    server = emulator()
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~a}\n")
    for settle, preliminary in ((0, True), (1.5, False)):  # the listing's Date has whole seconds
        out = tmp_path / f"out{settle}"
        code = main(["run", str(path), "--out-dir", str(out)],
                    Environment(settings=dataclasses.replace(QUICK, cost_settle=settle)))
        job = jobs_by_name(read_report(out))["a"]
        assert code == 0 and bool(job.get("usagePreliminary")) is preliminary, settle
    lookups = server.state.lookups_of("list-runs")
    assert len(lookups) >= 3  # one look-up for the first run; two (the second after the wait) for the other
    capsys.readouterr()


def test_run_warns_when_the_caps_would_pass_the_monthly_limit(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"account": {"monthlyUsageUsd": 9, "maxMonthlyUsageUsd": 10}})
    text = "jobs:\n  - {name: a, task: me~a, options: {maxTotalChargeUsd: 0.6}}\n" \
           "  - {name: b, task: me~b, options: {maxTotalChargeUsd: 0.6}}\n"
    code, _, err = cli("run", job_file(tmp_path, text), "--out-dir", tmp_path / "out", "--no-run-facts")
    assert code == 0 and "passes the account's monthly limit of $10.00" in err and len(server.state.runs) == 2
    code, _, err = cli("run", job_file(tmp_path, text.replace("0.6", "0.4")), "--out-dir", tmp_path / "out2",
                       "--no-run-facts")
    assert code == 0 and "monthly limit" not in err


def test_the_emulators_long_line_is_one_item_of_the_length_asked(tmp_path: Path) -> None:
    from apify_jobs.emulator.storage import _generated

    for jsonl in (False, True):
        body = b"".join(_generated(9000, jsonl, 5000))
        items = [json.loads(line) for line in body.splitlines()] if jsonl else json.loads(body)
        assert len(items) == 9000 and len(items[4500]["padding"]) == 5000
        assert sum("padding" in item for item in items) == 1
