"""`apify-jobs report`: write report.json and JUnit again from the durable state, at any time (also after a
`kill -9`, when the run itself could not)."""

from __future__ import annotations

import argparse
import os
import sys

from apify_jobs.api.failures import OutputFailure
from apify_jobs.cli_output import print_safely
from apify_jobs.errors import UsageError
from apify_jobs.model import GoingRun
from apify_jobs.outputs.paths import DEFAULT_REPORT
from apify_jobs.redaction import redact
from apify_jobs.reports import report
from apify_jobs.reports.report import ReportOf
from apify_jobs.running.state import State


def main(args: argparse.Namespace) -> int:
    if args.merge:
        return _merge(args)
    state = State(args.out_dir, create=False)
    try:
        return _write(args, state)
    finally:
        state.close()


def _write(args: argparse.Namespace, state: State) -> int:
    invocation, entries = state.entries(args.run)
    json_path = args.json or (None if args.junit else os.path.join(args.out_dir, DEFAULT_REPORT))
    if invocation is None:  # --run all: the latest result of every job that ever ran into the folder
        of = ReportOf(entries)
    else:
        going = [GoingRun(**g) for g in invocation.extra.get("runsStillGoing", [])]
        of = ReportOf(entries, invocation.files, invocation.interrupted, invocation.finished_at is not None, going,
                      invocation.id, invocation.started_at, invocation.finished_at)
    try:
        report.write(of, json_path, args.junit, args.html)
        if args.markdown:
            with open(args.markdown, "a", encoding="utf-8") as stream:
                stream.write(redact(report.markdown(report.build(of))))
    except OutputFailure as failure:
        raise UsageError(f"the report could not be written: {failure}") from None
    except OSError as failure:
        raise UsageError(f"the Markdown summary could not be written to {args.markdown}: {failure.strerror}") from None
    written = " and ".join(p for p in (json_path, args.junit, args.html, args.markdown) if p)
    which = "every job's latest result" if invocation is None else f"run {invocation.id}" + (
        "" if of.complete else " (it was killed before it finished)")
    print_safely(f"apify-jobs: wrote {written}: {len(entries)} job{'s' * (len(entries) != 1)} of {which}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    """`report --merge DIR...`: the shards' folders into --out-dir, then its report."""
    from apify_jobs.running.merge import merge

    if args.run != "last":
        raise UsageError("--merge writes the merged folder's report; --run does not apply")
    merged = merge(args.merge, args.out_dir)
    for conflict in merged.conflicts:
        print_safely(f"apify-jobs: conflict: {conflict}", sys.stderr)
    state = State(args.out_dir, create=False)
    try:
        invocation, entries = state.entries("last")
        assert invocation is not None
        json_path = args.json or os.path.join(args.out_dir, DEFAULT_REPORT)
        of = ReportOf(entries, [], False, True, [], invocation.id, invocation.started_at, invocation.finished_at)
        try:
            report.write(of, json_path, args.junit)
        except OutputFailure as failure:
            raise UsageError(f"the report could not be written: {failure}") from None
    finally:
        state.close()
    print_safely(f"apify-jobs: merged {len(args.merge)} folders ({merged.runs} runs) into {args.out_dir}: "
                 f"{len(entries)} jobs, {merged.linked} outputs linked, {merged.copied} copied; report {json_path}")
    return 1 if merged.conflicts else 0
