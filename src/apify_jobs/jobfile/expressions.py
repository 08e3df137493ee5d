"""``${{ namespace.NAME }}`` expressions in string values: finding, checking and substituting them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apify_jobs.redaction import Redactor

NAMESPACES = ("matrix", "vars", "env", "secrets", "needs")
NEEDS_FIELDS = ("output", "runId", "datasetId", "keyValueStoreId")
SECRET_NAMES = frozenset({"APIFY_TOKEN"})

# Anything opened with ${{ up to the nearest }}; the inside is checked separately for a clear message.
_OPEN = "${{"
_ANY = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_INSIDE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*$")
# needs.<job>[*].<field><path>: a job name may hold dots, so the shortest name followed by a known field wins;
# `[*]` after the name gathers the value of every job of a matrix or fan-out (a list, in expansion order)
_NEEDS = re.compile(r"^\s*needs\.([A-Za-z0-9][A-Za-z0-9._-]*?)(\[\*\])?\.(output|runId|datasetId|keyValueStoreId)"
                    r"((?:\.[A-Za-z_][A-Za-z0-9_]*|\[(?:\d+|\*|\"(?:[^\"\\]|\\.)*\")\])*)\s*$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+|\*|\"(?:[^\"\\]|\\.)*\")\]")


class ExpressionError(ValueError):
    """An expression that is malformed, names an unknown namespace, or refers to something undefined."""


@dataclass(frozen=True)
class Ref:
    """One expression: ``namespace.name``, and for `needs` the field and the path inside it."""

    namespace: str
    name: str
    field: str = ""
    path: str = ""
    group: bool = False  # `needs.<job>[*]…`: the values of every job of a matrix or fan-out

    def __str__(self) -> str:
        return f"{self.namespace}.{self.name}{'[*]' * self.group}" + (f".{self.field}{self.path}" if self.field else "")


class NeedsValues:
    """What `needs.<job>.…` refers to at run time: the needed jobs' outputs and runs."""

    def value(self, ref: Ref) -> Any:  # pragma: no cover - the running stage provides the real one
        raise NotImplementedError


@dataclass
class Context:
    """What expressions may refer to. A namespace set to None is unknown yet (``validate``): left as written."""

    matrix: Mapping[str, Any] | None = field(default_factory=dict)  # None: a fan-out, known at run time
    vars: Mapping[str, Any] | None = None
    env: Mapping[str, str] | None = None
    needs: NeedsValues | None = None  # None until run time: `needs` expressions stay as written
    redactor: Redactor = field(default_factory=Redactor)  # the invocation's: a secret is masked once read

    @property
    def secrets(self) -> Mapping[str, str] | None:
        """`secrets.NAME` reads the environment, as GitHub Actions' `secrets` context reads its store."""
        return self.env

    def resolve(self, ref: Ref) -> tuple[bool, Any]:
        if ref.namespace == "needs":
            return (False, None) if self.needs is None else (True, self.needs.value(ref))
        return self.lookup(ref.namespace, ref.name)

    def lookup(self, namespace: str, name: str) -> tuple[bool, Any]:
        """(known, value); known is False where the namespace is not known yet. A secret's value is masked
        everywhere the token is, from the moment it is read."""
        if namespace in ("env", "secrets") and name in SECRET_NAMES:
            raise ExpressionError(f"${{{{ {namespace}.{name} }}}} is refused: the token is never put into a request "
                                  "body")
        table = getattr(self, namespace)
        if table is None:
            return False, None
        if name not in table:
            raise ExpressionError(f"${{{{ {namespace}.{name} }}}} is not defined{_how_to_define(namespace, name)}")
        if namespace == "secrets":
            self.redactor.register(str(table[name]))
        return True, table[name]


def _how_to_define(namespace: str, name: str) -> str:
    return {"vars": f" (pass --var {name}=VALUE)", "env": f" (set the environment variable {name})",
            "secrets": f" (set the environment variable {name}, from your CI's secret store)",
            "matrix": " (no such key in this job's matrix)"}[namespace]


def parse(expression: str, shown: str) -> Ref:
    """The inside of one ``${{ … }}``; ``shown`` is the whole expression, for messages."""
    if expression.strip().startswith("needs."):
        needs = _NEEDS.match(expression)
        if not needs:
            raise ExpressionError(f"malformed expression {shown!r}: write ${{{{ needs.JOB.output }}}} (then .key, "
                                  f'["key"], [N] or [*]), or needs.JOB.runId, .datasetId, .keyValueStoreId; '
                                  "needs.JOB[*]… for every job of a matrix or fan-out")
        return Ref("needs", needs.group(1), needs.group(3), needs.group(4), bool(needs.group(2)))
    inside = _INSIDE.match(expression)
    if not inside:
        raise ExpressionError(f"malformed expression {shown!r}: write ${{{{ namespace.NAME }}}}")
    namespace, name = inside.groups()
    if namespace not in NAMESPACES:
        raise ExpressionError(f"unknown namespace '{namespace}' in {shown!r}: use matrix, vars, env, secrets or "
                              "needs")
    return Ref(namespace, name)


def steps(path: str) -> list[str | int]:
    """A path's steps: a key, an index, or "*" (every item of a list)."""
    found: list[str | int] = []
    for key, bracket in _STEP.findall(path):
        if key:
            found.append(key)
        elif bracket == "*":
            found.append("*")
        elif bracket.startswith('"'):
            found.append(str(json.loads(bracket)))
        else:
            found.append(int(bracket))
    return found


def references(text: str) -> list[Ref]:
    """The expressions in ``text``; raises ExpressionError if one is malformed."""
    found = [parse(match.group(1), match.group(0)) for match in _ANY.finditer(text)]
    rest = _ANY.sub("", text)
    if _OPEN in rest:
        raise ExpressionError("expression opened with ${{ is never closed with }}")
    return found


def substitute(text: str, context: Context) -> Any:
    """``text`` with its expressions replaced. A text that is one whole expression keeps the value's type."""
    if _OPEN not in text:
        return text
    refs = references(text)
    whole = _ANY.fullmatch(text.strip())
    if whole and len(refs) == 1:
        known, value = context.resolve(refs[0])
        return value if known else text

    def replace(match: re.Match[str]) -> str:
        known, value = context.resolve(parse(match.group(1), match.group(0)))
        if not known:
            return match.group(0)
        if isinstance(value, (dict, list)):
            raise ExpressionError(f"{match.group(0)} is a {type(value).__name__} and cannot stand inside a longer string")
        return _as_text(value)

    return _ANY.sub(replace, text)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def substitute_all(value: Any, context: Context, path: tuple[str | int, ...] = (),
                   errors: list[tuple[tuple[str | int, ...], str]] | None = None) -> Any:
    """A copy of ``value`` with every string substituted; problems are collected as (path, message)."""
    if isinstance(value, str):
        try:
            return substitute(value, context)
        except ExpressionError as exc:
            if errors is None:
                raise
            errors.append((path, str(exc)))
            return value
    if isinstance(value, dict):
        return {k: substitute_all(v, context, path + (k,), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_all(v, context, path + (i,), errors) for i, v in enumerate(value)]
    return value


def has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return _OPEN in value
    if isinstance(value, dict):
        return any(has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(has_expression(v) for v in value)
    return False


_CREDENTIAL_KEY = re.compile(r"pass(word|wd)?|token|api[-_]?key|secret|authori[sz]ation|credential", re.I)


def credentials_from_env(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Where an `${{ env.NAME }}` sits where credentials usually go (a key named like a password or token, or
    inside a webhook's headersTemplate): (path, NAME) for each, so that `validate` can suggest `secrets.`."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    stack: list[tuple[tuple[str | int, ...], Any, bool]] = [(path, value, False)]
    while stack:
        where, current, sensitive = stack.pop()
        if isinstance(current, dict):
            for key, item in current.items():
                stack.append((where + (key,), item, sensitive or key == "headersTemplate"
                              or bool(_CREDENTIAL_KEY.search(str(key)))))
        elif isinstance(current, list):
            stack.extend((where + (index,), item, sensitive) for index, item in enumerate(current))
        elif isinstance(current, str) and sensitive and _OPEN in current:
            for match in _ANY.finditer(current):
                inside = _INSIDE.match(match.group(1))
                if inside and inside.group(1) == "env":
                    found.append((where, inside.group(2)))
    return found


def needed_jobs(value: Any) -> set[str]:
    """The jobs that `needs.<job>.…` expressions in ``value`` refer to (malformed ones are left to substitute)."""
    return {ref.name for _, ref in needs_references(value)}


def needs_references(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Ref]]:
    """Each well-formed `needs.<job>…` expression in ``value``, with the path of the string it stands in."""
    found: list[tuple[tuple[str | int, ...], Ref]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, value)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, str) and _OPEN in current:
            for match in _ANY.finditer(current):
                if _NEEDS.match(match.group(1)):
                    found.append((where, parse(match.group(1), match.group(0))))
        elif isinstance(current, dict):
            stack.extend((where + (key,), item) for key, item in current.items())
        elif isinstance(current, list):
            stack.extend((where + (index,), item) for index, item in enumerate(current))
    return sorted(found, key=lambda item: (str(item[0]), str(item[1])))


def is_whole_expression(value: Any) -> bool:
    """A string that is one `${{ … }}` and nothing else: it takes the type of what it refers to."""
    return isinstance(value, str) and _ANY.fullmatch(value.strip()) is not None and value.count(_OPEN) == 1
