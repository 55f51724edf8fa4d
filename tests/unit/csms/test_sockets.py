"""What a listener's HTTP server logs (csms.sockets.ServerLog): a malformed request or one
its client cut off now and then, on one line; any other error as aiohttp logs it."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage

from csms.service.repeats import LOG_EVERY
from csms.sockets import ServerLog


def bad_request() -> BadHttpMessage:
    return BadHttpMessage("Invalid header value char:\n\n    b'X: \\x1b'\n         ^")


def test_malformed_requests_are_one_line_now_and_then(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_log = ServerLog(logging.getLogger("test.listener"), "a listener")
    with caplog.at_level(logging.DEBUG, logger="test.listener"):
        for _ in range(LOG_EVERY):
            server_log.exception("Error handling request from %s", "203.0.113.9",
                                 exc_info=bad_request())
        server_log.debug("Error handling request from %s", "203.0.113.9",
                         exc_info=bad_request())  # aiohttp's level for a bad method
    assert server_log.malformed == LOG_EVERY + 1
    assert [(r.levelno, r.exc_info, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, None, "! a listener: a malformed request from 203.0.113.9:"
                                " Invalid header value char (1 so far)"),
        (logging.WARNING, None, "! a listener: a malformed request from 203.0.113.9:"
                                f" Invalid header value char ({LOG_EVERY} so far)")]


def test_a_handler_that_failed_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_log = ServerLog(logging.getLogger("test.listener"), "a listener")
    failure = RuntimeError("a bug of ours")
    with caplog.at_level(logging.DEBUG, logger="test.listener"):
        server_log.exception("Error handling request from %s", "127.0.0.1", exc_info=failure)
        server_log.debug("Ignored premature client disconnection")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "Error handling request from 127.0.0.1"),
        (logging.DEBUG, "Ignored premature client disconnection")]
    assert caplog.records[0].exc_info is not None
    assert caplog.records[0].exc_info[1] is failure
    assert server_log.malformed == 0


def test_requests_their_clients_cut_off_are_one_line_now_and_then(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_log = ServerLog(logging.getLogger("test.listener"), "a listener")
    with caplog.at_level(logging.DEBUG, logger="test.listener"):
        for _ in range(3):
            server_log.exception("Error handling request from %s", "203.0.113.9",
                                 exc_info=ConnectionResetError("Connection lost"))
    assert server_log.cut_off == 3 and server_log.malformed == 0
    assert [(r.levelno, r.exc_info, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, None, "! a listener: a request cut off by its client from"
                                " 203.0.113.9 (1 so far)")]
