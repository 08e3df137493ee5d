"""What the emulator is told to do: a behaviour per task (or per request of a task), and platform quirks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_ECHO = object()  # the default OUTPUT record: {"taskId", "input", "options"}
RESPONSES = {"ok", "run-failed", "run-timeout", "rate-limit", "capacity", "server-error", "status"}
DROPS = {None, "before-response", "mid-body", "after-start"}


@dataclass(frozen=True)
class Behaviour:
    """How the emulator answers one run-sync request."""

    latency: float = 0.0
    respond: str = "ok"
    status: int | None = None
    error_type: str | None = None
    retry_after: float | None = None
    html: bool = False
    drop: str | None = None
    body_bytes: int | None = None
    content_type: str | None = None
    run_status: str = "SUCCEEDED"
    message: str | None = None
    trickle: float | None = None
    fault_rate: float = 0.0
    sync_limit: float | None = None  # run-sync's 300 s, scaled down: a run longer than this gets a 408 and goes on
    items: tuple[Any, ...] | None = None  # the run's dataset items (default: 20 generated products)
    output: Any = _ECHO  # the run's OUTPUT record as JSON (default: the echo); `null` in the script: none
    generated_items: int | None = None  # a dataset of this many generated product items, streamed, never held
    gzip: bool = False  # generated datasets gzip-compressed to clients that accept it, as the platform does
    long_line: int | None = None  # one generated item this many bytes longer (`longLine`), in the middle
    # a pay-per-event run: event → [count, price in USD]; it shows no usageTotalUsd, only its events and prices
    charged_events: dict[str, tuple[int, float]] | None = None
    body: str | None = None  # the answer's text as it is (output and items alike): shapes no JSON value dumps to

    KEYS = ("latency", "respond", "status", "errorType", "retryAfter", "html", "drop", "bodyBytes", "contentType",
            "runStatus", "message", "trickle", "faultRate", "syncLimit", "items", "output", "generatedItems",
            "gzip", "body", "longLine", "chargedEvents")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Behaviour:
        unknown = set(raw) - set(cls.KEYS)
        if unknown:
            raise ValueError(f"unknown behaviour keys {sorted(unknown)}; known: {sorted(cls.KEYS)}")
        # `{status: 401}` alone means: answer with that status (`respond: status`)
        respond = raw.get("respond", "status" if "status" in raw else "ok")
        behaviour = cls(latency=float(raw.get("latency", 0)), respond=respond,
                        status=raw.get("status"), error_type=raw.get("errorType"), retry_after=raw.get("retryAfter"),
                        html=bool(raw.get("html", False)), drop=raw.get("drop"), body_bytes=raw.get("bodyBytes"),
                        content_type=raw.get("contentType"), run_status=raw.get("runStatus", "SUCCEEDED"),
                        message=raw.get("message"), trickle=raw.get("trickle"),
                        fault_rate=float(raw.get("faultRate", 0)), sync_limit=raw.get("syncLimit"),
                        items=tuple(raw["items"]) if "items" in raw else None, output=raw.get("output", _ECHO),
                        generated_items=raw.get("generatedItems"), gzip=bool(raw.get("gzip", False)),
                        body=raw.get("body"), long_line=raw.get("longLine"),
                        charged_events={k: (int(v[0]), float(v[1])) for k, v in raw["chargedEvents"].items()}
                        if raw.get("chargedEvents") else None)
        if behaviour.respond not in RESPONSES or behaviour.drop not in DROPS:
            raise ValueError(f"respond must be one of {sorted(RESPONSES)}, drop one of {sorted(d for d in DROPS if d)}")
        return behaviour


LOOKUP_KINDS = ("list-runs", "get-run", "get-record", "dataset-items", "task-input", "abort-run")


@dataclass(frozen=True)
class Platform:
    """How the platform itself behaves, where the runner depends on it."""

    clock_skew: float = 0.0  # seconds the platform's clock is ahead of this machine's (negative: behind)
    record_user_agent: bool = True  # False: runs show `meta.userAgent: null`
    listing_ignores_offset: bool = False  # every listing page is the first
    listing_delay: float = 0.0  # seconds before a new run shows in the listing (eventual consistency)
    failures: dict[str, tuple[int | str, ...]] = field(default_factory=dict)  # look-up kind → its first answers
    shorten_user_agent: bool = False  # a proxy or the platform keeps only the user agent's first word
    saved_input: bool = True  # False: a task's saved input cannot be read (404)

    KEYS = ("clockSkew", "recordUserAgent", "listingIgnoresOffset", "listingDelay", "failures", "shortenUserAgent",
            "savedInput")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Platform:
        unknown = set(raw) - set(cls.KEYS)
        if unknown:
            raise ValueError(f"unknown platform keys {sorted(unknown)}; known: {sorted(cls.KEYS)}")
        failures = {str(kind): tuple(answers) for kind, answers in (raw.get("failures") or {}).items()}
        wrong = set(failures) - set(LOOKUP_KINDS)
        if wrong:
            raise ValueError(f"platform.failures: unknown look-ups {sorted(wrong)}; known: {list(LOOKUP_KINDS)}")
        return cls(float(raw.get("clockSkew", 0)), bool(raw.get("recordUserAgent", True)),
                   bool(raw.get("listingIgnoresOffset", False)), float(raw.get("listingDelay", 0)), failures,
                   bool(raw.get("shortenUserAgent", False)), bool(raw.get("savedInput", True)))


@dataclass(frozen=True)
class Account:
    """The account's limits, as the platform enforces them: a run above them is refused (402, no run)."""

    max_concurrent_runs: int | None = None  # None: unlimited
    memory_mbytes: int | None = None  # for all runs at once
    monthly_usage_usd: float = 0.0
    max_monthly_usage_usd: float | None = None  # reached: 402 for want of credit
    cost_per_run_usd: float | None = None  # what each run costs (default: a small invented price by duration)

    KEYS = ("maxConcurrentRuns", "memoryMbytes", "monthlyUsageUsd", "maxMonthlyUsageUsd", "costPerRunUsd")
    UNLIMITED = 100_000  # what the limits endpoint says of a limit the script leaves out

    @property
    def limited(self) -> bool:
        return (self.max_concurrent_runs is not None or self.memory_mbytes is not None
                or self.max_monthly_usage_usd is not None)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Account:
        unknown = set(raw) - set(cls.KEYS)
        if unknown:
            raise ValueError(f"unknown account keys {sorted(unknown)}; known: {sorted(cls.KEYS)}")
        return cls(raw.get("maxConcurrentRuns"), raw.get("memoryMbytes"), float(raw.get("monthlyUsageUsd", 0)),
                   raw.get("maxMonthlyUsageUsd"), raw.get("costPerRunUsd"))


@dataclass
class Script:
    """Behaviours by task: one behaviour for every request, or a list (request n takes item n, the last repeats).
    ``inputs``: each task's saved input, which a run's INPUT starts from (the request's keys replace its own)."""

    tasks: dict[str, list[Behaviour]] = field(default_factory=dict)
    default: Behaviour = field(default_factory=Behaviour)
    seed: int = 0  # of the random faults (`faultRate`), so that a failing run can be replayed
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    platform: Platform = field(default_factory=Platform)
    account: Account = field(default_factory=Account)

    KEYS = ("tasks", "default", "seed", "inputs", "platform", "account")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Script:
        raw = raw or {}
        unknown = set(raw) - set(cls.KEYS)
        if unknown:
            raise ValueError(f"unknown script keys {sorted(unknown)}; known: {sorted(cls.KEYS)}")
        tasks = {}
        for task, spec in (raw.get("tasks") or {}).items():
            steps = spec if isinstance(spec, list) else [spec]
            tasks[_task_id(task)] = [Behaviour.from_dict(step or {}) for step in steps]
        inputs = {_task_id(task): dict(saved) for task, saved in (raw.get("inputs") or {}).items()}
        return cls(tasks, Behaviour.from_dict(raw.get("default") or {}), int(raw.get("seed", 0)), inputs,
                   Platform.from_dict(raw.get("platform") or {}), Account.from_dict(raw.get("account") or {}))

    def behaviour(self, task: str, number: int) -> Behaviour:
        steps = self.tasks.get(task)
        if not steps:
            return self.default
        return steps[min(number, len(steps)) - 1]


def _task_id(task: str) -> str:
    return task.replace("/", "~", 1)


def load_script(path: str | None) -> Script:
    """The script at ``path`` (none: echo everything); a bad one is a usage error, one line."""
    from apify_jobs.errors import UsageError
    from apify_jobs.jobfile.yaml_loader import YamlError, load_file

    if not path:
        return Script()
    try:
        return Script.from_dict(load_file(path).data)
    except YamlError as exc:
        raise UsageError(f"emulator script: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"emulator script {path}: {exc}") from None
