"""Schema, resolution and semantic checks: every problem at its line, resolved jobs exactly as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apify_jobs import jobfile
from apify_jobs.errors import JobFileError

REPO = Path(__file__).resolve().parent.parent


def problems(*paths: Path, **kw) -> list[str]:
    with pytest.raises(JobFileError) as caught:
        jobfile.load([str(p) for p in paths], **kw)
    return [str(p) for p in caught.value.problems if not p.warning]


def jobs(*paths: Path, variables=None, environ=None):
    files, _ = jobfile.load([str(p) for p in paths], variables or {}, environ or {})
    return {job.name: job for f in files for job in f.jobs}


def test_every_example_job_file_validates() -> None:
    files, _ = jobfile.load([str(REPO / "jobs")])
    assert len(files) >= 3 and all(f.jobs for f in files)


@pytest.mark.parametrize(("option", "bad", "message"), [
    ("memory", "1000", "is not one of 128"),
    ("memory", "'1024'", "is not one of 128"),
    ("timeout", "-1", "must be > 0"),
    ("maxItems", "1.5", "must be a whole number"),
    ("maxTotalChargeUsd", "cheap", "must be a number"),
    ("restartOnError", "'yes'", "must be true or false"),
    ("build", "12", "must be a string"),
    ("outputRecordKey", "[a]", "must be a string"),
    ("webhooks", "[{eventTypes: [ACTOR.RUN.EXPLODED], requestUrl: 'https://x'}]", "is not one of"),
    ("webhooks", "{requestUrl: 'https://x'}", "must be a list"),
])
def test_wrong_option_value_fails_at_its_line(write, option: str, bad: str, message: str) -> None:
    path = write("j.yaml", f"""
        version: 1
        jobs:
          - name: a
            task: me~t
          - name: b
            task: me~t
            options:
              {option}: {bad}
        """)
    found = problems(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:8:") and message in found[0], found


def test_a_name_or_task_with_a_final_newline_is_refused(write) -> None:
    # JSON Schema's patterns are ECMA-262's, whose `$` does not match before a final newline (Python's does:
    # this job file passed, and its output would have been `a<newline>.json`).
    path = write("j.yaml", """
        version: 1
        jobs:
          - name: "a\\n"
            task: me~t
          - name: b
            task: "me~t\\n"
        """)
    found = problems(path)
    assert len(found) == 2, found
    assert found[0].startswith(f"{path}:3:11: jobs[0].name: ") and "must start with a letter or digit" in found[0]
    assert found[1].startswith(f"{path}:6:11: jobs[1] (b).task: ") and "must be an ID or owner~name" in found[1]
    assert all("\n" not in line for line in found), found


def test_every_problem_of_every_file_is_reported(write) -> None:
    one = write("a/one.yaml", """
        version: 1
        jobs:
          - name: a
            task: me~t
            colour: red
          - name: a
            task: me~t
            needs: [nope]
        """)
    two = write("a/two.yaml", "version: 2\njobs: []\n")
    found = problems(one.parent)
    assert f"{one}:5:5: jobs[0] (a): unknown key 'colour'; allowed: name, task, actor, input, inputFile, options, dataset, output, needs, matrix, retry, http, follow, expect, refresh, capacity" in found
    assert f"{two}:1:10: version: must be 1, not 2" in found
    assert f"{two}:2:7: jobs: must not be empty" in found
    assert f"{one}:8:13: needs unknown job 'nope'; jobs of this file: a" in found
    assert len(found) == 4  # a job with schema errors is left out of resolution; the rest still is


def test_unknown_key_suggests_the_right_one(write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - name: a\n    task: me~t\n    optoins: {}\n")
    assert problems(path) == [f"{path}:5:5: jobs[0] (a): unknown key 'optoins'; did you mean 'options'?"]


def test_semantic_checks(write) -> None:
    path = write("j.yaml", """
        version: 1
        jobs:
          - name: a
            task: me~t
            needs: [b]
          - name: b
            task: me~t
            needs: [a]
          - name: c
            task: me~t
            needs: [ghost]
          - name: d
            task: me~t
            output: ../escape.json
          - name: e
            task: me~t
            inputFile: /etc/passwd
        """)
    found = problems(path)
    assert f"{path}:8:12: needs form a cycle: a -> b -> a" in found
    assert f"{path}:11:13: needs unknown job 'ghost'; jobs of this file: a, b, c, d, e" in found
    assert f"{path}:14:13: output '../escape.json' leaves the output folder; give a path inside it" in found
    assert f"{path}:17:16: inputFile '/etc/passwd' leaves the job file's folder" in found


def test_output_record_key_excludes_dataset_also_from_defaults(write) -> None:
    path = write("j.yaml", """
        version: 1
        defaults: {options: {outputRecordKey: X}}
        jobs:
          - {name: a, task: me~t, dataset: {format: json}, options: {outputRecordKey: Y}}
          - {name: b, task: me~t, dataset: {format: csv}}
        """)
    found = problems(path)
    assert len(found) == 2, found
    assert found[0].startswith(f"{path}:4:") and "outputRecordKey cannot be used together with dataset" in found[0]
    assert found[1] == f"{path}:5:5: outputRecordKey (from defaults) cannot be used together with dataset"


def test_duplicate_names_across_files(write) -> None:
    a = write("a.yaml", "version: 1\njobs:\n  - {name: x, task: me~t}\n")
    b = write("b.yaml", "version: 1\njobs:\n  - {name: x, task: me~t}\n")
    assert problems(a, b) == [f"{b}:3:5: duplicate job name 'x' (first at {a}:3)"]


def test_input_over_nine_mib_is_refused(write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - name: a\n    task: me~t\n    input: {blob: " + "x" * (9 * 1024 * 1024) + "}\n")
    assert problems(path) == [f"{path}:5:12: input is 9,437,195 bytes as JSON, over the API's 9 MiB request limit"]


def test_timeout_over_300_is_a_warning_only_without_follow(write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - {name: a, task: me~t, options: {timeout: 400}, follow: false}\n")
    _, warnings = jobfile.load([str(path)])
    assert [str(w) for w in warnings] == [
        f"{path}:3:46: warning: timeout 400 is over 300 s: run-sync answers 408 after 300 s while the run goes on "
        "(and is billed), and `follow: false` fails the job then"]
    followed = write("k.yaml", "version: 1\njobs:\n  - {name: a, task: me~t, options: {timeout: 400}}\n")
    files, warnings = jobfile.load([str(followed)])
    assert warnings == [] and files[0].jobs[0].follow == 3600.0


@pytest.mark.parametrize(("follow", "message"), [
    ("{maxWait: 0}", "jobs[0] (a).follow.maxWait: must be > 0, not 0"),
    ("{maxWait: soon}", "jobs[0] (a).follow.maxWait: must be a number, not string \"soon\""),
    ("true", "jobs[0] (a).follow: must be a mapping, not boolean true"),
])
def test_follow_max_wait_must_be_a_positive_number(write, follow: str, message: str) -> None:
    path = write("j.yaml", f"version: 1\njobs:\n  - name: a\n    task: me~t\n    follow: {follow}\n")
    [found] = problems(path)
    assert found.startswith(f"{path}:5:") and found.endswith(message)


def test_defaults_deep_merge_and_job_wins(write) -> None:
    path = write("j.yaml", """
        version: 1
        defaults:
          options: {memory: 1024, timeout: 60}
          input: {proxy: {useApifyProxy: true, groups: [A]}, limit: 5}
          retry: {attempts: 5, on: [connection, rate-limit]}
        jobs:
          - name: a
            task: me/t
            options: {memory: 2048}
            input: {proxy: {groups: [B]}}
        """)
    job = jobs(path)["a"]
    assert job.task == "me~t"
    assert job.options == {"memory": 2048, "timeout": 60}
    assert job.input == {"proxy": {"useApifyProxy": True, "groups": ["B"]}, "limit": 5}
    assert job.retry.attempts == 5 and job.retry.on == {"connection", "rate-limit"}


def test_matrix_expansion_names_and_needs(write) -> None:
    path = write("j.yaml", """
        version: 1
        jobs:
          - name: maps
            task: me~t
            matrix: {city: [Prague, "São Paulo"], n: [1, 2]}
            input: {q: "${{ matrix.city }}", n: "${{ matrix.n }}", label: "n=${{ matrix.n }}"}
          - name: after
            task: me~t
            needs: [maps]
        """)
    resolved = jobs(path)
    assert list(resolved) == ["maps-prague-1", "maps-prague-2", "maps-sao-paulo-1", "maps-sao-paulo-2", "after"]
    assert resolved["maps-prague-2"].input == {"q": "Prague", "n": 2, "label": "n=2"}
    assert resolved["after"].needs == ["maps-prague-1", "maps-prague-2", "maps-sao-paulo-1", "maps-sao-paulo-2"]


def test_matrix_name_collision_is_an_error(write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - {name: m, task: me~t, matrix: {c: [A b, a-B]}}\n")
    assert "both name the job 'm-a-b'" in problems(path)[0]


def test_vars_and_env_keep_types_when_whole(write) -> None:
    path = write("j.yaml", """
        version: 1
        jobs:
          - name: a
            task: "${{ vars.owner }}~t"
            options: {memory: "${{ vars.mem }}"}
            input: {zip: "${{ env.ZIP }}", n: "${{ vars.n }}"}
        """)
    job = jobs(path, variables={"owner": "me", "mem": 2048, "n": "7"}, environ={"ZIP": "01234"})["a"]
    assert job.task == "me~t" and job.options == {"memory": 2048}
    assert job.input == {"zip": "01234", "n": "7"}


def test_substituted_value_must_fit_the_schema(write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - {name: a, task: me~t, options: {memory: '${{ vars.mem }}'}}\n")
    found = problems(path, variables={"mem": "lots"}, environ={})
    assert found == [f"{path}:3:45: jobs[0] (a).options.memory: \"lots\" is not one of 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768"]


def test_undefined_references_fail_before_running_but_not_in_validate(write) -> None:
    path = write("j.yaml", "version: 1\njobs:\n  - {name: a, task: me~t, input: {a: '${{ vars.x }}', b: '${{ env.NOPE }}'}}\n")
    jobfile.load([str(path)])  # validate: vars/env are not known yet, and that is fine
    found = problems(path, variables={}, environ={})
    assert found == [f"{path}:3:38: ${{{{ vars.x }}}} is not defined (pass --var x=VALUE)",
                     f"{path}:3:58: ${{{{ env.NOPE }}}} is not defined (set the environment variable NOPE)"]


@pytest.mark.parametrize(("expression", "message"), [
    ("${{ matrix.city }}", "is not defined (no such key in this job's matrix)"),
    ("${{ github.X }}", "unknown namespace 'github'"),
    ("${{ vars }}", "malformed expression"),
    ("${{ vars.x", "never closed"),
    ("${{ env.APIFY_TOKEN }}", "is refused"),
])
def test_validate_checks_expressions_without_secrets(write, expression: str, message: str) -> None:
    path = write("j.yaml", f"version: 1\njobs:\n  - name: a\n    task: me~t\n    input: {{q: '{expression}'}}\n")
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:5:16:") and message in found[0], found


def test_input_file_json_and_yaml_with_shallow_override(write) -> None:
    write("in/a.json", json.dumps({"urls": ["x"], "depth": 1}))
    write("in/b.yaml", "urls: [y]\ndepth: 2\ncountry: NO\n")
    path = write("j.yaml", """
        version: 1
        jobs:
          - {name: a, task: me~t, inputFile: in/a.json, input: {depth: 3}}
          - {name: b, task: me~t, inputFile: in/b.yaml}
        """)
    resolved = jobs(path)
    assert resolved["a"].input == {"urls": ["x"], "depth": 3}
    assert resolved["b"].input == {"urls": ["y"], "depth": 2, "country": "NO"}


def test_input_file_in_a_scanned_folder_is_not_a_job_file(write) -> None:
    write("in/b.yaml", "urls: [y]\n")
    path = write("j.yaml", "version: 1\njobs:\n  - {name: b, task: me~t, inputFile: in/b.yaml}\n")
    files, _ = jobfile.load([str(path.parent)])
    assert [f.path for f in files] == [str(path)]


def test_input_file_through_a_link_out_of_the_folder_is_refused(write, tmp_path: Path) -> None:
    outside = write("secret.json", "{}")
    path = write("sub/j.yaml", "version: 1\njobs:\n  - {name: a, task: me~t, inputFile: link.json}\n")
    (path.parent / "link.json").symlink_to(outside)
    assert "resolves (through a link) outside" in problems(path)[0]


def test_two_jobs_cannot_write_one_output(write) -> None:
    path = write("j.yaml", """
        version: 1
        jobs:
          - {name: a, task: me~t, output: same.json}
          - {name: b, task: me~t, output: ./same.json}
          - {name: c, task: me~t, dataset: {format: csv}}
          - {name: d, task: me~t, output: c.csv}
        """)
    found = problems(path)
    assert found == [f"{path}:4:5: job 'b' writes the same output 'same.json' as job 'a' ({path}:3)",
                     f"{path}:6:5: job 'd' writes the same output 'c.csv' as job 'c' ({path}:5)"]


def test_needs_cycles_are_each_reported_once_and_a_job_cannot_need_itself(tmp_path: Path) -> None:
    path = tmp_path / "cycles.yaml"
    path.write_text("version: 1\njobs:\n  - {name: a, task: me~t, needs: [b]}\n  - {name: b, task: me~t, needs: [c]}\n"
                    "  - {name: c, task: me~t, needs: [a]}\n  - {name: d, task: me~t, needs: [d]}\n"
                    "  - {name: e, task: me~t, needs: [f]}\n  - {name: f, task: me~t, needs: [e, a]}\n"
                    "  - {name: m, task: me~t, needs: [m], matrix: {x: [1, 2, 3]}}\n")
    with pytest.raises(JobFileError) as raised:
        jobfile.load([str(path)], {}, {})
    found = sorted(str(p) for p in raised.value.problems)
    assert found == sorted([f"{path}:5:34: needs form a cycle: a -> b -> c -> a", f"{path}:6:35: job 'd' needs itself",
                            f"{path}:8:34: needs form a cycle: e -> f -> e", f"{path}:9:35: job 'm' needs itself"])
