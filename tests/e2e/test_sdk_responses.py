"""OpenAI's Responses API (`POST /v1/responses`) through the real Envoy with the official
`openai` SDK, on the session stack (noop, every response through ext_proc).

The SDK is used the three ways clients use it: `responses.create` (the JSON object),
`responses.create(stream=True)` (raw typed events) and `responses.stream(...)` (the
accumulator whose `get_final_response()` trusts the terminal event's `response`). Bytes
the gateway did not change are compared with the mock's own answer to the same request
bytes, fetched straight from the mock.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack
from tests.helpers.policy_stack import (
    O_MODEL,
    R_TOOLS,
    assert_sdk_events,
    responses_client,
)
from tests.helpers.responses_mock import summary
from tests.helpers.streams import (
    frames,
    responses_events,
    responses_of_type,
    validate_responses_stream,
)

pytestmark = pytest.mark.e2e

KEY = {"x-api-key": DEV_GATEWAY_KEY}
DEADLINE_S = 10.0  # a broken upstream must end the client's stream well within this
REASONING: dict[str, Any] = {
    "model": "o4-mini",
    "input": "Count to 3",
    "reasoning": {"summary": "auto"},
    "include": ["reasoning.encrypted_content"],
}
THOUGHT = 'The user wrote: "Count to 3". I should answer briefly and directly.'
# name -> (request, the output every way of asking must end with, ids left out)
CASES: dict[str, tuple[dict[str, Any], list[tuple[str, ...]]]] = {
    "text": (
        {"model": O_MODEL, "input": "Count to 5"},
        [("message", "1, 2, 3, 4, 5")],
    ),
    "function_call": (
        {"model": O_MODEL, "input": "Please use bash to run `echo hi`", "tools": R_TOOLS},
        [
            ("message", "I'll use the bash tool."),
            ("function_call", "bash", '{"command":"echo hi"}'),
        ],
    ),
    "parallel_calls": (
        {"model": O_MODEL, "input": "use bash to run `ls -la` and get_weather", "tools": R_TOOLS},
        [
            ("message", "I'll use the bash and get_weather tools."),
            ("function_call", "bash", '{"command":"ls -la"}'),
            ("function_call", "get_weather", '{"city":"example city"}'),
        ],
    ),
    "reasoning": (REASONING, [("reasoning", THOUGHT, "encrypted"), ("message", "1, 2, 3")]),
}
# How the mock writes its bytes: the gateway's output must not depend on it.
WIRES = {
    "plain": {},
    "random-chunks": {"x-mock-chunking": "random:17", "x-mock-chunk-delay-ms": "1"},
    "crlf-random-chunks": {
        "x-mock-line-ending": "crlf",
        "x-mock-chunking": "random:4",
        "x-mock-chunk-delay-ms": "1",
    },
}


def _direct(st: Stack, sent: bytes, headers: dict[str, str]) -> httpx.Response:
    """The mock's own answer to exactly these request bytes."""
    return httpx.post(
        f"http://127.0.0.1:{st.settings.mock_port}/v1/responses",
        content=sent,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )


def _stream_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps({**body, "stream": True}).encode()


def _post_stream(st: Stack, sent: bytes, headers: dict[str, str]) -> bytes:
    """These request bytes through the gateway: the streamed answer's bytes."""
    with httpx.stream(
        "POST",
        f"{st.base_url}/v1/responses",
        content=sent,
        headers={**KEY, "content-type": "application/json", **headers},
        timeout=30,
    ) as resp:
        assert resp.status_code == 200, resp.read()[:300]
        return resp.read()


# -- the three ways of asking agree ------------------------------------------------------


def test_create_returns_the_text(stack: Stack) -> None:
    client, _ = responses_client(stack)
    with client:
        resp = client.responses.create(model=O_MODEL, input="Count to 3")
    assert resp.output_text == "1, 2, 3"
    assert resp.status == "completed" and resp.object == "response"
    assert resp.usage is not None and resp.usage.output_tokens > 0


def test_create_stream_yields_typed_numbered_events(stack: Stack) -> None:
    client, transport = responses_client(stack)
    body: dict[str, Any] = {"model": O_MODEL, "input": "Count to 3"}
    with client:
        events = list(client.responses.create(stream=True, **body))
    assert_sdk_events(events)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "1, 2, 3"
    assert events[-1].response.output_text == "1, 2, 3"
    ((_, raw),) = transport.bodies
    assert validate_responses_stream(raw, body) == []
    assert b"[DONE]" not in raw  # the Responses API has no [DONE]


@pytest.mark.parametrize("case", CASES)
def test_create_stream_and_accumulator_agree(stack: Stack, case: str) -> None:
    body, expected = CASES[case]
    client, transport = responses_client(stack)
    with client:
        plain = client.responses.create(**body)
        events = list(client.responses.create(stream=True, **body))
        with client.responses.stream(**body) as s:
            streamed = list(s)
            final = s.get_final_response()
    assert_sdk_events(events)
    assert_sdk_events(streamed)
    assert summary(plain.output) == expected
    assert summary(events[-1].response.output) == expected
    assert summary(final.output) == expected
    assert final.output_text == plain.output_text
    for _, raw in transport.bodies[1:]:
        assert validate_responses_stream(raw, body) == []


@pytest.mark.parametrize("stream", [False, True])
def test_encrypted_reasoning_arrives_byte_identical(stack: Stack, stream: bool) -> None:
    client, transport = responses_client(stack)
    with client:
        if stream:
            with client.responses.stream(**REASONING) as s:
                list(s)
                got = s.get_final_response()
        else:
            got = client.responses.create(**REASONING)
    sent = transport.requests[0].content
    direct = _direct(stack, sent, {})
    if stream:
        (done,) = [
            e["item"]
            for e in responses_of_type(direct.content, "response.output_item.done")
            if e["item"]["type"] == "reasoning"
        ]
    else:
        done = direct.json()["output"][0]
    blob = done["encrypted_content"]
    assert blob.startswith("gAAAAA")
    assert got.output[0].type == "reasoning"
    assert got.output[0].encrypted_content == blob
    # ...and as bytes on the wire, in every event that carries the item.
    ((_, raw),) = transport.bodies
    needle = b'"encrypted_content":' + json.dumps(blob).encode()
    assert raw.count(needle) == direct.content.count(needle) >= 1


# -- byte fidelity -----------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("case", CASES)
def test_stream_bytes_identical_to_the_mock(stack: Stack, case: str, wire: str) -> None:
    body, expected = CASES[case]
    headers = WIRES[wire]
    client, transport = responses_client(stack, headers)
    with client:
        events = list(client.responses.create(stream=True, **body))
    assert_sdk_events(events)
    assert summary(events[-1].response.output) == expected
    ((response, raw),) = transport.bodies
    direct = _direct(stack, transport.requests[0].content, headers)
    assert direct.status_code == response.status_code == 200
    assert raw == direct.content
    if "crlf" in wire:
        assert b"\r\n\r\n" in raw and b"\n\n" not in raw.replace(b"\r\n", b"")
    assert validate_responses_stream(raw, body) == []


@pytest.mark.parametrize("case", CASES)
def test_json_bytes_identical_to_the_mock(stack: Stack, case: str) -> None:
    body, expected = CASES[case]
    client, transport = responses_client(stack)
    with client:
        resp = client.responses.create(**body)
    assert summary(resp.output) == expected
    ((_, raw),) = transport.bodies
    assert raw == _direct(stack, transport.requests[0].content, {}).content


def test_unicode_survives_random_chunking(stack: Stack) -> None:
    client, _ = responses_client(stack, WIRES["random-chunks"])
    with client, client.responses.stream(model=O_MODEL, input="unicode please") as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert deltas == final.output_text == "héllo wörld — 你好 🌍 ✓"


# -- routing and bad input -----------------------------------------------------------------


def test_claude_model_is_refused_with_the_right_endpoints(stack: Stack) -> None:
    client, _ = responses_client(stack)
    with client, pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="claude-sonnet-4-6", input="hi")
    err = info.value
    assert err.status_code == 400
    assert err.param == "model" and err.type == "invalid_request_error"
    assert "/v1/messages" in err.message and "/v1/chat/completions" in err.message
    assert set(err.response.json()["error"]) >= {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"input": 42}, "input"),
        ({"input": {"role": "user", "content": "hi"}}, "input"),
        ({"input": "hi", "tools": [{"type": "telepathy"}]}, "tools[0].type"),
        (
            {"input": "hi", "tools": [{"type": "function", "name": "f"}, {"name": "x"}]},
            "tools[1].type",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_request_bodies_get_400_in_format(
    stack: Stack, extra: dict[str, Any], param: str, stream: bool
) -> None:
    client, _ = responses_client(stack)
    with client, pytest.raises(openai.BadRequestError) as info:
        if stream:
            list(client.responses.create(model=O_MODEL, stream=True, **extra))
        else:
            client.responses.create(model=O_MODEL, **extra)
    assert info.value.param == param
    assert info.value.type == "invalid_request_error"
    assert info.value.response.headers["content-type"].startswith("application/json")


def test_missing_key_is_authentication_error(stack: Stack) -> None:
    client, transport = responses_client(stack, api_key="unused")
    with client, pytest.raises(openai.AuthenticationError) as info:
        # Omit() removes the SDK's Authorization header: no key at all.
        client.responses.create(
            model=O_MODEL, input="hi", extra_headers={"Authorization": openai.Omit()}
        )
    assert "authorization" not in transport.requests[0].headers
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"


def test_wrong_key_is_authentication_error(stack: Stack) -> None:
    client, _ = responses_client(stack, api_key="sk-wrong-responses-key")
    with client, pytest.raises(openai.AuthenticationError) as info:
        list(client.responses.create(model=O_MODEL, input="hi", stream=True))
    assert "sk-wrong-responses-key" not in str(info.value.body)


@pytest.mark.parametrize("stream", [False, True])
def test_rate_limit_reaches_client_with_retry_after(stack: Stack, stream: bool) -> None:
    client, transport = responses_client(stack, {"x-mock-error": "429"})
    with client, pytest.raises(openai.RateLimitError) as info:
        if stream:
            list(client.responses.create(model=O_MODEL, input="hi", stream=True))
        else:
            client.responses.create(model=O_MODEL, input="hi")
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"
    direct = _direct(stack, transport.requests[0].content, {"x-mock-error": "429"})
    assert transport.bodies[0][1] == direct.content


# -- upstream failures -------------------------------------------------------------------


def _sdk_stream_error(st: Stack, headers: dict[str, str]) -> tuple[openai.APIError, list[Any]]:
    """Iterate a stream until the SDK raises; (the error, the events before it)."""
    client, _ = responses_client(st, headers)
    seen: list[Any] = []
    started = time.monotonic()
    with client, pytest.raises(openai.APIError) as info:
        for event in client.responses.create(model=O_MODEL, input="Count to 5", stream=True):
            seen.append(event)
    assert time.monotonic() - started < DEADLINE_S
    return info.value, seen


@pytest.mark.parametrize("after", ["2", "5", "7"])
def test_upstream_ending_early_gets_an_error_event(stack: Stack, after: str) -> None:
    headers = {"x-mock-truncate-after": after}
    body: dict[str, Any] = {"model": O_MODEL, "input": "Count to 5"}
    via = _post_stream(stack, _stream_bytes(body), headers)
    direct = _direct(stack, _stream_bytes(body), headers)
    # What the upstream sent arrives unchanged, then one error event ends the stream.
    assert via.startswith(direct.content)
    tail = frames(via[len(direct.content) :])
    assert [f.event for f in tail] == ["error"] and tail[0].terminated
    payload = json.loads(tail[0].data or "")
    assert payload["type"] == "error"
    assert payload["error"]["message"] == payload["message"]
    assert "ended the stream" in payload["message"]
    # The SDK raises at that event, having typed everything before it.
    err, seen = _sdk_stream_error(stack, headers)
    assert "ended the stream" in err.message
    assert [e.sequence_number for e in seen] == list(range(int(after)))


def test_gateway_error_event_continues_the_numbering(stack: Stack) -> None:
    """The real API numbers its `error` event like every other (DESIGN.md: each event has
    a sequence_number, strictly increasing, no gaps); the gateway's own must too."""
    body: dict[str, Any] = {"model": O_MODEL, "input": "Count to 5"}
    via = _post_stream(stack, _stream_bytes(body), {"x-mock-truncate-after": "5"})
    numbers = [p.get("sequence_number") for p in responses_events(via)]
    assert numbers == list(range(6))


@pytest.mark.parametrize("delay_ms", ["0", "20"])
def test_upstream_dying_mid_stream_never_hangs(stack: Stack, delay_ms: str) -> None:
    """A reset upstream: an in-format 502 when Envoy saw it before the client got
    anything, else a broken connection (README "Known limit"); an APIError either way,
    promptly."""
    err, _ = _sdk_stream_error(stack, {"x-mock-die-after": "5", "x-mock-chunk-delay-ms": delay_ms})
    if isinstance(err, openai.APIStatusError):
        assert err.status_code == 502
        assert set(err.response.json()["error"]) >= {"message", "type", "param", "code"}
    else:
        assert isinstance(err, openai.APIConnectionError)


def test_midstream_overload_passes_through_unchanged(stack: Stack) -> None:
    headers = {"x-mock-error": "overloaded-midstream"}
    body: dict[str, Any] = {"model": O_MODEL, "input": "Count to 5"}
    via = _post_stream(stack, _stream_bytes(body), headers)
    direct = _direct(stack, _stream_bytes(body), headers)
    assert via == direct.content
    assert [p["type"] for p in responses_events(via)][-2:] == ["error", "response.failed"]
    err, seen = _sdk_stream_error(stack, headers)
    assert err.message == "Overloaded"
    assert seen[-1].type == "response.output_text.delta"


def test_garbage_passes_through_and_the_stream_ends(stack: Stack) -> None:
    headers = {"x-mock-script": "garbage"}
    body: dict[str, Any] = {"model": O_MODEL, "input": "hi"}
    started = time.monotonic()
    via = _post_stream(stack, _stream_bytes(body), headers)
    assert time.monotonic() - started < DEADLINE_S
    direct = _direct(stack, _stream_bytes(body), headers)
    assert via == direct.content
    assert b"{not json at all" in via
    assert responses_events(via)[-1]["type"] == "response.completed"
    # The SDK reads `event: weird` without data as json.loads(""): it raises, promptly,
    # rather than hang (the upstream's garbage, not the gateway's).
    client, _ = responses_client(stack, headers)
    with client, pytest.raises(ValueError):
        list(client.responses.create(stream=True, **body))
