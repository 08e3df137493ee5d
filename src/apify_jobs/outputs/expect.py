"""`expect:` checked on the output while it streams in, between the download and the commit: an output that
fails is never renamed over the last good one.

Items are counted and checked incrementally, so memory stays flat whatever the size: JSON arrays through
`ijson`'s C backend (one item at a time), JSONL line by line, CSV by counting the line ends outside quotes.
Formats that cannot be checked (xlsx, xml, html, rss) are refused by `validate` for `minItems`,
`maxItems` and `schema`; an answer of such a type at run time fails the check with a clear message.

Each `expect:` key is one check (`OutputCheck`) in the registry `CHECKS`. A check says how deep it must see
(`Depth`): the reader parses only as deep as the deepest check of the job, and stops reading once no check
needs more, so a new check cannot be missed by the early stop.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from apify_jobs.model import Expectations, Job
from apify_jobs.redaction import cut

Reader = Generator[None, bytes, None]  # sent the output's bytes as they arrive, b"" at the end
SHOWN = 3  # violations named in the message; the rest are counted
WHOLE_DOCUMENT_LIMIT = 64 << 20  # a JSON document (not a list) checked against a schema is held whole: up to this
UNCHECKABLE = ("xlsx", "xml", "html", "rss")
_JSON_TYPES = ("application/json",)
_JSONL_TYPES = ("application/jsonl", "application/x-ndjson", "application/x-jsonlines")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def kind_of(job: Job, content_type: str | None) -> str:
    """How the output's items are read: json, jsonl, csv, or opaque (no items to count)."""
    if job.dataset is not None:
        fmt = str(job.dataset.get("format", "json"))
        return fmt if fmt in ("json", "jsonl", "csv") else "opaque"
    media = media_type(content_type)
    if media in _JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in _JSONL_TYPES:
        return "jsonl"
    if media in ("text/csv", "text/tab-separated-values"):
        return "csv"
    return "opaque"


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.violations) < SHOWN:
            self.violations.append(message)

    @property
    def message(self) -> str:
        more = f" (and {self.total - len(self.violations)} more)" if self.total > len(self.violations) else ""
        return f"{self.total} expectation{'s' * (self.total != 1)} failed: " + "; ".join(self.violations) + more


class Depth(enum.IntEnum):
    """How much of the output a check must see; the reader goes as deep as the deepest check."""

    BYTES = 0  # the bytes and the content type only
    FIRST_ITEM = 1  # whether there is an item
    COUNT = 2  # how many items (each item found, none built)
    VALUES = 3  # every item's value


@dataclass
class Seen:
    """What the reader saw of the output, when it ended."""

    kind: str  # json, jsonl, csv or opaque (see kind_of)
    content_type: str | None
    bytes: int
    items: int
    dataset: bool  # the items endpoint: "empty" means no items
    was_list: bool  # an OUTPUT record that is a JSON array: "empty" means no items too

    @property
    def media(self) -> str:
        return media_type(self.content_type)


class OutputCheck(Protocol):
    """One `expect:` key. ``item``/``document`` are called only for a check of depth VALUES; ``finish`` is
    called once at the end, and only for checks of depth BYTES when the output could not be read."""

    depth: Depth

    def item(self, index: int, value: Any, verdict: Verdict) -> None: ...

    def document(self, value: Any, verdict: Verdict) -> None: ...

    def finish(self, seen: Seen, verdict: Verdict) -> None: ...


class _Check:
    depth = Depth.BYTES

    def item(self, index: int, value: Any, verdict: Verdict) -> None:
        """Only checks of depth VALUES see items."""

    def document(self, value: Any, verdict: Verdict) -> None:
        """Only checks that judge a whole JSON document see it."""

    def finish(self, seen: Seen, verdict: Verdict) -> None:
        raise NotImplementedError


class ContentType(_Check):
    def __init__(self, wanted: str):
        self.wanted = wanted

    def finish(self, seen: Seen, verdict: Verdict) -> None:
        if seen.media != self.wanted.lower():
            verdict.add(f"the content type is {seen.media or 'not given'}, not {self.wanted}")


class NonEmpty(_Check):
    depth = Depth.FIRST_ITEM

    def finish(self, seen: Seen, verdict: Verdict) -> None:
        if seen.bytes == 0:
            verdict.add("the output is empty (no OUTPUT record, or no items)")
        elif seen.items == 0 and (seen.dataset or seen.was_list):
            verdict.add("the output has no items")


class ItemCount(_Check):
    """`minItems` and `maxItems` together: one message for an output whose items cannot be counted."""

    depth = Depth.COUNT

    def __init__(self, low: int | None, high: int | None):
        self.low, self.high = low, high
        self._not_a_list: str | None = None

    def document(self, value: Any, verdict: Verdict) -> None:
        self._not_a_list = type(value).__name__

    def finish(self, seen: Seen, verdict: Verdict) -> None:
        if self._not_a_list is not None:
            verdict.add(f"the output is a JSON {self._not_a_list}, not a list of items")
        elif seen.kind == "opaque":
            verdict.add(f"items cannot be counted in {seen.media or 'an untyped answer'}")
        elif self.low is not None and seen.items < self.low:
            verdict.add(f"{seen.items} item{'s' * (seen.items != 1)}, fewer than minItems {self.low}")
        elif self.high is not None and seen.items > self.high:
            verdict.add(f"{seen.items} items, more than maxItems {self.high}")


class Schema(_Check):
    depth = Depth.VALUES

    def __init__(self, schema: Any):
        self._validator = _validator(schema)

    def item(self, index: int, value: Any, verdict: Verdict) -> None:
        for error in self._validator.iter_errors(value):
            verdict.add(f"item {index} at {_pointer(error)}: {cut(error.message, 200)}")

    def document(self, value: Any, verdict: Verdict) -> None:
        for error in self._validator.iter_errors(value):
            verdict.add(f"the document at {_pointer(error)}: {cut(error.message, 200)}")

    def finish(self, seen: Seen, verdict: Verdict) -> None:
        if seen.kind not in ("json", "jsonl"):
            verdict.add(f"a schema cannot be checked against {seen.media or 'an untyped answer'}")


def _pointer(error: Any) -> str:
    return "".join(f"/{part}" for part in error.absolute_path) or "/"


@dataclass(frozen=True)
class Registered:
    keys: tuple[str, ...]  # the `expect:` keys it checks
    make: Callable[[Expectations], OutputCheck | None]  # None: the job does not ask for it


# The registry, in the order violations are reported. A new `expect:` key: its check here, its key in
# jobs.schema.json, and its field in model.Expectations (resolved in jobfile/resolve.py).
CHECKS: tuple[Registered, ...] = (
    Registered(("contentType",), lambda e: ContentType(e.content_type) if e.content_type else None),
    Registered(("nonEmpty",), lambda e: NonEmpty() if e.non_empty else None),
    Registered(("minItems", "maxItems"),
               lambda e: ItemCount(e.min_items, e.max_items) if e.min_items is not None or e.max_items is not None
               else None),
    Registered(("schema", "schemaFile"), lambda e: Schema(e.schema) if e.schema is not None else None),
)


class Check:
    """Feed it the output's bytes as they arrive; `finish()` says what failed, if anything."""

    def __init__(self, job: Job, content_type: str | None):
        self.content_type = content_type
        self.kind = kind_of(job, content_type)
        self.bytes = 0
        self.items = 0
        self.verdict = Verdict()
        self._checks = [check for entry in CHECKS if (check := entry.make(job.expect)) is not None]
        self._valued = [check for check in self._checks if check.depth is Depth.VALUES]
        self.depth = max((check.depth for check in self._checks), default=Depth.BYTES)
        self._broken: str | None = None
        self.dataset = job.dataset is not None
        self._was_list = False
        skip_header = job.dataset is not None and bool(job.dataset.get("skipHeaderRow"))
        self._feeder = self._start(skip_header)

    def feed(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        if self._feeder is not None and self._broken is None:
            try:
                self._feeder.send(chunk)
            except StopIteration:  # the reader is done: broken, or it has seen all it needs
                self._feeder = None
                return
            if self.items and self.depth <= Depth.FIRST_ITEM:
                self._feeder = None  # no check needs more than one item: the rest of the output is not parsed

    def finish(self) -> Verdict | None:
        if self._feeder is not None and self._broken is None:
            try:
                self._feeder.send(b"")  # the end
            except StopIteration:
                pass
        seen = Seen(self.kind, self.content_type, self.bytes, self.items, self.dataset, self._was_list)
        for check in self._checks:
            if check.depth is Depth.BYTES:
                check.finish(seen, self.verdict)
        if self._broken is not None:  # what could not be read cannot be judged further
            self.verdict.add(self._broken)
        else:
            for check in self._checks:
                if check.depth is not Depth.BYTES:
                    check.finish(seen, self.verdict)
        return self.verdict if self.verdict.total else None

    # --- the readers, one generator each: send bytes, b"" at the end ---------------------------------
    def _start(self, skip_header: bool) -> Reader | None:
        if self.depth is Depth.BYTES or self.kind == "opaque":
            return None
        reader = self._json() if self.kind == "json" else self._jsonl() if self.kind == "jsonl" else \
            self._csv(skip_header)
        next(reader)
        return reader

    def _item(self, item: Any) -> None:
        index = self.items
        self.items += 1
        for check in self._valued:
            check.item(index, item, self.verdict)

    def _json(self) -> Reader:
        first = b""
        while not first.strip():
            chunk = yield
            if not chunk:
                return
            first += chunk
        is_list = first.lstrip()[:1] == b"["
        if self.depth <= Depth.FIRST_ITEM:  # whether there is an item: no parser needed
            yield from self._json_any_item(first, is_list)
            return
        if not is_list:  # one document, not a list of items
            yield from self._json_document(first)
            return
        import ijson  # type: ignore[import-untyped]  # only when every item is counted or checked (~40 ms)

        self._was_list = True
        found = ijson.sendable_list()
        parser = ijson.items_coro(found, "item", use_float=True)
        fed = 0
        chunk = first
        while True:
            try:
                parser.send(chunk) if chunk else parser.close()
            except ijson.JSONError as error:
                self._broken = f"the output is not valid JSON near byte {fed + len(chunk)}: {str(error)[:120]}"
                return
            fed += len(chunk)
            for item in found:
                self._item(item)
            del found[:]
            if not chunk:
                return
            chunk = yield

    def _json_any_item(self, first: bytes, is_list: bool) -> Reader:
        """Whether there is an item at all: a document is one; a list has one unless `]` follows its `[`."""
        if not is_list:
            self.items = 1
            return
        self._was_list = True
        rest = first.lstrip()[1:].lstrip()
        while not rest:
            chunk = yield
            if not chunk:
                return
            rest = chunk.lstrip()
        self.items = 0 if rest[:1] == b"]" else 1

    def _json_document(self, first: bytes) -> Reader:
        import json

        parts, size = [first], len(first)
        while chunk := (yield):
            size += len(chunk)
            if size <= WHOLE_DOCUMENT_LIMIT:
                parts.append(chunk)
        if size > WHOLE_DOCUMENT_LIMIT:
            if self._valued:
                self._broken = f"the output is one JSON document of {size} bytes: too large to check against a schema"
            self.items = 1
            return
        try:
            document = json.loads(b"".join(parts))
        except ValueError as invalid:
            self._broken = f"the output is not valid JSON near byte {getattr(invalid, 'pos', '?')}: {invalid}"[:200]
            return
        self.items = 1
        for check in self._checks:
            check.document(document, self.verdict)

    def _jsonl(self) -> Reader:
        import json

        rest, offset = b"", 0
        while True:
            chunk = yield
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop() if chunk else b""
            for line in lines:
                if line.strip():
                    if self._valued:
                        try:
                            item = json.loads(line)
                        except ValueError:
                            self._broken = f"line {self.items + 1} (byte {offset}) is not valid JSON"
                            return
                        self._item(item)
                    else:
                        self.items += 1
                offset += len(line) + 1
            if not chunk:
                return

    def _csv(self, skip_header: bool) -> Reader:
        """Rows are line ends outside quotes (a quoted field may hold line ends); the header is not an item."""
        quoted, rows, tail_has_data = False, 0, False
        while True:
            chunk = yield
            if not chunk:
                break
            parts = chunk.split(b'"')
            for index, part in enumerate(parts):
                if index:
                    quoted = not quoted
                if not quoted:
                    rows += part.count(b"\n")
            last_line = chunk.rsplit(b"\n", 1)[-1]
            tail_has_data = bool(last_line.strip()) if b"\n" in chunk else (tail_has_data or bool(chunk.strip()))
        rows += tail_has_data  # a last row without a line end
        self.items = max(rows - (0 if skip_header else 1), 0)


def _validator(schema: Any) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot be used (not valid JSON Schema, or a `$ref` that would leave it), or None."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return f"not a valid JSON Schema: {error.message[:200]}"
    for ref in _refs(schema):
        if not ref.startswith("#"):
            return f"$ref {ref!r} leaves the schema; only references inside it (#/...) are allowed, nothing is fetched"
    return None


def _refs(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, item in current.items():
                if key in ("$ref", "$dynamicRef") and isinstance(item, str):
                    yield item
                else:
                    stack.append(item)
        elif isinstance(current, list):
            stack.extend(current)
