"""Every code block the README and the documentation mark as runnable is run, so that an example cannot rot.

A block is marked by an HTML comment on the line before its fence (invisible on the page):

- `<!-- test: file NAME -->`: the block is written to NAME, for the blocks after it on the page;
- `<!-- test: validate -->`: a whole job file, which `apify-jobs validate` must accept;
- `<!-- test: script -->`: an emulator script, which `run --emulator --script` must accept;
- `<!-- test: sh -->`: shell commands, run with `bash -e` against the emulator: they must exit 0;
- `<!-- test: console -->`: `$ command` lines, each followed by what it prints on stdout; `…` in a line
  stands for any text (times, run IDs, dates).

Each page's blocks run in order in a folder of their own holding a copy of the repository's `jobs/` and
`schema/`, with `apify-jobs` on the PATH and `.venv` pointing at this interpreter's environment. No token is
set: nothing a runnable block does may need the platform."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

MARKED = re.compile(r"^<!-- test: (?P<kind>[\w-]+)(?: (?P<arg>[^>]*?))? -->\n```[\w-]*\n(?P<body>.*?)^```",
                    re.M | re.S)
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
KINDS = {"file", "validate", "script", "sh", "console"}


@dataclass(frozen=True)
class Block:
    kind: str
    arg: str
    body: str
    line: int


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [Block(m["kind"], m["arg"] or "", m["body"], text.count("\n", 0, m.start()) + 1)
            for m in MARKED.finditer(text)]


def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "sandbox"
    folder.mkdir()
    shutil.copytree(REPO / "jobs", folder / "jobs")
    shutil.copytree(REPO / "schema", folder / "schema")
    (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "GITHUB_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1",
               APIFY_JOBS_COST_SETTLE_SECONDS="0", COLUMNS="120")
    return folder, env


def shell(command: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


def matches(expected: str, printed: str) -> bool:
    """Line for line, `…` standing for any text within a line."""
    want, got = expected.rstrip("\n").split("\n"), printed.rstrip("\n").split("\n")
    return len(want) == len(got) and all(
        re.fullmatch(".*".join(re.escape(part) for part in line.split("…")), seen.rstrip())
        for line, seen in zip(want, got, strict=True))


def console(body: str) -> list[tuple[str, str]]:
    """The block's commands, each with the output shown under it."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any `$ command`: {line!r}"
            steps[-1][1].append(line)
    return [(command, "\n".join(lines)) for command, lines in steps]


def run_block(block: Block, folder: Path, env: dict[str, str], where: str) -> None:
    if block.kind == "file":
        target = folder / block.arg
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.body, encoding="utf-8")
    elif block.kind in ("validate", "script"):
        example = folder / f".example-{block.line}.yaml"
        example.write_text(block.body, encoding="utf-8")
        command = (f"apify-jobs validate {example.name}" if block.kind == "validate" else
                   f"printf 'version: 1\\njobs: [{{name: x, task: me~t}}]\\n' > .x.yaml && "
                   f"apify-jobs run .x.yaml --emulator --script {example.name} --out-dir .x-out -q")
        done = shell(command, folder, env)
        assert done.returncode == 0, f"{where}: {done.stdout}{done.stderr}"
    elif block.kind == "sh":
        done = shell(block.body, folder, env)
        assert done.returncode == 0, f"{where}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    else:
        for command, shown in console(block.body):
            done = shell(command, folder, env)
            assert matches(shown, done.stdout), f"{where}: `{command}` printed\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: str(p.relative_to(REPO)))
def test_runnable_blocks(page: Path, tmp_path: Path) -> None:
    folder, env = sandbox(tmp_path)
    for block in blocks(page):
        assert block.kind in KINDS, f"{page}:{block.line}: unknown block kind {block.kind!r}"
        run_block(block, folder, env, f"{page.relative_to(REPO)}:{block.line}")


def test_the_pages_mark_runnable_blocks() -> None:
    """The harness finds what it should: the guide's examples are marked, and a marker without a fence under
    it (a typo) is not silently skipped."""
    marked = {p.relative_to(REPO).as_posix(): len(blocks(p)) for p in PAGES}
    assert marked["README.md"] >= 2 and marked["docs/getting-started.md"] >= 3
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        markers = len(re.findall(r"^<!-- test: ", text, re.M))
        assert markers == len(blocks(page)), f"{page}: a marker with no fenced block under it"


def test_the_matcher_can_fail() -> None:
    assert matches("a … c", "a bbb c") and not matches("a … c", "a bbb d") and not matches("a", "a\nb")
