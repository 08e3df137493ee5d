"""The command line: parse, dispatch to one module a subcommand, turn each known failure into one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from apify_jobs.commands.parser import build_parser
from apify_jobs.environment import Environment
from apify_jobs.errors import ApifyJobsError, ExitStatus, JobFileError
from apify_jobs.inert import shown


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    """``env``: the invocation's surroundings (a fresh one, from os.environ, unless a caller gives one)."""
    _streams_exist()
    try:
        env = env or Environment()
    except ApifyJobsError as exc:  # a setting in the environment that cannot be used
        return _one_line(str(exc), exc.exit_code)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `apify-jobs`: the help, and the usage error's status
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "validate":
            from apify_jobs.commands import validate as command
        elif args.command == "plan":
            from apify_jobs.commands import plan as command  # type: ignore[no-redef]
        elif args.command == "run":
            from apify_jobs.commands import run as command  # type: ignore[no-redef]
        elif args.command == "report":
            from apify_jobs.commands import report as command  # type: ignore[no-redef]
        elif args.command == "completion":
            from apify_jobs.commands import completion as command  # type: ignore[no-redef]
        elif args.command == "abort":
            from apify_jobs.commands import abort as command  # type: ignore[no-redef]
        elif args.command == "schema":
            from apify_jobs.commands import schema as command  # type: ignore[no-redef]
        else:
            from apify_jobs.commands import emulator as command  # type: ignore[no-redef]
        return command.main(args, env)
    except JobFileError as exc:
        from apify_jobs.cli_output import print_problems

        print_problems(exc.problems, env.redactor, github=getattr(args, "format", None) == "github" or None)
        errors = sum(not p.warning for p in exc.problems)
        print(f"{errors} problem{'s' * (errors != 1)} found", file=sys.stderr)
        return exc.exit_code
    except ApifyJobsError as exc:
        return _one_line(env.redactor(str(exc)), exc.exit_code)
    except KeyboardInterrupt:
        return _one_line("interrupted", ExitStatus.SIGINT)
    except BrokenPipeError:
        # The reader went away (`plan | head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug of ours: still one line, with the way to see more
        if os.environ.get("APIFY_JOBS_DEBUG"):
            raise
        return _one_line(env.redactor(f"internal error (a bug in apify-jobs, please report it): "
                                      f"{type(exc).__name__}: {exc}; set APIFY_JOBS_DEBUG=1 for the traceback"),
                         ExitStatus.USAGE)


def _streams_exist() -> None:
    """A stream closed by the shell (`2>&-`, `>&-`) is None in Python: write such output nowhere instead of
    failing on it."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def _one_line(message: str, code: int) -> int:
    """``message`` is masked already (with the invocation's redactor)."""
    print(shown(f"apify-jobs: {message}"), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
