"""`apify-jobs schema`: print the job-file JSON Schema."""

from __future__ import annotations

import argparse
import sys

from apify_jobs.environment import Environment
from apify_jobs.jobfile.schema import schema_text


def main(args: argparse.Namespace, env: Environment) -> int:
    sys.stdout.write(schema_text())
    return 0
