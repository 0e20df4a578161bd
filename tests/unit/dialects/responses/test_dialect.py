"""The OpenAI Responses dialect's wire knowledge (extproc/dialects/responses/dialect.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.core.providers import ProviderApi
from extproc.core.request import DeclaredTool, ToolKind
from extproc.dialects.base import RoutedBy
from extproc.dialects.registry import OPENAI_RESPONSES as R
from extproc.dialects.responses.stream_engine import ResponsesStreamEngine
from extproc.policies.base import PolicyChain
from extproc.sse import Frame
from tests.helpers.engine import Redact
from tests.helpers.responses_engine import request_of, response, rplan, stream
from tests.helpers.streams import frames


def test_identity() -> None:
    assert (R.name, R.provider_api, R.path) == ("responses", ProviderApi.OPENAI, "/v1/responses")
    assert R.path_prefixes == ("/v1/responses",)
    assert R.max_tokens_fields == ("max_output_tokens",)
    assert repr(R) == "<responses dialect>"


@pytest.mark.parametrize(
    ("path", "methods", "routed_by", "request_policies"),
    [
        # The fixed names first: `{id}` would match them too.
        ("/v1/responses/input_tokens", ("POST",), RoutedBy.BODY_MODEL, True),
        ("/v1/responses/compact", ("POST",), RoutedBy.BODY_MODEL, True),
        ("/v1/responses/resp_1", ("GET", "DELETE"), RoutedBy.API_DEFAULT, False),
        ("/v1/responses/resp_1/cancel", ("POST",), RoutedBy.API_DEFAULT, False),
        ("/v1/responses/resp_1/input_items", ("GET",), RoutedBy.API_DEFAULT, False),
    ],
)
def test_forwarded_paths(
    path: str, methods: tuple[str, ...], routed_by: RoutedBy, request_policies: bool
) -> None:
    forwarded = R.forwarded_path(path)
    assert forwarded is not None
    assert (forwarded.methods, forwarded.routed_by, forwarded.request_policies) == (
        methods,
        routed_by,
        request_policies,
    )
    assert forwarded.path_model(path) == ""


@pytest.mark.parametrize(
    "path",
    [
        "/v1/responses",  # the API's own endpoint: not forwarded
        "/v1/responses/resp_1/other",
        "/v1/responses/a/b/cancel",
        "/v1/responses//cancel",
        "/v1/responsesx",
        "/v1/chat/completions",
    ],
)
def test_paths_that_are_not_forwarded(path: str) -> None:
    assert R.forwarded_path(path) is None


def test_the_fixed_names_are_matched_before_the_id_template() -> None:
    templates = [f.template for f in R.forwarded]
    stored = templates.index("/v1/responses/{id}")
    assert templates.index("/v1/responses/input_tokens") < stored
    assert templates.index("/v1/responses/compact") < stored


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"model": "m", "input": "hi"}, None),
        ({"model": "m", "input": []}, None),
        ({"model": "m", "input": [{"role": "user", "content": "hi"}], "tools": []}, None),
        # A stored prompt template may carry the input.
        ({"model": "m", "prompt": {"id": "pmpt_1"}}, None),
        ({"model": "m", "prompt": {"id": "pmpt_1"}, "input": "x"}, None),
        (
            {"model": "m"},
            ("input: a string or an array of input items is required", "input"),
        ),
        (
            {"model": "m", "input": None},
            ("input: a string or an array of input items is required", "input"),
        ),
        (
            {"model": "m", "input": {"role": "user"}},
            ("input: must be a string or an array of input items", "input"),
        ),
        (
            {"model": "m", "input": 3},
            ("input: must be a string or an array of input items", "input"),
        ),
        (
            {"model": "m", "prompt": {"id": "p"}, "input": 3},
            ("input: must be a string or an array of input items", "input"),
        ),
        ({"model": "m", "input": "x", "tools": {}}, ("tools: must be an array of tools", "tools")),
        (
            {
                "model": "m",
                "input": "x",
                "tools": [{"type": "function", "name": "f"}, {"type": "teleport"}],
            },
            ("tools[1].type: unknown tool type 'teleport'", "tools[1].type"),
        ),
        (
            {"model": "m", "input": "x", "tools": [{"name": "untyped"}]},
            ("tools[0].type: unknown tool type 'None'", "tools[0].type"),
        ),
        (
            {"model": "m", "input": "x", "tools": ["web_search"]},
            ("tools[0].type: unknown tool type 'None'", "tools[0].type"),
        ),
    ],
)
def test_request_problem(body: dict[str, Any], problem: tuple[str, str] | None) -> None:
    assert R.request_problem(body) == problem


def test_every_tool_type_the_gateway_governs_is_accepted() -> None:
    kinds = [
        "function",
        "custom",
        "web_search",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "image_generation",
        "computer_use_preview",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
        "namespace",
    ]
    tools = [{"type": kind} for kind in kinds]
    assert R.request_problem({"model": "m", "input": "x", "tools": tools}) is None
    long = "x" * 500
    message, _ = R.request_problem({"model": "m", "input": "x", "tools": [{"type": long}]}) or (
        "",
        "",
    )
    assert len(message) < 150  # the client's value is cut short


def test_texts_and_tools_come_from_the_request() -> None:
    body = {
        "model": "m",
        "instructions": "sys",
        "input": [
            {"role": "developer", "content": "dev"},
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ],
        "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}],
    }
    assert list(R.texts(body)) == ["sys", "dev", "hi"]
    new = R.rewrite_texts(body, str.upper)
    assert new is not None and new["instructions"] == "SYS"
    assert R.system_prompt(body) == "sys\n\ndev"
    assert R.last_user_text(body) == "hi"
    assert R.declared_tools(body) == [
        DeclaredTool(ToolKind.SERVER, "web_search"),
        DeclaredTool(ToolKind.CLIENT, "f"),
    ]
    assert request_of(body).declared_tools() == R.declared_tools(body)


def test_upstream() -> None:
    assert R.wrong_provider("gpt-x", "openai", ProviderApi.OPENAI) is None
    why = R.wrong_provider("claude-x", "anthropic", ProviderApi.ANTHROPIC)
    assert why is not None
    assert "'claude-x'" in why and "'anthropic'" in why and "Responses API" in why
    assert "/v1/messages" in why and "/v1/chat/completions" in why
    assert R.credential_headers("sk-1") == {"authorization": "Bearer sk-1"}
    assert R.added_headers({}) == {} and R.client_headers() == {}


@pytest.mark.parametrize(
    ("status", "etype", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", "invalid_api_key"),
        (403, "permission_error", None),
        (404, "invalid_request_error", "not_found"),
        (405, "invalid_request_error", None),
        (413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_exceeded", "rate_limit_exceeded"),
        (500, "server_error", None),
        (503, "server_error", None),
    ],
)
def test_error_documents(status: int, etype: str, code: str | None) -> None:
    document = {"error": {"message": "no", "type": etype, "param": "p", "code": code}}
    assert R.error_document(status, "no", param="p") == document
    assert orjson.loads(R.error_body(status, "no", "p")) == document
    assert R.error_document(status, "no", code="envoy_detail")["error"]["code"] == "envoy_detail"


def test_stream_error_has_both_shapes_and_ends_the_stream() -> None:
    raw = R.stream_error("went wrong")
    (frame,) = frames(raw)
    assert frame.event == "error"
    payload = orjson.loads(frame.data or "")
    # The documented shape (flat) and the one the API sends and the SDK raises on.
    assert payload == {
        "type": "error",
        "code": "server_error",
        "message": "went wrong",
        "param": None,
        "error": {
            "type": "server_error",
            "code": "server_error",
            "message": "went wrong",
            "param": None,
        },
    }
    assert raw.endswith(b"\n\n") and R.ends_stream(frame)
    assert not R.is_error_payload(frame) and R.close_after_error() is None
    for given, expected in (
        ("api_error", "server_error"),
        ("overloaded_error", "server_error"),
        ("rate_limit_exceeded", "rate_limit_exceeded"),
    ):
        error = orjson.loads(frames(R.stream_error("x", given))[0].data or "")
        assert error["code"] == error["error"]["type"] == expected


def frame_of(raw: bytes) -> Frame:
    (frame,) = frames(raw)
    return frame


@pytest.mark.parametrize(
    ("raw", "ends"),
    [
        (b'event: response.completed\ndata: {"type":"response.completed"}\n\n', True),
        (b"event: response.incomplete\ndata: {}\n\n", True),
        (b"event: response.failed\ndata: {}\n\n", True),
        (b'event: error\ndata: {"type":"error"}\n\n', True),
        (b'event: response.created\ndata: {"type":"response.completed"}\n\n', False),
        (b'event: response.output_item.done\ndata: {"type":"x"}\n\n', False),
        (b"event: ping\n\n", False),
        # Unnamed: the payload's type says it.
        (b'data: {"type":"response.completed","sequence_number":9}\n\n', True),
        (b'data: { "type" : "response.failed"}\n\n', True),
        (b'data: {"type":"response.incomplete"}\n\n', True),
        (b'data: {"type":"error","code":"x"}\n\n', True),
        (b'data: {"type":"response.created"}\n\n', False),
        (b'data: {"type":"response.completed_soon"}\n\n', False),
        (b'data: {"item":{"type":"response.completed"}}\n\n', False),
        (b"data: [DONE]\n\n", False),
        (b": comment\n\n", False),
    ],
)
def test_ends_stream(raw: bytes, ends: bool) -> None:
    assert R.ends_stream(frame_of(raw)) is ends


def test_event_is_named_by_its_type() -> None:
    payload = {"type": "response.output_text.delta", "delta": "é"}
    event = R.event(payload)
    assert event.raw == (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"delta":"\xc3\xa9"}\n\n'
    )
    assert event.name == "response.output_text.delta" and event.payload is payload


async def test_engines_and_validator() -> None:
    request = request_of()
    assert isinstance(R.stream_engine(PolicyChain([]), request), ResponsesStreamEngine)
    body = response(rplan(["hi"]))
    assert await R.process_message(body, PolicyChain([Redact()]), request) is body
    validator = R.validator(request)
    for frame in frames(stream(rplan(["hi"], ["get_weather"]))):
        validator.feed(frame)
    assert validator.finish() == []
    truncated = R.validator(request)
    for frame in frames(stream(rplan(["hi"]))[:-10]):
        truncated.feed(frame)
    assert truncated.finish() != []


def test_as_a_client() -> None:
    assert R.simple_path == "/responses"
    assert R.simple_request("judge", "sys", "user") == {
        "model": "judge",
        "instructions": "sys",
        "input": "user",
        "store": False,
    }
    reply = response(rplan(["The call looks ", "safe."], ["get_weather"], thinking=["hm"]))
    assert R.reply_text(reply) == "The call looks safe."
    document = {
        "output": [
            {"type": "reasoning", "summary": []},
            {
                "type": "message",
                "content": [
                    {"type": "output_text", "text": "one"},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "two"},
                ],
            },
            {"type": "function_call", "name": "f", "arguments": "{}"},
        ]
    }
    assert R.reply_text(document) == "one\ntwo"
    assert R.reply_text({"output": []}) == ""
    with pytest.raises(KeyError):
        R.reply_text({"choices": []})
    with pytest.raises(TypeError):
        R.reply_text(None)


def test_the_gateways_error_event_follows_the_streams_numbering() -> None:
    def error_of(raw: bytes) -> dict[str, Any]:
        (frame,) = frames(raw)
        assert frame.event == "error" and R.ends_stream(frame)
        payload: dict[str, Any] = orjson.loads(frame.data or "")
        return payload

    # Nothing numbered went out yet: no number to follow.
    ending = R.stream_ending()
    assert "sequence_number" not in error_of(ending.error("early"))
    sent = stream(rplan(["hi"]))
    cut = sent.index(b"event: response.output_text.done")
    ending.seen(sent[:cut])  # the last event sent is number 4
    ending.seen(b": keep-alive\n\n")  # nothing numbered: the count stands
    error = error_of(ending.error("upstream ended the stream before it was complete"))
    assert error["sequence_number"] == 5
    assert (
        error["message"]
        == error["error"]["message"]
        == ("upstream ended the stream before it was complete")
    )
    assert error["code"] == error["error"]["type"] == "server_error"
    # Each stream counts on its own.
    assert "sequence_number" not in error_of(R.stream_ending().error("x"))
