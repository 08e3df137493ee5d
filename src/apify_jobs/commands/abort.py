"""`apify-jobs abort`: abort the runs the state knows to be in flight (attempts written ahead whose job never
ended: a killed runner's, or an interrupted batch's), so that they stop costing money."""

from __future__ import annotations

import argparse
import sys

from apify_jobs.api.client import ApiClient, check_base_url
from apify_jobs.api.request import DEFAULT_BASE_URL
from apify_jobs.api.token import token_from
from apify_jobs.cli_output import print_safely
from apify_jobs.environment import Environment
from apify_jobs.errors import ExitStatus
from apify_jobs.reports.progress import interrupted_runs
from apify_jobs.running.batch import abort_in_flight
from apify_jobs.running.state import State


def main(args: argparse.Namespace, env: Environment) -> int:
    state = State(args.out_dir, create=False, redactor=env.redactor, state_dir=args.state_dir)
    try:
        if not state.in_flight():
            print_safely("apify-jobs: no run is in flight in the state: nothing to abort")
            return ExitStatus.OK
        base_url = env.environ.get("APIFY_API_BASE_URL") or DEFAULT_BASE_URL
        check_base_url(base_url)
        client = ApiClient(token_from(env.environ, env.redactor), base_url=base_url)
        try:
            going = abort_in_flight(state, client, env.settings)
        finally:
            client.close()
    finally:
        state.close()
    print_safely(interrupted_runs(going, True, env.redactor), sys.stderr)
    return ExitStatus.OK if all(g.aborted for g in going) else ExitStatus.FAILED
