"""Benchmarks of apify-jobs, each run alternately with its baseline in the same session, reported as ratios.

    python bench/run.py [--repeat N] [--only NAME ...]

It starts the emulator (a separate process, fixed latency per benchmark), runs every benchmark and its
baseline alternately N times, and prints medians, ratios and whether each goal holds, as a Markdown table
(docs/benchmarks.md's). Machines here are shared and noisy: the ratios are the result, not the seconds.
Exit status 1 if a goal does not hold.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
APIFY_JOBS = [PYTHON, "-m", "apify_jobs"]
MiB = 1024 * 1024


@dataclass
class Sample:
    seconds: float
    max_rss_mb: float


def measure(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
            expected: tuple[int, ...] = (0,)) -> Sample:
    """Wall time and peak resident memory of one command (of the process itself, from wait4); ``expected``:
    the exit statuses it may end with."""
    os.sync()  # what the previous command left to write back is not this one's to pay for
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})}, cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in expected:
        raise SystemExit(f"benchmark command failed ({process.returncode}): {' '.join(command)}\n"
                         f"{process.stderr.read().decode(errors='replace')[-2000:]}")
    process.stderr.close()
    return Sample(elapsed, usage.ru_maxrss / 1024)


def shell(script: str) -> list[str]:
    return ["bash", "-c", script]


class EmulatorProcess:
    """`apify-jobs emulator` on a free loopback port, with one behaviour for every task."""

    def __init__(self, workdir: Path, behaviour: dict):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        script = workdir / f"emulator-{self.port}.yaml"
        script.write_text(json.dumps({"default": behaviour}))
        self.process = subprocess.Popen([*APIFY_JOBS, "emulator", "--port", str(self.port), "--script", str(script)],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.process.stdout.readline()  # "listening on ..." once it is ready
        self.url = f"http://127.0.0.1:{self.port}"

    def streamed_bytes(self) -> int:
        """Body bytes the emulator sent of large generated answers so far (compressed, when it compressed)."""
        with urllib.request.urlopen(f"{self.url}/_emulator/stats") as answer:
            return int(json.load(answer)["streamedBytes"])

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Result:
    name: str
    subject: str
    baseline: str
    subject_median: float
    baseline_median: float
    unit: str
    goals: list[tuple[str, float, float | None]] = field(default_factory=list)  # (what, value, limit); None: context

    @property
    def ok(self) -> bool:
        return all(limit is None or value <= limit for _, value, limit in self.goals)


def alternate(repeat: int, subject: Callable[[], Sample], baseline: Callable[[], Sample]) -> tuple[list[Sample], list[Sample]]:
    subject()  # warm caches (imports, page cache) once before timing
    baseline()
    ours, theirs = [], []
    for _ in range(repeat):
        ours.append(subject())
        theirs.append(baseline())
    return ours, theirs


def median(samples: list[Sample], key: str = "seconds") -> float:
    return statistics.median(getattr(s, key) for s in samples)


def jobs_file(path: Path, count: int, concurrency: int, extra: str = "") -> Path:
    lines = ["version: 1", f"concurrency: {concurrency}", "jobs:"]
    lines += [f"  - {{name: job{i}, task: me~t{i % 7}, input: {{n: {i}}}{extra}}}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def curl_post(url: str, out: str = "/dev/null") -> str:
    return f"curl -sf -o {out} -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer t' -d '{{}}' {url}"


def run_env(emulator: EmulatorProcess) -> dict[str, str]:
    # Costs not read a second time 10 s later: the baselines read none, and what is measured is sending.
    return {"APIFY_API_BASE_URL": emulator.url, "APIFY_TOKEN": "bench-token-not-in-any-path",
            "APIFY_JOBS_COST_SETTLE_SECONDS": "0"}


def emulator_url_for(emulator: EmulatorProcess, task: int, endpoint: str = "run-sync") -> str:
    return f"{emulator.url}/v2/actor-tasks/me~t{task}/{endpoint}"


def run_command(path: Path, out: Path, *extra: str) -> list[str]:
    return [*APIFY_JOBS, "run", str(path), "--out-dir", str(out), "-q", *extra]


_startup: list[Sample] = []


def startup_samples(work: Path, repeat: int) -> list[Sample]:
    """The tool's own start-up in a run: one job at zero latency (imports, loading, the state, the report,
    the run-facts look-up), measured once per session and shared by the goals of the form ideal + start-up."""
    if not _startup:
        emulator = EmulatorProcess(work, {"latency": 0})
        try:
            one = jobs_file(work / "startup-one.yaml", 1, 1)
            _startup.extend(measure(run_command(one, work / "out-startup"), run_env(emulator))
                            for _ in range(repeat + 1))
            del _startup[0]  # warm-up
        finally:
            emulator.close()
    return _startup


def parallel_against_xargs(work: Path, repeat: int, name: str, jobs: int, latency: float,
                           concurrency: int) -> tuple[list[Sample], list[Sample]]:
    """`apify-jobs run` of ``jobs`` jobs against `xargs -P concurrency curl` sending the same POSTs."""
    emulator = EmulatorProcess(work, {"latency": latency})
    try:
        path = jobs_file(work / f"{name}.yaml", jobs, concurrency)
        out = work / f"out-{name}"
        urls = work / f"{name}.urls"
        urls.write_text("".join(emulator_url_for(emulator, i % 7) + "\n" for i in range(jobs)))
        def subject():
            shutil.rmtree(out, ignore_errors=True)
            return measure(run_command(path, out), run_env(emulator))
        def baseline():
            return measure(shell(f"xargs -P {concurrency} -I URL {curl_post('URL')} < {urls}"))
        return alternate(repeat, subject, baseline)
    finally:
        emulator.close()


def parallel_result(work: Path, repeat: int, name: str, title: str, jobs: int, latency: float, concurrency: int,
                    vs_xargs: float, vs_ideal: float, rss: float | None = None) -> Result:
    ours, theirs = parallel_against_xargs(work, repeat, name, jobs, latency, concurrency)
    startup = median(startup_samples(work, repeat))
    ideal = math.ceil(jobs / concurrency) * latency
    result = Result(title, "apify-jobs run", f"xargs -P {concurrency} curl", median(ours), median(theirs), "s")
    result.goals = [(f"vs ideal {ideal:g} s + start-up {startup:.2f} s", median(ours) / (ideal + startup), vs_ideal),
                    ("vs xargs curl", median(ours) / median(theirs), vs_xargs)]
    if rss is not None:
        result.goals.append(("peak RSS, MB", max(s.max_rss_mb for s in ours), rss))
    return result


def bench_wide(work: Path, repeat: int) -> Result:
    return parallel_result(work, repeat, "wide", "wide parallel: 2,000 jobs, 1 s latency, concurrency 256", 2000,
                           1.0, 256, vs_xargs=1.05, vs_ideal=1.10, rss=200.0)


def bench_parallel(work: Path, repeat: int) -> Result:
    return parallel_result(work, repeat, "parallel", "parallel: 200 jobs, 250 ms latency, concurrency 50", 200,
                           0.25, 50, vs_xargs=1.10, vs_ideal=1.25)


SCALE_JOBS = 20_000


def scale_file(work: Path) -> Path:
    path = work / "scale.yaml"
    return path if path.exists() else jobs_file(path, SCALE_JOBS, 64)


def history_folder(work: Path) -> Path:
    """A folder into which 20,000 jobs ran already (its state holds their 20,000 results), made once."""
    folder = work / "out-history-template"
    if not (folder / ".apify-jobs").exists():
        emulator = EmulatorProcess(work, {"latency": 0})
        try:
            measure(run_command(scale_file(work), folder), run_env(emulator))
        finally:
            emulator.close()
    return folder


def copy_of(folder: Path, to: Path) -> Path:
    """A copy of an output folder: the state copied (it is written to), the outputs hard-linked (cheap)."""
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(folder, to, copy_function=os.link, ignore=shutil.ignore_patterns(".apify-jobs"))
    shutil.copytree(folder / ".apify-jobs", to / ".apify-jobs")
    os.sync()  # else the run's first fsync pays for writing out the copy's 20,000 new directory entries
    return to


def bench_overhead(work: Path, repeat: int) -> Result:
    jobs = 300
    emulator = EmulatorProcess(work, {"latency": 0})
    try:
        many = jobs_file(work / "overhead.yaml", jobs, 1)
        out = work / "out-overhead"
        def into_empty():
            shutil.rmtree(out, ignore_errors=True)
            return measure(run_command(many, out), run_env(emulator))
        urls = " ".join(emulator_url_for(emulator, i % 7) for i in range(jobs))
        def baseline():
            return measure(shell(f"for u in {urls}; do {curl_post('$u')}; done"))
        ours, theirs = alternate(repeat, into_empty, baseline)
        template = history_folder(work)
        def into_history():
            return measure(run_command(many, copy_of(template, work / "out-overhead-history")), run_env(emulator))
        full, empty = alternate(repeat, into_history, into_empty)
    finally:
        emulator.close()
    startup = median(startup_samples(work, repeat))
    per_job_ms = (median(ours) - startup) / (jobs - 1) * 1000
    result = Result("per-job overhead: 300 jobs, no latency, one at a time, state on", "apify-jobs run",
                    "shell loop of curl", median(ours), median(theirs), "s")
    result.goals = [("vs curl loop", median(ours) / median(theirs), 0.5),
                    ("ms per job above start-up", per_job_ms, 3.0),
                    (f"into a folder holding {SCALE_JOBS:,} results vs an empty one", median(full) / median(empty),
                     1.10)]
    return result


def bench_scale(work: Path, repeat: int) -> Result:
    path = scale_file(work)
    checker = shutil.which("check-jsonschema", path=str(Path(PYTHON).parent)) or shutil.which("check-jsonschema")
    if not checker:
        raise SystemExit("check-jsonschema is not installed: pip install -e '.[bench]'")
    schema = REPO / "schema" / "jobs.schema.json"
    ours, theirs = alternate(repeat, lambda: measure([*APIFY_JOBS, "validate", str(path)]),
                             lambda: measure([checker, "--schemafile", str(schema), str(path)]))
    emulator = EmulatorProcess(work, {"latency": 0})
    try:
        out = work / "out-scale"
        def run() -> Sample:
            shutil.rmtree(out, ignore_errors=True)
            return measure(run_command(path, out), run_env(emulator))
        runs, resumes = [], []
        for _ in range(max(1, (repeat + 1) // 2)):  # ~35 s each: half the repeats, each run then resumed
            runs.append(run())
            resumes += [measure(run_command(path, out, "--resume"), run_env(emulator)) for _ in range(2)]
    finally:
        emulator.close()
    result = Result(f"scale: {SCALE_JOBS:,} jobs in one file, concurrency 64, no latency", "apify-jobs validate",
                    "check-jsonschema --schemafile", median(ours), median(theirs), "s")
    result.goals = [("validate vs check-jsonschema", median(ours) / median(theirs), 0.5),
                    ("run: peak RSS, MB", max(s.max_rss_mb for s in runs), 150.0),
                    ("run: seconds (context)", median(runs), None),
                    ("--resume of the finished batch, s", median(resumes), 5.0),
                    ("--resume: peak RSS, MB (context)", max(s.max_rss_mb for s in resumes), None)]
    return result


def bench_streaming(work: Path, repeat: int) -> Result:
    size = 512 * MiB
    emulator = EmulatorProcess(work, {"bodyBytes": size})
    try:
        path = jobs_file(work / "stream.yaml", 1, 1)
        out = work / "out-stream"
        def subject():
            return measure(run_command(path, out, "--no-run-facts"), run_env(emulator))
        target = work / "curl.out"
        def baseline():
            return measure(shell(f"{curl_post(emulator_url_for(emulator, 0), str(target))} && sync -f {target}"))
        ours, theirs = alternate(repeat, subject, baseline)
    finally:
        emulator.close()
    assert (out / "job0.bin").stat().st_size == size
    result = Result("streaming: a 512 MiB output", "apify-jobs run", "curl -o FILE && sync", median(ours),
                    median(theirs), "s")
    result.goals = [("vs curl -o FILE && sync", median(ours) / median(theirs), 1.2),
                    ("peak RSS, MB", max(s.max_rss_mb for s in ours), 100.0)]
    return result


def bench_gzip(work: Path, repeat: int) -> Result:
    """The same size as a JSON dataset (5.4 million items), served gzip-compressed to clients that ask."""
    items = 5_400_000  # 100 bytes each with its comma: ~515 MiB
    emulator = EmulatorProcess(work, {"generatedItems": items, "gzip": True})
    try:
        path = work / "gzip.yaml"
        path.write_text("version: 1\njobs:\n  - {name: job0, task: me~t0, dataset: {format: json}}\n")
        out = work / "out-gzip"
        wire: dict[str, list[int]] = {"ours": [], "curl": []}
        def over_the_wire(who: str, command: list[str], env: dict[str, str] | None = None) -> Sample:
            before = emulator.streamed_bytes()
            sample = measure(command, env)
            wire[who].append(emulator.streamed_bytes() - before)
            return sample
        target = work / "curl-gzip.out"
        url = emulator_url_for(emulator, 0, "run-sync-get-dataset-items") + "?format=json"
        ours, theirs = alternate(
            repeat, lambda: over_the_wire("ours", run_command(path, out, "--no-run-facts"), run_env(emulator)),
            lambda: over_the_wire("curl", shell(f"{curl_post(url, str(target))} --compressed && sync -f {target}")))
    finally:
        emulator.close()
    assert (out / "job0.json").stat().st_size == target.stat().st_size > 500 * MiB
    ratio = statistics.median(wire["ours"]) / statistics.median(wire["curl"])
    result = Result("gzip: a 512 MiB JSON dataset served compressed", "apify-jobs run",
                    "curl --compressed -o FILE && sync", median(ours), median(theirs), "s")
    result.goals = [("vs curl --compressed -o FILE && sync", median(ours) / median(theirs), 1.2),
                    ("bytes over the wire vs curl's", ratio, 1.05),
                    ("MB over the wire (context)", statistics.median(wire["ours"]) / 1e6, None),
                    ("peak RSS, MB", max(s.max_rss_mb for s in ours), 100.0)]
    return result


def bench_expect(work: Path, repeat: int) -> Result:
    """A 512 MiB JSON dataset (5.4 million items) downloaded with `expect` checks against the same download with
    none (`nonEmpty: false`): the default check (nonEmpty: one item) and a count of every item (minItems); a
    schema's cost on a tenth of it; JSONL with one very long line at two sizes (the time must be linear); and the
    400 KB answer nested 200,000 levels deep."""
    items = 5_400_000  # 100 bytes each with its comma: ~515 MiB
    emulator = EmulatorProcess(work, {"generatedItems": items})
    small = EmulatorProcess(work, {"generatedItems": items // 10})
    out = work / "out-expect"
    def job(expect: str, fmt: str = "json") -> Path:
        path = work / f"expect-{abs(hash((expect, fmt)))}.yaml"
        path.write_text(f"version: 1\njobs:\n  - {{name: job0, task: me~t, dataset: {{format: {fmt}}}, "
                        f"expect: {expect}}}\n")
        return path
    def run(path: Path, server: EmulatorProcess = emulator, expected: tuple[int, ...] = (0,)) -> Sample:
        return measure(run_command(path, out, "--no-run-facts"), run_env(server), expected=expected)
    try:
        unchecked, default, counted = job("{nonEmpty: false}"), job("{}"), job("{minItems: 1000}")
        ours, theirs = alternate(repeat, lambda: run(default), lambda: run(unchecked))
        count, plain = alternate(repeat, lambda: run(counted), lambda: run(unchecked))
        schema, small_plain = alternate(max(1, repeat // 2), lambda: run(job("{schema: {type: object}}"), small),
                                        lambda: run(unchecked, small))
    finally:
        emulator.close()
        small.close()
    long_lines: dict[int, list[Sample]] = {}
    for size in (512, 1024):  # MiB in all, a quarter of it one line
        server = EmulatorProcess(work, {"generatedItems": size * MiB * 3 // 4 // 101, "longLine": size * MiB // 4})
        try:
            path = job("{minItems: 1, schema: true, maxItemBytes: 300000000}", "jsonl")
            long_lines[size] = [run(path, server) for _ in range(max(1, repeat // 2))]
        finally:
            server.close()
    deep = EmulatorProcess(work, {"body": "[" * 200_000 + "]" * 200_000, "contentType": "application/json"})
    try:
        nested = [run(job("{minItems: 1}"), deep, (1,)) for _ in range(repeat)]
    finally:
        deep.close()
    result = Result("expect: a 512 MiB JSON dataset, checked as it streams", "minItems (every item counted)",
                    "no check", median(count), median(plain), "s")
    result.goals = [("default check (nonEmpty) vs no check", median(ours) / median(theirs), 1.30),
                    ("every item counted (minItems) vs no check", median(count) / median(plain), 1.30),
                    ("peak RSS with every item counted, MB", max(s.max_rss_mb for s in count), 100.0),
                    ("schema on every item vs no check (51 MiB, context)", median(schema) / median(small_plain),
                     None),
                    ("JSONL with a 256 MiB line, 1 GiB vs 512 MiB (linear: 2)",
                     median(long_lines[1024]) / median(long_lines[512]), 2.3),
                    ("nested 200,000 deep: seconds to expectation-failed", median(nested), 2.0),
                    ("nested 200,000 deep: peak RSS, MB", max(s.max_rss_mb for s in nested), 100.0)]
    return result


def bench_startup(work: Path, repeat: int) -> Result:
    checker = shutil.which("check-jsonschema", path=str(Path(PYTHON).parent)) or shutil.which("check-jsonschema")
    if not checker:
        raise SystemExit("check-jsonschema is not installed: pip install -e '.[bench]'")
    version, python = alternate(repeat * 2, lambda: measure([*APIFY_JOBS, "--version"]),
                                lambda: measure([PYTHON, "-c", "pass"]))
    # What a pre-commit hook pays on every commit: the example job files, validated.
    files = [str(p) for p in sorted((REPO / "jobs").glob("*.yaml"))]
    schema = REPO / "schema" / "jobs.schema.json"
    ours, theirs = alternate(repeat, lambda: measure([*APIFY_JOBS, "validate", str(REPO / "jobs")]),
                             lambda: measure([checker, "--schemafile", str(schema), *files]))
    result = Result("start-up: apify-jobs --version; validate of jobs/", "apify-jobs validate jobs/",
                    "check-jsonschema --schemafile", median(ours), median(theirs), "s")
    result.goals = [("--version, s", median(version), 0.25),
                    ("python -c pass, s (context)", median(python), None),
                    ("validate jobs/ vs check-jsonschema", median(ours) / median(theirs), 1.0)]
    return result


BENCHMARKS = {"wide": bench_wide, "parallel": bench_parallel, "scale": bench_scale, "overhead": bench_overhead,
              "streaming": bench_streaming, "gzip": bench_gzip, "expect": bench_expect, "startup": bench_startup}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = cpu
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def table(results: list[Result]) -> str:
    rows = ["| benchmark | apify-jobs (median) | baseline (median) | goal | measured | limit | holds |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for index, (what, value, limit) in enumerate(r.goals):
            head = (f"{r.name} | {r.subject_median:.3f} s | {r.baseline}: {r.baseline_median:.3f} s" if index == 0
                    else " | | ")
            verdict = "context" if limit is None else ("yes" if value <= limit else "NO")
            rows.append(f"| {head} | {what} | {value:.3f} | {'' if limit is None else f'{limit:g}'} | {verdict} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS))
    args = parser.parse_args()
    # Measure the tool as installed: pip compiles an installed package's modules to .pyc, but an editable
    # install under PYTHONDONTWRITEBYTECODE (set on these machines) would recompile them at every start.
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(REPO / "src" / "apify_jobs")], check=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="apify-jobs-bench-", dir=REPO / "bench") as tmp:
        for name in args.only or BENCHMARKS:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            work = Path(tmp) / name
            work.mkdir()
            results.append(BENCHMARKS[name](work, args.repeat))
            # Each benchmark starts on a clean disk: 20,000-file folders and 512 MiB files left behind made the
            # next one's writes ~20 % slower.
            shutil.rmtree(work)
            os.sync()
    print(f"Machine: {machine()}; {args.repeat} alternating runs each, medians.\n")
    print(table(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
