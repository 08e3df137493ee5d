"""The failure classes that reach the command line, each turned into one clear line there."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One finding in a job file, printed as ``file:line:column: message``."""

    file: str
    line: int
    column: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.file}:{self.line}:{self.column}: {kind}{self.message}"


class ApifyJobsError(Exception):
    """Base of every error the command line reports as one line (never a traceback). ``fix``: what to do
    (docs/troubleshooting.md is generated from the docstrings and these)."""

    exit_code = 2
    fix = "Read the line the command printed: it names what failed."


class UsageError(ApifyJobsError):
    """The command line itself is wrong (bad flag value, missing path, no token), or a folder or report path
    cannot be written: nothing was sent."""

    fix = "Correct what the line names (`apify-jobs COMMAND --help` lists the options); set `APIFY_TOKEN` to run."


class JobFileError(ApifyJobsError):
    """One or more job files are invalid; carries every problem found (`file:line:column: message`)."""

    fix = ("Fix each line's problem at its place; `apify-jobs validate` checks again without a token, and the "
           "editor checks as you type with the schema (`apify-jobs schema`).")

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ExitStatus(enum.IntEnum):
    """What the command line exits with (as httpie's ExitStatus): docs/guide/running.md lists them."""

    OK = 0
    FAILED = 1  # some job failed, was skipped or cancelled, or a report could not be written
    USAGE = 2  # invalid job files or usage, no state: nothing was sent
    SIGINT = 130  # 128 + the signal's number, as shells report it
    SIGTERM = 143

    @classmethod
    def of_signal(cls, signum: int) -> ExitStatus:
        return cls.SIGTERM if signum == 15 else cls.SIGINT
