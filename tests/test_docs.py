"""The documentation's reference pages are generated from the schema, the parser and the failure registry:
every key, option and error type is documented, and the pages in the repository are current."""

from __future__ import annotations

import argparse
import inspect
import json
import re
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


def test_every_emulator_script_key_is_documented() -> None:
    from apify_jobs.emulator.script import Account, Behaviour, Platform, Script

    page = (DOCS / "emulator.md").read_text()
    for holder in (Behaviour, Platform, Account, Script):
        assert [key for key in holder.KEYS if f"| `{key}` |" not in page] == [], holder.__name__


def test_every_failure_says_its_cause_and_fix_in_troubleshooting() -> None:
    """Each failure class, a job's or the command's, has a docstring and a `fix` of its own (an inherited one
    would describe another failure), and the generated page shows both."""
    sys.path.insert(0, str(DOCS))
    import generate

    page = (DOCS / "troubleshooting.md").read_text()
    classes = generate._failure_classes() + generate._command_errors()
    assert len(classes) > 25 and any(c.__name__ == "NeedsValueFailed" for c in classes)
    for cls in classes:
        assert "__doc__" in vars(cls) and cls.__doc__ and "fix" in vars(cls), cls.__name__
        assert re.search(rf"^### (.+ \()?{cls.__name__}\)?$", page, re.M) and " ".join(cls.fix.split()) in page, cls.__name__


def test_every_schema_key_has_an_example_and_defaults_and_examples_are_valid() -> None:
    """The reference shows a default and an example per key, taken from the schema: each must be what the
    schema itself accepts there, so an example cannot teach a mistake."""
    from jsonschema import Draft202012Validator

    root = json.loads((REPO / "schema" / "jobs.schema.json").read_text())
    holders = [root, *root["$defs"].values()]
    checked = 0
    for holder in holders:
        for name, spec in holder.get("properties", {}).items():
            assert spec.get("examples"), name
            validator = Draft202012Validator({**spec, "$defs": root["$defs"]})
            for value in [*spec["examples"], *([spec["default"]] if "default" in spec else [])]:
                assert list(validator.iter_errors(value)) == [], (name, value)
                checked += 1
    assert checked > 120


def test_the_schema_defaults_are_the_tools(tmp_path) -> None:
    """A default the reference shows is what a job that leaves the key out gets."""
    from apify_jobs.durations import parse as parse_duration
    from tests.helpers import make_job

    root = json.loads((REPO / "schema" / "jobs.schema.json").read_text())
    props = {name: root["$defs"][name]["properties"] for name in ("retry", "http", "expect", "capacity", "job")}
    job = make_job(tmp_path, {"name": "a", "task": "me~t"})
    assert (job.retry.attempts, job.retry.initial, job.retry.max_wait, sorted(job.retry.on), job.retry.recover) == (
        props["retry"]["attempts"]["default"], props["retry"]["backoff"]["default"]["initial"],
        props["retry"]["backoff"]["default"]["max"], props["retry"]["on"]["default"], props["retry"]["recover"]["default"])
    assert (job.http.connect, job.http.read) == (props["http"]["connectTimeout"]["default"],
                                                 props["http"]["readTimeout"]["default"])
    assert (job.expect.non_empty, job.expect.max_depth, job.expect.max_item_bytes) == (
        props["expect"]["nonEmpty"]["default"], props["expect"]["maxDepth"]["default"],
        props["expect"]["maxItemBytes"]["default"])
    assert job.follow == props["job"]["follow"]["default"]["maxWait"]
    assert job.capacity_wait == parse_duration(props["capacity"]["maxWait"]["default"])
    assert job.input == props["job"]["input"]["default"] and job.needs == props["job"]["needs"]["default"]


def test_the_readme_fits_on_a_screen_and_its_links_lead_somewhere() -> None:


    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 15 and [link for link in local if not (REPO / link).is_file()] == []
    # every page of the site is reachable from the README
    pages = {p.relative_to(REPO).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - set(local) == {"docs/index.md"}  # the site's home: the README is the repository's
