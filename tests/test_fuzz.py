"""Fuzzing the loader and validator: whatever a pull request puts in a job file, `validate` answers with
exit 0 or 2 and one `file:line:column: message` line per problem: never a traceback, a hang or a blow-up."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apify_jobs.main import main
from tests.conftest import REPO

EXAMPLES = [p.read_bytes() for p in sorted((REPO / "jobs").glob("*.yaml"))]
PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (warning: )?\S.*$")


def validate_bytes(data: bytes, name: str = "fuzz.yaml") -> tuple[int, list[str], str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        (Path(folder) / "inputs").mkdir()
        (Path(folder) / "inputs" / "docs-crawl.json").write_text("{}")
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["validate", str(path)])
        lines = stderr.getvalue().splitlines()
        for line in lines[:-1] if code == 2 else lines:
            match = PROBLEM.match(line)
            assert match and match.group("file") == str(path), line
            assert int(match.group("line")) >= 1 and int(match.group("column")) >= 1
        return code, lines, stdout.getvalue()


def check(data: bytes) -> None:
    code, lines, _ = validate_bytes(data)
    assert code in (0, 2)
    assert code == 0 or lines[-1].endswith(("problem found", "problems found"))


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("{}[],:-&*!|>'\"#%@`?~ \t\n\r\x00\ufeffabcNOyes01.$")), max_size=400))
def test_yaml_punctuation_soup(text: str) -> None:
    check(text.encode("utf-8"))


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate-line", "swap-lines"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "delete" and data:
            del data[at:at + draw(st.integers(1, 20))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        else:
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate-line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_example())
def test_mutated_valid_job_files(data: bytes) -> None:
    check(data)


@pytest.mark.parametrize(("name", "data"), [
    ("empty", b""),
    ("only a comment", b"# nothing\n"),
    ("byte-order mark", b"\xef\xbb\xbf" + EXAMPLES[0]),
    ("UTF-16", "version: 1\n".encode("utf-16")),
    ("latin-1", b"version: 1\njobs:\n  - {name: caf\xe9, task: me~t}\n"),
    ("NUL bytes", b"version: 1\x00\njobs: []\n"),
    ("tab indentation", b"version: 1\njobs:\n\t- {name: a, task: me~t}\n"),
    ("deep nesting", b"version: 1\njobs: " + b"[" * 50_000 + b"]" * 50_000 + b"\n"),
    ("deep block nesting", b"version: 1\ninput:\n" + b"".join(b" " * i + b"k:\n" for i in range(1, 400))),
    ("alias bomb", b"a: &a [x,x,x,x,x,x,x,x,x,x]\n" + b"".join(
        b"%c: &%c [%s]\n" % (98 + i, 98 + i, b",".join([b"*%c" % (97 + i)] * 10)) for i in range(12))),
    ("huge scalar", b"version: 1\njobs:\n  - {name: a, task: me~t, input: {x: '" + b"y" * 12_000_000 + b"'}}\n"),
    ("huge key count", b"version: 1\njobs:\n  - name: a\n    task: me~t\n    input:\n"
     + b"".join(b"      k%d: %d\n" % (i, i) for i in range(20_000))),
    ("binary garbage", bytes(range(256)) * 40),
    ("a list at the top", b"- 1\n- 2\n"),
    ("a scalar at the top", b"just text\n"),
])
def test_nasty_files(name: str, data: bytes) -> None:
    tracemalloc.start()
    try:
        code, lines, _ = validate_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code in (0, 2), name
    assert peak < 50 * len(data) + 60_000_000, f"{name}: {peak:,} bytes at peak"
    if name not in ("byte-order mark", "huge key count"):
        assert code == 2 and lines, name


def test_a_folder_with_thousands_of_files(tmp_path: Path) -> None:
    for i in range(2000):
        (tmp_path / f"job{i:04d}.yaml").write_text(f"version: 1\njobs:\n  - {{name: job{i}, task: me~t{i}}}\n")
    (tmp_path / "job0999.yaml").write_text("version: 1\njobs:\n  - {name: job999, task: me~t, options: {memory: 3}}\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["validate", str(tmp_path)])
    assert code == 2
    assert stderr.getvalue().splitlines()[0].startswith(f"{tmp_path / 'job0999.yaml'}:3:")


# --- the fast schema gate (jsonschema-rs) never lets through what jsonschema refuses -------------------------

def _schema_words() -> list[str]:
    """Every property name the schema knows, so that mutations reach its rules, not only `additionalProperties`."""
    from apify_jobs.jobfile.schema import schema

    words: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            words.update(k for k in node.get("properties", {}) if isinstance(node.get("properties"), dict))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema())
    return sorted(words)


WORDS = _schema_words()
# Values near the schema's edges: patterns with a final newline (Python's `$` matches before it, Rust's not),
# whole numbers as floats, booleans where numbers go, huge and non-finite numbers, expressions.
EDGES = ["abc\n", "me~t\n", "1h\n", "30s", "0s", "application/json\n", "https://x", "${{ vars.x }}", "", " ",
         1.0, 0, -1, 2**70, float("inf"), float("nan"), True, False, None, 300, 301, 9.5, [], {}, ["a"]]
SCALARS = st.one_of(st.sampled_from(EDGES), st.integers(), st.floats(), st.text(max_size=6), st.booleans(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(WORDS) | st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)


@st.composite
def mutated_document(draw: st.DrawFn) -> object:
    """An example job file, loaded, with a few values somewhere in it replaced or added."""
    import copy

    from apify_jobs.jobfile.yaml_loader import load_bytes

    data = copy.deepcopy(load_bytes(draw(st.sampled_from(EXAMPLES)), "x.yaml").data)
    for _ in range(draw(st.integers(1, 3))):
        node = data
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node, key=str)))] if isinstance(node, dict) \
                else node[draw(st.integers(0, len(node) - 1))]
            if not isinstance(child, (dict, list)):
                break
            node = child
        if isinstance(node, dict):
            node[draw(st.sampled_from(WORDS) if draw(st.booleans()) else st.sampled_from(sorted(node) or WORDS))] = \
                draw(VALUES)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(VALUES)
    return data


def fits(value: object, ref: str | None = None) -> bool:
    """jsonschema-rs's verdict, as the gate takes it (a value it cannot take does not fit)."""
    from apify_jobs.jobfile import schema

    try:
        return bool(schema._gate(ref).is_valid(value))
    except Exception:
        return False


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_document())
def test_what_the_fast_gate_lets_through_jsonschema_lets_through(data: object) -> None:
    from apify_jobs.jobfile import schema

    if fits(data):
        assert not list(schema._validator().iter_errors(data))
    for job in data.get("jobs", []) if isinstance(data, dict) and isinstance(data.get("jobs"), list) else []:
        if fits(job, "#/$defs/job"):
            assert not list(schema._validator("#/$defs/job").iter_errors(job))


def test_the_fast_gate_takes_every_example_and_refuses_what_jsonschema_refuses() -> None:
    from apify_jobs.jobfile import schema
    from apify_jobs.jobfile.yaml_loader import load_bytes

    for example in EXAMPLES:  # valid files pass without jsonschema (the point of the gate)
        assert fits(load_bytes(example, "x.yaml").data)
    job = {"name": "a", "task": "me~t"}
    assert fits(job, "#/$defs/job")
    for bad in ({**job, "nmae": "b"}, {**job, "options": {"memory": "1"}}, {**job, 1: "x"}):
        assert not fits(bad, "#/$defs/job")
        assert list(schema._validator("#/$defs/job").iter_errors(bad))
    # Where only jsonschema-rs refuses (a pattern's `$` before a final newline), its errors are the answer.
    for odd in ({**job, "name": "a\n"}, {**job, "task": "me~t\n"}):
        assert not fits(odd, "#/$defs/job") and not list(schema._validator("#/$defs/job").iter_errors(odd))
        assert [e.validator for e in schema._errors(odd, "#/$defs/job")] == ["pattern"]
