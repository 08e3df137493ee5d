"""The GitHub Action (action.yml), its shell steps run in order as the runner would: inputs substituted,
GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, the tool installed from the action's own checkout into a fresh
environment; `uses:` steps (setup-python) are what GitHub provides and are not run here."""

from __future__ import annotations

import os
import re
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


def test_the_readme_shows_the_example_files_verbatim_and_they_use_what_exists() -> None:
    readme = (REPO / "README.md").read_text()
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
