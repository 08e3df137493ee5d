"""The selection `run` and `plan` share: --only, --failed, --changed, --shard, and --max-age on every job."""

from __future__ import annotations

import argparse

from apify_jobs.api.request import DEFAULT_BASE_URL, build_request
from apify_jobs.durations import DurationError, parse
from apify_jobs.environment import Environment
from apify_jobs.errors import UsageError
from apify_jobs.model import JobFile
from apify_jobs.running.runner import new_result
from apify_jobs.running.selection import Plan, Selectors, select
from apify_jobs.running.state import existing_state, request_key


def chosen(args: argparse.Namespace, env: Environment, job_files: list[JobFile], global_cap: int | None = None,
           fail_fast: bool = False) -> Plan:
    if args.max_age is not None:
        try:
            max_age = parse(args.max_age)
        except DurationError as error:
            raise UsageError(f"--max-age: {error}") from None
        for job_file in job_files:
            for job in job_file.jobs:
                job.max_age = max_age
    selectors = Selectors.from_args(args)
    latest = None
    if selectors.from_state:
        state = existing_state(args.out_dir, args.state_dir, env.redactor)
        if state is not None:
            latest = state.latest_by_job()
            state.close()
    # a request's key does not hold the API's address: the default one serves for every run
    return select(job_files, selectors, global_cap, fail_fast, latest,
                  lambda job: request_key(new_result(job, build_request(job, DEFAULT_BASE_URL))))
