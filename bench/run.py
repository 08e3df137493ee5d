"""Benchmarks of apify-jobs, each run alternately with its baseline in the same session, reported as ratios.

    python bench/run.py [--repeat N] [--only NAME ...]

It starts the emulator (a separate process, fixed latency per benchmark), runs every benchmark and its
baseline alternately N times, and prints medians, ratios and whether each goal holds, as a Markdown table
(the README's). Machines here are
shared and noisy: the ratios are the result, not the seconds. Exit status 1 if a goal does not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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


def measure(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Sample:
    """Wall time and peak resident memory of one command (of the process itself, from wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})}, cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
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
    return {"APIFY_API_BASE_URL": emulator.url, "APIFY_TOKEN": "bench"}


def bench_parallel(work: Path, repeat: int) -> Result:
    jobs, latency, concurrency = 200, 0.25, 50
    emulator = EmulatorProcess(work, {"latency": latency})
    try:
        path = jobs_file(work / "parallel.yaml", jobs, concurrency)
        out = work / "out-parallel"
        def subject():
            return measure([*APIFY_JOBS, "run", str(path), "--out-dir", str(out), "-q"], run_env(emulator))
        urls = " ".join(f"{emulator.url}/v2/actor-tasks/me~t{i % 7}/run-sync" for i in range(jobs))
        def baseline():
            return measure(shell(f"printf '%s\\n' {urls} | xargs -P {concurrency} -I URL "
                                                 + curl_post("URL")))
        ours, theirs = alternate(repeat, subject, baseline)
    finally:
        emulator.close()
    ideal = jobs / concurrency * latency
    result = Result("parallel: 200 jobs, 250 ms latency, concurrency 50", "apify-jobs run",
                    f"xargs -P {concurrency} curl", median(ours), median(theirs), "s")
    result.goals = [("vs xargs curl", median(ours) / median(theirs), 1.10), ("vs ideal 1.0 s", median(ours) / ideal, 1.25)]
    return result


def bench_overhead(work: Path, repeat: int) -> Result:
    jobs = 300
    emulator = EmulatorProcess(work, {"latency": 0})
    try:
        many = jobs_file(work / "overhead.yaml", jobs, 1)
        one = jobs_file(work / "overhead-one.yaml", 1, 1)
        out = work / "out-overhead"
        def run(path):
            return measure([*APIFY_JOBS, "run", str(path), "--out-dir", str(out), "-q"], run_env(emulator))
        urls = " ".join(f"{emulator.url}/v2/actor-tasks/me~t{i % 7}/run-sync" for i in range(jobs))
        def baseline():
            return measure(shell(f"for u in {urls}; do {curl_post('$u')}; done"))
        ours, theirs = alternate(repeat, lambda: run(many), baseline)
        startup = [run(one) for _ in range(repeat)]
    finally:
        emulator.close()
    per_job_ms = (median(ours) - median(startup)) / (jobs - 1) * 1000
    result = Result("per-job overhead: 300 jobs, no latency, one at a time", "apify-jobs run",
                    "shell loop of curl", median(ours), median(theirs), "s")
    result.goals = [("vs curl loop", median(ours) / median(theirs), 0.5), ("ms per job above start-up", per_job_ms, 3.0)]
    return result


def bench_validate(work: Path, repeat: int) -> Result:
    path = jobs_file(work / "validate.yaml", 5000, 8,
                     ", options: {memory: 1024, timeout: 120, webhooks: [{eventTypes: [ACTOR.RUN.FAILED], "
                     "requestUrl: 'https://h.example/x'}]}, retry: {attempts: 3, on: [connection]}")
    checker = shutil.which("check-jsonschema", path=str(Path(PYTHON).parent)) or shutil.which("check-jsonschema")
    if not checker:
        raise SystemExit("check-jsonschema is not installed: pip install -e '.[bench]'")
    schema = REPO / "schema" / "jobs.schema.json"
    def subject():
        return measure([*APIFY_JOBS, "validate", str(path)])
    def baseline():
        return measure([checker, "--schemafile", str(schema), str(path)])
    ours, theirs = alternate(repeat, subject, baseline)
    result = Result("validation: one file of 5,000 jobs", "apify-jobs validate", "check-jsonschema --schemafile",
                    median(ours), median(theirs), "s")
    result.goals = [("vs check-jsonschema", median(ours) / median(theirs), 1.0)]
    return result


def bench_streaming(work: Path, repeat: int) -> Result:
    size = 512 * MiB
    emulator = EmulatorProcess(work, {"bodyBytes": size})
    try:
        path = jobs_file(work / "stream.yaml", 1, 1)
        out = work / "out-stream"
        def subject():
            return measure([*APIFY_JOBS, "run", str(path), "--out-dir", str(out), "-q"], run_env(emulator))
        url = f"{emulator.url}/v2/actor-tasks/me~t0/run-sync"
        def baseline():
            return measure(shell(curl_post(url)))
        ours, theirs = alternate(repeat, subject, baseline)
        # Context: curl writing the same bytes to a file on the same disk and syncing it, as we do.
        to_disk = [measure(shell(f"{curl_post(url, str(work / 'curl.out'))} && sync -f {work / 'curl.out'}"))
                   for _ in range(repeat)]
    finally:
        emulator.close()
    assert (out / "job0.bin").stat().st_size == size
    result = Result("streaming: a 512 MiB output", "apify-jobs run", "curl -o /dev/null", median(ours), median(theirs), "s")
    result.goals = [("vs curl", median(ours) / median(theirs), 1.5),
                    ("vs curl -o file && sync (context)", median(ours) / median(to_disk), None),
                    ("peak RSS, MB", max(s.max_rss_mb for s in ours), 100.0)]
    return result


def bench_history(work: Path, repeat: int) -> Result:
    """20,000 jobs run into an empty folder, then again into the same one: the second run must cost no more
    (time, and bytes the state grows by) although the state already holds the first run's 20,000 results."""
    jobs = 20_000
    emulator = EmulatorProcess(work, {"latency": 0})
    try:
        path = jobs_file(work / "history.yaml", jobs, 64)
        firsts, seconds, growth = [], [], []
        for pair in range(max(1, min(repeat, 2))):
            out = work / f"out-history-{pair}"
            state = out / ".apify-jobs" / "state.sqlite3"
            command = [*APIFY_JOBS, "run", str(path), "--out-dir", str(out), "-q"]
            firsts.append(measure(command, run_env(emulator)))
            after_one = _state_bytes(state)
            seconds.append(measure(command, run_env(emulator)))
            growth.append((_state_bytes(state) - after_one) / after_one)
    finally:
        emulator.close()
    result = Result("history: 20,000 jobs at concurrency 64, run twice into one folder", "second run",
                    "first run (empty folder)", median(seconds), median(firsts), "s")
    result.goals = [("second vs first run", median(seconds) / median(firsts), 1.10),
                    ("state growth of the second run vs the first", statistics.median(growth), 1.10),
                    ("per job, ms (first run)", median(firsts) / jobs * 1000, None),
                    ("peak RSS, MB", max(s.max_rss_mb for s in firsts + seconds), None)]
    return result


def bench_expect(work: Path, repeat: int) -> Result:
    """A 512 MiB JSON dataset (5.4 million items) downloaded with `expect` checks against the same download with
    none (`nonEmpty: false`): the default check (nonEmpty: one item) and a count of every item (minItems)."""
    items = 5_400_000  # 100 bytes each with its comma: ~515 MiB
    emulator = EmulatorProcess(work, {"generatedItems": items})
    try:
        out = work / "out-expect"
        def job(expect: str) -> Path:
            path = work / f"expect-{abs(hash(expect))}.yaml"
            path.write_text(f"version: 1\njobs:\n  - {{name: job0, task: me~t, dataset: {{format: json}}, "
                            f"expect: {expect}}}\n")
            return path
        unchecked, default, counted = job("{nonEmpty: false}"), job("{}"), job("{minItems: 1000}")
        def run(path: Path) -> Sample:
            return measure([*APIFY_JOBS, "run", str(path), "--out-dir", str(out), "-q", "--no-run-facts"],
                           run_env(emulator))
        ours, theirs = alternate(repeat, lambda: run(default), lambda: run(unchecked))
        count = [run(counted) for _ in range(max(1, repeat // 2))]
    finally:
        emulator.close()
    result = Result("expect: a 512 MiB JSON dataset, checked as it streams", "default expect (nonEmpty)",
                    "no check", median(ours), median(theirs), "s")
    result.goals = [("default check vs no check", median(ours) / median(theirs), 1.30),
                    ("every item counted (minItems) vs no check", median(count) / median(theirs), None),
                    ("peak RSS with every item counted, MB", max(s.max_rss_mb for s in count), 150.0)]
    return result


def _state_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in state.parent.glob(state.name + "*"))


def bench_startup(work: Path, repeat: int) -> Result:
    def subject():
        return measure([*APIFY_JOBS, "--version"])
    def baseline():
        return measure([PYTHON, "-c", "pass"])
    ours, theirs = alternate(repeat * 2, subject, baseline)
    result = Result("start-up: apify-jobs --version", "apify-jobs --version", "python -c pass", median(ours),
                    median(theirs), "s")
    result.goals = [("seconds", median(ours), 0.25)]
    return result


BENCHMARKS = {"parallel": bench_parallel, "overhead": bench_overhead, "validate": bench_validate,
              "streaming": bench_streaming, "history": bench_history, "expect": bench_expect,
              "startup": bench_startup}


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
            results.append(BENCHMARKS[name](Path(tmp), args.repeat))
    print(f"Machine: {machine()}; {args.repeat} alternating runs each, medians.\n")
    print(table(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
