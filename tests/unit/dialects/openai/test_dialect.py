"""The OpenAI chat completions dialect's wire knowledge (extproc/dialects/openai/dialect.py)."""

from __future__ import annotations

import orjson
import pytest

from extproc.core.providers import ProviderApi
from extproc.dialects.base import RoutedBy
from extproc.dialects.openai.stream_engine import OpenAIStreamEngine
from extproc.dialects.registry import OPENAI_CHAT
from extproc.policies.base import PolicyChain
from extproc.sse import Frame
from tests.helpers.dialects import api_request, openai_body
from tests.helpers.streams import frames, validate_stream


def test_identity_and_paths() -> None:
    assert (OPENAI_CHAT.name, OPENAI_CHAT.provider_api) == ("openai", ProviderApi.OPENAI)
    assert OPENAI_CHAT.path == "/v1/chat/completions"
    assert OPENAI_CHAT.max_tokens_fields == ("max_tokens", "max_completion_tokens")
    models = OPENAI_CHAT.forwarded_path("/v1/models/gpt-x")
    assert models is not None and (models.methods, models.routed_by) == (
        ("GET",),
        RoutedBy.PATH_MODEL,
    )
    assert models.path_model("/v1/models") == ""
    assert OPENAI_CHAT.forwarded_path("/v1/chat/completions") is None
    assert OPENAI_CHAT.forwarded_path("/v1/messages/count_tokens") is None


def test_request_problem() -> None:
    assert OPENAI_CHAT.request_problem({"model": "m", "messages": []}) is None
    assert OPENAI_CHAT.request_problem({"model": "m", "messages": {}}) == (
        "messages: an array of messages is required",
        "messages",
    )


def test_texts_system_prompt_and_last_user_text() -> None:
    body = openai_body()
    assert list(OPENAI_CHAT.texts(body)) == ["sys", "dev", "hi", "files"]
    new = OPENAI_CHAT.rewrite_texts(body, str.upper)
    assert new is not None and new["messages"][0]["content"] == "SYS"
    # System and developer instructions, in order, one paragraph each.
    assert OPENAI_CHAT.system_prompt(body) == "sys\n\ndev"
    assert OPENAI_CHAT.system_prompt({"messages": []}) == ""
    assert OPENAI_CHAT.last_user_text(body) == "hi"


def test_upstream_headers_and_provider() -> None:
    assert OPENAI_CHAT.credential_headers("sk-1") == {"authorization": "Bearer sk-1"}
    assert OPENAI_CHAT.added_headers({}) == {} and OPENAI_CHAT.client_headers() == {}
    # Anthropic serves chat completions too, on its compatible endpoint.
    assert OPENAI_CHAT.wrong_provider("claude-x", "anthropic", ProviderApi.ANTHROPIC) is None
    assert OPENAI_CHAT.wrong_provider("gpt-x", "openai", ProviderApi.OPENAI) is None


@pytest.mark.parametrize(
    ("status", "etype", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", "invalid_api_key"),
        (403, "permission_error", None),
        (404, "invalid_request_error", "not_found"),
        (413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_exceeded", "rate_limit_exceeded"),
        (502, "server_error", None),
        (418, "invalid_request_error", None),
        (599, "server_error", None),
    ],
)
def test_error_documents(status: int, etype: str, code: str | None) -> None:
    document = {"error": {"message": "no", "type": etype, "param": "p", "code": code}}
    assert OPENAI_CHAT.error_document(status, "no", param="p") == document
    assert orjson.loads(OPENAI_CHAT.error_body(status, "no", "p")) == document
    overridden = OPENAI_CHAT.error_document(status, "no", code="envoy_detail")
    assert overridden["error"]["code"] == "envoy_detail"


def test_stream_error_is_an_error_then_done() -> None:
    raw = OPENAI_CHAT.stream_error("went wrong")
    error, done = frames(raw)
    assert orjson.loads(error.data or "") == {
        "error": {"message": "went wrong", "type": "server_error", "param": None, "code": None}
    }
    assert OPENAI_CHAT.is_error_payload(error) and not OPENAI_CHAT.ends_stream(error)
    assert done.data == "[DONE]" and OPENAI_CHAT.ends_stream(done)
    assert b'"type":"server_error"' in OPENAI_CHAT.stream_error("x", "overloaded_error")
    assert b'"type":"rate_limit_exceeded"' in OPENAI_CHAT.stream_error("x", "rate_limit_exceeded")
    assert OPENAI_CHAT.close_after_error() == b"data: [DONE]\n\n"
    assert not OPENAI_CHAT.is_error_payload(Frame(raw=b"", comments=[" x"]))


def test_event_is_a_data_line() -> None:
    payload = {"id": "c", "choices": []}
    event = OPENAI_CHAT.event(payload)
    assert event.raw == b'data: {"id":"c","choices":[]}\n\n'
    assert event.name is None and event.payload is payload


def test_engines_and_validator_follow_the_request() -> None:
    request = api_request(openai_body(), OPENAI_CHAT)
    assert isinstance(OPENAI_CHAT.stream_engine(PolicyChain([]), request), OpenAIStreamEngine)
    text = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )

    def violations(body: dict[str, object]) -> list[str]:
        validator = OPENAI_CHAT.validator(api_request(body, OPENAI_CHAT))
        for frame in frames(text):
            validator.feed(frame)
        return validator.finish()

    # A usage chunk is expected exactly when the request asked for one.
    assert violations(openai_body()) == []
    with_usage = {**openai_body(), "stream_options": {"include_usage": True}}
    assert violations(with_usage) == ["usage was requested but no usage chunk was sent"]
    assert validate_stream("/v1/chat/completions", with_usage, text) == violations(with_usage)
    assert violations({**openai_body(), "stream_options": {"include_usage": "yes"}}) == []


def test_as_a_client() -> None:
    assert OPENAI_CHAT.simple_path == "/chat/completions"
    assert OPENAI_CHAT.simple_request("judge", "sys", "user") == {
        "model": "judge",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "user"}],
    }
    assert OPENAI_CHAT.reply_text({"choices": [{"message": {"content": "ok"}}]}) == "ok"
    with pytest.raises(IndexError):
        OPENAI_CHAT.reply_text({"choices": []})
