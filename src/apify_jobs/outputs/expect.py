"""`expect:` checked on the output while it streams in, between the download and the commit: an output that
fails is never renamed over the last good one.

Items are found by the readers of `outputs/readers.py` as the bytes arrive: linear in the answer's size and
bounded in memory by `expect`'s limits (`maxDepth`, `maxItemBytes`), whatever its shape.
Formats that cannot be checked (xlsx, xml, html, rss) are refused by `validate` for `minItems`,
`maxItems` and `schema`; an answer of such a type at run time fails the check with a clear message.

Each `expect:` key is one check (`OutputCheck`) in the registry `CHECKS`. A check says how deep it must see
(`Depth`): the reader parses only as deep as the deepest check of the job, and stops reading once no check
needs more, so a new check cannot be missed by the early stop.
"""

from __future__ import annotations

import codecs
import enum
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from apify_jobs.model import Expectations, Job
from apify_jobs.outputs.readers import CsvReader, JsonlReader, JsonReader, Limits, Overstep, Reader, one_line

log = logging.getLogger(__name__)
T = TypeVar("T")
SHOWN = 3  # violations named in the message; the rest are counted
# `expect:` keys that set the readers' limits rather than check anything
LIMIT_KEYS = ("maxDepth", "maxItemBytes")
UNCHECKABLE = ("xlsx", "xml", "html", "rss")
_JSON_TYPES = ("application/json",)
# The items endpoints start CSV with a byte-order mark unless `bom: false`, any format with `bom: true`: it is
# not content (a CSV of the mark alone has no records), and no reader sees it.
_BOM = codecs.BOM_UTF8
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
    document_type: str | None = None  # a JSON answer that is not an array: what it is (object, string, ...)

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
        elif seen.items == 0 and seen.kind != "opaque" and (seen.dataset or seen.was_list):
            # xml, html, rss, xlsx: items are not counted, so only an empty answer is known to be empty
            verdict.add("the output has no items")


class ItemCount(_Check):
    """`minItems` and `maxItems` together: one message for an output whose items cannot be counted."""

    depth = Depth.COUNT

    def __init__(self, low: int | None, high: int | None):
        self.low, self.high = low, high

    def finish(self, seen: Seen, verdict: Verdict) -> None:
        if seen.document_type is not None:
            verdict.add(f"the output is a JSON {seen.document_type}, not a list of items")
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
        self._judge(value, f"item {index}", verdict)

    def document(self, value: Any, verdict: Verdict) -> None:
        self._judge(value, "the document", verdict)

    def _judge(self, value: Any, what: str, verdict: Verdict) -> None:
        try:
            for error in self._validator.iter_errors(value):
                verdict.add(f"{what} at {_pointer(error)}: {one_line(error.message)}")
        except RecursionError:  # jsonschema descends as deep as the value and the schema go together
            verdict.add(f"{what} nests too deep to be checked against the schema (Python's recursion limit)")

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
    """Feed it the output's bytes as they arrive; `finish()` says what failed, if anything. Whatever the answer
    does to a reader or a check (a limit passed, a bug), the verdict says so: it never raises."""

    def __init__(self, job: Job, content_type: str | None):
        self.content_type = content_type
        self.kind = kind_of(job, content_type)
        self.bytes = 0
        self.verdict = Verdict()
        self._checks = [check for entry in CHECKS if (check := entry.make(job.expect)) is not None]
        self._valued = [check for check in self._checks if check.depth is Depth.VALUES]
        self.depth = max((check.depth for check in self._checks), default=Depth.BYTES)
        self._broken: str | None = None
        self.dataset = job.dataset is not None
        limits = Limits(job.expect.max_depth, job.expect.max_item_bytes)
        header = not (job.dataset is not None and bool(job.dataset.get("skipHeaderRow")))
        self._values_seen = 0
        self._reader = self._guarded(self._make_reader, limits, header)
        self._reading = self._reader is not None
        self._head: bytes | None = b""  # the answer's first bytes, until they are known not to be a mark
        self._marked = 0

    @property
    def items(self) -> int:
        return self._reader.items if self._reader is not None else 0

    @property
    def counted(self) -> int | None:
        """How many items the output holds, when the checks counted every one (None: they did not)."""
        whole = self.depth >= Depth.COUNT and self._reader is not None and self._broken is None
        return self.items if whole else None

    def feed(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        if self._head is not None:
            chunk = self._head + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._head = chunk
                return
            self._head = None
            if chunk.startswith(_BOM):
                chunk, self._marked = chunk[len(_BOM):], len(_BOM)
        if self._reading and self._reader is not None and chunk:
            self._reading = bool(self._guarded(self._reader.feed, chunk))

    def finish(self) -> Verdict | None:
        if self._head and self._reading and self._reader is not None:  # shorter than a mark: content after all
            self._reading = bool(self._guarded(self._reader.feed, self._head))
        if self._reading and self._reader is not None:
            self._guarded(self._reader.end)
        reader = self._reader
        seen = Seen(self.kind, self.content_type, self.bytes - self._marked, self.items, self.dataset,
                    reader is not None and reader.was_list, reader.document_type if reader else None)
        unread = self._broken  # what could not be read cannot be judged further than its bytes
        for check in self._checks:
            if check.depth is Depth.BYTES or unread is None:
                self._guarded(check.finish, seen, self.verdict)
        if self._broken is not None:
            self.verdict.add(self._broken)
        return self.verdict if self.verdict.total else None

    def _guarded(self, step: Callable[..., T], *args: Any) -> T | None:
        """``step``, with what goes wrong in it made the verdict's: a limit the answer passed, or a check's own
        failure (the output is then kept as `.rejected`, never lost; the run stays in the report)."""
        try:
            return step(*args)
        except Overstep as overstep:
            self._broken = str(overstep)
        except Exception as bug:  # MemoryError and RecursionError included: the answer must not cost the output
            log.warning("expect: the check failed on this answer", exc_info=True)
            self._broken = f"the check itself failed ({type(bug).__name__}: {one_line(str(bug))}): please report it"
        self._reading = False
        return None

    def _make_reader(self, limits: Limits, header: bool) -> Reader | None:
        if self.depth is Depth.BYTES or self.kind == "opaque":
            return None
        first_only = self.depth is Depth.FIRST_ITEM
        on_item = self._item if self._valued else None
        if self.kind == "json":
            on_document = self._document if self._valued else None
            return JsonReader(limits, first_only, on_item, on_document)
        if self.kind == "jsonl":
            return JsonlReader(limits, first_only, on_item)
        delimiter = "\t" if media_type(self.content_type) == "text/tab-separated-values" else ","
        return CsvReader(limits, first_only, header, delimiter)

    def _item(self, item: Any) -> None:
        index, self._values_seen = self._values_seen, self._values_seen + 1
        for check in self._valued:
            check.item(index, item, self.verdict)

    def _document(self, document: Any) -> None:
        for check in self._checks:
            check.document(document, self.verdict)


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
