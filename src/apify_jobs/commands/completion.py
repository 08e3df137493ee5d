"""`apify-jobs completion bash|zsh|tcsh`: a completion script, generated from the parser so it never drifts."""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    import shtab  # only here

    from apify_jobs.main import _parser

    print(shtab.complete(_parser(), shell=args.shell))
    return 0
