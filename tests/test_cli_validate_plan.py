"""`validate`, `plan` and `schema` through the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import REPO, run_process


def test_validate_examples_exit_zero(cli) -> None:
    code, out, err = cli("validate", REPO / "jobs")
    assert code == 0 and out.startswith("ok: ") and err == ""


def test_validate_broken_file_exits_2_with_one_line_per_problem(cli, write) -> None:
    path = write("bad.yaml", "version: 1\njobs:\n  - name: a\n    task: me~t\n    options: {memory: 1000, maxItems: x}\n")
    code, out, err = cli("validate", path)
    lines = err.splitlines()
    assert code == 2
    assert lines[:2] == [f"{path}:5:23: jobs[0] (a).options.memory: 1000 is not one of 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768",
                         f"{path}:5:39: jobs[0] (a).options.maxItems: must be a whole number, not string \"x\""]
    assert lines[2] == "2 problems found"


def test_validate_prints_github_annotations(cli, write) -> None:
    path = write("bad.yaml", "version: 1\njobs:\n  - {name: a, task: me~t, options: {memory: 3}}\n")
    code, out, _ = cli("validate", path, env={"GITHUB_ACTIONS": "true"})
    assert code == 2 and out.startswith(f"::error file={path},line=3,col=45::jobs[0] (a).options.memory: 3 is not one of")


def test_validate_never_needs_a_token_or_env(write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - {name: a, task: me~t, input: {k: '${{ env.SOME_SECRET }}'}}\n")
    result = run_process("validate", str(path), env={"APIFY_TOKEN": ""})
    assert result.returncode == 0, result.stderr


def test_validate_bad_path_is_one_line(cli, tmp_path: Path) -> None:
    code, _, err = cli("validate", tmp_path / "missing.yaml")
    assert code == 2 and err.splitlines()[0] == f"{tmp_path / 'missing.yaml'}:1:1: no such file or folder"


def test_plan_json_shows_the_body_exactly_as_written(cli, write) -> None:
    path = write("j.yaml", """
        version: 1
        jobs:
          - name: a
            task: me/t
            input: {country: NO, date: 2024-01-01, time: 1:30, on: on, n: 0x10, nested: {list: [1, "2", null]}}
            options: {memory: 2048, timeout: 60.0, restartOnError: false, maxTotalChargeUsd: 2.5,
                      webhooks: [{eventTypes: [ACTOR.RUN.FAILED], requestUrl: "https://h.example/x"}]}
            output: sub/a.json
        """)
    code, out, err = cli("plan", "--json", path)
    assert code == 0, err
    [entry] = json.loads(out)
    assert entry["body"] == {"country": "NO", "date": "2024-01-01", "time": "1:30", "on": "on", "n": 16,
                             "nested": {"list": [1, "2", None]}}
    assert entry["method"] == "POST" and entry["name"] == "a" and entry["output"] == "out/sub/a.json"
    hooks = "W3siZXZlbnRUeXBlcyI6WyJBQ1RPUi5SVU4uRkFJTEVEIl0sInJlcXVlc3RVcmwiOiJodHRwczovL2guZXhhbXBsZS94In1d"
    assert entry["url"] == ("https://api.apify.com/v2/actor-tasks/me~t/run-sync?memory=2048&timeout=60"
                            f"&restartOnError=false&maxTotalChargeUsd=2.5&webhooks={hooks}")


def test_plan_dataset_job_and_vars(cli, write) -> None:
    path = write("j.yaml", """
        version: 1
        jobs:
          - name: d
            task: "${{ vars.owner }}~t"
            input: {limit: "${{ vars.limit }}"}
            dataset: {format: csv, clean: true, fields: [a, b]}
        """)
    code, out, err = cli("plan", "--json", "--var", "owner=me", "--var", "limit:=5", path,
                         env={"APIFY_API_BASE_URL": "http://127.0.0.1:9"})
    assert code == 0, err
    [entry] = json.loads(out)
    assert entry["url"] == "http://127.0.0.1:9/v2/actor-tasks/me~t/run-sync-get-dataset-items?format=csv&clean=true&fields=a%2Cb"
    assert entry["body"] == {"limit": 5} and entry["output"] == "out/d.csv"


def test_plan_undefined_var_exits_2(cli, write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - {name: a, task: me~t, input: {q: '${{ vars.q }}'}}\n")
    code, out, err = cli("plan", path)
    assert code == 2 and out == ""
    assert err.strip() == f"{path}:3:38: ${{{{ vars.q }}}} is not defined (pass --var q=VALUE)\n1 problem found"


def test_plan_human_lists_each_request(cli) -> None:
    code, out, _ = cli("plan", REPO / "jobs" / "maps-search.yaml")
    assert code == 0
    assert "maps-brno-cafe\n  POST https://api.apify.com/v2/actor-tasks/janedoe~maps-places/run-sync?" in out


def test_schema_command_prints_the_packaged_schema(cli) -> None:
    code, out, _ = cli("schema")
    assert code == 0
    assert json.loads(out) == json.loads((REPO / "schema" / "jobs.schema.json").read_text())


def test_every_schema_property_has_a_description() -> None:
    schema = json.loads((REPO / "schema" / "jobs.schema.json").read_text())
    missing = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                target = prop
                if "$ref" in prop:
                    target = schema["$defs"][prop["$ref"].rsplit("/", 1)[-1]]
                if "description" not in prop and "description" not in target:
                    missing.append(f"{path}.{name}")
            for key, value in node.items():
                walk(value, f"{path}/{key}")

    walk(schema, "")
    assert missing == []


def test_bad_var_is_a_usage_error(cli, write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - {name: a, task: me~t}\n")
    code, _, err = cli("plan", "--var", "9x=1", path)
    assert code == 2 and "must be letters, digits and _" in err


def test_version_and_module_entry_point() -> None:
    result = run_process("--version")
    assert result.returncode == 0 and result.stdout.startswith("apify-jobs ")


def test_plan_into_a_closed_pipe_is_quiet(write) -> None:
    import subprocess
    import sys

    many = "".join(f"  - {{name: j{i}, task: me~t, input: {{text: {'x' * 200}}}}}\n" for i in range(2000))
    path = write("many.yaml", "version: 1\njobs:\n" + many)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as for most users
    result = subprocess.run(f"{sys.executable} -m apify_jobs plan {path} | head -1", shell=True,
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0 and result.stderr == "" and result.stdout.count("\n") == 1


def test_an_internal_error_is_one_line(cli, monkeypatch, write) -> None:
    from apify_jobs import jobfile

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(jobfile, "load", broken)
    code, _, err = cli("validate", write("j.yaml", "version: 1\n"))
    assert code == 2 and err.strip() == ("apify-jobs: internal error (a bug in apify-jobs, please report it): "
                                         "RuntimeError: boom; set APIFY_JOBS_DEBUG=1 for the traceback")
