"""The loader keeps what is written (YAML 1.2 core), refuses what is unsafe, and knows every position."""

from __future__ import annotations

import tracemalloc

import pytest

from apify_jobs.jobfile.yaml_loader import YamlError, load_bytes


def load(text: bytes | str):
    return load_bytes(text.encode() if isinstance(text, str) else text, "f.yaml")


def error(text: bytes | str) -> str:
    with pytest.raises(YamlError) as caught:
        load(text)
    return str(caught.value)


@pytest.mark.parametrize("text", ["NO", "no", "on", "off", "yes", "Y", "2024-01-01", "1:30", "0777", "1_000", "0b11", "+.5e"])
def test_yaml11_traps_stay_strings(text: str) -> None:
    value = load(f"v: {text}").data["v"]
    expected = {"0777": 777}.get(text, text)  # 1.2 core: 0777 is the decimal 777, not octal
    assert value == expected


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("False", False), ("~", None), ("null", None), ("", None), ("12", 12), ("-3", -3),
    ("0o17", 15), ("0x1F", 31), ("1.5", 1.5), ("1e3", 1000.0), ("'12'", "12"), ('"true"', "true"), ("!!str 12", "12"),
    ("!!int '7'", 7), ("!!float 1", 1.0),
])
def test_core_schema_values(text: str, value: object) -> None:
    loaded = load(f"v: {text}").data["v"]
    assert loaded == value and type(loaded) is type(value)


def test_duplicate_keys_are_an_error_with_position() -> None:
    assert error("a: 1\nb:\n  c: 1\n  c: 2\n") == "f.yaml:4:3: duplicate key 'c'"


@pytest.mark.parametrize("text", ["a: !!python/object:os.system x", "a: !custom x", "a: !!timestamp 2024-01-01", "a: !!binary aGk="])
def test_tags_beyond_core_are_refused(text: str) -> None:
    assert "is not allowed" in error(text)


def test_non_utf8_is_a_clear_error_at_the_byte() -> None:
    assert error(b"a: 1\nb: caf\xe9\n") == "f.yaml:2:7: not UTF-8 text: save the file as UTF-8"


def test_byte_order_mark_is_accepted() -> None:
    assert load(b"\xef\xbb\xbfa: 1").data == {"a": 1}


def test_nul_byte_is_refused_with_position() -> None:
    assert error(b"a: 1\nb: x\x00y") == "f.yaml:2:5: character #x0000 is not allowed in YAML"


def test_tab_indentation_is_refused_with_line() -> None:
    assert error("a:\n\t- b").startswith("f.yaml:2:1: invalid YAML")


def test_anchors_and_aliases_work() -> None:
    data = load("base: &b {memory: 1024}\nother: *b\n").data
    assert data["other"] == {"memory": 1024}


def test_billion_laughs_is_refused_at_once_without_memory() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i-1}'] * 10)}]" for i in range(1, 10)]
    tracemalloc.start()
    message = error("\n".join(lines))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "aliases expand to more than" in message
    assert peak < 5_000_000  # refused from the count of alias expansions, not after building them


def test_recursive_alias_is_refused() -> None:
    assert "refers to a node that contains it" in error("a: &a [1, *a]")


def test_deep_nesting_is_refused_not_crashing() -> None:
    assert "nest" in error("[" * 100_000 + "]" * 100_000)


def test_non_string_keys_are_refused() -> None:
    assert error("1: x") == "f.yaml:1:1: key 1 is not a string; quote it if you mean '1'"
    assert "key true is not a string" in error("true: x")


def test_merge_key_is_explained() -> None:
    assert "merge keys (<<) are not part of YAML 1.2" in error("base: &b {a: 1}\nj:\n  <<: *b\n")


def test_infinite_float_cannot_be_json() -> None:
    assert "cannot be sent as JSON" in error("a: .inf")


def test_second_document_is_refused() -> None:
    assert error("a: 1\n---\nb: 2\n").startswith("f.yaml:2:1:")


def test_positions_are_one_based_and_point_at_values() -> None:
    doc = load("version: 1\njobs:\n  - name: a\n    options: {memory: 100}\n")
    assert doc.position(("jobs", 0, "options", "memory")) == (4, 23)
    assert doc.position(("jobs", 0, "name")) == (3, 11)
    assert doc.position(("jobs", 0)) == (3, 5)


def test_empty_file_is_null() -> None:
    assert load("").data is None
