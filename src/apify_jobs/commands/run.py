"""`apify-jobs run`: select the jobs, send them, write outputs, the report and the summary."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from apify_jobs import jobfile, redaction
from apify_jobs.api.client import ApiClient, ca_setting, check_base_url
from apify_jobs.api.request import DEFAULT_BASE_URL
from apify_jobs.cli_output import configure_logging, parse_vars, print_problems, print_safely, write_safely
from apify_jobs.errors import UsageError
from apify_jobs.failures import JobFailure, OutputFailure
from apify_jobs.files import check_writable_folder
from apify_jobs.model import JobFile
from apify_jobs.outputs.destination import LocalFolder
from apify_jobs.outputs.paths import DEFAULT_REPORT, STATE_FOLDER, may_land_on
from apify_jobs.record import GoingRun, JobResult
from apify_jobs.reports import report, writers
from apify_jobs.reports.display import make_progress
from apify_jobs.reports.progress import interrupted_runs, summary
from apify_jobs.reports.report import ReportOf
from apify_jobs.running.executor import Executor
from apify_jobs.running.run_facts import add_run_facts, still_running
from apify_jobs.running.runner import RunContext
from apify_jobs.running.selection import Plan, parse_shard, resume, resumed_result, select
from apify_jobs.running.state import State

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_SIGNALLED = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it


def main(args: argparse.Namespace) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    shard = parse_shard(args.shard)
    environ = dict(os.environ)
    job_files, warnings = jobfile.load(args.paths, parse_vars(args.var, args.var_file), environ, args.max_jobs,
                                          args.exclude)
    if not args.quiet:
        print_problems(warnings)
    plan = select(job_files, args.only, shard, args.concurrency, args.fail_fast)
    destination = LocalFolder(args.out_dir)
    reports = writers.chosen(args, os.path.join(args.out_dir, DEFAULT_REPORT))
    _refuse_collisions(plan, destination, {flag: path for flag, (_, path) in reports.items()})
    configure_logging(args.verbose)
    with _api(args) as (base_url, token):
        check_base_url(base_url)
        if base_url.startswith("https"):
            ca_setting(os.environ)  # a CA path that does not exist: exit 2 before anything is sent
        state = _preflight(destination, [path for _, path in reports.values()])
        try:
            return _run(args, plan, job_files, destination, state, base_url, token, reports)
        finally:
            state.close()


def _run(args: argparse.Namespace, plan: Plan, job_files: list[JobFile], destination: LocalFolder, state: State,
         base_url: str, token: str | None, reports: dict[str, tuple[writers.ReportFormat, str]]) -> int:
    files = [{"path": f.path, "sha256": f.sha256} for f in job_files]
    state.begin({"only": args.only, "shard": args.shard, "outDir": args.out_dir,
                 "jobs": [e.job.name for e in plan.entries]}, files)
    removed, freed = destination.clean_leftovers(skip=os.path.dirname(state.path))
    if removed and not args.quiet:
        print(f"apify-jobs: removed {removed} temporary file{'s' * (removed != 1)} that an earlier killed run left "
              f"behind ({freed / (1 << 20):.1f} MiB freed)", file=sys.stderr)
    client = ApiClient(token, pool_size=args.concurrency or _pool_size(job_files), base_url=base_url)
    context = RunContext(client, destination, threading.Event())
    if args.resume:
        context.resume_check = lambda job: resumed_result(job, state, destination, base_url)
    resumed = resume(plan, state, destination, base_url) if args.resume else 0
    progress = make_progress(len(plan.entries) - resumed, args.quiet, args.color)
    state.take_leases([e.job.name for e in plan.entries if e.result is None])
    executor = Executor(plan, context, progress, journal=state)
    if plan.ignored_needs and not args.quiet:
        print(f"apify-jobs: not selected, so not waited for: {', '.join(sorted(plan.ignored_needs))}", file=sys.stderr)
    with _interrupts(executor):
        results = executor.run()
    progress.close()
    if executor.journal_failure is not None:  # one line and exit 2: the outputs written so far stay
        raise executor.journal_failure
    going = _after_the_batch(args, context, results, executor.interrupted)
    client.close()
    destination.sync()  # outputs are durable before a report says they exist
    state.update([r for r in results if r.run is not None or r.facts_note])  # the run facts, found after the jobs
    state.finish(executor.interrupted, {"runsStillGoing": [g.to_dict() for g in going]})
    invocation, entries = state.entries(str(state.invocation))
    of = ReportOf(entries, files, executor.interrupted, True, going, state.invocation,
                  invocation.started_at if invocation else None, invocation.finished_at if invocation else None)
    # A reader that went away (`run | head`) must not cost the report or change the exit status.
    if args.json:  # the report itself, for scripts (`run --json | jq ...`), instead of the summary table
        write_safely(report.json_text(of))
    else:
        print_safely(summary(results) if not args.quiet else _failures_only(results))
    written = _write_reports(reports, of)
    if executor.interrupted:
        print_safely(interrupted_runs(going, args.abort_on_interrupt), sys.stderr)
        print_safely("apify-jobs: interrupted; report written to " + reports["--report"][1], sys.stderr)
        return EXIT_SIGNALLED[executor.signal]
    return EXIT_OK if written and all(r.succeeded for r in results) else EXIT_FAILED


def _refuse_collisions(plan: Plan, destination: LocalFolder, reports: dict[str, str]) -> None:
    """The state folder, the reports (report.json, JUnit, HTML) and every output are distinct files; refused before
    anything is sent."""
    state_folder = os.path.abspath(os.path.join(destination.out_dir, STATE_FOLDER))
    named = {flag: os.path.abspath(path) for flag, path in reports.items() if path}
    if len(set(named.values())) < len(named):
        raise UsageError(f"{', '.join(named)} must be different files; two of them are the same")
    for flag, path in named.items():
        if path == state_folder or path.startswith(state_folder + os.sep):
            raise UsageError(f"{flag} {path} is inside the state folder {state_folder}; give another path")
        for entry in plan.entries:
            if may_land_on(os.path.abspath(destination.planned(entry.job)), path):
                raise UsageError(f"{flag} {path} is where job '{entry.job.name}' writes its output; "
                                 "give one of them another path")


def _preflight(destination: LocalFolder, reports: list[str]) -> State:
    """Prove that the output folder, the report and JUnit can be written and open the state — before the first
    request costs money."""
    try:
        destination.check_writable()
        for path in reports:
            if path:
                check_writable_folder(os.path.dirname(os.path.abspath(path)))
    except OutputFailure as failure:
        raise UsageError(f"{failure}; nothing was sent") from None
    return State(destination.out_dir)


def _after_the_batch(args: argparse.Namespace, context: RunContext, results: list[JobResult],
                     interrupted: bool) -> list[GoingRun]:
    """Run facts for a finished batch; after an interrupt, the runs still going (aborted if asked)."""
    if interrupted:
        try:
            return still_running(context.client, context.attempts, results, args.abort_on_interrupt)
        except JobFailure as failure:
            print_safely(f"apify-jobs: could not look up the runs still going: {failure}", sys.stderr)
            return []
    if args.run_facts:
        add_run_facts(context.client, context.attempts, results)
    return []


def _write_reports(reports: dict[str, tuple[writers.ReportFormat, str]], of: ReportOf) -> bool:
    """Write every report asked for; one that cannot be written is one line and exit 1, never a traceback: the
    jobs' outputs are written already, and `apify-jobs report` can write it again."""
    try:
        writers.write(of, reports)
    except OutputFailure as failure:
        print_safely(f"apify-jobs: the jobs ran (see the summary), but the report could not be written: {failure}",
                     sys.stderr)
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
    yield os.environ.get("APIFY_API_BASE_URL") or DEFAULT_BASE_URL, token_from(os.environ)


def token_from(environ: Mapping[str, str]) -> str:
    """APIFY_TOKEN, with the whitespace a pasted secret or `$(cat token.txt)` brings stripped; anything else
    that cannot be a token is refused with a message that does not show it."""
    raw = environ.get("APIFY_TOKEN")
    if raw is None:
        raise UsageError("APIFY_TOKEN is not set: export your Apify API token, or add --emulator to try the "
                         "jobs locally")
    redaction.register(raw)
    token = raw.strip()
    if not token:
        raise UsageError("APIFY_TOKEN is empty: export your Apify API token, or add --emulator to try the jobs "
                         "locally")
    odd = next((index for index, char in enumerate(token) if not char.isprintable()), None)
    if odd is not None:
        raise UsageError(f"APIFY_TOKEN has a control or non-printable character (at position {odd + 1} of "
                         f"{len(token)}); copy the token again")
    redaction.register(token)
    return token


@contextlib.contextmanager
def _interrupts(executor: Executor) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop starting, cancel, write the report. Second: exit at once."""

    def handle(signum: int, frame: Any) -> None:
        if executor.interrupted:
            os._exit(EXIT_SIGNALLED[executor.signal])
        executor.signal = signal.Signals(signum)
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
