"""The mock LLM's OpenAI Responses API (`/v1/responses`).

Each scenario's stream is framed by the project's SSE framer and checked against the
wire contract, and the official SDK (lax and with strict validation) must accept it:
`create()`, `create(stream=True)` and the `stream()` accumulator, which checks event
order and item identity itself. Faults and scripts live in test_responses_faults.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.helpers.responses_mock import (
    deltas,
    events,
    is_typed,
    raw_stream,
    serve_mock,
    stream_problems,
    summary,
)

MODEL = "gpt-5"
BASH = {
    "type": "function",
    "name": "bash",
    "description": "Run a shell command",
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
        "required": ["command"],
    },
}
SEARCH = {
    "type": "function",
    "name": "web_search",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    "strict": False,
}
PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch"}
THOUGHT = 'The user wrote: "Count to 2". I should answer briefly and directly.'
FORTY = ", ".join(str(i) for i in range(1, 41))

# name -> (request fields, expected output as `summary` tuples)
SCENARIOS: dict[str, tuple[dict[str, Any], list[tuple[str, ...]]]] = {
    "count": ({"input": "Count to 3"}, [("message", "1, 2, 3")]),
    "repeat": (
        {
            "instructions": "be terse",
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Repeat after me: hunter2 é"}],
                }
            ],
        },
        [("message", "hunter2 é")],
    ),
    "function call": (
        {
            "input": "use bash: `ls -la`",
            "tools": [BASH],
            "tool_choice": {"type": "function", "name": "bash"},
        },
        [("function_call", "bash", '{"command":"ls -la","timeout":1}')],
    ),
    "parallel calls": (
        {
            "input": "Search with web_search, then use bash to run `rm -rf /`",
            "tools": [BASH, SEARCH],
        },
        [
            ("message", "I'll use the web_search and bash tools."),
            ("function_call", "web_search", '{"query":"rm -rf /"}'),
            ("function_call", "bash", '{"command":"rm -rf /","timeout":1}'),
        ],
    ),
    "no parallel calls": (
        {
            "input": "Search with web_search, then use bash to run `id`",
            "tools": [BASH, SEARCH],
            "parallel_tool_calls": False,
        },
        [
            ("message", "I'll use the web_search tool."),
            ("function_call", "web_search", '{"query":"id"}'),
        ],
    ),
    "custom tool": (
        {
            "input": "use apply_patch: `*** Begin Patch`",
            "tools": [PATCH],
            "tool_choice": "required",
        },
        [("custom_tool_call", "apply_patch", "*** Begin Patch")],
    ),
    "tool result": (
        {
            "tools": [BASH],
            "input": [
                {"role": "user", "content": "use bash: `ls`"},
                {"type": "function_call", "call_id": "call_1", "name": "bash", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "a.txt  b.txt"},
            ],
        },
        [("message", "The tool returned: a.txt b.txt")],
    ),
    "tool_choice none": (
        {"input": "use the tool", "tools": [BASH], "tool_choice": "none"},
        [("message", 'This is a mock response to "use the tool".')],
    ),
    "reasoning": (
        {"input": "Count to 2", "reasoning": {"effort": "low"}},
        [("reasoning", ""), ("message", "1, 2")],
    ),
    "reasoning summary encrypted": (
        {
            "input": "Count to 2",
            "reasoning": {"effort": "high", "summary": "auto"},
            "include": ["reasoning.encrypted_content"],
        },
        [("reasoning", THOUGHT, "encrypted"), ("message", "1, 2")],
    ),
    "max_output_tokens": (
        {"input": "Count to 40", "max_output_tokens": 16},
        [("message", FORTY[:64])],  # the mock's tokens are four characters
    ),
}
INCOMPLETE = {"max_output_tokens"}


def request(name: str) -> dict[str, Any]:
    return {"model": MODEL, **copy.deepcopy(SCENARIOS[name][0])}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_mock() as url:
        yield url


@pytest.fixture(scope="module", params=[False, True], ids=["lax", "strict"])
def client(request: pytest.FixtureRequest, base_url: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url + "/v1",
        api_key="x",
        max_retries=0,
        _strict_response_validation=request.param,
    )


@pytest.mark.parametrize("name", SCENARIOS)
def test_stream_keeps_the_wire_contract(base_url: str, name: str) -> None:
    raw = raw_stream(base_url, request(name))
    assert stream_problems(raw) == []
    got = [p for _, p in events(raw)]
    assert [p["type"] for p in got[:2]] == ["response.created", "response.in_progress"]
    for start in got[:2]:
        assert start["response"]["status"] == "in_progress" and start["response"]["output"] == []
        assert start["response"]["usage"] is None
    end = got[-1]["response"]
    assert got[-1]["type"] == (
        "response.incomplete" if name in INCOMPLETE else "response.completed"
    )
    assert summary(end["output"]) == SCENARIOS[name][1]
    message = [s[1] for s in SCENARIOS[name][1] if s[0] == "message"]
    assert "".join(deltas(raw)) == "".join(message)
    assert all(p["logprobs"] == [] for p in got if p["type"].startswith("response.output_text"))
    assert all(p["obfuscation"] for p in got if p["type"].endswith(".delta"))
    usage = end["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert usage["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}


def test_item_events_follow_recorded_order(base_url: str) -> None:
    raw = raw_stream(base_url, request("reasoning summary encrypted"))
    kinds = [p["type"].removeprefix("response.") for _, p in events(raw)]
    assert kinds[:4] == [
        "created",
        "in_progress",
        "output_item.added",
        "reasoning_summary_part.added",
    ]
    first_done = kinds.index("output_item.done")
    assert kinds[first_done - 3 : first_done] == [
        "reasoning_summary_text.delta",
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
    ]
    assert kinds[first_done + 1 :] == [
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    added = events(raw)[2][1]["item"]
    assert added["summary"] == [] and added["encrypted_content"].startswith("gAAAAA")
    plain = [p["type"] for _, p in events(raw_stream(base_url, request("reasoning")))]
    assert plain[2:4] == ["response.output_item.added", "response.output_item.done"]
    assert (
        "encrypted_content" not in events(raw_stream(base_url, request("reasoning")))[2][1]["item"]
    )


def test_parallel_calls_are_items_in_turn(base_url: str) -> None:
    got = [p for _, p in events(raw_stream(base_url, request("parallel calls")))]
    added = [p for p in got if p["type"] == "response.output_item.added"]
    assert [(p["output_index"], p["item"]["type"]) for p in added] == [
        (0, "message"),
        (1, "function_call"),
        (2, "function_call"),
    ]
    calls = [p["item"] for p in added[1:]]
    assert all(c["arguments"] == "" and c["status"] == "in_progress" for c in calls)
    assert [c["id"][:3] for c in calls] == ["fc_", "fc_"] and calls[0]["id"] != calls[1]["id"]
    assert all(c["call_id"].startswith("call_") for c in calls)
    assert calls[0]["call_id"] != calls[1]["call_id"]
    pieces = [p for p in got if p["type"] == "response.function_call_arguments.delta"]
    assert len(pieces) > 4 and {p["output_index"] for p in pieces} == {1, 2}
    # Each call finishes before the next starts.
    order = [p["output_index"] for p in got if "output_index" in p]
    assert order == sorted(order)


def test_streams_are_deterministic_and_ids_derive_from_the_request(base_url: str) -> None:
    body = request("parallel calls")
    first, again = raw_stream(base_url, body), raw_stream(base_url, body)
    assert first == again
    other = raw_stream(base_url, {**body, "input": body["input"] + "!"})
    ids = events(first)[-1][1]["response"]["id"], events(other)[-1][1]["response"]["id"]
    assert ids[0] != ids[1] and all(i.startswith("resp_") and len(i) == 53 for i in ids)


@pytest.mark.parametrize("name", SCENARIOS)
def test_sdk_create(client: openai.OpenAI, name: str) -> None:
    resp = client.responses.create(**request(name))
    assert summary(resp.output) == SCENARIOS[name][1]
    message = [s[1] for s in SCENARIOS[name][1] if s[0] == "message"]
    assert resp.output_text == "".join(message)
    assert resp.status == ("incomplete" if name in INCOMPLETE else "completed")
    if name in INCOMPLETE:
        assert resp.incomplete_details is not None
        assert resp.incomplete_details.reason == "max_output_tokens"
        assert resp.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.model == MODEL
    assert resp.usage is not None and resp.usage.total_tokens > resp.usage.input_tokens
    reasoning = resp.usage.output_tokens_details.reasoning_tokens
    assert (reasoning > 0) == name.startswith("reasoning")


@pytest.mark.parametrize("name", SCENARIOS)
def test_sdk_stream_events_are_typed(client: openai.OpenAI, name: str) -> None:
    got = list(client.responses.create(stream=True, **request(name)))
    assert [e.sequence_number for e in got] == list(range(len(got)))
    untyped = [e.type for e in got if not is_typed(e)]
    assert untyped == []
    assert got[0].type == "response.created"
    assert got[-1].type == ("response.incomplete" if name in INCOMPLETE else "response.completed")


@pytest.mark.parametrize("name", sorted(set(SCENARIOS) - INCOMPLETE))
def test_sdk_stream_helper_matches_create(client: openai.OpenAI, name: str) -> None:
    text = []
    with client.responses.stream(**request(name)) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                text.append(event.delta)
        final = stream.get_final_response()
    created = client.responses.create(**request(name))
    assert summary(final.output) == summary(created.output) == SCENARIOS[name][1]
    assert final.output_text == created.output_text == "".join(text)


def test_sdk_stream_helper_refuses_an_incomplete_answer(client: openai.OpenAI) -> None:
    with client.responses.stream(**request("max_output_tokens")) as stream:
        last = [e.type for e in stream][-1]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    assert last == "response.incomplete"


def test_response_echoes_the_request(client: openai.OpenAI) -> None:
    body: dict[str, Any] = {
        "model": MODEL,
        "input": "hi",
        "tools": [BASH, PATCH],
        "tool_choice": "auto",
        "metadata": {"k": "v"},
        "temperature": 0.2,
        "service_tier": "flex",
        "store": False,
        "reasoning": {"effort": "minimal"},
    }
    resp = client.responses.create(**body)
    assert resp.metadata == {"k": "v"} and resp.temperature == 0.2 and resp.store is False
    assert resp.service_tier == "flex" and resp.parallel_tool_calls is True
    assert resp.reasoning is not None and resp.reasoning.effort == "minimal"
    bash, patch = resp.tools
    assert bash.type == "function" and bash.strict is True and bash.parameters == BASH["parameters"]
    assert patch.type == "custom" and patch.name == "apply_patch"
    assert resp.text is not None and resp.text.format is not None
    assert resp.text.format.type == "text"
    assert resp.error is None and resp.instructions is None and resp.truncation == "disabled"


@pytest.mark.parametrize(
    "body,message,param,code",
    [
        (
            {"input": "hi"},
            "Missing required parameter: 'model'.",
            "model",
            "missing_required_parameter",
        ),
        (
            {"model": MODEL},
            "Missing required parameter: 'input'.",
            "input",
            "missing_required_parameter",
        ),
        (
            {"model": MODEL, "input": {"role": "user"}},
            "Invalid type for 'input': expected one of a string or array of input items, "
            "but got an object instead.",
            "input",
            "invalid_type",
        ),
        (
            {"model": MODEL, "input": "hi", "max_output_tokens": 8},
            "Invalid 'max_output_tokens': integer below minimum value. "
            "Expected a value >= 16, but got 8 instead.",
            "max_output_tokens",
            "integer_below_min_value",
        ),
        (
            {"model": MODEL, "input": ["hi"]},
            "Invalid type for 'input[0]': expected an input item object, but got a string instead.",
            "input[0]",
            "invalid_type",
        ),
        ({"model": 4, "input": "hi"}, None, "model", "invalid_type"),
        (
            {"model": MODEL, "input": "hi", "tools": [{"type": "function"}]},
            None,
            "tools[0].name",
            None,
        ),
    ],
)
def test_validation_errors(
    base_url: str, body: dict[str, Any], message: str | None, param: str, code: str | None
) -> None:
    for path in ("/v1/responses", "/responses"):
        resp = httpx.post(base_url + path, json=body)
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert error["message"] == message or message is None
        assert error["code"] == code or code is None


def test_sdk_reports_validation_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, input="hi", max_output_tokens=1)
    assert err.value.param == "max_output_tokens" and err.value.code == "integer_below_min_value"
    resp = client.responses.create(model=MODEL, prompt={"id": "pmpt_1"})  # input from a template
    assert resp.status == "completed" and resp.prompt is not None and resp.prompt.id == "pmpt_1"
