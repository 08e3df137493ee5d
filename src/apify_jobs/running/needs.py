"""Values that flow along `needs`: `${{ needs.<job>.output… }}`, `.runId`, `.datasetId`, `.keyValueStoreId`,
substituted into a job's input, options and dataset once the jobs it needs have succeeded — before its
request is built, so that what is sent (and what `--resume` compares) is the request after substitution.

A path that selects nothing, an output that is not JSON or JSONL, or one over 64 MiB fails the dependent job
with a message naming the job, the path and what was there; it is not sent.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from apify_jobs.failures import JobFailure
from apify_jobs.jobfile import expressions
from apify_jobs.jobfile.expressions import Context, ExpressionError, NeedsValues, Ref
from apify_jobs.model import INPUT_LIMIT_BYTES, Job
from apify_jobs.outputs.destination import Destination
from apify_jobs.record import JobResult, RunFacts, WrittenOutput
from apify_jobs.redaction import cut

OUTPUT_LIMIT = 64 << 20  # an output used in an expression is parsed whole: up to this size


FactsOf = Callable[[JobResult], RunFacts | None]  # a needed job's run (IDs, storages), found how it can be


class NeedsValueFailed(JobFailure):
    """A value from a needed job could not be had: the job is not sent."""

    fix = ("Fix the expression's path, or the needed job's output, as the message names them; or select and run "
           "the needed job first. Nothing was sent.")
    error_type = "needs-value-failed"
    started_run = False  # decided before the request is built: nothing was sent


def uses_needs(job: Job) -> bool:
    return bool(expressions.needed_jobs([job.input, job.options, job.dataset]))


def deferred(job: Job) -> Job:
    """The job as `plan` shows it before its needs ran: each value from a needed job as `<from …>`."""
    return _substituted(job, _Shown())


def resolved(job: Job, finished: dict[str, JobResult], facts: FactsOf, destination: Destination) -> Job:
    """The job with every `needs` value substituted; raises NeedsValueFailed. ``facts(result)`` gives a
    needed job's run facts (looked up by identity when the batch has not seen them yet)."""
    job = _substituted(job, _Runtime(job, finished, facts, destination))
    _still_fits(job)
    size = len(json.dumps(job.input, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > INPUT_LIMIT_BYTES:
        raise NeedsValueFailed(f"with the values from its needs, the input is {size:,} bytes, over the API's 9 MiB "
                               "request limit; not sent")
    return job


FAN_OUT_LIMIT = 1_000  # jobs one fan-out may expand to, as for a static matrix


def expand(job: Job, finished: dict[str, JobResult], facts: FactsOf, taken: set[str],
           destination: Destination) -> list[Job]:
    """A fan-out job's jobs, once its needs succeeded: one per combination of the matrix's lists (a needed
    output's list among them), named as matrix jobs are. Raises NeedsValueFailed (nothing is sent) when a
    value is not a list, the count is over the limit, or a name is taken."""
    import itertools
    import math

    from apify_jobs.jobfile.resolve import matrix_name

    assert job.fan_out is not None
    context = Context(needs=_Runtime(job, finished, facts, destination))
    lists: dict[str, list[Any]] = {}
    for key, values in job.fan_out.items():
        try:
            value = expressions.substitute(values, context) if isinstance(values, str) else values
        except ExpressionError as error:
            raise NeedsValueFailed(f"{error}; not sent") from None
        if not isinstance(value, list):
            raise NeedsValueFailed(f"{job.name}: matrix.{key} must be a list to fan out over, but {values} is "
                                   f"{_kind(value)}; not sent")
        lists[key] = value
    count = math.prod(len(values) for values in lists.values())
    if count > FAN_OUT_LIMIT:
        raise NeedsValueFailed(f"{job.name}: the fan-out expands to {count:,} jobs, over the limit of "
                               f"{FAN_OUT_LIMIT:,}; nothing sent")
    jobs = []
    for values in itertools.product(*lists.values()):
        combo = dict(zip(lists, values, strict=True))
        name = matrix_name(job.name, values)
        if name in taken:
            raise NeedsValueFailed(f"{job.name}: the fan-out names two jobs '{name}' (values {combo}); nothing sent")
        taken.add(name)
        matrix = Context(matrix=combo)
        try:
            jobs.append(replace(job, name=name, fan_out=None, input=expressions.substitute_all(job.input, matrix),
                                options=expressions.substitute_all(job.options, matrix),
                                dataset=expressions.substitute_all(job.dataset, matrix),
                                output=expressions.substitute_all(job.output, matrix), needs=list(job.needs)))
        except ExpressionError as error:
            raise NeedsValueFailed(f"{name}: {error}; not sent") from None
    return jobs


def _still_fits(job: Job) -> None:
    """With the values of its needs in, the job's options and dataset must still fit the schema (a whole
    `${{ … }}` takes the type of its value: a limit must be a whole number, whatever the needed output held)."""
    from apify_jobs.jobfile.schema import value_problems

    problems = value_problems(job.options, "options", "options") + \
        (value_problems(job.dataset, "dataset", "dataset") if job.dataset is not None else [])
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise NeedsValueFailed(f"{job.name}: with the values of its needs, {problems[0]}{more}; not sent")


def _substituted(job: Job, values: NeedsValues) -> Job:
    context = Context(matrix=None, needs=values)  # a fan-out's `matrix` values are filled in when it expands
    try:
        return replace(job, input=expressions.substitute_all(job.input, context),
                       options=expressions.substitute_all(job.options, context),
                       dataset=expressions.substitute_all(job.dataset, context) if job.dataset is not None else None)
    except ExpressionError as error:
        raise NeedsValueFailed(f"{error}; not sent") from None


def describe_fan_out(job: Job) -> str:
    """How `plan` shows a fan-out before its needs ran."""
    assert job.fan_out is not None
    over = ", ".join(f"{key} from {expressions.substitute(v, Context(needs=_Shown()))}" if isinstance(v, str)
                     else f"{key} in {json.dumps(v)}" for key, v in job.fan_out.items())
    return f"expands when {', '.join(job.needs)} succeed{'s' * (len(job.needs) == 1)}: one job per {over}"


class _Shown(NeedsValues):
    def value(self, ref: Ref) -> Any:
        return f"<from {ref.name}{'[*]' * ref.group}.{ref.field}{ref.path}>"


class _Runtime(NeedsValues):
    def __init__(self, job: Job, finished: dict[str, JobResult], facts: FactsOf, destination: Destination):
        self._job = job
        self._destination = destination
        self._finished = finished
        self._facts = facts
        self._outputs: dict[str, Any] = {}

    def value(self, ref: Ref) -> Any:
        if ref.group:  # every job of a matrix or fan-out, in expansion order
            members = self._job.groups.get(ref.name)
            if members is None:
                raise NeedsValueFailed(f"{self._job.name}: ${{{{ {ref} }}}}: {ref.name} is not a matrix or fan-out "
                                       "this job needs; not sent")
            return [self._one(member, ref) for member in members]
        return self._one(ref.name, ref)

    def _one(self, name: str, ref: Ref) -> Any:
        result = self._finished.get(name)
        if result is None or not result.succeeded:
            raise NeedsValueFailed(f"{self._job.name}: needs.{name} has no value: {name} did not succeed")
        if ref.field == "output":
            return _select(self._output(name, result), expressions.steps(ref.path), str(ref), name)
        run: RunFacts | None = self._facts(result)
        value = None if run is None else {"runId": run.run_id, "datasetId": run.dataset_id,
                                          "keyValueStoreId": run.store_id}[ref.field]
        if not value:
            raise NeedsValueFailed(f"{self._job.name}: ${{{{ {ref} }}}}: the run of {name} was not found, "
                                   "so its IDs are unknown; not sent")
        return value

    def _output(self, name: str, result: JobResult) -> Any:
        if name not in self._outputs:
            output = result.effective.output
            key = None if output is None else output.key if output.key is not None else \
                self._destination.key_of(output.path)
            if output is None or key is None:
                raise NeedsValueFailed(f"{self._job.name}: {name} wrote no output to take values from")
            self._outputs[name] = _parse(self._destination, key, output, self._job.name, name)
        return self._outputs[name]


def _parse(destination: Destination, key: str, output: WrittenOutput, job: str, name: str) -> Any:
    """The output, read through its destination (wherever outputs are kept) and parsed whole."""
    path, content_type = output.path, output.content_type
    try:
        data = destination.read(key, OUTPUT_LIMIT)
    except ValueError as size:
        raise NeedsValueFailed(f"{job}: the output of {name} is {size}, over the {OUTPUT_LIMIT >> 20} MiB an "
                               "expression may read; not sent") from None
    except OSError as error:
        raise NeedsValueFailed(f"{job}: the output of {name} cannot be read ({error.strerror}); not sent") from None
    jsonl = path.endswith(".jsonl") or "jsonl" in (content_type or "") or "ndjson" in (content_type or "")
    data = data.removeprefix(codecs.BOM_UTF8)  # the items endpoint's `bom: true` mark is not JSON
    try:
        if jsonl:
            return [json.loads(line) for line in data.splitlines() if line.strip()]
        return json.loads(data)
    except ValueError:
        kind = "JSONL" if jsonl else "JSON"
        raise NeedsValueFailed(f"{job}: the output of {name} ({path}) is not {kind}, so no value can be taken from "
                               "it; not sent") from None


def _select(value: Any, path: list[str | int], shown: str, name: str) -> Any:
    for index, step in enumerate(path):
        if step == "*":
            if not isinstance(value, list):
                raise NeedsValueFailed(f"${{{{ {shown} }}}}: [*] needs a list, but {_where(path[:index])} of {name}'s "
                                       f"output is {_kind(value)}; not sent")
            return [_select(item, path[index + 1:], shown, name) for item in value]
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                raise NeedsValueFailed(f"${{{{ {shown} }}}} selects nothing: {_where(path[:index])} of {name}'s output "
                                       f"is {_kind(value)}; not sent")
        elif not isinstance(value, dict) or step not in value:
            raise NeedsValueFailed(f"${{{{ {shown} }}}} selects nothing: {_where(path[:index])} of {name}'s output is "
                                   f"{_kind(value)}; not sent")
        value = value[step]
    return value


def _where(path: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "the top"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(list(value)[:8])
        return f"an object with keys {keys}" if keys else "an empty object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"{type(value).__name__} {cut(json.dumps(value, ensure_ascii=False), 40)}"
