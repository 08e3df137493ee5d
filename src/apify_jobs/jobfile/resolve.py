"""From paths on the command line to resolved jobs: discovery, schema, resolution, semantic checks.

Every problem in every file is collected before anything is raised, so one `validate` shows them all.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from apify_jobs.errors import JobFileError, Problem
from apify_jobs.jobfile import expressions, schema
from apify_jobs.jobfile.expressions import Context
from apify_jobs.jobfile.yaml_loader import Document, Path, YamlError, load_file
from apify_jobs.model import (
    FOLLOW_MAX_WAIT,
    INPUT_LIMIT_BYTES,
    SYNC_WAIT_SECONDS,
    Expectations,
    HttpTimeouts,
    Job,
    JobFile,
    RetryPolicy,
)
from apify_jobs.outputs.expect import UNCHECKABLE, schema_problem
from apify_jobs.outputs.paths import collisions, planned_output, reserved_clash, stays_inside
from apify_jobs.redaction import Redactor

JOB_FILE_SUFFIXES = (".yaml", ".yml")


def discover(paths: Iterable[str], exclude: Iterable[str] = ()) -> tuple[list[str], list[Problem]]:
    """Job files named on the command line: files as given, folders searched recursively (hidden folders such
    as .git and .github, and what ``exclude`` globs match, left out), in sorted order."""
    import fnmatch

    globs = list(exclude)

    def excluded(path: str) -> bool:
        return any(fnmatch.fnmatch(path, g) or fnmatch.fnmatch(os.path.basename(path), g) for g in globs)

    files: list[str] = []
    problems: list[Problem] = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not excluded(os.path.join(root, d)))
                found += [os.path.join(root, name) for name in names
                          if name.endswith(JOB_FILE_SUFFIXES) and not name.startswith(".")
                          and not excluded(os.path.join(root, name))]
            found.sort()
            files.extend(found)
            if not found:
                problems.append(Problem(path, 1, 1, "folder holds no *.yaml or *.yml job files"))
        elif os.path.isfile(path):
            files.append(path)
        else:
            problems.append(Problem(path, 1, 1, "no such file or folder"))
    return list(dict.fromkeys(os.path.normpath(f) for f in files)), problems


MATRIX_JOBS_PER_JOB = 1_000
MATRIX_JOBS_PER_RUN = 10_000


@dataclass
class MatrixBudget:
    """How many jobs matrices may expand to: per job, and over everything loaded together. A hostile file
    whose matrix multiplies to 10^8 jobs is refused from the product of its lists' lengths, before any
    expansion (so memory stays bounded whatever the file)."""

    per_job: int = MATRIX_JOBS_PER_JOB
    per_run: int = MATRIX_JOBS_PER_RUN
    used: int = 0

    @classmethod
    def raised_to(cls, max_jobs: int | None) -> MatrixBudget:
        return cls() if max_jobs is None else cls(max(max_jobs, 1), max(max_jobs, 1))


def load(
    paths: Iterable[str],
    variables: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    max_jobs: int | None = None,
    exclude: Iterable[str] = (),
    redactor: Redactor | None = None,
    require_pinned_build: bool = False,
) -> tuple[list[JobFile], list[Problem]]:
    """Load, check and resolve job files. ``variables``/``environ`` None: `validate` (expressions stay).
    ``max_jobs`` raises the matrix limits (--max-jobs). ``redactor``: the invocation's, given each secret read.
    ``require_pinned_build``: a job without a build number in `options.build` is an error, not only a warning.

    Raises JobFileError with every problem if any is an error; returns the warnings otherwise.
    """
    budget = MatrixBudget.raised_to(max_jobs)
    paths = list(paths)
    files, problems = discover(paths, exclude)
    explicit = {os.path.normpath(p) for p in paths if os.path.isfile(p)}
    documents: list[Document] = []
    for file in files:
        try:
            documents.append(load_file(file))
        except YamlError as exc:
            problems.append(exc.problem)
    jobs_documents = []
    for document in _without_input_files(documents, explicit):
        if document.file not in explicit and not _looks_like_jobs(document.data):
            # found in a folder, and clearly something else (a config, a fixture): said, not refused
            problems.append(Problem(document.file, 1, 1, "not a job file (no `version` and `jobs` keys); skipped; "
                                                         "name it on the command line to check it as one",
                                    warning=True))
        elif document.data is None:
            problems.append(Problem(document.file, 1, 1, "the file is empty; a job file starts with `version: 1` "
                                                         "and `jobs:`"))
        else:
            jobs_documents.append(document)
    documents = jobs_documents
    context = Context(vars=variables, env=environ, redactor=redactor or Redactor())
    job_files: list[JobFile] = []
    for doc in documents:
        found = schema.check_document(doc)
        problems.extend(problem for _, problem in found)
        broken = _broken_jobs(found)
        if broken is not None:  # resolve what the schema let through, so every problem shows at once
            job_files.append(_resolve_file(doc, context, problems, broken, budget, require_pinned_build))
    problems.extend(_duplicate_names(job_files))
    problems.extend(_duplicate_outputs(job_files))
    problems = list(dict.fromkeys(problems))  # a problem in `defaults` is found once per job
    if any(not p.warning for p in problems):
        raise JobFileError(problems)
    return job_files, problems


def _looks_like_jobs(data: Any) -> bool:
    return isinstance(data, dict) and ("version" in data or "jobs" in data)


def _broken_jobs(found: list[tuple[Path, Problem]]) -> set[int] | None:
    """Indexes of jobs with schema problems; None when a problem outside any job stops the whole file."""
    broken: set[int] = set()
    for path, _ in found:
        if len(path) < 2 or path[0] != "jobs":
            return None
        broken.add(int(path[1]))
    return broken


def _without_input_files(documents: list[Document], explicit: set[str]) -> list[Document]:
    """A YAML file found in a folder but named by an `inputFile` is an input, not a job file."""
    inputs: set[str] = set()
    for doc in documents:
        if isinstance(doc.data, dict) and isinstance(doc.data.get("jobs"), list):
            folder = os.path.dirname(doc.file)
            for job in doc.data["jobs"]:
                ref = job.get("inputFile") if isinstance(job, dict) else None
                if isinstance(ref, str) and "${{" not in ref:
                    inputs.add(os.path.normpath(os.path.join(folder, ref)))
    return [d for d in documents if d.file in explicit or d.file not in inputs]


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override


def _resolve_file(doc: Document, context: Context, problems: list[Problem], broken: set[int],
                  budget: MatrixBudget, pinned: bool = False) -> JobFile:
    data = doc.data
    spend = (data.get("budget") or {}).get("maxTotalUsd")
    job_file = JobFile(doc.file, doc.sha256, data.get("concurrency", 1), data.get("failFast", False),
                       budget_usd=float(spend) if isinstance(spend, (int, float)) else None)
    defaults = data.get("defaults", {})
    expanded: list[tuple[Job, Path, list[str]]] = []
    by_base: dict[str, list[str]] = {}  # a job of the file → the jobs it became (a matrix: one per combination)
    fan_outs: set[str] = set()  # jobs that become a group only at run time
    for index, raw in enumerate(data["jobs"]):
        where: Path = ("jobs", index)
        if index in broken:
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                by_base[raw["name"]] = []
                problems.extend(_expression_syntax(doc, raw, where))  # said with the schema's problems
            continue
        names: list[str] = []  # the jobs that resolved
        expansions: list[str] = []  # every job of the matrix, to name in a problem they share
        before = len(problems)
        for name, matrix in _matrix(doc, raw, where, problems, budget):
            expansions.append(name)
            job = _resolve_job(doc, defaults, raw, where, name, matrix, context, problems, pinned)
            if job is not None:
                expanded.append((job, where, raw.get("needs", [])))
                names.append(name)
            if matrix is None:
                fan_outs.add(raw["name"])
        if raw.get("matrix"):
            problems[before:] = _once_per_matrix(problems[before:], expansions)
        by_base[raw["name"]] = names
    expansion_of = {name: base for base, names in by_base.items() for name in names if name != base}
    for job, where, needs in expanded:
        own_name = data["jobs"][where[1]].get("name")
        for position, need in enumerate(needs):
            if need == own_name or (need in expansion_of and expansion_of[need] == own_name):
                if job.name in by_base[own_name][:1]:  # once for a matrix, not once per expansion
                    problems.append(doc.problem(where + ("needs", position), f"job '{need}' needs itself"))
            elif need in by_base:
                job.needs.extend(by_base[need])
                if need in fan_outs or by_base[need] != [need]:
                    job.groups[need] = list(by_base[need])
            elif need in expansion_of:
                job.needs.append(need)
            else:
                hint = f"; jobs of this file: {', '.join(by_base)}" if by_base else ""
                problems.append(doc.problem(where + ("needs", position), f"needs unknown job '{need}'{hint}"))
        job_file.jobs.append(job)
    matrices = {raw["name"] for raw in data["jobs"] if isinstance(raw, dict) and raw.get("matrix")
                and isinstance(raw.get("name"), str)}
    for index, raw in enumerate(data["jobs"]):
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            problems.extend(_needs_references(doc, raw, ("jobs", index), by_base, expansion_of, fan_outs, matrices))
    problems.extend(_cycles(doc, expanded))
    return job_file


def _once_per_matrix(found: list[Problem], names: list[str]) -> list[Problem]:
    """A problem each expansion of a matrix has, said once, naming the expansions it affects."""
    affected: dict[tuple[str, int, int, str, bool], list[str]] = {}
    order: list[Problem | tuple[str, int, int, str, bool]] = []
    for problem in found:
        name = next((n for n in names if problem.message.startswith(f"{n}: ")), None)
        if name is None:
            order.append(problem)
            continue
        key = (problem.file, problem.line, problem.column, problem.message[len(name) + 2:], problem.warning)
        if key not in affected:
            affected[key] = []
            order.append(key)
        affected[key].append(name)
    merged = []
    for item in order:
        if isinstance(item, Problem):
            merged.append(item)
            continue
        jobs = affected[item]
        who = (f"all {len(jobs)} jobs of the matrix" if len(jobs) == len(names) > 1
               else ", ".join(jobs[:3]) + (f" and {len(jobs) - 3} more" if len(jobs) > 3 else ""))
        merged.append(Problem(item[0], item[1], item[2], f"{who}: {item[3]}", item[4]))
    return list(dict.fromkeys(merged))


def _expression_syntax(doc: Document, raw: dict[str, Any], where: Path) -> list[Problem]:
    """Malformed expressions of a job the schema refused, at their own line: said in the same pass."""
    problems = []
    stack: list[tuple[Path, Any]] = [(where, raw)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            try:
                expressions.references(value)
            except expressions.ExpressionError as error:
                problems.append(doc.problem(path, str(error)))
        elif isinstance(value, dict):
            stack.extend((path + (key,), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((path + (index,), item) for index, item in enumerate(value))
    return problems


def _needs_references(doc: Document, raw: dict[str, Any], where: Path, by_base: dict[str, list[str]],
                      expansion_of: dict[str, str], fan_outs: set[str], matrices: set[str]) -> list[Problem]:
    """`needs.<job>…` only in input, options, dataset or matrix, only of a job this one needs, and over a
    matrix or fan-out only with `[*]` (every job's value, a list) or by one job's name; each problem at the
    expression's own line."""
    problems = []
    declared: list[Any] = raw["needs"] if isinstance(raw.get("needs"), list) else []
    for path, ref in expressions.needs_references(raw, where):
        key, name, shown = path[len(where)], ref.name, f"${{{{ {ref} }}}}"
        group = name in matrices  # a static matrix or a fan-out, whether or not its jobs resolved
        if key not in ("input", "options", "dataset", "matrix"):
            message = f"{shown} may only stand in input, options or dataset"
        elif name not in declared and expansion_of.get(name) not in declared:
            message = f"{shown}: '{name}' is not in this job's needs; add it there"
        elif group and not ref.group:
            first = (by_base.get(name) or [f"{name}-..."])[0]
            message = (f"{shown}: '{name}' is a {'fan-out' if name in fan_outs else 'matrix'} (a group of jobs): "
                       f"write needs.{name}[*].{ref.field}{ref.path} for every job's value, or name one job "
                       f"(needs.{first}.{ref.field})")
        elif ref.group and not group:
            message = f"{shown}: '{name}' is one job, not a matrix or fan-out; write needs.{name}.{ref.field}{ref.path}"
        else:
            continue
        problems.append(doc.problem(path, message))
    return problems


def _matrix(doc: Document, raw: dict[str, Any], where: Path, problems: list[Problem],
            budget: MatrixBudget) -> list[tuple[str, dict[str, Any] | None]]:
    matrix = raw.get("matrix")
    if not matrix:
        return [(raw["name"], {})]
    if any(isinstance(values, str) for values in matrix.values()):
        return [(raw["name"], None)]  # a fan-out: one pending job until the needed output is there
    keys = list(matrix)
    count = math.prod(len(values) if isinstance(values, list) else 1 for values in matrix.values())
    limit, what = ((budget.per_job, "per job") if count > budget.per_job
                   else (budget.per_run - budget.used, f"left of {budget.per_run:,} per run"))
    if count > limit:
        problems.append(doc.problem(where + ("matrix",), f"matrix expands to {count:,} jobs, over the limit of "
                                    f"{max(limit, 0):,} {what}; --max-jobs N raises it"))
        return []
    budget.used += count
    combos: list[tuple[str, dict[str, Any] | None]] = []
    seen: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*(matrix[k] for k in keys)):
        name = matrix_name(raw["name"], values)
        combo = dict(zip(keys, values, strict=False))
        if name in seen:
            problems.append(doc.problem(where + ("matrix",),
                                        f"matrix values {seen[name]} and {combo} both name the job '{name}'"))
            continue
        seen[name] = combo
        combos.append((name, combo))
    return combos


def matrix_name(base: str, values: Iterable[Any]) -> str:
    """A matrix job's name: the base, then each value slugified, in key order."""
    return "-".join([base, *(_slug(v) for v in values)])


def _slug(value: Any) -> str:
    """A matrix value in a job name: letters transliterated (`Plzeň` → `plzen`, `São Paulo` → `sao-paulo`)."""
    import unicodedata

    text = "true" if value is True else "false" if value is False else str(value)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9.]+", "-", ascii_text.lower()).strip("-.") or "x"


def _resolve_job(
    doc: Document,
    defaults: dict[str, Any],
    raw: dict[str, Any],
    where: Path,
    name: str,
    matrix: dict[str, Any] | None,
    context: Context,
    problems: list[Problem],
    pinned: bool = False,
) -> Job | None:
    """One job (one expansion of a matrix): substituted, merged with the defaults, and checked by the rules
    below, each of which returns its findings."""
    before = len(problems)
    job_context = Context(matrix=matrix, vars=context.vars, env=context.env, redactor=context.redactor)
    prefix = f"{name}: " if matrix else ""

    def fail(path: Path, message: str, warning: bool = False) -> None:
        problems.append(doc.problem(path, prefix + message, warning))

    problems.extend(_credential_warnings(doc, raw, defaults, where))
    errors: list[tuple[Path, str]] = []
    own = expressions.substitute_all({k: v for k, v in raw.items() if k != "matrix"}, job_context, where, errors)
    shared = expressions.substitute_all(defaults, job_context, ("defaults",), errors)
    for path, message in errors:
        if "matrix." in message:
            fail(path, message)
        else:  # the same for every expansion of a matrix: said once (problems are deduplicated)
            problems.append(doc.problem(path, message))
    if errors:
        return None
    resolved = deep_merge(shared, own)
    if context.vars is not None and expressions.has_expression([raw, defaults]):
        # Substituted values must still fit the schema (a var that fills `memory` must be a valid memory).
        problems.extend(schema.check_job(doc, resolved, where))
        if _errors_since(problems, before):  # warnings never drop a job
            return None
    file_input: dict[str, Any] = {}
    input_file = own.get("inputFile")
    if isinstance(input_file, str) and "${{" not in input_file:
        file_input = _load_input_file(os.path.dirname(doc.file) or ".", input_file,
                                      lambda m: fail(where + ("inputFile",), m))
    draft = _Draft(where, own, resolved, deep_merge(shared.get("input", {}), {**file_input, **own.get("input", {})}),
                   pinned)
    for rule in RULES:
        for path, message, warning in rule(draft):
            fail(path, message, warning)
    expect = _expectations(doc, resolved, own, where, fail)
    if _errors_since(problems, before):
        return None
    follow = resolved.get("follow", {})
    return Job(
        name=name,
        file=doc.file,
        task=_normalise_task(resolved.get("task") or resolved.get("actor") or ""),
        actor="actor" in resolved,
        input=draft.input,
        options=draft.options,
        dataset=resolved.get("dataset"),
        output=own.get("output"),
        needs=[],
        retry=RetryPolicy.from_dict(resolved.get("retry", {})),
        http=HttpTimeouts.from_dict(resolved.get("http", {})),
        follow=None if follow is False else float(follow.get("maxWait", FOLLOW_MAX_WAIT)),
        position=doc.position(where),
        expect=expect,
        fan_out=dict(raw["matrix"]) if matrix is None else None,
        max_age=_duration(resolved.get("refresh"), "maxAge"),
        capacity_wait=_duration(resolved.get("capacity"), "maxWait") or 600.0,
    )


def _duration(block: Any, key: str) -> float | None:
    from apify_jobs.durations import DurationError, parse

    try:
        return parse(block[key]) if isinstance(block, dict) and key in block else None
    except DurationError:  # an expression `validate` leaves as written; the schema judges it once substituted
        return None


def _errors_since(problems: list[Problem], before: int) -> bool:
    return any(not p.warning for p in problems[before:])


# --- the rules of one job: each returns its findings (where, message, whether only a warning) -------------------

Finding = tuple[Path, str, bool]


@dataclass(frozen=True)
class _Draft:
    """A job substituted and merged with the defaults, before it becomes a Job."""

    where: Path
    own: dict[str, Any]  # the job's own keys (where a finding points when the job set it)
    resolved: dict[str, Any]  # with the defaults
    input: dict[str, Any]  # with the defaults' input and the inputFile
    pinned: bool = False  # --require-pinned-build: a build that is not a number is an error

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.resolved.get("options", {}))

    def origin(self, *keys: str) -> Path:
        """The job's path when the job itself set ``keys``, else the defaults' path."""
        value: Any = self.own
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return self.where if value is not None else ("defaults",)


def _credential_warnings(doc: Document, raw: dict[str, Any], defaults: dict[str, Any], where: Path) -> list[Problem]:
    return [doc.problem(path, f"${{{{ env.{variable} }}}} where credentials go is shown by `plan` and kept in the "
                              f"report; write ${{{{ secrets.{variable} }}}} to have it masked", warning=True)
            for path, variable in [*expressions.credentials_from_env(raw, where),
                                   *expressions.credentials_from_env(defaults, ("defaults",))]]


def _output_stays_inside(job: _Draft) -> Iterator[Finding]:
    output = job.own.get("output")
    if isinstance(output, str) and "${{" not in output and not stays_inside(output):
        yield job.where + ("output",), f"output '{output}' leaves the output folder; give a path inside it", False


def _record_key_without_dataset(job: _Draft) -> Iterator[Finding]:
    # Both in the job itself is the schema's finding already; here only the case where defaults bring one in.
    both_own = "dataset" in job.own and "outputRecordKey" in job.own.get("options", {})
    if "outputRecordKey" in job.options and "dataset" in job.resolved and not both_own:
        yield job.where, "outputRecordKey (from defaults) cannot be used together with dataset", False


def _timeout_within_run_sync(job: _Draft) -> Iterator[Finding]:
    timeout = job.options.get("timeout")
    if job.resolved.get("follow", {}) is False and isinstance(timeout, (int, float)) and timeout > SYNC_WAIT_SECONDS:
        yield (job.origin("options", "timeout") + ("options", "timeout"),
               f"timeout {timeout} is over {SYNC_WAIT_SECONDS} s: run-sync answers 408 after {SYNC_WAIT_SECONDS} s "
               "while the run goes on (and is billed), and `follow: false` fails the job then", True)


def _task_or_actor(job: _Draft) -> Iterator[Finding]:
    if ("task" in job.resolved) == ("actor" in job.resolved):
        yield job.where, ("give exactly one of task (a saved task) and actor (an Actor, run with this input)"
                          if "task" in job.resolved
                          else "missing required key 'task' (or 'actor', to run an Actor directly)"), False


def _retry_keeps_connection(job: _Draft) -> Iterator[Finding]:
    retry_on = (job.resolved.get("retry") or {}).get("on")
    if isinstance(retry_on, list) and "connection" not in retry_on:
        yield (job.origin("retry", "on") + ("retry", "on"), "retry.on leaves out connection: dropped connections "
               "will not be retried (nor their runs looked for); add it unless that is what you mean", True)
    if isinstance(retry_on, list) and "capacity" in retry_on:
        # still accepted (files written for earlier versions stay valid), but it no longer changes anything
        yield (job.origin("retry", "on") + ("retry", "on"), "retry.on: capacity changes nothing: a start the "
               "account refuses always waits for room, for at most capacity.maxWait (default 10m); remove it", True)


_BUILD_NUMBER = re.compile(r"^\d+\.\d+\.\d+$")


def _build_pinned(job: _Draft) -> Iterator[Finding]:
    """A reproducible run is the same input on the same build: a tag (`latest`, `beta`) runs whatever build
    carries it today. Without `options.build` the task's own setting decides (unknown here): said only when
    pinned builds are required."""
    build = job.options.get("build")
    path = job.origin("options", "build") + ("options", "build")
    if isinstance(build, str) and "${{" not in build and not _BUILD_NUMBER.match(build):
        yield (path, f"options.build '{build}' is a tag: each run takes whatever build carries it then; give a build "
               "number (e.g. 0.1.234) for reproducible runs", not job.pinned)
    elif build is None and job.pinned:
        yield (job.where, "no options.build: the run takes the build its task or Actor defaults to; give a build "
               "number (e.g. 0.1.234), as --require-pinned-build asks", False)


def _caps_in_options(job: _Draft) -> Iterator[Finding]:
    """`maxItems` and `maxTotalChargeUsd` cap a run's spending as run options; in the input they cap nothing."""
    for key in ("maxItems", "maxTotalChargeUsd"):
        if key in job.input and key not in job.options:
            yield (job.where + ("input", key) if key in (job.own.get("input") or {}) else job.where + ("input",),
                   f"input.{key} is the Actor's own input: it caps no spending (the platform caps a run by "
                   f"options.{key}); put it there too if a cap is what you mean", True)


def _input_fits(job: _Draft) -> Iterator[Finding]:
    size = _json_size(job.input)
    if size is None:
        yield job.where + ("input",), "input cannot be serialised as JSON", False
    elif size > INPUT_LIMIT_BYTES:
        yield job.where + ("input",), f"input is {size:,} bytes as JSON, over the API's 9 MiB request limit", False


# In the order their findings are reported. A new rule of one job: a function here, and its place in RULES.
RULES: tuple[Callable[[_Draft], Iterator[Finding]], ...] = (
    _output_stays_inside, _record_key_without_dataset, _timeout_within_run_sync, _task_or_actor,
    _retry_keeps_connection, _input_fits, _build_pinned, _caps_in_options,
)


def _expectations(doc: Document, resolved: dict[str, Any], own: dict[str, Any], where: Path,
                  fail: Any) -> Expectations:
    """`expect`, with its schema loaded and compiled; problems are reported at the key they are about."""
    raw = resolved.get("expect") or {}
    origin = where + ("expect",) if "expect" in own else ("defaults", "expect")

    def at(key: str, message: str) -> None:
        fail(origin + (key,) if key in (own.get("expect") or raw) else origin, f"expect.{key}: {message}")

    low, high = raw.get("minItems"), raw.get("maxItems")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        at("minItems", f"{low} is more than maxItems {high}")
    fmt = (resolved.get("dataset") or {}).get("format", "json") if "dataset" in resolved else None
    for key in ("minItems", "maxItems", "schema", "schemaFile"):
        if key in raw and fmt in UNCHECKABLE:
            at(key, f"{fmt} outputs cannot be checked item by item; only nonEmpty and contentType can")
        elif key in raw and fmt == "csv" and key.startswith("schema"):
            at(key, "CSV items are counted only; a schema needs a json or jsonl dataset")
    schema, source = raw.get("schema"), "inline" if "schema" in raw else None
    schema_file = raw.get("schemaFile")
    if isinstance(schema_file, str) and "${{" not in schema_file:
        schema, source = _load_schema_file(os.path.dirname(doc.file) or ".", schema_file,
                                           lambda m: at("schemaFile", m)), schema_file
    if schema is not None:
        problem = schema_problem(schema)
        if problem:
            at("schemaFile" if schema_file else "schema", problem)
    limits = {name: raw[key] for name, key in (("max_depth", "maxDepth"), ("max_item_bytes", "maxItemBytes"))
              if isinstance(raw.get(key), int)}
    return Expectations(bool(raw.get("nonEmpty", True)), low, high, raw.get("contentType"), schema,
                        source if schema is not None else None, written=dict(raw), **limits)


def _load_schema_file(folder: str, relative: str, fail: Any) -> Any:
    target = _inside_folder(folder, relative, "", fail)
    if target is None:
        return None
    try:
        return load_file(target).data
    except YamlError as exc:
        fail(str(exc.problem))
        return None


def _inside_folder(folder: str, relative: str, what: str, fail: Any) -> str | None:
    """``relative`` inside the job file's ``folder`` (not by `..`, an absolute path or a link), else None."""
    if not stays_inside(relative):
        fail(f"{what}'{relative}' leaves the job file's folder")
        return None
    target = os.path.join(folder, relative)
    real_folder = os.path.realpath(folder)
    if os.path.commonpath([real_folder, os.path.realpath(target)]) != real_folder:
        fail(f"{what}'{relative}' resolves (through a link) outside the job file's folder")
        return None
    return target


def _load_input_file(folder: str, relative: str, fail: Any) -> dict[str, Any]:
    target = _inside_folder(folder, relative, "inputFile ", fail)
    if target is None:
        return {}
    if target.endswith(".json"):  # strict JSON: `01234` is an error there, not the number 1234
        try:
            with open(target, encoding="utf-8") as stream:
                data = json.load(stream)
        except OSError as exc:
            fail(f"inputFile '{relative}': {exc.strerror}")
            return {}
        except ValueError as exc:
            fail(f"inputFile '{relative}' is not valid JSON: {exc}")
            return {}
    else:
        try:
            data = load_file(target).data
        except YamlError as exc:
            fail(f"inputFile: {exc.problem}")
            return {}
    if not isinstance(data, dict):
        fail(f"inputFile '{relative}' must hold a JSON object (a mapping)")
        return {}
    return data


def _json_size(value: Any) -> int | None:
    try:
        return len(json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError):
        return None


def _normalise_task(task: str) -> str:
    return task.replace("/", "~", 1)


def _duplicate_names(job_files: list[JobFile]) -> list[Problem]:
    seen: dict[str, Job] = {}
    problems = []
    for job_file in job_files:
        for job in job_file.jobs:
            first = seen.setdefault(job.name, job)
            if first is not job:
                problems.append(Problem(job.file, *job.position,
                                        f"duplicate job name '{job.name}' (first at {first.file}:{first.position[0]})"))
    return problems


def _duplicate_outputs(job_files: list[JobFile]) -> list[Problem]:
    """Two jobs writing one file would overwrite each other's output without a word (and --resume would run
    one of them again, forever)."""
    jobs = [job for job_file in job_files for job in job_file.jobs]
    problems = []
    for job in jobs:
        path = os.path.normpath(planned_output(job))
        clash = reserved_clash(path)
        if clash:
            problems.append(Problem(job.file, *job.position, f"job '{job.name}' would write its output "
                                    f"'{path}' over {clash}; give it another `output`"))
    for job, first, path in collisions(jobs):
        where = f"job '{first.name}' ({first.file}:{first.position[0]})"
        if os.path.normpath(planned_output(first)) == path:
            problems.append(Problem(job.file, *job.position, f"job '{job.name}' writes the same output '{path}' as "
                                    f"{where}"))
        else:  # one of the two outputs takes its extension from the answer
            problems.append(Problem(job.file, *job.position, f"job '{job.name}' and {where} can both write "
                                    f"'{path}' (the extension of one comes from the answer); give one of them "
                                    "another `output`"))
    return problems


def _cycles(doc: Document, expanded: list[tuple[Job, Path, list[str]]]) -> list[Problem]:
    """Every cycle of `needs`, each once, at the `needs` of the job that closes it (graphlib finds one at a
    time: that job's need is set aside and it looks again)."""
    import graphlib

    graph = {job.name: set(job.needs) for job, _, _ in expanded}
    where = {job.name: path for job, path, _ in expanded}
    order = {name: index for index, name in enumerate(graph)}
    problems: list[Problem] = []
    while True:
        try:
            graphlib.TopologicalSorter(graph).prepare()
            return problems
        except graphlib.CycleError as exc:
            ring = list(reversed(exc.args[1][:-1]))  # graphlib lists each need before its job: a needs b needs a
            first = min(range(len(ring)), key=lambda i: order.get(ring[i], len(order)))
            cycle = ring[first:] + ring[:first] + [ring[first]]
            closer = cycle[-2]
            problems.append(doc.problem(where[closer] + ("needs",), f"needs form a cycle: {' -> '.join(cycle)}"))
            graph[closer].discard(cycle[-1])
