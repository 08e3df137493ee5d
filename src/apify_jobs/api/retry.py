"""The one retry machinery, on tenacity: what is retried, how long to wait, what is logged; every wait ends
at once on Ctrl-C. Run-sync attempts follow the job's policy; the look-ups of an adopted run follow a fixed
one of their own and can never lead to a second POST."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from apify_jobs.failures import Cancelled, JobFailure
from apify_jobs.model import RetryPolicy

log = logging.getLogger("apify_jobs")
T = TypeVar("T")
RETRY_AFTER_CAP = 600.0


def retryable(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    """Only the classes the job opted into; run-failed and 408 have no class, so nothing can opt them in."""
    return lambda exc: isinstance(exc, JobFailure) and exc.retry_class is not None and exc.retry_class in policy.on


def _retrying(policy: RetryPolicy, cancelled: threading.Event,
              warn: Callable[[RetryCallState], None] | None = None) -> Retrying:
    jitter = wait_random_exponential(multiplier=policy.initial, max=policy.max_wait)

    def wait(state: RetryCallState) -> float:
        seconds = jitter(state)
        failure = state.outcome.exception() if state.outcome else None
        retry_after = getattr(failure, "retry_after", None)
        return max(seconds, min(retry_after, RETRY_AFTER_CAP)) if retry_after else seconds

    def sleep(seconds: float) -> None:
        if cancelled.wait(seconds):
            raise Cancelled("cancelled while waiting to retry")

    return Retrying(stop=stop_after_attempt(policy.attempts), wait=wait, retry=retry_if_exception(retryable(policy)),
                    sleep=sleep, before_sleep=warn, reraise=True)


def call_with_retries(name: str, policy: RetryPolicy, attempt: Callable[[int], T],
                      cancelled: threading.Event) -> tuple[T, int]:
    """Run ``attempt(n)`` until it succeeds or the policy gives up; returns (result, attempts made).

    A final failure is re-raised with ``attempts`` set on it.
    """
    def warn(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        wait_for = state.next_action.sleep if state.next_action else 0
        # A drop after sending, or a 5xx from a gateway in front of the API, may hide a run that started.
        started = isinstance(failure, JobFailure) and failure.started_run is not False
        maybe_run = " The platform may already have started a run for that attempt." if started else ""
        log.warning("%s: attempt %d of %d failed (%s: %s); retrying in %.1f s.%s", name, state.attempt_number,
                    policy.attempts, getattr(failure, "error_type", "error"), failure, wait_for, maybe_run)

    made = 0
    try:
        for try_ in _retrying(policy, cancelled, warn):
            with try_:
                made = try_.retry_state.attempt_number
                if cancelled.is_set():
                    raise Cancelled("cancelled before the request was sent")
                result = attempt(made)
        return result, made
    except JobFailure as failure:
        failure.attempts = made
        raise


def call_patiently(call: Callable[[], T], cancelled: threading.Event, policy: RetryPolicy) -> T:
    """A look-up (GET) under ``policy``, with the same cancel-aware waits as the run-sync attempts."""
    for try_ in _retrying(policy, cancelled):
        with try_:
            if cancelled.is_set():
                raise Cancelled("cancelled while looking up the run")
            result = call()
    return result
