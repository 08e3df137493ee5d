"""Problems and usage values at the edge of the command line (shared by validate, plan and run)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from apify_jobs.errors import Problem, UsageError
from apify_jobs.inert import shown
from apify_jobs.redaction import Redactor

_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def print_safely(text: str, stream: TextIO | None = None) -> bool:
    """Print a line (if any) unless the reader has gone away (`run | head`); False then. Later output to that
    stream goes nowhere, and Python stays quiet about it at exit."""
    return write_safely([text + "\n"] if text else [], stream)


def write_safely(pieces: Iterable[str], stream: TextIO | None = None) -> bool:
    """print_safely for text that comes in pieces (a report of many jobs, never held whole)."""
    stream = stream or sys.stdout
    try:
        for piece in pieces:
            stream.write(shown(piece))  # text from outside is inert on a terminal and in a CI log
        stream.flush()
        return True
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        except (OSError, ValueError):
            pass
        return False


def print_problems(problems: Iterable[Problem], redact: Redactor, github: bool | None = None) -> None:
    """Each problem as `file:line:column: message` on stderr, and as a GitHub annotation under GitHub Actions
    (or with ``github``), so that the pull request shows it at its line."""
    github = os.environ.get("GITHUB_ACTIONS") == "true" if github is None else github
    for problem in problems:
        print(shown(redact(str(problem))), file=sys.stderr)
        if github:  # our own workflow command: what goes into it is inert, and cannot end it or start another
            level = "warning" if problem.warning else "error"
            message = shown(redact(problem.message)).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            where = shown(problem.file).replace("%", "%25").replace(",", "%2C").replace(":", "%3A")
            print(f"::{level} file={where},line={problem.line},col={problem.column}::{message}")


class _RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, redact: Redactor):
        super().__init__(fmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return shown(self._redact(super().format(record)))


def configure_logging(verbose: bool, redact: Redactor) -> None:
    """Retry warnings always; each request with -v. Our own handler, so a host's logging set-up can't hide them."""
    log = logging.getLogger("apify_jobs")
    log.handlers[:] = [logging.StreamHandler(sys.stderr)]  # the stderr of this invocation
    log.handlers[0].setFormatter(_RedactingFormatter("apify-jobs: %(levelname)s: %(message)s", redact))
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False


def _var_file(path: str) -> dict[str, Any]:
    from apify_jobs.jobfile.yaml_loader import YamlError, load_file

    try:
        data = load_file(path).data
    except YamlError as exc:
        raise UsageError(f"--var-file: {exc.problem}") from None
    except OSError as exc:
        raise UsageError(f"--var-file {path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--var-file {path} must hold a mapping of names to values")
    for name in data:
        if not _VAR_NAME.match(str(name)):
            raise UsageError(f"--var-file {path}: name {name!r} must be letters, digits and _, not starting with a digit")
    return dict(data)


def parse_vars(pairs: Iterable[str], files: Iterable[str] = ()) -> dict[str, Any]:
    """``--var K=V`` gives the string V; ``--var K:=JSON`` gives a typed value (as in HTTPie); ``--var-file``
    a YAML or JSON mapping of typed values, which ``--var`` overrides."""
    variables: dict[str, Any] = {}
    for path in files:
        variables.update(_var_file(path))
    for pair in pairs:
        typed = re.match(r"^([^=:]+):=(.*)$", pair, re.S)
        if typed:
            name, raw = typed.groups()
            try:
                value: Any = json.loads(raw)
            except ValueError:
                raise UsageError(f"--var {name}:= needs a JSON value, got {raw!r}") from None
        elif "=" in pair:
            name, value = pair.split("=", 1)
        else:
            raise UsageError(f"--var takes K=V or K:=JSON, got {pair!r}")
        if not _VAR_NAME.match(name):
            raise UsageError(f"--var name {name!r} must be letters, digits and _, not starting with a digit")
        variables[name] = value
    return variables
