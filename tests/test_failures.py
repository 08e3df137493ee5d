"""The failure classes: one registry of retry classes, and connection errors sorted by their types."""

from __future__ import annotations

import http.client
import json

import pytest
import requests
import urllib3.exceptions

from apify_jobs.api.failures import drop_reason, transport_failure
from apify_jobs.failures import RETRY_CLASSES, ConnectionDropped, JobFailure
from tests.conftest import REPO


def test_the_schema_offers_exactly_the_registered_retry_classes() -> None:
    schema = json.loads((REPO / "schema" / "jobs.schema.json").read_text())
    enum = schema["$defs"]["retry"]["properties"]["on"]["items"]["enum"]
    assert set(enum) == set(RETRY_CLASSES) and len(enum) == len(RETRY_CLASSES)
    assert all(cls.retry_class == name and issubclass(cls, JobFailure) for name, cls in RETRY_CLASSES.items())


def _wrapped(inner: BaseException, outer: type[requests.RequestException] = requests.ConnectionError) -> BaseException:
    """As requests raises them: its error holds urllib3's, which holds (or was raised during) the socket's."""
    try:
        try:
            raise inner
        except BaseException as caught:
            raise urllib3.exceptions.ProtocolError("Connection aborted.", caught) from None
    except urllib3.exceptions.ProtocolError as protocol:
        return outer(protocol)


@pytest.mark.parametrize(("inner", "reason", "sent"), [
    (ConnectionResetError(104, "reset"), "the connection was reset", True),
    (http.client.RemoteDisconnected("closed"), "the server closed the connection without answering", True),
    (http.client.IncompleteRead(b"abc", 7), "the answer was cut short after 3 bytes, 7 more expected", True),
    (TimeoutError("timed out"), "no answer within the read timeout", True),
])
def test_connection_errors_are_sorted_by_type_not_by_message(inner: BaseException, reason: str, sent: bool) -> None:
    inner.args = ("words that match nothing",) if not isinstance(inner, http.client.IncompleteRead) else inner.args
    assert drop_reason(_wrapped(inner)) == (reason, sent)


def test_a_message_that_looks_like_a_reset_is_not_taken_for_one() -> None:
    reason, sent = drop_reason(requests.ConnectionError("Connection reset by peer (it says)"))
    assert reason != "the connection was reset" and sent


def test_connect_timeout_was_never_sent() -> None:
    drop = transport_failure(requests.ConnectTimeout("slow"), connecting=True)
    assert isinstance(drop, ConnectionDropped) and not drop.request_sent and drop.message == "could not connect in time"
    assert drop.error_type == "connection-failed" and drop.retry_class == "connection"


def test_a_refused_connection_was_never_sent() -> None:
    drop = transport_failure(_wrapped(ConnectionRefusedError(111, "words")))
    assert isinstance(drop, ConnectionDropped) and not drop.request_sent
    assert drop.message == "could not connect: connection refused"


def test_too_many_headers_is_an_answer_that_cannot_be_read_not_a_drop() -> None:
    failure = transport_failure(_wrapped(http.client.HTTPException("got more than 100 headers")))
    assert failure.error_type == "invalid-answer" and failure.retry_class is None


def _every_failure_class() -> set[type[JobFailure]]:
    import apify_jobs.running.needs  # noqa: F401  (defines a failure class of its own)

    found: set[type[JobFailure]] = set()
    pending = [JobFailure]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending += cls.__subclasses__()
    return found


# Every failure class with its facts: (error type, retry class, stops the batch, could the attempt have started a run).
# A new class fails this test until its facts are written here, and recovery and the retry loop read only these.
FACTS = {
    "JobFailure": ("failed", None, False, None),
    "ConnectionDropped": ("connection-dropped", "connection", False, None),
    "NotConnected": ("connection-failed", "connection", False, False),
    "SetupFailed": ("connection-setup-failed", None, True, False),
    "InvalidAnswer": ("invalid-answer", None, False, None),
    "AnswerTooLarge": ("invalid-answer", None, False, None),
    "Redirected": ("redirected", None, False, None),
    "RunFailed": ("run-failed", None, False, True),
    "RunTimeoutExceeded": ("run-timeout-exceeded", None, False, True),
    "RateLimited": ("rate-limit-exceeded", "rate-limit", False, False),
    "CapacityExceeded": ("failed", "capacity", False, False),
    "CapacityWaitExceeded": ("capacity-exceeded", None, False, False),
    "NoCredit": ("failed", None, True, False),
    "ServerError": ("failed", "server-error", False, None),
    "AuthFailed": ("failed", None, True, False),
    "HttpFailure": ("failed", None, False, None),
    "RecoveryFailed": ("recovery-failed", None, False, None),
    "FollowTimeout": ("follow-timeout", None, False, True),
    "ExpectationFailed": ("expectation-failed", None, False, True),
    "OutputFailure": ("output-failed", None, False, True),
    "OutputCollision": ("output-collision", None, False, True),
    "Cancelled": ("cancelled", None, False, None),
    "NeedsValueFailed": ("needs-value-failed", None, False, False),
}


def test_every_failure_class_states_its_facts() -> None:
    classes = {cls.__name__: cls for cls in _every_failure_class() if cls.__module__.startswith("apify_jobs")}
    assert set(classes) == set(FACTS)
    for name, cls in classes.items():
        assert (cls.error_type, cls.retry_class, cls.stops_batch, cls.started_run) == FACTS[name], name


def test_a_drop_knows_from_whether_the_request_left() -> None:
    assert ConnectionDropped("reset", request_sent=True).started_run is None
    assert ConnectionDropped("refused", request_sent=False).started_run is False


def test_every_expect_key_has_a_registered_check() -> None:
    from apify_jobs.outputs.expect import CHECKS, LIMIT_KEYS

    schema = json.loads((REPO / "schema" / "jobs.schema.json").read_text())
    keys = [key for entry in CHECKS for key in entry.keys] + list(LIMIT_KEYS)
    assert sorted(keys) == sorted(schema["$defs"]["expect"]["properties"]) and len(set(keys)) == len(keys)


def test_the_reader_goes_as_deep_as_the_deepest_check_and_no_deeper(tmp_path, monkeypatch) -> None:
    """The early stop derives from the registered checks: a newly registered check of depth VALUES sees every
    item without a change to the reader; nonEmpty alone parses one."""
    from apify_jobs.outputs import expect
    from tests.helpers import make_job

    seen: list[int] = []

    class Spy:
        depth = expect.Depth.VALUES

        def item(self, index, value, verdict) -> None:
            seen.append(index)

        def document(self, value, verdict) -> None: ...

        def finish(self, seen, verdict) -> None: ...

    job = make_job(tmp_path, {"name": "a", "task": "me~t"})
    only_first = expect.Check(job, "application/json")
    monkeypatch.setattr(expect, "CHECKS", (*expect.CHECKS, expect.Registered(("spy",), lambda e: Spy())))
    spied = expect.Check(job, "application/json")
    for check in (only_first, spied):
        for piece in (b"[1,", b"2,", b"3]"):
            check.feed(piece)
        assert check.finish() is None
    assert seen == [0, 1, 2] and only_first.items == 1 and spied.items == 3
