"""`apify-jobs report`: write report.json and JUnit again from the durable state, at any time (also after a
`kill -9`, when the run itself could not)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from apify_jobs.cli_output import print_safely
from apify_jobs.environment import Environment
from apify_jobs.errors import UsageError
from apify_jobs.failures import OutputFailure
from apify_jobs.outputs.paths import DEFAULT_REPORT
from apify_jobs.record import GoingRun
from apify_jobs.reports import writers
from apify_jobs.reports.report import ReportOf
from apify_jobs.running.state import State


def main(args: argparse.Namespace, env: Environment) -> int:
    if args.merge:
        return _merge(args, env)
    state = State(args.out_dir, create=False, redactor=env.redactor, state_dir=args.state_dir)
    try:
        return _write(args, env, state)
    finally:
        state.close()


def _write(args: argparse.Namespace, env: Environment, state: State) -> int:
    invocation, entries = state.entries(args.run, _kept(args))
    if invocation is None:  # --run all: the latest result of every job that ever ran into the folder
        of = ReportOf(entries, redactor=env.redactor)
    else:
        going = [GoingRun.from_dict(g) for g in invocation.extra.get("runsStillGoing", [])]
        of = ReportOf(entries, invocation.files, invocation.interrupted, invocation.finished_at is not None, going,
                      invocation.id, invocation.started_at, invocation.finished_at, env.redactor)
    written = _write_reports(args, of)
    which = "every job's latest result" if invocation is None else f"run {invocation.id}" + (
        "" if of.complete else " (it was killed before it finished)")
    print_safely(f"apify-jobs: wrote {' and '.join(written)}: {len(entries)} job{'s' * (len(entries) != 1)} of {which}")
    return 0


def _kept(args: argparse.Namespace) -> Callable[[str, str], bool] | None:
    """--only and --failed, as `run` and `plan` read them; a report knows no job files, so `+NAME` and `NAME+`
    select the name alone."""
    import fnmatch

    patterns = [pattern.strip("+") for pattern in args.only]
    if not patterns and not args.failed:
        return None
    return lambda job, status: (not patterns or any(fnmatch.fnmatchcase(job, p) for p in patterns)) and \
        (not args.failed or status in ("failed", "cancelled"))


def _write_reports(args: argparse.Namespace, of: ReportOf, merged: bool = False) -> list[str]:
    """Every report asked for; with only --junit, no report.json (a JUnit file is what was asked for), but a
    merged folder always has its report.json."""
    only_junit = args.junit and not args.report and not merged
    reports = writers.chosen(args, None if only_junit else os.path.join(args.out_dir, DEFAULT_REPORT))
    try:
        return writers.write(of, reports)
    except OutputFailure as failure:
        raise UsageError(f"the report could not be written: {failure}") from None


def _merge(args: argparse.Namespace, env: Environment) -> int:
    """`report --merge DIR...`: the shards' folders into --out-dir, then its reports (every format asked for)."""
    from apify_jobs.running.merge import merge

    if args.run != "last":
        raise UsageError("--merge writes the merged folder's report; --run does not apply")
    merged = merge(args.merge, args.out_dir, args.state_dir)
    for conflict in merged.conflicts:
        print_safely(f"apify-jobs: conflict: {conflict}", sys.stderr)
    state = State(args.out_dir, create=False, redactor=env.redactor, state_dir=args.state_dir)
    try:
        invocation, entries = state.entries("last")
        assert invocation is not None
        of = ReportOf(entries, [], False, True, [], invocation.id, invocation.started_at, invocation.finished_at,
                      env.redactor)
        written = _write_reports(args, of, merged=True)
    finally:
        state.close()
    print_safely(f"apify-jobs: merged {len(args.merge)} folders ({merged.runs} runs) into {args.out_dir}: "
                 f"{len(entries)} jobs, {merged.linked} outputs linked, {merged.copied} copied; "
                 f"wrote {' and '.join(written)}")
    return 1 if merged.conflicts else 0
