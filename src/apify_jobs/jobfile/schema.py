"""The job-file JSON Schema: where it lives, one compiled validator, and its errors as clear lines."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from apify_jobs.errors import Problem
from apify_jobs.jobfile.yaml_loader import Document, Path

_MAX_SHOWN = 60


SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs.schema.json")


def schema_text() -> str:
    # A plain path, not importlib.resources: that import alone costs ~10 ms of every start.
    with open(SCHEMA_PATH, encoding="utf-8") as stream:
        return stream.read()


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@cache
def _validator(ref: str | None = None) -> Any:
    # Imported here: jsonschema costs ~100 ms of start-up that `--version` and `run` of a plan don't need.
    from jsonschema import Draft202012Validator

    root = schema()
    if ref is None:
        return Draft202012Validator(root)
    return Draft202012Validator({"$schema": root["$schema"], "$defs": root["$defs"], "$ref": ref})


@cache
def _gate(ref: str | None = None) -> Any:
    import jsonschema_rs

    root = schema()
    return jsonschema_rs.Draft202012Validator(root if ref is None else {"$schema": root["$schema"],
                                                                        "$defs": root["$defs"], "$ref": ref})


@dataclass(frozen=True)
class _Strict:
    """An error only jsonschema-rs finds, in the shape of jsonschema's errors as `_explain` reads them."""

    absolute_path: tuple[Any, ...]
    instance: Any
    validator: str  # the keyword
    validator_value: Any
    message: str
    context: tuple[()] = ()
    schema: dict[str, Any] = field(default_factory=dict)


def _errors(value: Any, ref: str | None = None) -> list[Any]:
    """The schema's errors of ``value``. No errors, at once, when jsonschema-rs says it fits: ~0.2 ms for 200 jobs,
    where importing jsonschema and validating with it took ~60 ms of every `run` before its first request.
    Otherwise jsonschema's, which explain best. Where jsonschema finds none and jsonschema-rs did, those: JSON
    Schema's patterns are ECMA-262 expressions, whose `$` does not match before a final newline, as Python's
    does (a job named "a\n" passed). A value jsonschema-rs cannot take (a number as a mapping key) is
    jsonschema's alone to judge. A test checks on thousands of mutated job files that what jsonschema-rs lets
    through, jsonschema lets through too."""
    gate = _gate(ref)
    try:
        if gate.is_valid(value):
            return []
        strict = [_Strict(tuple(e.instance_path), e.instance, *_keyword(e.kind), str(e.message))
                  for e in gate.iter_errors(value)]
    except Exception:  # a value it cannot convert
        strict = []
    return list(_validator(ref).iter_errors(value)) or strict


def _keyword(kind: Any) -> tuple[str, Any]:
    """A pattern is explained in words (`_PATTERNS`); jsonschema-rs's message says the rest."""
    return ("pattern", kind.pattern) if kind.name == "pattern" else ("", None)


def check_document(doc: Document) -> list[tuple[Path, Problem]]:
    """Every schema problem of a whole job file, with the path of the value it is about. A value that is one
    whole `${{ … }}` in a job or the defaults takes the type of what it refers to: it is checked once
    substituted, not here (the file's own keys, such as `concurrency`, are never substituted)."""
    return [found for error in _errors(doc.data)
            if not (error.absolute_path and error.absolute_path[0] in ("jobs", "defaults") and _about_an_expression(error))
            for found in _explain(doc, (), error)]


def check_job(doc: Document, job: dict[str, Any], where: Path) -> list[Problem]:
    """Schema problems of one resolved job (after expressions were substituted)."""
    errors = _errors(job, "#/$defs/job")
    return [problem for error in errors if not _about_an_expression(error)
            for _, problem in _explain(doc, where, error)]


def value_problems(value: Any, definition: str, where: str) -> list[str]:
    """Why ``value`` does not fit ``#/$defs/<definition>`` (a job's options or dataset once the values of its
    needs are in), as lines that start with ``where``."""
    lines = []
    for error in _errors(value, f"#/$defs/{definition}"):
        inner = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
        lines.append(f"{where}{inner}: {_described(error)}")
    return lines


def _about_an_expression(error: Any) -> bool:
    from apify_jobs.jobfile.expressions import is_whole_expression

    return is_whole_expression(error.instance)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _where(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the file"


# What each of the schema's patterns asks for, in words (a raw regular expression helps nobody).
_PATTERNS = {
    "^[A-Za-z0-9][A-Za-z0-9._-]*$": "must start with a letter or digit and hold only letters, digits, '.', '_' "
                                    "and '-'",
    "^(?:[A-Za-z0-9]+|[^\\s/~]+[~/][^\\s/~]+|.*\\$\\{\\{.*)$": "must be an ID or owner~name (no spaces)",
    "^[A-Za-z_][A-Za-z0-9_]*$": "must be letters, digits and _, not starting with a digit",
    "^https?://": "must be an http(s) URL",
    "^[1-9][0-9]*(s|m|h|d)$": "must be a duration: a whole number and a unit, as in 30s, 90m, 24h or 7d",
    "^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$": "must be a media type, like application/json",
}


def _explain(doc: Document, base: Path, error: Any) -> Iterable[tuple[Path, Problem]]:
    path: Path = base + tuple(error.absolute_path)
    where = _named(doc, path, _where(path))
    keyword, value = error.validator, error.instance
    if keyword == "additionalProperties" and isinstance(value, dict):
        known = list(error.schema.get("properties", {}))
        for key in value:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                also = f"; did you mean '{hint[0]}'?" if hint else f"; allowed: {', '.join(known)}"
                yield path, doc.problem(path + (key,), f"{where}: unknown key '{key}'{also}", at_key=True)
        return
    if keyword in ("anyOf", "oneOf") and error.context:
        # An option that may also be an expression: explain the real alternative, not the expression.
        real = [e for e in error.context if e.relative_schema_path[0] == 0] or list(error.context)
        yield from _explain_first(doc, base, real)
        return
    if keyword == "not" and path[-1:] == ("expect",):
        message = f"{where}: schema and schemaFile exclude each other; give one"
        path = path + ("schemaFile",)
    elif keyword == "not" and path[-1:] == ("options",):
        message = (f"{where}.outputRecordKey cannot be used together with dataset: the dataset endpoint returns items, "
                   "not a record")
        path = path + ("outputRecordKey",)
    else:
        message = f"{where}: {_described(error)}"
    yield path, doc.problem(path, message)


def _described(error: Any) -> str:
    """What is wrong with the value, in words (without where it is)."""
    keyword, value, expected = error.validator, error.instance, error.validator_value
    if keyword == "required":
        missing = [k for k in expected if k not in value]
        return f"missing required key '{missing[0]}'" if missing else str(error.message)
    if keyword == "enum":
        return f"{_show(value)} is not one of {', '.join(_show(v) for v in expected)}"
    if keyword == "const":
        return f"must be {_show(expected)}, not {_show(value)}"
    if keyword == "type":
        wanted = " or ".join(_article(k) for k in (expected if isinstance(expected, list) else [expected]))
        return f"must be {wanted}, not {_type_name(value)} {_show(value)}"
    if keyword == "pattern":
        return f"{_show(value)} {_PATTERNS.get(expected, 'is not in the expected form')}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        relation = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[keyword]
        return f"must be {relation} {expected}, not {_show(value)}"
    if keyword in ("minItems", "minLength", "minProperties"):
        return "must not be empty"
    if keyword == "uniqueItems":
        return "has duplicate entries"
    if keyword in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        real = [e for e in error.context if e.relative_schema_path[0] == 0] or list(error.context)
        return _described(best_match(real))
    message = str(error.message)
    return message if len(message) < 200 else message[:197] + "..."


def _named(doc: Document, path: Path, where: str) -> str:
    """`jobs[4]` as `jobs[4] (maps-brno)`: a job is found by its name, not by counting."""
    if len(path) < 2 or path[0] != "jobs" or not isinstance(path[1], int) or not isinstance(doc.data, dict):
        return where
    jobs = doc.data.get("jobs")
    job = jobs[path[1]] if isinstance(jobs, list) and path[1] < len(jobs) else None
    name = job.get("name") if isinstance(job, dict) else None
    if not isinstance(name, str) or not name or not name.isprintable():  # a name that breaks the line: unnamed
        return where
    return where.replace(f"jobs[{path[1]}]", f"jobs[{path[1]}] ({name})", 1)


def _explain_first(doc: Document, base: Path, errors: list[Any]) -> Iterable[tuple[Path, Problem]]:
    from jsonschema.exceptions import best_match

    yield from _explain(doc, base, best_match(errors))


def _article(kind: str) -> str:
    names = {"object": "a mapping", "array": "a list", "integer": "a whole number", "number": "a number",
             "string": "a string", "boolean": "true or false", "null": "null"}
    return names.get(kind, kind)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    return {int: "number", float: "number", str: "string"}.get(type(value), type(value).__name__)
