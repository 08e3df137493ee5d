"""`expect:` against hostile answers: bounded memory whatever the shape, no paid output lost, linear readers, and
the right count (the one `json`, `csv` and a line split give) wherever the chunks fall."""

from __future__ import annotations

import csv
import io
import json
import random
import resource
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apify_jobs.outputs import expect, readers
from tests.conftest import run_process
from tests.helpers import job_file, jobs_by_name, make_job, read_report

DEEP = "[" * 200_000 + "]" * 200_000  # 400 KB nested 200,000 levels


def check(tmp_path: Path, body: bytes, expectations: str, chunks: list[int] | None = None,
          content_type: str = "application/json", dataset: str | None = None) -> expect.Check:
    spec = {"name": "a", "task": "me~t", "expect": {"nonEmpty": False, **json.loads(expectations)}}
    if dataset:
        spec["dataset"] = json.loads(dataset)
    checker = expect.Check(make_job(tmp_path, spec), content_type)
    cuts = sorted({0, len(body), *(c % (len(body) + 1) for c in chunks or [])})
    for start, end in zip(cuts, cuts[1:], strict=False):
        checker.feed(body[start:end])
    checker.verdict_now = checker.finish()  # type: ignore[attr-defined]
    return checker


# --- the right count, wherever the chunks fall ------------------------------------------------------------
hostile_text = st.text(alphabet=st.sampled_from(list('a,[]{}"\\:\n\t é\u2028')), max_size=12)
values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
                      max_leaves=12)
cut_points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(values, max_size=8), cuts=cut_points, spaced=st.booleans())
def test_a_json_array_is_counted_as_json_reads_it(tmp_path_factory, items, cuts, spaced) -> None:
    body = json.dumps(items, indent=1 if spaced else None, ensure_ascii=False).encode()
    counted = check(tmp_path_factory.mktemp("c"), body, '{"minItems": 0}', cuts)
    built = check(tmp_path_factory.mktemp("b"), body, '{"schema": true}', cuts)
    assert counted.verdict_now is None and built.verdict_now is None, (counted.verdict_now, built.verdict_now)
    assert counted.items == built.items == len(items)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(values, max_size=8), cuts=cut_points, blank=st.sampled_from(["", "\n", " \r\n", "\n\n"]))
def test_jsonl_lines_are_counted_as_a_line_split_reads_them(tmp_path_factory, items, cuts, blank) -> None:
    body = "".join(json.dumps(i) + "\n" + blank for i in items).encode()
    for expectations in ('{"minItems": 0}', '{"schema": true}'):
        checked = check(tmp_path_factory.mktemp("l"), body, expectations, cuts, "application/jsonl")
        assert checked.verdict_now is None and checked.items == len(items)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(st.text(alphabet=st.sampled_from(list('ab,"\n\r ')), max_size=6), min_size=1,
                              max_size=3), max_size=6),
       cuts=cut_points, skip_header=st.booleans(), stray=st.booleans())
def test_csv_records_are_counted_as_the_csv_module_reads_them(tmp_path_factory, rows, cuts, skip_header,
                                                              stray) -> None:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    body = text.getvalue() + ('x,y"z,w\n' if stray else "")  # a stray quote in an unquoted field
    records = [r for r in csv.reader(io.StringIO(body)) if r]
    dataset = json.dumps({"format": "csv", "skipHeaderRow": skip_header})
    checked = check(tmp_path_factory.mktemp("v"), body.encode(), '{"minItems": 0}', cuts, "text/csv", dataset)
    assert checked.verdict_now is None and checked.items == max(len(records) - (not skip_header), 0)


def test_a_stray_quote_does_not_hide_the_rows_after_it(tmp_path: Path) -> None:
    body = b'name,size\nbig 12" screen,1\nsmall,2\nother,3\n'
    checked = check(tmp_path, body, '{"minItems": 3}', [5, 17, 20], "text/csv")
    assert checked.verdict_now is None and checked.items == 3


# --- bounded by construction --------------------------------------------------------------------------------
@pytest.mark.parametrize("expectations", ['{"minItems": 1}', '{"schema": {"type": "array"}}',
                                          '{"schema": {"type": "array"}, "maxDepth": 50}'])
def test_a_document_nested_200000_deep_is_a_violation_naming_the_limit(tmp_path: Path, expectations: str) -> None:
    checked = check(tmp_path, DEEP.encode(), expectations, list(range(0, 400_000, 65_536)))
    assert checked.verdict_now is not None and "more than maxDepth" in checked.verdict_now.message


def test_jsonl_lines_nested_too_deep_are_a_violation(tmp_path: Path) -> None:
    body = (b'{"a": 1}\n' + DEEP.encode() + b"\n") * 2
    checked = check(tmp_path, body, '{"schema": true}', [100_000], "application/jsonl")
    assert checked.verdict_now is not None and "line 2 nests at least" in checked.verdict_now.message


def test_an_item_larger_than_max_item_bytes_is_a_violation(tmp_path: Path) -> None:
    body = json.dumps([{"a": "x" * 5000}, 1]).encode()
    for expectations, content_type, data in (('{"schema": true, "maxItemBytes": 1000}', "application/json", body),
                                             ('{"schema": true, "maxItemBytes": 1000}', "application/jsonl",
                                              b"1\n" + b'"' + b"x" * 5000 + b'"\n'),
                                             ('{"minItems": 1, "maxItemBytes": 1000}', "text/csv",
                                              b'h\n"' + b"x\n" * 3000 + b'"\n')):
        checked = check(tmp_path, data, expectations, list(range(0, len(data), 700)), content_type)
        assert checked.verdict_now is not None and "maxItemBytes" in checked.verdict_now.message, content_type


def test_a_5000_digit_integer_and_huge_floats_are_json(tmp_path: Path) -> None:
    big = "9" * 5000
    for body, content_type in ((f"[{big}, -{big}, 1e400, 2.5]", "application/json"),
                               (f"{big}\n-{big}\n", "application/jsonl"), (big, "application/json")):
        checked = check(tmp_path, body.encode(), '{"schema": {"type": ["integer", "array", "number"]}}',
                        [1000, 4000], content_type)
        assert checked.verdict_now is None, checked.verdict_now
    assert readers.decode(f"[{big}]", "x") == [10 ** 5000 - 1]


def test_parser_messages_are_one_printable_line(tmp_path: Path) -> None:
    body = b'{"a": 1}\n{"b": \x1b[2J\n  oops\r\n'
    checked = check(tmp_path, body, '{"schema": true}', [3], "application/jsonl")
    message = checked.verdict_now.message
    assert "line 2 is not valid JSON" in message
    assert not any(ch in message for ch in "\n\r\x1b"), message


def test_a_checker_that_raises_becomes_a_violation_not_an_error(tmp_path: Path, monkeypatch) -> None:
    def broken(self, index, value, verdict):
        raise MemoryError("made up")

    monkeypatch.setattr(expect.Schema, "item", broken)
    checked = check(tmp_path, b"[1, 2]", '{"schema": true}')
    assert "the check itself failed (MemoryError: made up)" in checked.verdict_now.message


# --- linear everywhere: work counted, not timed -----------------------------------------------------------
def test_an_item_across_many_chunks_is_decoded_a_logarithmic_number_of_times(tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = readers._DECODER.raw_decode

    class Counting:
        def raw_decode(self, text, position):
            calls.append(len(text))
            return real(text, position)

    monkeypatch.setattr(readers, "_DECODER", Counting())
    body = json.dumps([{"t": "x" * 1_000_000}, 1, 2]).encode()
    checked = check(tmp_path, body, '{"schema": true}', list(range(0, len(body), 1000)))  # 1,000 chunks
    assert checked.verdict_now is None and checked.items == 3
    assert len(calls) < 40 and sum(calls) < 6 * len(body), (len(calls), sum(calls))


def test_a_long_csv_record_is_read_a_logarithmic_number_of_times(tmp_path: Path, monkeypatch) -> None:
    reads = []
    real = csv.reader
    monkeypatch.setattr(csv, "reader", lambda lines, **kw: reads.append(1) or real(lines, **kw))
    body = b'h\n"' + b"line\n" * 200_000 + b'",x\nlast,row\n'
    checked = check(tmp_path, body, '{"minItems": 2}', list(range(0, len(body), 1000)), "text/csv")
    assert checked.verdict_now is None and checked.items == 2 and len(reads) < 40, len(reads)


def test_a_long_jsonl_line_is_joined_once(tmp_path: Path, monkeypatch) -> None:
    joined = []
    real = readers.JsonlReader._value
    monkeypatch.setattr(readers.JsonlReader, "_value", lambda self, line: joined.append(len(line)) or
                        real(self, line))
    line = json.dumps({"t": "y" * 2_000_000}).encode()
    body = line + b"\n" + line + b"\n"
    checked = check(tmp_path, body, '{"schema": true}', list(range(0, len(body), 4096)), "application/jsonl")
    assert checked.verdict_now is None and checked.items == 2 and joined == [len(line), len(line)]


def test_non_empty_reads_no_further_than_the_first_items_first_byte(tmp_path: Path) -> None:
    for content_type, first, dataset in (("application/jsonl", b' \n {"a"', None),
                                         ("text/csv", b'h\n"a', '{"format": "csv"}')):
        spec = {"name": "a", "task": "me~t", **({"dataset": json.loads(dataset)} if dataset else {})}
        checker = expect.Check(make_job(tmp_path, spec), content_type)
        checker.feed(first)
        assert checker.items == 1 and not checker._reading, content_type  # the rest is not read


# --- end to end: the CLI under a memory limit, the run kept in the report --------------------------------
def _limited(megabytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))
    return apply


@pytest.mark.parametrize("expectations", ["{minItems: 1}", "{schema: {type: array}}"])
def test_the_deep_answer_fails_the_job_under_a_memory_limit_and_keeps_the_output(emulator, tmp_path: Path,
                                                                                expectations: str) -> None:
    server = emulator({"tasks": {"me~t": {"body": DEEP, "contentType": "application/json"}}})
    jobs = job_file(tmp_path, f"jobs:\n  - {{name: a, task: me~t, expect: {expectations}}}\n")
    out = tmp_path / "out"
    finished = run_process("run", str(jobs), "--out-dir", str(out), "--no-run-facts", preexec_fn=_limited(1024),
                           env={"OPENBLAS_NUM_THREADS": "1"})
    assert finished.returncode == 1, finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr and server.state.per_task == {"me~t": 1}  # one run, paid once
    job = jobs_by_name(read_report(out))["a"]
    assert job["error"]["type"] == "expectation-failed" and "more than maxDepth 1000" in job["error"]["message"]
    assert job["attempts"] == 1 and len(job["attemptIds"]) == 1
    assert (out / "a.json.rejected").read_bytes() == DEEP.encode() and not (out / "a.json").exists()


def test_a_checker_failure_keeps_the_paid_output_and_the_attempt(cli, emulator, tmp_path: Path,
                                                                  monkeypatch) -> None:
    def broken(self, index, value, verdict):
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr(expect.Schema, "item", broken)
    items = [{"n": i} for i in range(3)]
    server = emulator({"tasks": {"me~t": {"items": items}}})
    out = tmp_path / "out"
    code, _, stderr = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, dataset: {format: json}, "
                                                    "expect: {schema: true}}\n"), "--out-dir", out)
    job = jobs_by_name(read_report(out))["a"]
    assert code == 1 and server.state.per_task == {"me~t": 1}
    assert job["error"]["type"] == "expectation-failed" and "a bug in a check" in job["error"]["message"]
    assert job["attempts"] == 1 and len(job["attemptIds"]) == 1 and job.get("runId")
    assert json.loads((out / "a.json.rejected").read_bytes()) == items


def test_random_cuts_of_a_real_dataset_count_exactly(tmp_path: Path) -> None:
    from apify_jobs.emulator.storage import _generated

    body = b"".join(_generated(20_000, False))
    rng = random.Random(3)
    checked = check(tmp_path, body, '{"minItems": 20000, "maxItems": 20000}',
                    [rng.randrange(len(body)) for _ in range(200)])
    assert checked.verdict_now is None and checked.items == 20_000


def test_a_bug_after_the_answer_keeps_the_attempt_in_the_report(cli, emulator, tmp_path: Path, monkeypatch) -> None:
    from apify_jobs.running import runner

    class Exploding(expect.Check):
        def finish(self):
            raise RuntimeError("a bug between the answer and the commit")

    monkeypatch.setattr(runner, "Check", Exploding)
    server = emulator({"tasks": {"me~t": {}}})
    out = tmp_path / "out"
    code, _, _ = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t}\n"), "--out-dir", out)
    job = jobs_by_name(read_report(out))["a"]
    assert code == 1 and server.state.per_task == {"me~t": 1}
    assert "internal error" in job["error"]["message"] and "a bug between" in job["error"]["message"]
    assert job["attempts"] == 1 and len(job["attemptIds"]) == 1 and job.get("runId")
