"""The documentation's reference pages are generated from the schema, the parser and the failure registry:
every key, option and error type is documented, and the pages in the repository are current."""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys

from apify_jobs import failures
from apify_jobs.commands.parser import build_parser
from tests.conftest import REPO

DOCS = REPO / "docs"


def test_the_generated_pages_are_current() -> None:
    done = subprocess.run([sys.executable, str(DOCS / "generate.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_schema_key_is_documented() -> None:
    schema = json.loads((REPO / "schema" / "jobs.schema.json").read_text())
    page = (DOCS / "reference" / "job-file.md").read_text()
    keys = set(schema["properties"])
    for spec in schema["$defs"].values():
        keys |= set(spec.get("properties", {}))
    assert [key for key in sorted(keys) if f"| `{key}`" not in page] == []


def test_every_option_and_error_type_is_documented() -> None:
    cli = (DOCS / "reference" / "cli.md").read_text()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        assert f"## apify-jobs {name}" in cli
        for action in sub._actions:
            if action.help != argparse.SUPPRESS and action.option_strings and action.option_strings[0] != "-h":
                assert f"`{action.option_strings[0]}`" in cli, (name, action.option_strings)
    errors = (DOCS / "reference" / "errors.md").read_text()
    for name, cls in inspect.getmembers(failures, inspect.isclass):
        if issubclass(cls, failures.JobFailure):
            assert f"| `{name}` | `{cls.error_type}` |" in errors
