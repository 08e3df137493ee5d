"""The GitHub Action (action.yml), its shell steps run in order as the runner would: inputs substituted,
GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, the tool installed from the action's own checkout into a fresh
environment; `uses:` steps (setup-python) are what GitHub provides and are not run here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.helpers import job_file

pytestmark = pytest.mark.slow  # pytest -m "not slow" leaves it out of the inner loop

ACTION = yaml.safe_load((REPO / "action.yml").read_text())


def run_action(tmp_path: Path, inputs: dict[str, str], env: dict[str, str]) -> tuple[int, str, str, str]:
    """(exit status of the first failing step or 0, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, what the steps printed)."""
    values = {name: spec.get("default", "") for name, spec in ACTION["inputs"].items()} | inputs
    venv = tmp_path / "runner-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    output, summary = tmp_path / "github_output", tmp_path / "step_summary"
    output.touch()
    summary.touch()

    def expand(text: str) -> str:
        text = re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values[m.group(1)], text)
        return text.replace("${{ github.action_path }}", str(REPO))

    failed, printed = 0, ""
    for step in ACTION["runs"]["steps"]:
        if "uses" in step:
            continue
        condition = step.get("if", "")
        if "inputs.command == 'run'" in condition and values["command"] != "run":
            continue
        if failed and "always()" not in condition:
            continue
        step_env = {**os.environ, **env, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
                    "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
        step_env |= {k: expand(str(v)) for k, v in step.get("env", {}).items()}
        done = subprocess.run(["bash", "-e", "-c", expand(step["run"])], cwd=tmp_path, env=step_env,
                              capture_output=True, text=True, timeout=600)
        printed += done.stdout + done.stderr
        failed = failed or done.returncode
    return failed, output.read_text(), summary.read_text(), printed


def test_the_action_validates_with_annotations_and_runs_with_a_summary(emulator, tmp_path: Path) -> None:
    server = emulator()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "bad").mkdir()
    job_file(tmp_path / "jobs", "jobs:\n  - {name: a, task: me~t}\n  - {name: b, task: me~u}\n")
    env = {"APIFY_API_BASE_URL": server.url}
    code, output, _, _ = run_action(tmp_path, {"command": "validate"}, env)
    assert code == 0 and "exit-code=0" in output

    job_file(tmp_path / "bad", "jobs:\n  - {name: a, task: me~t, options: {memory: 1000}}\n")
    code, output, _, printed = run_action(tmp_path, {"command": "validate", "paths": "bad"}, env)
    assert code == 2 and "exit-code=2" in output and "::error file=bad/jobs.yaml,line=3," in printed

    code, output, summary, _ = run_action(tmp_path, {"command": "run", "apify-token": "secret-token-123",
                                                     "args": "--no-run-facts"}, env)
    assert code == 0 and "exit-code=0" in output and len(server.state.requests) == 2
    assert "## apify-jobs" in summary and "| a | succeeded | 1 |" in summary and "secret-token-123" not in summary


def test_the_guide_shows_the_example_files_verbatim_and_they_use_what_exists() -> None:
    readme = (REPO / "docs" / "guide" / "gitops.md").read_text()
    workflow = (REPO / "docs" / "examples" / "apify.yml").read_text()
    hooks = (REPO / "docs" / "examples" / "pre-commit-config.yaml").read_text()
    assert workflow in readme and hooks in readme
    declared = set(ACTION["inputs"])
    for job in yaml.safe_load(workflow)["jobs"].values():
        for step in job["steps"]:
            if str(step.get("uses", "")).endswith("/apify-jobs@main"):
                assert set(step["with"]) <= declared and step["with"]["command"] in ("validate", "plan", "run")
    [hook] = yaml.safe_load(hooks)["repos"][0]["hooks"]
    assert hook["id"] in {h["id"] for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}


WORKFLOW = yaml.safe_load((REPO / "docs" / "examples" / "apify.yml").read_text())


def run_workflow(tmp_path: Path, workspace: Path, cache: Path, env: dict[str, str]) -> tuple[int, str]:
    """The example workflow's `run` job, its steps in order as the runner takes them: the cache restored and
    saved (a folder standing for the Actions cache), the action run as `run_action` runs it."""
    failed, summary = 0, ""
    for step in WORKFLOW["jobs"]["run"]["steps"]:
        uses, condition = step["uses"], step.get("if", "")
        if failed and "always()" not in condition:
            continue
        if uses.startswith("actions/cache/restore"):
            if cache.exists():
                shutil.copytree(cache, workspace / step["with"]["path"])
        elif uses.startswith("actions/cache/save"):
            shutil.rmtree(cache, ignore_errors=True)
            shutil.copytree(workspace / step["with"]["path"], cache)
        elif uses.endswith("/apify-jobs@main"):
            inputs = {k: str(v).replace("${{ secrets.APIFY_TOKEN }}", "workflow-token") for k, v in step["with"].items()}
            step_env = {**env, **{k: "a-shop-password" for k in step.get("env", {})}}
            failed, _, summary, _ = run_action(workspace, inputs, step_env)
    return failed, summary


def test_the_scheduled_workflow_keeps_its_state_through_a_failure_and_then_sends_nothing(emulator,
                                                                                         tmp_path: Path) -> None:
    on = WORKFLOW[True] if True in WORKFLOW else WORKFLOW["on"]  # YAML 1.1 reads `on` as true
    assert "schedule" in on and "workflow_dispatch" in on
    saves = [s for s in WORKFLOW["jobs"]["run"]["steps"] if s["uses"].startswith("actions/cache/save")]
    assert saves and saves[0]["if"] == "always()"
    server = emulator({"tasks": {"me~b": [{"respond": "run-failed"}, {}]}})
    env = {"APIFY_API_BASE_URL": server.url}
    cache = tmp_path / "cache"
    for attempt, expected in ((1, 1), (2, 0), (3, 0)):
        workspace = tmp_path / f"workspace{attempt}"  # every workflow run starts from a fresh checkout
        (workspace / "jobs").mkdir(parents=True)
        job_file(workspace / "jobs", "jobs:\n  - {name: a, task: me~a}\n  - {name: b, task: me~b}\n")
        code, summary = run_workflow(tmp_path, workspace, cache, env)
        assert code == expected, (attempt, summary)
        assert (cache / "state.sqlite3").exists()  # saved whatever happened
        if attempt == 1:
            assert "| b | failed |" in summary
    # run 1 paid for a and b; run 2 refetched a and sent b again (it had failed); run 3 sent nothing
    assert server.state.per_task == {"me~a": 1, "me~b": 2}
    assert (tmp_path / "workspace3" / "out" / "a.json").exists() and (tmp_path / "workspace3" / "out" / "report.html").exists()


def test_the_action_annotates_a_missing_token_and_its_summary_says_nothing_ran(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    job_file(tmp_path / "jobs", "jobs:\n  - {name: a, task: me~t}\n")
    code, output, summary, printed = run_action(tmp_path, {"command": "run"}, {"APIFY_TOKEN": ""})
    assert code == 2 and "exit-code=2" in output and "::error title=apify-jobs::no Apify token" in printed
    assert "Nothing ran" in summary and "Traceback" not in printed


def test_the_hook_and_the_action_leave_out_the_same_input_files(tmp_path: Path) -> None:
    (tmp_path / "jobs" / "inputs").mkdir(parents=True)
    job_file(tmp_path / "jobs", "jobs:\n  - {name: a, task: me~t}\n")
    (tmp_path / "jobs" / "inputs" / "query.yaml").write_text("search: [coffee]\n")  # not a job file
    code, _, _, printed = run_action(tmp_path, {"command": "validate"}, {})
    assert code == 0 and "query.yaml" not in printed
    hook = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())[0]
    assert re.search(hook["exclude"], "jobs/inputs/query.yaml") and not re.search(hook["exclude"], "jobs/a.yaml")
