"""The failure classes: one registry of retry classes, and connection errors sorted by their types."""

from __future__ import annotations

import http.client
import json

import pytest
import requests
import urllib3.exceptions

from apify_jobs.api.failures import RETRY_CLASSES, ConnectionDropped, JobFailure, drop_reason, transport_failure
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
