"""`apify-jobs validate`: every problem of every job file, one line each; no token, no network."""

from __future__ import annotations

import argparse
import json

from apify_jobs import jobfile
from apify_jobs.cli_output import print_problems, print_safely
from apify_jobs.environment import Environment
from apify_jobs.errors import JobFileError, Problem


def main(args: argparse.Namespace, env: Environment) -> int:
    try:
        job_files, warnings = jobfile.load(args.paths, max_jobs=args.max_jobs, exclude=args.exclude, redactor=env.redactor,
                                           require_pinned_build=args.require_pinned_build)
    except JobFileError as exc:
        if args.format == "json":
            print_safely(json.dumps([_as_json(p, env) for p in exc.problems], ensure_ascii=False, indent=2))
            return 2
        raise  # main prints every problem and how many were found
    if args.format == "json":
        print_safely(json.dumps([_as_json(p, env) for p in warnings], ensure_ascii=False, indent=2))
        return 0
    print_problems(warnings, env.redactor, github=args.format == "github" or None)
    jobs = sum(len(f.jobs) for f in job_files)
    print(f"ok: {jobs} job{'s' * (jobs != 1)} in {len(job_files)} file{'s' * (len(job_files) != 1)}")
    return 0


def _as_json(problem: Problem, env: Environment) -> dict[str, object]:
    return {"file": problem.file, "line": problem.line, "column": problem.column, "message": env.redactor(problem.message),
            "severity": "warning" if problem.warning else "error"}
