"""`apify-jobs run`: select the jobs, send them, write outputs, the report and the summary."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from apify_jobs import jobfile
from apify_jobs.api.client import ApiClient, check_base_url
from apify_jobs.api.failures import JobFailure, OutputFailure
from apify_jobs.api.request import DEFAULT_BASE_URL
from apify_jobs.cli_output import configure_logging, parse_vars, print_problems
from apify_jobs.errors import UsageError
from apify_jobs.model import GoingRun, JobFile, JobResult
from apify_jobs.outputs.destination import LocalFolder
from apify_jobs.reports import report
from apify_jobs.reports.progress import Progress, interrupted_runs, summary
from apify_jobs.running.executor import Executor
from apify_jobs.running.run_facts import add_run_facts, still_running
from apify_jobs.running.runner import RunContext
from apify_jobs.running.selection import parse_shard, resume, select

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def main(args: argparse.Namespace) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    shard = parse_shard(args.shard)
    environ = dict(os.environ)
    job_files, warnings = jobfile.load(args.paths, parse_vars(args.var), environ)
    if not args.quiet:
        print_problems(warnings)
    plan = select(job_files, args.only, shard, args.concurrency, args.fail_fast)
    report_path = args.report or os.path.join(args.out_dir, "report.json")
    configure_logging(args.verbose)
    with _api(args) as (base_url, token):
        check_base_url(base_url)
        previous = report.load_previous(report_path) if args.resume else {}
        client = ApiClient(token, pool_size=args.concurrency or _pool_size(job_files), base_url=base_url)
        context = RunContext(client, LocalFolder(args.out_dir), threading.Event())
        resumed = resume(plan, previous, context.destination, base_url) if args.resume else 0
        progress = Progress(len(plan.entries) - resumed, quiet=args.quiet)
        executor = Executor(plan, context, progress)
        if plan.ignored_needs and not args.quiet:
            print(f"apify-jobs: not selected, so not waited for: {', '.join(sorted(plan.ignored_needs))}", file=sys.stderr)
        with _interrupts(executor):
            results = executor.run()
        progress.close()
        going = _after_the_batch(args, context, results, executor.interrupted)
        context.client.close()
    context.destination.sync()  # outputs are durable before a report says they exist
    print(summary(results) if not args.quiet else _failures_only(results))
    built = report.build(results, job_files, executor.interrupted, going)
    written = _write_reports(report_path, args.junit, built, results)
    if executor.interrupted:
        print(interrupted_runs(going, args.abort_on_interrupt), file=sys.stderr)
        print("apify-jobs: interrupted; report written to " + report_path, file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if written and all(r.succeeded for r in results) else EXIT_FAILED


def _after_the_batch(args: argparse.Namespace, context: RunContext, results: list[JobResult],
                     interrupted: bool) -> list[GoingRun]:
    """Run facts for a finished batch; after an interrupt, the runs still going (aborted if asked)."""
    if interrupted:
        try:
            return still_running(context.client, context.attempts, results, args.abort_on_interrupt)
        except JobFailure as failure:
            print(f"apify-jobs: could not look up the runs still going: {failure}", file=sys.stderr)
            return []
    if args.run_facts:
        add_run_facts(context.client, context.attempts, results)
    return []


def _write_reports(report_path: str, junit_path: str | None, full: dict[str, Any],
                   results: list[JobResult]) -> bool:
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


def _failures_only(results: list[JobResult]) -> str:
    bad = [r for r in results if not r.succeeded]
    return summary(bad) if bad else ""
