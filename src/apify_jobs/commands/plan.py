"""`apify-jobs plan`: every request `run` would send, exactly; no token, no network."""

from __future__ import annotations

import argparse
import json
import os
import sys

from apify_jobs import jobfile
from apify_jobs.api.request import DEFAULT_BASE_URL, build_request
from apify_jobs.cli_output import parse_vars, print_problems
from apify_jobs.outputs.destination import LocalFolder


def main(args: argparse.Namespace) -> int:
    job_files, warnings = jobfile.load(args.paths, parse_vars(args.var), dict(os.environ))
    print_problems(warnings)
    base_url = os.environ.get("APIFY_API_BASE_URL") or DEFAULT_BASE_URL
    destination = LocalFolder(args.out_dir)
    planned = []
    for job_file in job_files:
        for job in job_file.jobs:
            request = build_request(job, base_url)
            planned.append({
                "name": job.name,
                "method": request.method,
                "url": request.url,
                "body": job.input,
                "output": destination.planned(job),
            })
    if args.json:
        json.dump(planned, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    for entry in planned:
        print(f"{entry['name']}\n  {entry['method']} {entry['url']}")
        print(f"  body:   {json.dumps(entry['body'], ensure_ascii=False)}")
        print(f"  output: {entry['output']}")
    return 0
