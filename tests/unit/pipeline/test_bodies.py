"""Response body handlers other than streams: which one a response gets, a JSON body
through the chain, a non-JSON error rewritten in the API's format."""

from __future__ import annotations

import json

import pytest

from extproc.core.request import ApiRequest
from extproc.core.rewriting import Span
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.pipeline import Continue, Immediate, ResponseMode
from extproc.pipeline.bodies import (
    ERROR_QUOTE_CHARS,
    ErrorRewriteBody,
    ForwardBody,
    JsonBody,
    error_text,
    response_mode,
)
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.policies.noop import NoOpPolicy
from tests.helpers.pipeline import Touching, Upper, request_headers, started
from tests.helpers.runtime import KEY, make_pipeline

M = ResponseMode
SSE, JSON, TEXT, HTML = "text/event-stream", "application/json", "text/plain", "text/html"


@pytest.mark.parametrize(
    ("status", "ctype", "parsed", "reads", "mode"),
    [
        # Non-JSON errors are made in format, whatever the request was.
        (503, TEXT, True, True, M.ERROR_REWRITE),
        (502, HTML, False, False, M.ERROR_REWRITE),
        (413, "", False, True, M.ERROR_REWRITE),
        (404, SSE, True, False, M.ERROR_REWRITE),
        # JSON errors pass as the provider wrote them.
        (429, JSON, True, True, M.FORWARD),
        (529, "application/problem+json", True, True, M.FORWARD),
        # Streams of a parsed request are framed, also when no policy reads them (a stream
        # that ends early still gets its terminator).
        (200, SSE, True, True, M.SSE),
        (200, SSE, True, False, M.SSE),
        (200, SSE, False, True, M.FORWARD),
        (206, SSE, True, True, M.SSE),
        # JSON bodies are buffered only for a chain that reads them.
        (200, JSON, True, True, M.JSON),
        (200, JSON, True, False, M.FORWARD),
        (200, JSON, False, True, M.FORWARD),
        # Other content, and statuses outside 2xx without an error, pass.
        (200, TEXT, True, True, M.FORWARD),
        (200, "", True, True, M.FORWARD),
        (304, SSE, True, True, M.FORWARD),
        (101, JSON, True, True, M.FORWARD),
    ],
)
def test_response_mode(status: int, ctype: str, parsed: bool, reads: bool, mode: M) -> None:
    assert response_mode(status, ctype, parsed, reads) is mode


@pytest.mark.parametrize(
    ("status", "quoted", "text"),
    [
        (503, "no healthy upstream", "no healthy upstream (HTTP 503)"),
        (502, "", "the upstream failed (HTTP 502)"),
        (404, "", "request failed (HTTP 404)"),
        (
            413,
            "Payload Too Large",
            "request body exceeds the gateway limit of 777 bytes (HTTP 413)",
        ),
        (413, "", "request body exceeds the gateway limit of 777 bytes (HTTP 413)"),
    ],
)
def test_error_text(status: int, quoted: str, text: str) -> None:
    assert error_text(status, quoted, 777) == text


async def test_forward_body_passes_every_chunk() -> None:
    body = ForwardBody()
    assert body.mode is M.FORWARD
    first, last = await body.feed(b"abc", False), await body.feed(b"", True)
    assert (first.data, first.end_of_stream, last.data, last.end_of_stream) == (
        b"abc",
        False,
        b"",
        True,
    )
    body.close()


# -- JsonBody --------------------------------------------------------------------------------


def json_body(
    dialect: Dialect, chain: PolicyChain | None = None, max_bytes: int = 1000
) -> JsonBody:
    request = ApiRequest(
        dialect=dialect, path=dialect.path, model="m", stream=False, body={"messages": []}
    )
    return JsonBody(
        dialect, request, chain or PolicyChain([Touching()]), max_bytes, 0.5, "POST /test"
    )


ANTHROPIC_MESSAGE = b'{"id": "m", "type": "message", "content": [{"type": "text", "text": "x"}]}'
OPENAI_COMPLETION = (
    b'{"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": '
    b'{"role": "assistant", "content": "x"}, "finish_reason": "stop"}]}'
)


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_json_body_over_its_limit_is_a_502_in_format(dialect: Dialect) -> None:
    body = json_body(dialect, max_bytes=10)
    assert (await body.feed(b"{" + b" " * 8, False)).data == b""
    out = await body.feed(b' "a": 1}', False)
    assert out.end_of_stream
    message = "the response exceeds the gateway's limit of 10 bytes for policy checks"
    assert out.data == dialect.error_body(502, message)
    assert body.buffer == bytearray()


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_json_body_that_is_not_json_passes_through(dialect: Dialect) -> None:
    body = json_body(dialect)
    await body.feed(b"{not ", False)
    out = await body.feed(b"json", True)
    assert (out.data, out.end_of_stream) == (b"{not json", True)


class RaisingRewriter(Policy[PolicyConfig]):
    rewrites_text = True
    holdback = 0

    def rewriter(self, request: ApiRequest) -> RaisingRewriter:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("dialect", "raw"), [(ANTHROPIC, ANTHROPIC_MESSAGE), (OPENAI_CHAT, OPENAI_COMPLETION)]
)
async def test_json_body_policy_failure_is_a_500_in_format(dialect: Dialect, raw: bytes) -> None:
    body = json_body(dialect, PolicyChain([RaisingRewriter()]))
    out = await body.feed(raw, True)
    assert out.end_of_stream
    assert out.data == dialect.error_body(500, "a gateway policy failed on the response")


@pytest.mark.parametrize(
    ("dialect", "raw"), [(ANTHROPIC, ANTHROPIC_MESSAGE), (OPENAI_CHAT, OPENAI_COMPLETION)]
)
async def test_json_body_unchanged_keeps_its_bytes_changed_is_reserialized(
    dialect: Dialect, raw: bytes
) -> None:
    out = await json_body(dialect).feed(raw, True)
    assert out.data == raw
    out = await json_body(dialect, PolicyChain([Upper()])).feed(raw, True)
    assert b"CHANGED" in out.data and out.data != raw


async def test_json_response_goes_through_chain() -> None:
    original = b'{"id": "m", "content": [{"type": "text", "text": "x"}]}'
    p = await started(chain=PolicyChain([Touching()]), ctype="application/json")
    assert p.body_handler.mode is ResponseMode.JSON
    assert (await p.on_response_body(original[:10], False)).data == b""
    assert (await p.on_response_body(original[10:], True)).data == original
    p = await started(chain=PolicyChain([Upper()]), ctype="application/json")
    res = await p.on_response_body(original, True)
    assert json.loads(res.data)["content"][0]["text"] == "CHANGED"


async def test_json_response_of_a_chain_reading_none_is_forwarded() -> None:
    p = await started(chain=PolicyChain([NoOpPolicy()]), ctype="application/json")
    assert p.body_handler.mode is ResponseMode.FORWARD


# -- ErrorRewriteBody ---------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_error_rewrite_quotes_at_most_one_kib(dialect: Dialect) -> None:
    body = ErrorRewriteBody(dialect, 502, 100)
    page = b"<html>  <body>\n" + b"word " * 2000  # 10 KB, whitespace collapsed when quoted
    for i in range(0, len(page), 1000):
        assert (await body.feed(page[i : i + 1000], False)).data == b""
    out = await body.feed(b"", True)
    assert out.end_of_stream
    quoted = " ".join(page.decode().split())[:ERROR_QUOTE_CHARS]
    assert ERROR_QUOTE_CHARS == 1024
    assert out.data == dialect.error_body(502, f"{quoted} (HTTP 502)")
    assert body.buffer == bytearray()


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_error_rewrite_413_names_the_limit(dialect: Dialect) -> None:
    body = ErrorRewriteBody(dialect, 413, 4096)
    out = await body.feed(b"Payload Too Large", True)
    message = "request body exceeds the gateway limit of 4096 bytes (HTTP 413)"
    assert out.data == dialect.error_body(413, message)


async def test_error_rewrite_of_invalid_utf8() -> None:
    out = await ErrorRewriteBody(OPENAI_CHAT, 503, 1).feed(b"bad \xff byte", True)
    assert json.loads(out.data)["error"]["message"] == "bad \ufffd byte (HTTP 503)"


async def test_error_status_passes_through_unchanged() -> None:
    p = make_pipeline()
    p.on_request_headers(request_headers(), False)
    await p.on_request_body(b'{"model":"claude-x","messages":[]}')
    p.on_response_headers({":status": "529", "content-type": "application/json"}, False)
    assert p.body_handler.mode is ResponseMode.FORWARD
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert (await p.on_response_body(body, True)).data == body


async def test_plain_text_error_rewritten_in_format() -> None:
    p = make_pipeline()
    p.on_request_headers(request_headers("/v1/chat/completions"), False)
    out = p.on_response_headers({":status": "503", "content-type": "text/plain"}, False)
    assert isinstance(out, Continue) and out.set_headers["content-type"] == "application/json"
    assert (await p.on_response_body(b"no healthy ", False)).data == b""
    res = await p.on_response_body(b"upstream", True)
    err = json.loads(res.data)["error"]
    assert err["type"] == "server_error" and "no healthy upstream" in err["message"]


@pytest.mark.parametrize(
    ("path", "headers", "dialect"),
    [
        ("/v1/models", {}, OPENAI_CHAT),
        ("/v1/models", {"anthropic-version": "2023-06-01"}, ANTHROPIC),
        ("/v1/models/gpt-4o", {}, OPENAI_CHAT),
    ],
)
async def test_plain_text_error_rewritten_on_forwarded_paths(
    path: str, headers: dict[str, str], dialect: Dialect
) -> None:
    """Deliberate change: forwarded paths (model lists, count_tokens) get their non-JSON
    upstream errors in format too."""
    p = make_pipeline()
    p.on_request_headers({":method": "GET", ":path": path, "x-api-key": KEY, **headers}, True)
    out = p.on_response_headers({":status": "502", "content-type": "text/html"}, False)
    assert isinstance(out, Continue) and out.set_headers == {"content-type": "application/json"}
    assert p.body_handler.mode is ResponseMode.ERROR_REWRITE
    res = await p.on_response_body(b"<h1>Bad Gateway</h1>", True)
    assert res.data == dialect.error_body(502, "<h1>Bad Gateway</h1> (HTTP 502)")


async def test_plain_text_error_rewritten_on_count_tokens() -> None:
    p = make_pipeline()
    head = {":method": "POST", ":path": "/v1/messages/count_tokens", "x-api-key": KEY}
    p.on_request_headers(head, False)
    await p.on_request_body(b'{"model": "claude-x", "messages": []}')
    p.on_response_headers({":status": "503", "content-type": "text/plain"}, False)
    res = await p.on_response_body(b"upstream connect error", True)
    assert res.data == ANTHROPIC.error_body(503, "upstream connect error (HTTP 503)")


async def test_plain_text_error_without_a_body_coming_is_answered_at_once() -> None:
    p = make_pipeline(envoy_sends_body=False)
    p.on_request_headers(request_headers("/v1/chat/completions"), False)
    await p.on_request_body(b'{"model": "gpt-4o", "messages": []}')
    out = p.on_response_headers({":status": "503", "content-type": "text/plain"}, False)
    assert isinstance(out, Immediate) and out.status == 503
    assert json.loads(out.body)["error"]["message"] == "the upstream failed (HTTP 503)"
    assert p.complete
