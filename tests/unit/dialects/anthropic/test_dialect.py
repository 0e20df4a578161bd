"""The Anthropic Messages dialect's wire knowledge (extproc/dialects/anthropic/dialect.py)."""

from __future__ import annotations

import orjson
import pytest

from extproc.core.providers import ProviderApi
from extproc.dialects.anthropic.stream_engine import AnthropicStreamEngine
from extproc.dialects.anthropic.validator import StreamValidator
from extproc.dialects.base import RoutedBy
from extproc.dialects.registry import ANTHROPIC
from extproc.policies.base import PolicyChain
from extproc.sse import Frame
from tests.helpers.dialects import anthropic_body, api_request
from tests.helpers.streams import frames


def test_identity_and_paths() -> None:
    assert (ANTHROPIC.name, ANTHROPIC.provider_api) == ("anthropic", ProviderApi.ANTHROPIC)
    assert ANTHROPIC.path == "/v1/messages" and ANTHROPIC.max_tokens_fields == ("max_tokens",)
    assert repr(ANTHROPIC) == "<anthropic dialect>"
    count = ANTHROPIC.forwarded_path("/v1/messages/count_tokens")
    assert count is not None and (count.methods, count.routed_by) == (
        ("POST",),
        RoutedBy.BODY_MODEL,
    )
    models = ANTHROPIC.forwarded_path("/v1/models/claude-x")
    assert models is not None and models.routed_by is RoutedBy.PATH_MODEL
    assert models.path_model("/v1/models/claude-x") == "claude-x"
    assert ANTHROPIC.forwarded_path("/v1/models") is models
    assert ANTHROPIC.forwarded_path("/v1/messages") is None
    assert ANTHROPIC.forwarded_path("/v1/messages/batches") is None


def test_request_problem() -> None:
    assert ANTHROPIC.request_problem({"model": "m", "messages": []}) is None
    assert ANTHROPIC.request_problem({"model": "m"}) == (
        "messages: an array of messages is required",
        "messages",
    )


def test_texts_system_prompt_and_last_user_text() -> None:
    body = anthropic_body()
    assert list(ANTHROPIC.texts(body))[:2] == ["sys one", "hello"]
    new = ANTHROPIC.rewrite_texts(body, str.upper)
    assert new is not None and new["messages"][0]["content"] == "HELLO"
    assert ANTHROPIC.system_prompt(body) == "sys one"
    assert ANTHROPIC.system_prompt({"system": "plain"}) == "plain"
    assert ANTHROPIC.system_prompt({}) == ""
    assert ANTHROPIC.last_user_text(body) == "look"
    body["messages"][3]["content"] = [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]
    assert ANTHROPIC.last_user_text(body) == "hello"  # tool results alone are skipped


def test_upstream_headers_and_provider() -> None:
    assert ANTHROPIC.credential_headers("sk-1") == {"x-api-key": "sk-1"}
    assert ANTHROPIC.added_headers({}) == {"anthropic-version": "2023-06-01"}
    assert ANTHROPIC.added_headers({"anthropic-version": "2024-01-01"}) == {}
    assert ANTHROPIC.client_headers() == {"anthropic-version": "2023-06-01"}
    assert ANTHROPIC.wrong_provider("claude-x", "anthropic", ProviderApi.ANTHROPIC) is None
    problem = ANTHROPIC.wrong_provider("gpt-x", "openai", ProviderApi.OPENAI)
    assert problem is not None and "'gpt-x'" in problem and "/v1/chat/completions" in problem


@pytest.mark.parametrize(
    ("status", "etype"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (504, "api_error"),
        (529, "overloaded_error"),
        (418, "invalid_request_error"),
        (599, "api_error"),
    ],
)
def test_error_documents(status: int, etype: str) -> None:
    document = {"type": "error", "error": {"type": etype, "message": "no"}}
    assert ANTHROPIC.error_document(status, "no", param="p", code="c") == document
    assert orjson.loads(ANTHROPIC.error_body(status, "no")) == document


def test_stream_error_ends_the_stream() -> None:
    raw = ANTHROPIC.stream_error("went wrong", "overloaded_error")
    (frame,) = frames(raw)
    assert frame.event == "error" and frame.terminated
    assert orjson.loads(frame.data or "") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "went wrong"},
    }
    assert ANTHROPIC.ends_stream(frame)
    assert b'"type":"api_error"' in ANTHROPIC.stream_error("x")
    assert not ANTHROPIC.is_error_payload(frame) and ANTHROPIC.close_after_error() is None


def test_ends_stream() -> None:
    assert ANTHROPIC.ends_stream(Frame(raw=b"", event="message_stop", data="{}"))
    assert not ANTHROPIC.ends_stream(Frame(raw=b"", event="message_delta", data="{}"))
    # Unnamed events: the payload's type says it.
    assert ANTHROPIC.ends_stream(Frame(raw=b"", data='{"type": "message_stop"}'))
    assert ANTHROPIC.ends_stream(Frame(raw=b"", data='{"type":"error","error":{}}'))
    assert not ANTHROPIC.ends_stream(Frame(raw=b"", data='{"type":"ping"}'))
    assert not ANTHROPIC.ends_stream(Frame(raw=b"", comments=[" x"]))


def test_event_is_named_by_its_type() -> None:
    payload = {"type": "content_block_stop", "index": 2}
    event = ANTHROPIC.event(payload)
    assert (
        event.raw == b'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n'
    )
    assert event.name == "content_block_stop" and event.payload is payload


def test_engines_and_validator() -> None:
    request = api_request(anthropic_body())
    assert isinstance(ANTHROPIC.stream_engine(PolicyChain([]), request), AnthropicStreamEngine)
    assert isinstance(ANTHROPIC.validator(request), StreamValidator)


def test_as_a_client() -> None:
    assert ANTHROPIC.simple_path == "/messages"
    assert ANTHROPIC.simple_request("judge", "sys", "user") == {
        "model": "judge",
        "max_tokens": 256,
        "system": "sys",
        "messages": [{"role": "user", "content": "user"}],
    }
    reply = {"content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "ok"}]}
    assert ANTHROPIC.reply_text(reply) == "ok"
    with pytest.raises(KeyError):
        ANTHROPIC.reply_text({"choices": []})
