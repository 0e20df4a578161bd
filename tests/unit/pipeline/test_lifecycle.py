"""A request's phases: the table of moves, and the phases real requests go through."""

from __future__ import annotations

import logging

import pytest

from extproc.pipeline import Continue, Immediate, Phase, RequestPipeline
from extproc.pipeline.lifecycle import MOVES, Lifecycle
from tests.helpers.pipeline import ANTHROPIC_STREAM, request_headers
from tests.helpers.runtime import KEY, make_pipeline

P = Phase


def test_moves_table() -> None:
    assert set(MOVES) == set(Phase)
    assert {
        P.REQUEST_HEADERS: {P.REQUEST_BODY, P.RESPONSE_HEADERS, P.DONE},
        P.REQUEST_BODY: {P.RESPONSE_HEADERS, P.DONE},
        P.RESPONSE_HEADERS: {P.RESPONSE_BODY, P.DONE},
        P.RESPONSE_BODY: {P.DONE},
        P.DONE: set(),
    } == MOVES
    # Any phase may end; nothing follows the end.
    assert all(P.DONE in MOVES[phase] for phase in Phase if phase is not P.DONE)


def test_lifecycle_starts_at_the_request_headers_and_ends_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    life = Lifecycle()
    assert life.phase is P.REQUEST_HEADERS
    for phase in (P.REQUEST_BODY, P.RESPONSE_HEADERS, P.RESPONSE_BODY):
        life.move(phase)
        life.move(phase)  # staying put is no move
        assert life.phase is phase
    life.end()
    life.end()
    assert life.phase is P.DONE
    assert "unexpected" not in caplog.text


def test_an_unexpected_move_is_logged_and_taken(caplog: pytest.LogCaptureFixture) -> None:
    life = Lifecycle()
    life.move(P.RESPONSE_BODY)
    assert life.phase is P.RESPONSE_BODY
    expected = "unexpected ext_proc message order: response_body reached from request_headers"
    assert expected in caplog.text
    life.end()
    life.move(P.REQUEST_BODY)
    assert life.phase is P.REQUEST_BODY
    assert "unexpected ext_proc message order: request_body reached from done" in caplog.text


class Recorder:
    """The phases a pipeline goes through, recorded after each message."""

    def __init__(self, p: RequestPipeline) -> None:
        self.p = p
        self.seen = [p.phase]

    def note(self) -> None:
        if self.p.phase is not self.seen[-1]:
            self.seen.append(self.p.phase)


async def test_phases_of_a_normal_stream(caplog: pytest.LogCaptureFixture) -> None:
    p = make_pipeline()
    rec = Recorder(p)
    assert isinstance(p.on_request_headers(request_headers(), False), Continue)
    rec.note()
    await p.on_request_body(b'{"model": "claude-x", "stream": true, "messages": []}')
    rec.note()
    p.on_response_headers({":status": "200", "content-type": "text/event-stream"}, False)
    rec.note()
    assert not p.complete
    await p.on_response_body(ANTHROPIC_STREAM[:50], False)
    rec.note()
    await p.on_response_body(ANTHROPIC_STREAM[50:], True)
    rec.note()
    assert rec.seen == [
        P.REQUEST_HEADERS,
        P.REQUEST_BODY,
        P.RESPONSE_HEADERS,
        P.RESPONSE_BODY,
        P.DONE,
    ]
    assert p.complete and "unexpected" not in caplog.text


async def test_phases_of_a_rejected_request() -> None:
    p = make_pipeline()
    rec = Recorder(p)
    assert isinstance(
        p.on_request_headers(request_headers(**{"x-api-key": "no"}), False), Immediate
    )
    rec.note()
    assert rec.seen == [P.REQUEST_HEADERS, P.DONE] and p.complete and p.status == 401
    # A request refused at its body ends there too.
    p = make_pipeline()
    rec = Recorder(p)
    p.on_request_headers(request_headers(), False)
    rec.note()
    assert isinstance(await p.on_request_body(b"{"), Immediate)
    rec.note()
    assert rec.seen == [P.REQUEST_HEADERS, P.REQUEST_BODY, P.DONE] and p.status == 400


async def test_phases_of_a_forwarded_get_without_body(caplog: pytest.LogCaptureFixture) -> None:
    p = make_pipeline()
    rec = Recorder(p)
    head = {":method": "GET", ":path": "/v1/models", "x-api-key": KEY}
    assert isinstance(p.on_request_headers(head, True), Continue)
    rec.note()
    p.on_response_headers({":status": "200", "content-type": "application/json"}, False)
    rec.note()
    out = await p.on_response_body(b'{"data": []}', True)
    rec.note()
    assert out.data == b'{"data": []}' and out.end_of_stream
    assert rec.seen == [P.REQUEST_HEADERS, P.RESPONSE_HEADERS, P.RESPONSE_BODY, P.DONE]
    assert "unexpected" not in caplog.text


async def test_response_headers_that_end_the_response_end_the_request() -> None:
    p = make_pipeline()
    p.on_request_headers({":method": "GET", ":path": "/v1/models", "x-api-key": KEY}, True)
    assert p.on_response_headers({":status": "204"}, True) == Continue()
    assert p.phase is P.DONE and p.complete


async def test_fast_path_completes_without_a_done_phase(caplog: pytest.LogCaptureFixture) -> None:
    """Envoy without response processing (a chain that reads no responses) sends no
    response message at all: the request is complete once it went upstream."""
    p = make_pipeline(envoy_sends_body=False)
    rec = Recorder(p)
    p.on_request_headers(request_headers(), False)
    rec.note()
    assert not p.complete
    await p.on_request_body(b'{"model": "claude-x", "messages": []}')
    rec.note()
    assert rec.seen == [P.REQUEST_HEADERS, P.REQUEST_BODY, P.RESPONSE_HEADERS]
    assert p.complete and p.phase is not P.DONE
    assert "unexpected" not in caplog.text


async def test_response_headers_without_a_body_coming_end_the_request() -> None:
    p = make_pipeline(envoy_sends_body=False)
    p.on_request_headers(request_headers(), False)
    await p.on_request_body(b'{"model": "claude-x", "messages": []}')
    assert p.on_response_headers(
        {":status": "200", "content-type": "text/event-stream"}, False
    ) == (Continue())
    assert p.phase is P.DONE


async def test_envoys_own_reply_while_the_body_is_awaited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Envoy answers a request itself before its body was read (a chunked body over its
    buffer limit): the reply's headers come while the request body is awaited. That is a
    move the table allows, and the reply is rewritten in the API's format."""
    caplog.set_level(logging.WARNING, logger="extproc.pipeline")
    p = make_pipeline()
    p.on_request_headers(request_headers(), False)
    assert p.phase is P.REQUEST_BODY
    out = p.on_response_headers({":status": "413", "content-type": "text/plain"}, False)
    assert isinstance(out, Continue) and p.phase is P.RESPONSE_BODY
    body = await p.on_response_body(b"Payload Too Large", True)
    assert b"request_too_large" in body.data and body.end_of_stream and p.phase is P.DONE
    assert "unexpected" not in caplog.text


async def test_body_after_done_is_dropped() -> None:
    p = make_pipeline()
    p.on_request_headers({":method": "GET", ":path": "/v1/models", "x-api-key": KEY}, True)
    p.on_response_headers({":status": "200", "content-type": "application/json"}, False)
    await p.on_response_body(b"{}", True)
    later = await p.on_response_body(b"more", True)
    assert later.data == b"" and not later.end_of_stream
