"""`apify-jobs run`: select the jobs, send them (running/batch.py), print the summary, write the reports."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator

from apify_jobs import jobfile
from apify_jobs.api.client import ApiClient, ca_setting, check_base_url
from apify_jobs.api.request import DEFAULT_BASE_URL
from apify_jobs.api.token import token_from
from apify_jobs.cli_output import configure_logging, parse_vars, print_problems, print_safely, write_safely
from apify_jobs.commands.choose import chosen
from apify_jobs.environment import Environment
from apify_jobs.errors import ExitStatus, UsageError
from apify_jobs.failures import OutputFailure
from apify_jobs.model import JobFile
from apify_jobs.outputs.destination import destination_for
from apify_jobs.outputs.paths import DEFAULT_REPORT
from apify_jobs.record import JobResult
from apify_jobs.redaction import Redactor
from apify_jobs.reports import report, writers
from apify_jobs.reports.display import make_progress
from apify_jobs.reports.progress import interrupted_runs, summary
from apify_jobs.reports.report import ReportOf
from apify_jobs.running.batch import BatchOptions, Outcome, pool_size, preflight, refuse_collisions, run_batch
from apify_jobs.running.state import State, state_folder


def main(args: argparse.Namespace, env: Environment) -> int:
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.emulator_script and not args.emulator:
        raise UsageError("--script scripts the built-in emulator: add --emulator")
    if args.max_cost_usd is not None and not args.max_cost_usd > 0:
        raise UsageError("--max-cost-usd must be more than 0")
    job_files, warnings = jobfile.load(args.paths, parse_vars(args.var, args.var_file), env.environ, args.max_jobs,
                                       args.exclude, env.redactor, args.require_pinned_build)
    if not args.quiet:
        print_problems(warnings, env.redactor)
    destination = destination_for(args.out_dir)
    plan = chosen(args, env, job_files, args.concurrency, args.fail_fast)
    reports = writers.chosen(args, os.path.join(args.out_dir, DEFAULT_REPORT))
    refuse_collisions(plan, destination, {flag: path for flag, (_, path) in reports.items()},
                      state_folder(args.out_dir, args.state_dir))
    configure_logging(args.verbose, env.redactor)
    with _api(args, env) as (base_url, token):
        check_base_url(base_url)
        if base_url.startswith("https"):
            ca_setting(env.environ)  # a CA path that does not exist: exit 2 before anything is sent
        preflight(destination, [path for _, path in reports.values()])
        state = State(args.out_dir, redactor=env.redactor, state_dir=args.state_dir)
        client = ApiClient(token, pool_size=pool_size(job_files, args.concurrency), base_url=base_url)
        try:
            options = BatchOptions(args.resume, args.run_facts, args.abort_on_interrupt,
                                   {"only": args.only, "shard": args.shard, "failed": args.failed,
                                    "changed": args.changed, "maxAge": args.max_age, "outDir": args.out_dir},
                                   args.account_limits, args.max_cost_usd)
            outcome = run_batch(plan, job_files, destination, state, client, options,
                                lambda total: make_progress(total, args.quiet, args.color, env.redactor),
                                _say(args.quiet, env.redactor),
                                # the emulator's costs are invented: nothing to wait for
                                dataclasses.replace(env.settings, cost_settle=0) if args.emulator else env.settings)
            return _show(args, env, outcome, reports, job_files)
        finally:
            client.close()
            state.close()


def _show(args: argparse.Namespace, env: Environment, outcome: Outcome,
          reports: dict[str, tuple[writers.ReportFormat, str]], job_files: list[JobFile]) -> int:
    """The summary (or the report itself with --json), the reports, and the exit status."""
    invocation = outcome.invocation
    of = ReportOf(outcome.entries, [{"path": f.path, "sha256": f.sha256} for f in job_files], outcome.interrupted,
                  True, outcome.going, invocation.id if invocation else None,
                  invocation.started_at if invocation else None, invocation.finished_at if invocation else None,
                  env.redactor)
    # A reader that went away (`run | head`) must not cost the report or change the exit status.
    if args.json:  # the report itself, for scripts (`run --json | jq ...`), instead of the summary table
        write_safely(report.json_text(of))
    else:
        print_safely(summary(outcome.results, env.redactor, emulated=args.emulator) if not args.quiet
                     else _failures_only(outcome.results, env.redactor, args.emulator))
    written = _write_reports(reports, of)
    if outcome.interrupted:
        print_safely(interrupted_runs(outcome.going, args.abort_on_interrupt, env.redactor), sys.stderr)
        print_safely("apify-jobs: interrupted; report written to " + reports["--report"][1], sys.stderr)
    elif not written:
        return ExitStatus.FAILED
    return outcome.exit_status


def _say(quiet: bool, redactor: Redactor) -> Callable[[str], None]:
    """Lines for the user on stderr. They can hold a server's words (why the limits could not be read): masked
    here, made inert by print_safely."""
    def say(text: str) -> None:
        if not quiet:
            print_safely(redactor(f"apify-jobs: {text}"), sys.stderr)
    return say


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


@contextlib.contextmanager
def _api(args: argparse.Namespace, env: Environment) -> Iterator[tuple[str, str | None]]:
    """(base URL, token): the built-in emulator for --emulator (no token), else the real API."""
    if args.emulator:
        from apify_jobs.emulator import Emulator, load_script

        with Emulator(load_script(args.emulator_script)) as emulator:
            yield emulator.url, None
        return
    yield env.environ.get("APIFY_API_BASE_URL") or DEFAULT_BASE_URL, token_from(env.environ, env.redactor)


def _failures_only(results: list[JobResult], redact: Redactor, emulated: bool) -> str:
    bad = [r for r in results if not r.succeeded]
    return summary(bad, redact, emulated) if bad else ""
