"""`expect:` end to end on the emulator: empty, too few, too many and wrong-shaped outputs fail (never retried,
one POST), the last good output stays byte-identical and the failed one is kept as `.rejected`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import job_file, jobs_by_name, read_report

ITEMS = [{"url": f"https://shop.example.com/{i}", "title": f"T{i}", "price": i} for i in range(5)]
FAST = "retry: {attempts: 3, backoff: {initial: 0, max: 0}}"


def run(cli, tmp_path: Path, job: str, *extra: str, name: str = "jobs.yaml"):
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", job_file(tmp_path, f"jobs:\n  - {job}\n", name), "--out-dir", out,
                               "--no-run-facts", *extra)
    return code, jobs_by_name(read_report(out)), out, stdout + stderr


def test_an_empty_answer_fails_by_default_and_passes_with_non_empty_false(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"output": None}}})
    code, jobs, out, output = run(cli, tmp_path, f"{{name: a, task: me~t, {FAST}}}")
    assert code == 1 and server.state.per_task == {"me~t": 1}  # never retried
    assert jobs["a"]["error"]["type"] == "expectation-failed" and "empty" in jobs["a"]["error"]["message"]
    assert "1 failed expectations" in output
    code, jobs, out, _ = run(cli, tmp_path, "{name: a, task: me~t, expect: {nonEmpty: false}}")
    assert code == 0 and jobs["a"]["output"]["empty"] is True


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
@pytest.mark.parametrize(("bounds", "ok"), [("{minItems: 5, maxItems: 5}", True), ("{minItems: 6}", False),
                                             ("{maxItems: 4}", False)])
def test_item_counts_on_json_jsonl_and_csv_datasets(cli, emulator, tmp_path: Path, fmt: str, bounds: str,
                                                    ok: bool) -> None:
    server = emulator({"tasks": {"me~t": {"items": ITEMS}}})
    code, jobs, out, _ = run(cli, tmp_path, f"{{name: a, task: me~t, dataset: {{format: {fmt}}}, expect: {bounds}, "
                                            f"{FAST}}}")
    assert server.state.per_task == {"me~t": 1}
    if ok:
        assert code == 0 and (out / f"a.{fmt}").exists()
    else:
        message = jobs["a"]["error"]["message"]
        assert code == 1 and jobs["a"]["error"]["type"] == "expectation-failed" and "5 items" in message
        assert not (out / f"a.{fmt}").exists() and (out / f"a.{fmt}.rejected").exists()


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_schema_is_checked_per_item_with_its_index(cli, emulator, tmp_path: Path, fmt: str) -> None:
    broken = [*ITEMS[:3], {"url": "https://x", "title": "no price"}, {**ITEMS[4], "price": "cheap"}]
    emulator({"tasks": {"me~t": {"items": broken}}})
    schema = "{type: object, required: [url, title, price], properties: {price: {type: number}}}"
    code, jobs, _, _ = run(cli, tmp_path, f"{{name: a, task: me~t, dataset: {{format: {fmt}}}, "
                                          f"expect: {{schema: {schema}}}}}")
    error = jobs["a"]["error"]
    assert code == 1 and error["violations"] == 2
    assert "item 3 at /: 'price' is a required property" in error["message"]
    assert "item 4 at /price: 'cheap' is not of type 'number'" in error["message"]


def test_a_schema_file_checks_the_output_record(cli, emulator, tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "out.json").write_text(json.dumps({"type": "object", "required": ["total"]}))
    emulator({"tasks": {"me~good": {"output": {"total": 3}}, "me~bad": {"output": {"sum": 3}}}})
    code, jobs, _, _ = run(cli, tmp_path, "{name: a, task: me~good, expect: {schemaFile: schemas/out.json}}")
    assert code == 0
    code, jobs, _, _ = run(cli, tmp_path, "{name: b, task: me~bad, expect: {schemaFile: schemas/out.json}}")
    assert code == 1 and "the document at /: 'total' is a required property" in jobs["b"]["error"]["message"]


def test_a_failing_output_never_replaces_the_last_good_one(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"items": ITEMS}, {"items": ITEMS[:2]}]}})
    job = "{name: a, task: me~t, dataset: {format: json}, expect: {minItems: 3}}"
    assert run(cli, tmp_path, job)[0] == 0
    good = (tmp_path / "out" / "a.json").read_bytes()
    code, jobs, out, _ = run(cli, tmp_path, job, "--resume")
    assert code == 0 and server.state.per_task == {"me~t": 1}  # resumed: the good output stands
    code, jobs, out, _ = run(cli, tmp_path, job)  # the scraper broke: its dataset shrank to 2 items
    assert code == 1 and server.state.per_task == {"me~t": 2}
    assert (out / "a.json").read_bytes() == good  # byte-identical
    rejected = jobs["a"]["rejected"]
    assert rejected["path"] == str(out / "a.json.rejected") and json.loads((out / "a.json.rejected").read_text()) == \
        ITEMS[:2]
    run(cli, tmp_path, job, "--resume")
    assert server.state.per_task == {"me~t": 3}  # a job whose output failed is not skipped by --resume


def test_invalid_json_is_an_expectation_failure_with_the_byte_offset(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"bodyBytes": 3000, "contentType": "application/json"}}})
    # a check that must parse the output (the default, nonEmpty, reads no further than the first item)
    code, jobs, _, output = run(cli, tmp_path, "{name: a, task: me~t, expect: {minItems: 1}}")
    assert code == 1 and jobs["a"]["error"]["type"] == "expectation-failed"
    assert "not valid JSON near byte" in jobs["a"]["error"]["message"] and "Traceback" not in output
    assert server.state.per_task == {"me~t": 1}  # never retried


def test_content_type_is_checked_without_parameters(cli, emulator, tmp_path: Path) -> None:
    server = emulator()
    assert run(cli, tmp_path, "{name: a, task: me~t, expect: {contentType: application/json}}")[0] == 0
    code, jobs, _, _ = run(cli, tmp_path, "{name: b, task: me~t, expect: {contentType: text/csv}}")
    assert code == 1 and "the content type is application/json, not text/csv" in jobs["b"]["error"]["message"]
    assert server.state.per_task == {"me~t": 2}  # one run a job, the failed one not retried


def test_an_adopted_run_is_checked_the_same_way(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": [{"drop": "after-start", "items": ITEMS[:1]}, {}]}})
    code, jobs, _, _ = run(cli, tmp_path, f"{{name: a, task: me~t, dataset: {{format: json}}, expect: {{minItems: 2}}, "
                                          f"{FAST}}}")
    assert code == 1 and server.state.per_task == {"me~t": 1} and jobs["a"]["recovery"]["adopted"] is True
    assert jobs["a"]["error"]["type"] == "expectation-failed"


@pytest.mark.parametrize(("expect", "message"), [
    ("{minItems: 5, maxItems: 2}", "expect.minItems: 5 is more than maxItems 2"),
    ("{schema: {type: object}, schemaFile: s.json}", "schema and schemaFile exclude each other"),
    ("{schemaFile: ../outside.json}", "expect.schemaFile: '../outside.json' leaves the job file's folder"),
    ("{schemaFile: missing.json}", "expect.schemaFile:"),
    ("{schema: {type: thing}}", "expect.schema: not a valid JSON Schema"),
    ("{schema: {$ref: 'https://example.com/s.json'}}", "leaves the schema; only references inside it"),
])
def test_bad_expectations_are_validation_errors(cli, tmp_path: Path, expect: str, message: str) -> None:
    code, _, err = cli("validate", job_file(tmp_path, f"jobs:\n  - {{name: a, task: me~t, expect: {expect}}}\n"))
    assert code == 2 and message in err, err


@pytest.mark.parametrize(("fmt", "expect", "message"), [
    ("xlsx", "{minItems: 1}", "xlsx outputs cannot be checked item by item"),
    ("xml", "{schema: {type: object}}", "xml outputs cannot be checked item by item"),
    ("csv", "{schema: {type: object}}", "CSV items are counted only"),
])
def test_checks_a_format_cannot_have_are_refused_at_their_line(cli, tmp_path: Path, fmt: str, expect: str,
                                                               message: str) -> None:
    path = job_file(tmp_path, f"jobs:\n  - name: a\n    task: me~t\n    dataset: {{format: {fmt}}}\n"
                              f"    expect: {expect}\n")
    code, _, err = cli("validate", path)
    assert code == 2 and f"{path}:6:" in err and message in err


def test_plan_shows_each_jobs_expectations(cli, tmp_path: Path) -> None:
    path = job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, expect: {minItems: 10, contentType: application/json}}\n")
    code, out, _ = cli("plan", path)
    assert code == 0 and "expect: nonEmpty, minItems 10, contentType application/json" in out
    code, out, _ = cli("plan", path, "--json")
    assert json.loads(out)[0]["expect"]["minItems"] == 10


def test_a_large_generated_dataset_is_counted_while_it_streams(cli, emulator, tmp_path: Path) -> None:
    server = emulator({"tasks": {"me~t": {"generatedItems": 30_000}}})
    code, jobs, out, _ = run(cli, tmp_path, "{name: a, task: me~t, dataset: {format: json}, "
                                            "expect: {minItems: 30000, maxItems: 30000}}")
    assert code == 0 and len(json.loads((out / "a.json").read_bytes())) == 30_000
    code, jobs, out, _ = run(cli, tmp_path, "{name: b, task: me~t, dataset: {format: json}, expect: {minItems: 30001}}")
    assert code == 1 and "30000 items, fewer than minItems 30001" in jobs["b"]["error"]["message"]
    assert server.state.per_task == {"me~t": 2}


def test_a_gzip_served_dataset_is_saved_decoded_and_crosses_the_wire_compressed(cli, emulator, tmp_path: Path) -> None:
    """The emulator serves a generated dataset compressed to a client that asks for gzip; the output is the
    decoded bytes (the same as served plain), counted while it streams, and what crossed the wire is smaller."""
    plain = emulator({"tasks": {"me~t": {"generatedItems": 30_000}}})
    code, jobs, out, _ = run(cli, tmp_path, "{name: a, task: me~t, dataset: {format: json}, expect: {minItems: 30000}}")
    assert code == 0 and plain.state.per_task == {"me~t": 1}
    expected = (out / "a.json").read_bytes()
    assert plain.state.stats()["streamedBytes"] == len(expected)
    packed = emulator({"tasks": {"me~t": {"generatedItems": 30_000, "gzip": True}}})
    code, jobs, out, _ = run(cli, tmp_path, "{name: a, task: me~t, dataset: {format: json}, expect: {minItems: 30000}}")
    assert code == 0 and packed.state.per_task == {"me~t": 1}
    assert (out / "a.json").read_bytes() == expected and jobs["a"]["output"]["bytes"] == len(expected)
    assert 0 < packed.state.stats()["streamedBytes"] < len(expected) / 5


@pytest.fixture
def settings():
    """Run facts look again 1 s after a first look misses a run (the platform's listing lags here)."""
    import dataclasses

    from tests.conftest import QUICK

    return dataclasses.replace(QUICK, look_again_after=1.0)


def test_a_failed_expectation_names_its_paid_run_even_when_the_listing_lags(cli, emulator, tmp_path: Path) -> None:
    """An output that arrived proves a run: the attempt stays "started" when its check fails, so the run facts
    look again for it and the report names the run that was paid for (they gave up after one look before)."""
    server = emulator({"tasks": {"me~t": {"items": ITEMS[:2]}}, "platform": {"listingDelay": 0.6}})
    out = tmp_path / "out"
    code, _, _ = cli("run", job_file(tmp_path, "jobs:\n  - {name: a, task: me~t, dataset: {}, expect: {minItems: 3}}\n"),
                     "--out-dir", out)
    [entry] = read_report(out)["jobs"]
    assert code == 1 and entry["error"]["type"] == "expectation-failed" and server.state.per_task == {"me~t": 1}
    assert entry.get("runId") == server.state.runs[0].id
