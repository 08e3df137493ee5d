"""How a job can fail: one exception type per row of the retry table, each with its facts as data, and the
registry of retry classes. Every layer raises and reads these; sorting an API answer or a transport error
into them is the API's (`api/failures.py`)."""

from __future__ import annotations


class JobFailure(Exception):
    """A job did not produce its output. Each class carries its facts as data, read by the retry loop, the
    runner and recovery (never by matching class or retry-class names):

    - ``retry_class``: the `retry.on` entry that may retry it (None: nothing can opt it in);
    - ``stops_batch``: every other job would fail the same way;
    - ``started_run``: could the attempt that failed so have started a run? True: the platform answered as
      only a started run does; False: it cannot have (nothing was sent, or the platform refused before
      starting one); None: nobody can tell, so recovery looks before anything is sent again;
    - ``fix``: what the user can do about it (docs/troubleshooting.md is generated from the docstrings and these).
    """

    fix = "Read the job's `error.message` in the summary or `report.json`: it says what the API answered."
    error_type = "failed"
    retry_class: str | None = None
    stops_batch = False
    started_run: bool | None = None

    def __init__(self, message: str, http_status: int | None = None, error_type: str | None = None,
                 run_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        if error_type:
            self.error_type = error_type
        self.run_id = run_id
        self.attempts = 0  # set by the retry loop when it gives up


class ConnectionDropped(JobFailure):
    """No connection, a reset, a body cut short or a read timeout. ``request_sent``: a run may have started."""

    fix = ("Nothing to do for a few: `retry.on: [connection]` (the default) retries after recovery looked for the "
           "run the attempt may have started. If it persists, check the network path (a proxy or NAT that cuts long "
           "silent requests) and raise `retry.attempts`.")
    error_type = "connection-dropped"
    retry_class = "connection"

    def __init__(self, message: str, request_sent: bool):
        super().__init__(message)
        self.request_sent = request_sent
        self.started_run = None if request_sent else False


class NotConnected(ConnectionDropped):
    """Nothing reached the server (DNS, a refused connection, a TLS handshake): retried under `connection`,
    with no look for a run (none can have started)."""

    fix = ("Check `APIFY_API_BASE_URL`, DNS and the proxy (`HTTPS_PROXY`, `NO_PROXY`). Nothing was sent, so running "
           "again costs nothing.")
    error_type = "connection-failed"
    started_run = False

    def __init__(self, message: str):
        super().__init__(message, request_sent=False)


class SetupFailed(JobFailure):
    """The way to the API is broken for every job alike (TLS verification, a proxy, the CA settings): the
    batch stops, with what to fix."""

    fix = ("Fix what the message names: the CA certificates (`REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`, `SSL_CERT_DIR`) "
           "or the proxy. TLS verification cannot be turned off.")
    error_type = "connection-setup-failed"
    stops_batch = True
    started_run = False  # the request never reached the API


class InvalidAnswer(JobFailure):
    """The server answered, but not in a form that can be read (too many or too long headers, an absurd
    Content-Length, an encoding that was not asked for): not a drop, so never re-sent."""

    fix = ("Something between you and the API changed the answer (a proxy, a captive portal): check "
           "`APIFY_API_BASE_URL` and the proxy. A run may have started: look for it in the console before running "
           "the job again.")
    error_type = "invalid-answer"


class AnswerTooLarge(InvalidAnswer):
    """An answer larger than what was asked for could be: not parsed (a run's INPUT larger than any request
    could have sent is not that request's run)."""

    fix = ("Check the runs the message names in the console: recovery refused to take an answer that cannot be this "
           "request's for it.")


class Redirected(JobFailure):
    """A 3xx: never followed (a POST turned GET, or the input and token sent to another host); never re-sent."""

    fix = ("Point `APIFY_API_BASE_URL` at the API itself (the message names the host it was sent to). Redirects are "
           "never followed, so the token never goes to another host.")
    error_type = "redirected"


class RunFailed(JobFailure):
    """The run started and failed: never retried (a second run costs money and fails again)."""

    fix = ("Open the run (its console link is in the summary and the report), fix the task or its input, then run "
           "the failed jobs again: `run --resume --failed`.")
    error_type = "run-failed"
    started_run = True


class RunTimeoutExceeded(JobFailure):
    """408: run-sync stopped waiting while the run goes on: never retried."""

    fix = ("Only with `follow: false`: drop it (by default the run is followed past run-sync's 300 s), or make the "
           "run shorter.")
    error_type = "run-timeout-exceeded"
    started_run = True


class RateLimited(JobFailure):
    """429: the API refused the request for its rate limit, before starting a run."""

    fix = "Add `rate-limit` to `retry.on` (the wait honours `Retry-After`), or lower `--concurrency`."
    error_type = "rate-limit-exceeded"
    retry_class = "rate-limit"
    started_run = False  # refused before a run was started

    def __init__(self, message: str, http_status: int, retry_after: float | None):
        super().__init__(message, http_status)
        self.retry_after = retry_after  # seconds the server asked for (Retry-After, either form)


class CapacityExceeded(JobFailure):
    """No run was started (account concurrency or memory limit)."""

    fix = ("Lower `--concurrency` or `options.memory`, or free runs on the account; admission waits for room up to "
           "`capacity.maxWait`.")
    retry_class = "capacity"
    started_run = False


class CapacityWaitExceeded(JobFailure):
    """Refused by the account's limits for longer than the job's `capacity.maxWait`: no run was started."""

    fix = ("Raise `capacity.maxWait`, run fewer jobs at once, or stop what else runs on the account. Nothing was "
           "started, so running again costs nothing.")
    error_type = "capacity-exceeded"
    started_run = False


class NoCredit(JobFailure):
    """402 for want of credit (not a capacity refusal): every other job would be refused too."""

    fix = "Add credit, or raise the account's monthly usage limit in the console. Nothing was started."
    stops_batch = True
    started_run = False


class ServerError(JobFailure):
    """A 5xx: the platform or a proxy in front of it failed; whether a run started cannot be told."""

    fix = ("The platform's trouble: run the failed jobs again later (`run --resume --failed`), or add `server-error` "
           "to `retry.on` (recovery looks for a started run before anything is sent again).")
    retry_class = "server-error"

    def __init__(self, message: str, http_status: int | None = None, error_type: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, http_status, error_type)
        self.retry_after = retry_after


class AuthFailed(JobFailure):
    """401/403: every other job would fail the same way, so the batch stops."""

    fix = "Check `APIFY_TOKEN`: a token of the account that owns the tasks, or one that may run them."
    stops_batch = True
    started_run = False  # the API checks the token before it starts anything


class HttpFailure(JobFailure):
    """Any other answer that is not 201."""

    fix = ("Read the API's error type and message: most often a task or Actor that does not exist under that name "
           "(404), or an input the Actor refuses (400).")


class RecoveryFailed(JobFailure):
    """A run was adopted, but its state or output could not be fetched: never a reason to send it again."""

    fix = ("Run again with `--resume` once the platform answers: the attempt stays open, so the next run looks for "
           "its run by identity and collects it instead of paying for another. The message names the run (or the "
           "candidates recovery could not tell apart) with console links; to stop a run that is still going "
           "instead, `apify-jobs abort` (the next run then sends the job anew).")
    error_type = "recovery-failed"


class FollowTimeout(JobFailure):
    """A run followed past run-sync's 300 s (or adopted) did not finish within `follow.maxWait`; it goes on."""

    fix = ("Raise `follow.maxWait` for runs this long. The run goes on and is billed: abort it in the console if it "
           "is not wanted.")
    error_type = "follow-timeout"
    started_run = True  # the 408 said so, and the run was found


class ExpectationFailed(JobFailure):
    """The output arrived whole but is not what `expect` says: never retried (a new run costs money and a
    broken scraper breaks again); the output is kept beside the last good one as `<output>.rejected`."""

    fix = ("Compare `<output>.rejected` with the last good output: fix the scraper, or the `expect` that is wrong. "
           "The next `run --resume` runs the job again (a failed expectation is never resumed).")
    error_type = "expectation-failed"
    started_run = True  # its output arrived

    def __init__(self, message: str, violations: int):
        super().__init__(message)
        self.violations = violations


class OutputFailure(JobFailure):
    """The answer arrived but could not be written (disk full, a path that leads out of the folder)."""

    fix = ("Free disk space, or fix the output path the message names; the report keeps the run's ID, whose output "
           "the console still has.")
    error_type = "output-failed"
    started_run = True  # the answer arrived: its run is paid for


class OutputCollision(OutputFailure):
    """Another job of the batch writes (or wrote) the file this job's answer would go to: nothing is written
    over it (`validate` refuses every case it can see in the job files; this is the net for the rest)."""

    fix = "Give one of the two jobs an `output:` of its own."
    error_type = "output-collision"


class Cancelled(JobFailure):
    """The job was not finished: the batch stopped (fail-fast, Ctrl-C or SIGTERM) before or while it ran."""

    fix = ("Another job failed under `failFast` or `--fail-fast`, or the run was interrupted: run again with "
           "`--resume`; runs an interrupted batch left going are adopted, not sent again.")
    error_type = "cancelled"


# The one registry of `retry.on` values: the schema's enum must equal its keys (tests/test_failures.py).
RETRY_CLASSES: dict[str, type[JobFailure]] = {
    cls.retry_class: cls for cls in (ConnectionDropped, RateLimited, CapacityExceeded, ServerError)
    if cls.retry_class is not None
}
