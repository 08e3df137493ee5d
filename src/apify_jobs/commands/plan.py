"""`apify-jobs plan`: every request `run` would send, exactly; no token, no network."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from apify_jobs import jobfile
from apify_jobs.api.request import DEFAULT_BASE_URL, build_request
from apify_jobs.cli_output import parse_vars, print_problems, print_safely
from apify_jobs.outputs.destination import LocalFolder
from apify_jobs.redaction import redact
from apify_jobs.running.needs import deferred, describe_fan_out, uses_needs
from apify_jobs.running.selection import still_standing
from apify_jobs.running.state import State, StateError, state_path


def main(args: argparse.Namespace) -> int:
    job_files, warnings = jobfile.load(args.paths, parse_vars(args.var), dict(os.environ), args.max_jobs)
    print_problems(warnings)
    base_url = os.environ.get("APIFY_API_BASE_URL") or DEFAULT_BASE_URL
    destination = LocalFolder(args.out_dir)
    state = _state(args.out_dir) if args.resume else None
    planned = []
    for job_file in job_files:
        for job in job_file.jobs:
            job = deferred(job) if uses_needs(job) else job  # values from needed jobs: <from list.output…>
            request = build_request(job, base_url)
            entry: dict[str, Any] = {
                "name": job.name,
                "method": request.method,
                "url": request.url,
                "body": job.input,
                "output": destination.planned(job),
                "expect": job.expect.to_dict(),
            }
            if args.resume:
                earlier = still_standing(job, state, destination, base_url) if state else None
                entry["resume"] = "skip" if earlier else "run"
                entry["succeededAt"] = earlier.finished_at if earlier else None
            planned.append(entry)
    if state is not None:
        state.close()
    job_by_name = {job.name: job for job_file in job_files for job in job_file.jobs}
    # Secrets (`${{ secrets.NAME }}`) are masked in what plan shows, Base64 of webhooks included.
    if args.json:
        print_safely(redact(json.dumps(planned, ensure_ascii=False, indent=2)))
        return 0
    lines = []
    for entry in planned:
        lines += [f"{entry['name']}", f"  {entry['method']} {entry['url']}",
                  f"  body:   {json.dumps(entry['body'], ensure_ascii=False)}", f"  output: {entry['output']}",
                  f"  expect: {job_by_name[entry['name']].expect.describe()}"]
        if args.resume:
            shown = f"skip (succeeded {entry['succeededAt']}, output intact)" if entry["resume"] == "skip" else "run"
            lines.append(f"  resume: {shown}")
        if job_by_name[entry["name"]].fan_out is not None:
            lines.append(f"  fan-out: {describe_fan_out(job_by_name[entry['name']])}")
    print_safely(redact("\n".join(lines)))
    return 0


def _state(out_dir: str) -> State | None:
    """The folder's state, if anything has run into it (plan never creates one)."""
    try:
        return State(out_dir, create=False)
    except StateError:
        if os.path.exists(state_path(out_dir)):
            raise
        return None
