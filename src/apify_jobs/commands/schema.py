"""`apify-jobs schema`: print the job-file JSON Schema."""

from __future__ import annotations

import argparse
import sys

from apify_jobs.jobfile.schema import schema_text


def main(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0
