"""`apify-jobs run`: select the jobs, send them, write outputs, the report and the summary."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import os
import signal
import sys
import threading
from typing import Any, Iterator

from apify_jobs import jobfile, report
from apify_jobs.cli_output import configure_logging, parse_vars, print_problems
from apify_jobs.errors import UsageError
from apify_jobs.executor import Executor, Plan, Planned
from apify_jobs.failures import OutputFailure
from apify_jobs.http_client import ApiClient, check_base_url
from apify_jobs.model import JobFile
from apify_jobs.output import Guard, sha256_of
from apify_jobs.progress import Progress, summary
from apify_jobs.request import DEFAULT_BASE_URL, build_request
from apify_jobs.runner import RunContext, new_result

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def main(args: argparse.Namespace) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    shard = _parse_shard(args.shard)
    environ = dict(os.environ)
    job_files, warnings = jobfile.load(args.paths, parse_vars(args.var), environ)
    if not args.quiet:
        print_problems(warnings)
    plan = _select(job_files, args.only, shard, args.concurrency, args.fail_fast)
    report_path = args.report or os.path.join(args.out_dir, "report.json")
    configure_logging(args.verbose)
    with _api(args) as (base_url, token):
        check_base_url(base_url)
        previous = report.load_previous(report_path) if args.resume else {}
        client = ApiClient(token, pool_size=args.concurrency or _pool_size(job_files), base_url=base_url)
        context = RunContext(client, base_url, args.out_dir, Guard(), threading.Event())
        resumed = _resume(plan, previous, context) if args.resume else 0
        progress = Progress(len(plan.entries) - resumed, quiet=args.quiet)
        executor = Executor(plan, context, progress)
        if plan.ignored_needs and not args.quiet:
            print(f"apify-jobs: not selected, so not waited for: {', '.join(sorted(plan.ignored_needs))}", file=sys.stderr)
        with _interrupts(executor):
            results = executor.run()
        progress.close()
        context.client.close()
    context.guard.sync()  # outputs are durable before a report says they exist
    print(summary(results) if not args.quiet else _failures_only(results))
    written = _write_reports(report_path, args.junit, report.build(results, job_files, executor.interrupted), results)
    if executor.interrupted:
        print("apify-jobs: interrupted; report written to " + report_path, file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if written and all(r.status == "succeeded" for r in results) else EXIT_FAILED


def _write_reports(report_path: str, junit_path: str | None, full: dict[str, Any],
                   results: list[report.JobResult]) -> bool:
    """Write report.json (and JUnit); a report that cannot be written is one line and exit 1, never a
    traceback: the jobs' outputs are written already."""
    try:
        report.write_json(report_path, full)
        if junit_path:
            report.write_junit(junit_path, results)
    except OutputFailure as failure:
        print(f"apify-jobs: the jobs ran (see the summary), but the report could not be written: {failure}",
              file=sys.stderr)
        return False
    return True


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise UsageError(f"--shard takes I/N, like 2/4, not {value!r}") from None
    if not 1 <= index <= count:
        raise UsageError(f"--shard {value}: I must be between 1 and N")
    return index, count


def in_shard(name: str, shard: tuple[int, int]) -> bool:
    """Stable: the same name always lands in the same shard, whatever else is selected."""
    index, count = shard
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % count == index - 1


def shard_keys(job_files: list[JobFile]) -> dict[str, str]:
    """Each job's shard key: the first name (sorted) of the jobs linked to it by `needs`, so that a job and
    its needs always land in the same shard and still run in order."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for job_file in job_files:
        for job in job_file.jobs:
            for need in job.needs:
                a, b = root(job.name), root(need)
                parent[max(a, b)] = min(a, b)
    return {job.name: root(job.name) for job_file in job_files for job in job_file.jobs}


def _select(job_files: list[JobFile], only: list[str], shard: tuple[int, int] | None, global_cap: int | None,
            fail_fast: bool) -> Plan:
    entries = []
    keys = shard_keys(job_files) if shard else {}
    for index, job_file in enumerate(job_files):
        for job in job_file.jobs:
            if only and not any(fnmatch.fnmatchcase(job.name, pattern) for pattern in only):
                continue
            if shard and not in_shard(keys[job.name], shard):
                continue
            entries.append(Planned(job, index))
    if only and not entries:
        raise UsageError(f"--only {' '.join(only)} matches no job")
    selected = {entry.job.name for entry in entries}
    ignored = {need for entry in entries for need in entry.job.needs if need not in selected}
    return Plan(entries, [f.concurrency for f in job_files], [fail_fast or f.fail_fast for f in job_files],
                global_cap, ignored)


def _resume(plan: Plan, previous: dict[str, dict[str, Any]], context: RunContext) -> int:
    """Mark jobs whose earlier success still stands; returns how many."""
    count = 0
    for entry in plan.entries:
        before = previous.get(entry.job.name)
        if not before or before.get("status") != "succeeded":
            continue
        request = build_request(entry.job, context.base_url)
        same_request = before.get("task") == entry.job.task and before.get("request") == {
            "endpoint": request.endpoint, "query": dict(request.query), "inputSha256": request.input_sha256}
        output = before.get("output") or {}
        if same_request and output.get("path") and sha256_of(output["path"]) == output.get("sha256"):
            result = new_result(entry.job, request)
            result.status, result.resumed, result.previous = "succeeded", True, before
            entry.result = result
            count += 1
    return count


def _pool_size(job_files: list[JobFile]) -> int:
    return max(sum(f.concurrency for f in job_files), 1)


@contextlib.contextmanager
def _api(args: argparse.Namespace) -> Iterator[tuple[str, str | None]]:
    """(base URL, token): the built-in emulator for --emulator (no token), else the real API."""
    if args.emulator:
        from apify_jobs.emulator import Emulator, load_script

        with Emulator(load_script(args.emulator_script)) as emulator:
            yield emulator.url, None
        return
    token = os.environ.get("APIFY_TOKEN")
    if not token:
        raise UsageError("APIFY_TOKEN is not set: export your Apify API token, or add --emulator to try the "
                         "jobs locally")
    yield os.environ.get("APIFY_API_BASE_URL") or DEFAULT_BASE_URL, token


@contextlib.contextmanager
def _interrupts(executor: Executor) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop starting, cancel, write the report. Second: exit at once."""

    def handle(signum: int, frame: Any) -> None:
        if executor.interrupted:
            os._exit(EXIT_INTERRUPTED)
        executor.interrupt()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _failures_only(results: list[report.JobResult]) -> str:
    bad = [r for r in results if r.status != "succeeded"]
    return summary(bad) if bad else ""
