"""`apify-jobs validate`: every problem of every job file, one line each; no token, no network."""

from __future__ import annotations

import argparse
import sys

from apify_jobs import jobfile
from apify_jobs.cli_output import print_problems
from apify_jobs.errors import JobFileError


def main(args: argparse.Namespace) -> int:
    try:
        job_files, warnings = jobfile.load(args.paths, max_jobs=args.max_jobs, exclude=args.exclude)
    except JobFileError as exc:
        print_problems(exc.problems)
        errors = sum(not p.warning for p in exc.problems)
        print(f"{errors} problem{'s' * (errors != 1)} found", file=sys.stderr)
        return 2
    print_problems(warnings)
    jobs = sum(len(f.jobs) for f in job_files)
    print(f"ok: {jobs} job{'s' * (jobs != 1)} in {len(job_files)} file{'s' * (len(job_files) != 1)}")
    return 0
