"""A YAML 1.2 core-schema loader that keeps what is written and where it was written.

PyYAML resolves scalars by YAML 1.1 (``NO`` -> False, ``1:30`` -> 90, dates -> datetime) and its
composers recurse (libyaml's segfaults on deep nesting), so we take only its event stream (libyaml's
parser is a state machine with its own stack) and build plain Python values here, iteratively, with a
position for every node and a bound on what aliases may expand to.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from apify_jobs.errors import Problem

try:  # libyaml is several times faster; the pure-Python parser gives the same events
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised only where libyaml is missing
    from yaml.loader import BaseLoader as _Parser  # type: ignore[assignment]

Path = tuple[str | int, ...]

MAX_DEPTH = 200
# A job file of 5,000 jobs has ~150k nodes; aliases may multiply what is written, but not beyond this.
MAX_EXPANDED_NODES = 2_000_000

_CORE = "tag:yaml.org,2002:"
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF_NAN = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$")


class YamlError(Exception):
    """The text is not a loadable job document; ``problem`` says where and why."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(str(problem))


# Where nodes were written is kept only this deep when loading ("jobs", 7): the position of every node of a
# 20,000-job file is ~50 MB, and only a problem needs one. Deeper positions are found by parsing the text
# again, once, when a problem asks for one.
SHALLOW_DEPTH = 2


@dataclass
class Document:
    """A loaded YAML document: plain JSON-like ``data`` and the 1-based position of its nodes."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    sha256: str = ""  # of the bytes as read, for the report
    text: str | None = None  # kept while positions are shallow, to find deeper ones
    depth: int | None = None  # positions are kept for paths this long; None: for every node

    def _positions_for(self, path: Path) -> None:
        if self.depth is not None and len(path) > self.depth and self.text is not None:
            full = _Builder(self.file).build(self.text)
            self.positions, self.key_positions, self.depth, self.text = full.positions, full.key_positions, None, None

    def key_position(self, path: Path) -> tuple[int, int]:
        """Where the key that ends ``path`` was written (for 'unknown key' problems)."""
        self._positions_for(path)
        return self.key_positions.get(tuple(path)) or self.position(path)

    def position(self, path: Path) -> tuple[int, int]:
        """Where ``path`` was written, or the nearest enclosing node that was (a value from an alias)."""
        self._positions_for(path)
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found:
                return found
        return (1, 1)

    def problem(self, path: Path, message: str, warning: bool = False, at_key: bool = False) -> Problem:
        line, column = self.key_position(path) if at_key else self.position(path)
        return Problem(self.file, line, column, message, warning)


def load_file(file: str) -> Document:
    """Read and load one job (or input) file; raises YamlError with a position on any problem."""
    try:
        with open(file, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise YamlError(Problem(file, 1, 1, f"cannot read: {exc.strerror or exc}")) from None
    return load_bytes(raw, file)


def load_bytes(raw: bytes, file: str) -> Document:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError(Problem(file, line, column, "not UTF-8 text: save the file as UTF-8")) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    document = _Builder(file, SHALLOW_DEPTH).build(text)
    document.text = text
    document.sha256 = hashlib.sha256(raw).hexdigest()
    return document


def parse_scalar(text: str) -> Any:
    """Resolve a plain scalar by the YAML 1.2 core schema (also used for ``--var K=V``)."""
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT10.match(text):
        return int(text)
    if _INT8.match(text):
        return int(text[2:], 8)
    if _INT16.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text) and any(c.isdigit() for c in text):
        return float(text)
    if _INF_NAN.match(text):
        return float(text.replace(".", "", 1))
    return text


_TAGGED: dict[str, Callable[[str], Any]] = {
    _CORE + "str": str,
    _CORE + "null": lambda text: None,
    _CORE + "bool": lambda text: _BOOL[text],
    _CORE + "int": lambda text: _tagged_number(text, int),
    _CORE + "float": lambda text: _tagged_number(text, float),
}


def _tagged_number(text: str, kind: type) -> Any:
    value = parse_scalar(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(text)
    return kind(value)


class _Open:
    """A mapping or sequence being built, with what the stack needs to finish it."""

    __slots__ = ("value", "path", "anchor", "size", "key", "key_mark", "mark")

    def __init__(self, value: Any, path: Path, anchor: str | None, mark: Any):
        self.value = value
        self.path = path
        self.anchor = anchor
        self.size = 1
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.mark = mark


_NO_KEY = object()
_BUILDING = object()


class _Builder:
    def __init__(self, file: str, depth: int | None = None):
        self.file = file
        self.depth = depth  # record positions of paths up to this long; None: all
        self.positions: dict[Path, tuple[int, int]] = {}
        self.key_positions: dict[Path, tuple[int, int]] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}  # name -> (value, expanded node count)
        self.total = 0

    def fail(self, mark: Any, message: str) -> YamlError:
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return YamlError(Problem(self.file, line, column, message))

    def build(self, text: str) -> Document:
        parser = None
        try:
            parser = _Parser(text)
            return Document(self.file, self._consume(parser), self.positions, self.key_positions, depth=self.depth)
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            raise YamlError(Problem(self.file, line, column, f"character #x{exc.character:04x} is not allowed in YAML")) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise self.fail(mark, f"invalid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise self.fail(None, f"invalid YAML: {exc}") from None
        finally:
            dispose = getattr(parser, "dispose", None) if parser is not None else None
            if dispose:
                dispose()

    def _consume(self, parser: Any) -> Any:
        stack: list[_Open] = []
        result: Any = None
        documents = 0
        while parser.check_event():
            event = parser.get_event()
            start: Any = event.start_mark  # typed as optional; a parser's events always have one
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self.fail(start, "a job file holds one YAML document; remove the second '---'")
                continue
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise self.fail(start, f"nested deeper than {MAX_DEPTH} levels")
                is_map = isinstance(event, yaml.MappingStartEvent)
                expected = "map" if is_map else "seq"
                if event.tag not in (None, "!", _CORE + expected):
                    raise self.fail(start, f"tag {event.tag} is not allowed; only YAML 1.2 core tags are")
                path = self._child_path(stack, start)
                opened = _Open({} if is_map else [], path, event.anchor, start)
                if event.anchor:
                    self.anchors[event.anchor] = (_BUILDING, 0)
                if self.depth is None or len(path) <= self.depth:
                    self.positions[path] = (start.line + 1, start.column + 1)
                stack.append(opened)
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                done = stack.pop()
                if done.anchor:
                    self.anchors[done.anchor] = (done.value, done.size)
                value, size, mark = done.value, done.size, done.mark
            elif isinstance(event, yaml.ScalarEvent):
                value, size, mark = self._scalar(event), 1, start
                if event.anchor:
                    self.anchors[event.anchor] = (value, 1)
                if self._records(stack) and (not stack or stack[-1].key is not _NO_KEY
                                             or not isinstance(stack[-1].value, dict)):
                    path = self._child_path(stack, mark)
                    self.positions[path] = (mark.line + 1, mark.column + 1)
            elif isinstance(event, yaml.AliasEvent):
                value, size = self.anchors.get(str(event.anchor), (None, -1))
                if size < 0:
                    raise self.fail(start, f"alias *{event.anchor} has no anchor &{event.anchor} before it")
                if value is _BUILDING:
                    raise self.fail(start, f"alias *{event.anchor} refers to a node that contains it")
                mark = start
                if self._records(stack) and (not stack or stack[-1].key is not _NO_KEY
                                             or not isinstance(stack[-1].value, dict)):
                    self.positions[self._child_path(stack, mark)] = (mark.line + 1, mark.column + 1)
            else:
                continue
            self.total += size
            if self.total > MAX_EXPANDED_NODES:
                raise self.fail(mark, f"aliases expand to more than {MAX_EXPANDED_NODES:,} nodes; refusing to load")
            if not stack:
                result = value
                continue
            parent = stack[-1]
            parent.size += size
            if isinstance(parent.value, list):
                parent.value.append(value)
            elif parent.key is _NO_KEY:
                parent.key, parent.key_mark = self._key(value, mark, parent), mark
                if self._records(stack):
                    path, at = parent.path + (parent.key,), (mark.line + 1, mark.column + 1)
                    self.key_positions[path] = self.positions[path] = at
            else:
                parent.value[parent.key] = value
                parent.key = _NO_KEY
        return result

    def _records(self, stack: list[_Open]) -> bool:
        """Whether a child of the innermost open node is deep enough to have its position kept."""
        return self.depth is None or len(stack) <= self.depth

    def _child_path(self, stack: list[_Open], mark: Any) -> Path:
        if not stack:
            return ()
        parent = stack[-1]
        if isinstance(parent.value, list):
            return parent.path + (len(parent.value),)
        if parent.key is _NO_KEY:
            raise self.fail(mark, "a mapping key must be a plain string, not a mapping or a list")
        return parent.path + (parent.key,)

    def _key(self, key: Any, mark: Any, parent: _Open) -> str:
        if not isinstance(key, str):
            shown = "null" if key is None else str(key).lower() if isinstance(key, bool) else key
            raise self.fail(mark, f"key {shown} is not a string; quote it if you mean '{shown}'")
        if key == "<<":
            raise self.fail(mark, "merge keys (<<) are not part of YAML 1.2; use `defaults:` or repeat the keys")
        if key in parent.value:
            raise self.fail(mark, f"duplicate key '{key}'")
        return key

    def _scalar(self, event: Any) -> Any:
        tag, text = event.tag, event.value
        plain = event.implicit[0] if tag is None or tag == "!" else False
        if tag in (None, "!"):
            if not plain or tag == "!":
                return text
            value = parse_scalar(text)
        else:
            convert = _TAGGED.get(tag)
            if convert is None:
                raise self.fail(event.start_mark, f"tag {tag} is not allowed; only YAML 1.2 core tags are")
            try:
                value = convert(text)
            except (KeyError, ValueError):
                raise self.fail(event.start_mark, f"'{text}' is not a valid {tag.rsplit(':', 1)[-1]}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(event.start_mark, f"{text} cannot be sent as JSON; quote it for a string")
        return value
