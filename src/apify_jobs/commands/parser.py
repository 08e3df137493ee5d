"""The command line's parser: every command, its flags, and its help (examples, environment, exit statuses).
`main` parses with it; `completion` generates its scripts from it."""

from __future__ import annotations

import argparse
from typing import Any

from apify_jobs import __version__
from apify_jobs.reports import writers

STATE_DIR_HELP = "the state's folder (default <out-dir>/.apify-jobs; e.g. a folder a CI cache keeps)"

# Each command's help ends with examples, the environment it reads and its exit statuses.
_EPILOGS = {
    "validate": ("apify-jobs validate jobs/\n  apify-jobs validate jobs/maps.yaml --format github",
                 "GITHUB_ACTIONS (true: also ::error annotations)",
                 "0 valid (warnings allowed), 2 problems found"),
    "plan": ("apify-jobs plan jobs/\n  apify-jobs plan jobs/ --var city=Brno --json\n  apify-jobs plan jobs/ --resume",
             "APIFY_API_BASE_URL (shown in the URLs); the variables ${{ env.NAME }} and ${{ secrets.NAME }} name",
             "0 planned, 2 problems in the job files"),
    "run": ("apify-jobs run jobs/ --emulator\n  APIFY_TOKEN=... apify-jobs run jobs/ --concurrency 8 --resume\n"
            "  apify-jobs run jobs/ --shard 2/3 --out-dir out-2 --junit out-2/junit.xml",
            "APIFY_TOKEN, APIFY_API_BASE_URL, HTTPS_PROXY/NO_PROXY, REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE/SSL_CERT_FILE/"
            "SSL_CERT_DIR, and the variables ${{ env.NAME }} and ${{ secrets.NAME }} name",
            "0 every job succeeded, 1 some failed/skipped/cancelled, 2 invalid files or usage (nothing sent), "
            "130 Ctrl-C, 143 SIGTERM"),
    "report": ("apify-jobs report --out-dir out --junit out/junit.xml\n  apify-jobs report --run all --json all.json\n"
               "  apify-jobs report --merge out-1 out-2 out-3 --out-dir out",
               "none", "0 written, 1 a merge found conflicts, 2 no state, a damaged artifact, or usage"),
    "schema": ("apify-jobs schema > jobs.schema.json", "none", "0"),
    "abort": ("apify-jobs abort --out-dir out", "APIFY_TOKEN, APIFY_API_BASE_URL",
              "0 every run in flight aborted (or none), 1 some could not be, 2 no state or usage"),
    "emulator": ("apify-jobs emulator --port 8765 --script faults.yaml", "none", "0 stopped with Ctrl-C, 2 usage"),
    "completion": ("apify-jobs completion bash > ~/.local/share/bash-completion/completions/apify-jobs\n"
                   "  apify-jobs completion zsh > ~/.zfunc/_apify-jobs", "none", "0"),
}


def _command(commands: Any, name: str, summary: str) -> argparse.ArgumentParser:
    examples, environment, exits = _EPILOGS[name]
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n  {examples}\n\nenvironment: {environment}\n\nexit status: {exits}")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apify-jobs", description="Run checked-in YAML job files on Apify.",
                                     epilog="`apify-jobs COMMAND --help` shows a command's examples, environment and "
                                            "exit statuses.")
    parser.add_argument("--version", action="version", version=f"apify-jobs {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_paths(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("paths", nargs="+", metavar="PATH", help="job files or folders (*.yaml, *.yml, recursively)")
        sub.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                         help="leave out files and folders found in folders that match (repeatable)")
        sub.add_argument("--require-pinned-build", action="store_true",
                         help="a job whose options.build is not a build number (e.g. 0.1.234) is an error: the same "
                              "input on the same build, for reproducible runs from CI")
        sub.add_argument("--max-jobs", type=int, metavar="N",
                         help="let matrices expand to up to N jobs per job and per run (defaults 1,000 and 10,000)")

    def with_vars(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--var", action="append", default=[], metavar="K=V",
                         help="define ${{ vars.K }}: K=V for a string, K:=JSON for a typed value (repeatable)")
        sub.add_argument("--var-file", action="append", default=[], metavar="FILE",
                         help="define vars from a YAML or JSON mapping (repeatable; --var wins)")

    def with_selection(sub: argparse.ArgumentParser, verb: str) -> None:
        sub.add_argument("--only", action="append", default=[], metavar="PATTERN",
                         help=f"{verb} only jobs whose name matches (a name or glob; +NAME adds what it needs, "
                              "NAME+ what needs it; repeatable)")
        sub.add_argument("--failed", action="store_true",
                         help=f"{verb} only jobs whose latest result failed or was cancelled (from the state)")
        sub.add_argument("--changed", action="store_true",
                         help=f"{verb} only jobs whose request differs from their latest success, or that never "
                              "succeeded (from the state; with --failed: either)")
        sub.add_argument("--shard", metavar="I/N", help=f"{verb} slice I of N: every job dealt evenly, the same way "
                                                         "for the same jobs")

    def with_max_age(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--max-age", metavar="DURATION",
                         help="with --resume, run again jobs whose latest success is older than this (30s, 90m, "
                              "24h, 7d), in place of each job's refresh.maxAge")

    validate = _command(commands, "validate", "check job files; never needs a token")
    with_paths(validate)
    validate.add_argument("--format", choices=("text", "github", "json"), default="text",
                          help="text: file:line:column lines (default); github: also ::error annotations; json: "
                               "a JSON array of problems on stdout")

    plan = _command(commands, "plan", "print every request `run` would send; no network, no token")
    with_paths(plan)
    with_vars(plan)
    plan.add_argument("--json", action="store_true", help="a JSON array, one object a job")
    plan.add_argument("--out-dir", default="out", help="output folder the paths are shown in (default ./out)")
    plan.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_HELP)
    plan.add_argument("--resume", action="store_true",
                      help="show which jobs `run --resume` would skip (from the output folder's state)")
    with_selection(plan, "show")
    with_max_age(plan)
    plan.add_argument("--max-cost-usd", type=float, metavar="USD",
                      help="the budget `run --max-cost-usd` would have: warn about jobs it cannot hold back")

    run = _command(commands, "run", "run the jobs")
    with_paths(run)
    with_vars(run)
    run.add_argument("--concurrency", type=int, metavar="N",
                     help="jobs at once for the whole run, in place of each file's own `concurrency` (up or "
                          "down; the files' values are their defaults)")
    run.add_argument("--fail-fast", action="store_true", help="after a failure, start nothing more")
    run.add_argument("--out-dir", default="out", help="output folder (default ./out)")
    run.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_HELP)
    writers.add_flags(run, json_flag=False)  # `run --json` prints the report instead
    run.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                     help="colour in the live display on a terminal (auto: unless NO_COLOR; FORCE_COLOR forces it)")
    run.add_argument("--json", action="store_true", help="print the run's report (as report.json) instead of the summary")
    run.add_argument("--resume", action="store_true",
                     help="skip jobs whose last success (in the folder's state) had the same request and whose "
                          "output is intact")
    with_selection(run, "run")
    with_max_age(run)
    run.add_argument("--emulator", action="store_true", help="run against the built-in emulator; no token needed")
    run.add_argument("--no-run-facts", dest="run_facts", action="store_false",
                     help="do not look up each job's run (ID, status, cost) after the batch")
    run.add_argument("--no-account-limits", dest="account_limits", action="store_false",
                     help="do not read the account's limits first (refusals still wait for room)")
    run.add_argument("--max-cost-usd", type=float, metavar="USD",
                     help="a budget for the run: finished jobs' cost plus the caps of those in flight; a job that "
                          "could pass it is not started")
    run.add_argument("--abort-on-interrupt", action="store_true",
                     help="on Ctrl-C or SIGTERM, also abort the runs still going on the platform")
    run.add_argument("--script", "--emulator-script", dest="emulator_script", metavar="FILE",
                     help="with --emulator: how its tasks behave (the `apify-jobs emulator --script` format)")
    loudness = run.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="print only the summary's failures")
    loudness.add_argument("-v", "--verbose", action="store_true", help="log every request and retry")

    report = _command(commands, "report", "write report.json and JUnit again from the output folder's state")
    report.add_argument("--out-dir", default="out", help="output folder whose state to read (default ./out)")
    report.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_HELP)
    writers.add_flags(report)
    report.add_argument("--run", default="last", metavar="last|all|N",
                        help="the last run (default), run number N, or every job's latest result")
    report.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="report only jobs whose name matches (a name or glob; repeatable)")
    report.add_argument("--failed", action="store_true", help="report only jobs that failed or were cancelled")
    report.add_argument("--merge", nargs="+", metavar="DIR",
                        help="merge these output folders (shards that ran apart) into --out-dir, and report on it")

    _command(commands, "schema", "print the job-file JSON Schema")

    abort = _command(commands, "abort", "abort the runs the state knows to be in flight (a killed or interrupted run's)")
    abort.add_argument("--out-dir", default="out", help="output folder whose state to read (default ./out)")
    abort.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_HELP)

    emulator = _command(commands, "emulator", "serve a local stand-in for the Apify API")
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    emulator.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    emulator.add_argument("--script", metavar="FILE", help="YAML file of task behaviours")
    completion = _command(commands, "completion", "print a shell completion script, made from this parser")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    return parser
