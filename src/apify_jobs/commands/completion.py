"""`apify-jobs completion bash|zsh|tcsh`: a completion script, generated from the parser so it never drifts."""

from __future__ import annotations

import argparse

from apify_jobs.commands.parser import build_parser
from apify_jobs.environment import Environment


def main(args: argparse.Namespace, env: Environment) -> int:
    import shtab  # only here

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0
