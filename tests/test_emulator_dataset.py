"""The emulator's dataset answers as the platform's: generated items by default, the job's `dataset`
parameters applied (selection and format), CSV with a byte-order mark unless `bom: false`. Through the CLI over
real sockets, counting runs."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from apify_jobs.emulator.dataset_view import DEFAULT_ITEMS, default_items, render, select
from tests.helpers import job_file, jobs_by_name, read_report


def run(cli, tmp_path: Path, body: str, *extra: str):
    out = tmp_path / "out"
    code, _, stderr = cli("run", job_file(tmp_path, body), "--out-dir", out, *extra)
    return code, jobs_by_name(read_report(out)), out, stderr


def test_a_first_min_items_expectation_passes_out_of_the_box(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, jobs, out, _ = run(cli, tmp_path, """
        jobs:
          - {name: shop, task: me~shop, dataset: {}, expect: {minItems: 10}}
        """)
    assert code == 0 and jobs["shop"]["status"] == "succeeded" and server.state.per_task == {"me~shop": 1}
    items = json.loads((out / "shop.json").read_text())
    assert len(items) == DEFAULT_ITEMS and {"url", "title", "price"} <= set(items[0])


def test_limit_offset_fields_and_desc_select_as_the_platform_does(cli, emulator, tmp_path: Path) -> None:
    emulator()
    code, _, out, _ = run(cli, tmp_path, """
        jobs:
          - {name: page, task: me~shop, dataset: {offset: 2, limit: 3, fields: [title, price]}}
          - {name: newest, task: me~shop, dataset: {desc: true, limit: 1, omit: [url, inStock, currency]}}
        """)
    assert code == 0
    assert json.loads((out / "page.json").read_text()) == [
        {"title": "Product 3", "price": 12.99}, {"title": "Product 4", "price": 13.99},
        {"title": "Product 5", "price": 14.99}]
    assert json.loads((out / "newest.json").read_text()) == [{"title": f"Product {DEFAULT_ITEMS}",
                                                              "price": round(9.99 + DEFAULT_ITEMS, 2)}]


def test_a_limit_below_min_items_fails_the_expectation_after_one_run(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, jobs, out, _ = run(cli, tmp_path, """
        jobs:
          - {name: few, task: me~shop, dataset: {limit: 2}, expect: {minItems: 3}}
        """)
    assert code == 1 and jobs["few"]["error"]["type"] == "expectation-failed"
    assert server.state.per_task == {"me~shop": 1} and len(json.loads((out / "few.json.rejected").read_text())) == 2


@pytest.mark.parametrize(("format_", "suffix"), [("csv", "csv"), ("jsonl", "jsonl"), ("xml", "xml"),
                                                 ("html", "html")])
def test_the_format_decides_the_answer_and_the_file_name(cli, emulator, tmp_path: Path, format_: str,
                                                         suffix: str) -> None:
    emulator()
    code, jobs, out, _ = run(cli, tmp_path, f"""
        jobs:
          - {{name: shop, task: me~shop, dataset: {{format: {format_}, limit: 4, fields: [title]}}}}
        """)
    assert code == 0, jobs
    text = (out / f"shop.{suffix}").read_text(encoding="utf-8")
    titles = [f"Product {i}" for i in range(1, 5)]
    if format_ == "csv":
        assert text.startswith("\ufeff")  # the platform's default for CSV
        assert list(csv.reader(io.StringIO(text[1:]))) == [["title"], *[[t] for t in titles]]
    elif format_ == "jsonl":
        assert [json.loads(line) for line in text.splitlines()] == [{"title": t} for t in titles]
    elif format_ == "xml":
        assert [e.text for e in ET.fromstring(text).iter("title")] == titles
    else:
        assert all(f"<td>{t}</td>" in text for t in titles) and text.count("<tr>") == 5


def test_a_csv_of_only_its_byte_order_mark_counts_no_items(cli, emulator, tmp_path: Path) -> None:
    """An empty export (header skipped) is the BOM alone: nonEmpty must not take the mark for a record."""
    server = emulator()
    code, jobs, _, _ = run(cli, tmp_path, """
        jobs:
          - {name: empty, task: me~shop, dataset: {format: csv, offset: 1000, skipHeaderRow: true}}
        """)
    assert code == 1 and jobs["empty"]["error"]["type"] == "expectation-failed"
    assert server.state.per_task == {"me~shop": 1}


def test_csv_delimiter_bom_and_header_parameters() -> None:
    items = default_items()[:2]
    body, content_type = render(items, {"format": "csv", "fields": "title,price", "delimiter": ";", "bom": "false",
                                        "skipHeaderRow": "true"})
    assert body == b"Product 1;10.99\nProduct 2;11.99\n" and content_type.startswith("text/csv")


def test_clean_unwind_and_flatten() -> None:
    items = [{"#debug": 1, "a": {"x": 1, "y": 2}, "tags": [{"t": "p"}, {"t": "q"}]}, {}]
    assert select(items, {"clean": "true"}) == [{"a": {"x": 1, "y": 2}, "tags": [{"t": "p"}, {"t": "q"}]}]
    assert select(items, {"unwind": "tags", "flatten": "a", "skipHidden": "1", "skipEmpty": "1"}) == [
        {"a.x": 1, "a.y": 2, "t": "p"}, {"a.x": 1, "a.y": 2, "t": "q"}]


def test_xlsx_is_refused_with_what_to_do_and_no_file(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    code, jobs, out, _ = run(cli, tmp_path, "jobs:\n  - {name: x, task: me~shop, dataset: {format: xlsx}}\n")
    assert code == 1 and "xlsx" in jobs["x"]["error"]["message"] and server.state.per_task == {"me~shop": 1}
    assert not list(out.glob("x.*"))


def test_a_byte_order_mark_asked_for_is_no_content_to_checks_or_expressions(cli, emulator, tmp_path: Path) -> None:
    """`bom: true` starts JSON and JSONL with the mark too: the checks read past it, and so do expressions."""
    server = emulator()
    code, jobs, out, _ = run(cli, tmp_path, """
        jobs:
          - name: marked
            task: me~shop
            dataset: {bom: true, limit: 3}
            expect: {minItems: 3, maxItems: 3, schema: {type: object, required: [url, price]}}
          - {name: lines, task: me~shop, dataset: {format: jsonl, bom: true}, expect: {schema: {required: [url]}}}
          - {name: next, task: me~next, needs: [marked], input: {first: "${{ needs.marked.output[0].title }}"}}
        """)
    assert code == 0, jobs
    assert (out / "marked.json").read_bytes().startswith(b"\xef\xbb\xbf[")  # kept byte for byte
    assert json.loads((out / "next.json").read_text())["input"] == {"first": "Product 1"}
    assert server.state.per_task == {"me~shop": 2, "me~next": 1}


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_the_mark_is_skipped_however_the_answer_is_cut(tmp_path: Path, cut: int) -> None:
    from apify_jobs.outputs.expect import Check
    from tests.helpers import make_job

    body = b"\xef\xbb\xbf" + b"a,b\n1,2\n"
    job = make_job(tmp_path, {"name": "c", "task": "me~t", "dataset": {"format": "csv"},
                              "expect": {"minItems": 1, "maxItems": 1}})
    check = Check(job, "text/csv")
    for start in range(0, len(body), cut):
        check.feed(body[start:start + cut])
    assert check.finish() is None and check.items == 1
    empty = Check(job, "text/csv")
    empty.feed(b"\xef\xbb")
    empty.feed(b"\xbf")
    verdict = empty.finish()
    assert verdict is not None and "empty" in verdict.message
