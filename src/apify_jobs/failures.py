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
      starting one); None: nobody can tell, so recovery looks before anything is sent again.
    """

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

    error_type = "connection-dropped"
    retry_class = "connection"

    def __init__(self, message: str, request_sent: bool):
        super().__init__(message)
        self.request_sent = request_sent
        self.started_run = None if request_sent else False


class NotConnected(ConnectionDropped):
    """Nothing reached the server (DNS, a refused connection, a TLS handshake): retried under `connection`,
    with no look for a run (none can have started)."""

    error_type = "connection-failed"
    started_run = False

    def __init__(self, message: str):
        super().__init__(message, request_sent=False)


class SetupFailed(JobFailure):
    """The way to the API is broken for every job alike (TLS verification, a proxy, the CA settings): the
    batch stops, with what to fix."""

    error_type = "connection-setup-failed"
    stops_batch = True
    started_run = False  # the request never reached the API


class InvalidAnswer(JobFailure):
    """The server answered, but not in a form that can be read (too many or too long headers, an absurd
    Content-Length, an encoding that was not asked for): not a drop, so never re-sent."""

    error_type = "invalid-answer"


class AnswerTooLarge(InvalidAnswer):
    """An answer larger than what was asked for could be: not parsed (a run's INPUT larger than any request
    could have sent is not that request's run)."""


class Redirected(JobFailure):
    """A 3xx: never followed (a POST turned GET, or the input and token sent to another host); never re-sent."""

    error_type = "redirected"


class RunFailed(JobFailure):
    """The run started and failed: never retried (a second run costs money and fails again)."""

    error_type = "run-failed"
    started_run = True


class RunTimeoutExceeded(JobFailure):
    """408: run-sync stopped waiting while the run goes on: never retried."""

    error_type = "run-timeout-exceeded"
    started_run = True


class RateLimited(JobFailure):
    error_type = "rate-limit-exceeded"
    retry_class = "rate-limit"
    started_run = False  # refused before a run was started

    def __init__(self, message: str, http_status: int, retry_after: float | None):
        super().__init__(message, http_status)
        self.retry_after = retry_after  # seconds the server asked for (Retry-After, either form)


class CapacityExceeded(JobFailure):
    """No run was started (account concurrency or memory limit)."""

    retry_class = "capacity"
    started_run = False


class CapacityWaitExceeded(JobFailure):
    """Refused by the account's limits for longer than the job's `capacity.maxWait`: no run was started."""

    error_type = "capacity-exceeded"
    started_run = False


class NoCredit(JobFailure):
    """402 for want of credit (not a capacity refusal): every other job would be refused too."""

    stops_batch = True
    started_run = False


class ServerError(JobFailure):
    retry_class = "server-error"

    def __init__(self, message: str, http_status: int | None = None, error_type: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, http_status, error_type)
        self.retry_after = retry_after


class AuthFailed(JobFailure):
    """401/403: every other job would fail the same way, so the batch stops."""

    stops_batch = True


class HttpFailure(JobFailure):
    """Any other answer that is not 201."""


class RecoveryFailed(JobFailure):
    """A run was adopted, but its state or output could not be fetched: never a reason to send it again."""

    error_type = "recovery-failed"


class FollowTimeout(JobFailure):
    """A run followed past run-sync's 300 s (or adopted) did not finish within `follow.maxWait`; it goes on."""

    error_type = "follow-timeout"


class ExpectationFailed(JobFailure):
    """The output arrived whole but is not what `expect` says: never retried (a new run costs money and a
    broken scraper breaks again); the output is kept beside the last good one as `<output>.rejected`."""

    error_type = "expectation-failed"

    def __init__(self, message: str, violations: int):
        super().__init__(message)
        self.violations = violations


class OutputFailure(JobFailure):
    """The answer arrived but could not be written (disk full, a path that leads out of the folder)."""

    error_type = "output-failed"


class OutputCollision(OutputFailure):
    """Another job of the batch writes (or wrote) the file this job's answer would go to: nothing is written
    over it (`validate` refuses every case it can see in the job files; this is the net for the rest)."""

    error_type = "output-collision"


class Cancelled(JobFailure):
    error_type = "cancelled"


# The one registry of `retry.on` values: the schema's enum must equal its keys (tests/test_failures.py).
RETRY_CLASSES: dict[str, type[JobFailure]] = {
    cls.retry_class: cls for cls in (ConnectionDropped, RateLimited, CapacityExceeded, ServerError)
    if cls.retry_class is not None
}
