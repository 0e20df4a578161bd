"""Policies on OpenAI's Responses API end to end: the official `openai` SDK, the real
Envoy, the mock LLM and its judge, one module-scoped stack.

The stack runs two chains. The default one (the development key): a request guard, PII
redaction of responses only (so the model can repeat what it is told), a tool filter and
the LLM judge. The caller `redactor` (its own key, from a keys file): the guard and PII
redaction both ways. The gateway holds an OpenAI key and the mock plays the real API,
so the forwarded surface can show the key swap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from extproc.config import DEV_GATEWAY_KEY
from extproc.keys import digest
from extproc.stack import Stack, free_port
from tests.helpers.policy_stack import (
    O_MODEL,
    R_TOOLS,
    ask_responses,
    assert_no_stream_violations,
    assert_sdk_events,
    chunking,
    clear_mock,
    mock_requests,
    mock_url,
    responses_client,
)
from tests.helpers.responses_mock import summary
from tests.helpers.stack import running_stack
from tests.helpers.streams import (
    responses_events,
    responses_of_type,
    responses_text,
    validate_responses_stream,
)

pytestmark = pytest.mark.e2e

CONFIG = r"""
policies:
  - type: request_guard
    deny_patterns: ['\bDROP\s+TABLE\b']
    max_tokens: 1000
  - type: pii_redaction
    redact_requests: false
  - type: tool_filter
    deny: ["delete_*"]
  # The mock's stored responses say "This is a mock response.": reading one back goes
  # through the response policies too.
  - type: string_replacement
    replacements: [{pattern: "mock response", replacement: "stored answer"}]
  - type: tool_call_judge
    threshold: 0.6
    judge:
      base_url: "http://127.0.0.1:${MOCK_LLM_PORT}/v1"
      model: judge-mock
      timeout_s: 10
      max_retries: 0
    on_judge_error: block
chains:
  both_ways:
    - type: request_guard
      deny_patterns: ['\bDROP\s+TABLE\b']
    - type: pii_redaction
validate_streams: true
"""
REDACTOR_KEY = "sk-gw-test-responses-redactor"
PROVIDER_KEY = "sk-openai-provider-key-held-by-the-gateway"
DENIED = "Request rejected by the gateway policy: the request contains denied content."

EMAIL = "alice.smith@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
SAID = f"Write to {EMAIL} today, or to {EMAIL} tomorrow."
REDACTED = "Write to [REDACTED:email] today, or to [REDACTED:email] tomorrow."
PROMPT = f"Repeat after me: {SAID}"
JUDGE_BLOCK = (
    "Tool call 'bash' was blocked by the gateway (risk 0.97): Matches rule 'rm -rf': "
    "recursive forced deletion can destroy data irreversibly."
)
NAME_BLOCK = "Tool call 'delete_file' was blocked by the gateway: on the deny list."


@pytest.fixture(scope="module")
def rs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("responses-policies")
    (log_dir / "policy.yaml").write_text(CONFIG)
    (log_dir / "keys.yaml").write_text(
        "callers:\n"
        f"  - {{name: redactor, key_sha256: '{digest(REDACTOR_KEY).hex()}', chain: both_ways}}\n"
    )
    mock_port = free_port()
    with running_stack(
        log_dir,
        mock_port=mock_port,
        policy_config=str(log_dir / "policy.yaml"),
        keys_file=str(log_dir / "keys.yaml"),
        gateway_keys=(SecretStr(DEV_GATEWAY_KEY),),  # the default chain's caller
        # The mock plays the real OpenAI API: the gateway injects its own key.
        openai_api_key=SecretStr(PROVIDER_KEY),
        upstream_openai_url=f"http://127.0.0.1:{mock_port}",
    ) as st:
        yield st


def _responses_records(st: Stack, path: str = "/v1/responses") -> list[dict[str, Any]]:
    """What the mock received on `path` (the judge's questions left out)."""
    return [r for r in mock_requests(st) if r["path"] == path]


def _assert_key_swapped(record: dict[str, Any]) -> None:
    headers = record["headers"]
    assert headers.get("authorization") == f"Bearer {PROVIDER_KEY}"
    assert DEV_GATEWAY_KEY not in json.dumps(headers)
    assert REDACTOR_KEY not in json.dumps(headers)
    assert "x-api-key" not in headers and "x-gateway-upstream" not in headers


def _output_indices(raw: bytes) -> list[int]:
    return [e["output_index"] for e in responses_of_type(raw, "response.output_item.added")]


# -- tool calls: the judge and the filter -------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_judge_blocks_a_dangerous_call(rs: Stack, stream: bool) -> None:
    res = ask_responses(rs, "Please use bash to run `rm -rf /`", stream, tools=True)
    assert res.kinds == ["message", "message"]
    assert res.messages == ["I'll use the bash tool.", JUDGE_BLOCK]
    assert res.calls == []
    # Neither the call's events nor its item reach the client, in any copy.
    assert b"function_call" not in res.received
    if stream:
        assert res.raw is not None
        assert _output_indices(res.raw) == [0, 1]
        done = [e.item for e in res.events if e.type == "response.output_item.done"]
        assert [item.type for item in done] == ["message", "message"]
        assert done[1].content[0].text == JUDGE_BLOCK
        completed = res.events[-1].response
        assert summary(completed.output) == summary(res.response.output)


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_calls_only_the_dangerous_one_blocked(rs: Stack, stream: bool) -> None:
    prompt = "use bash to run `rm -rf /` and get_weather"
    res = ask_responses(rs, prompt, stream, tools=True, headers=chunking("par"))
    assert res.kinds == ["message", "message", "function_call"]
    assert res.messages == ["I'll use the bash and get_weather tools.", JUDGE_BLOCK]
    assert res.calls == [("get_weather", {"city": "example city"})]
    if stream:
        assert res.raw is not None and _output_indices(res.raw) == [0, 1, 2]


@pytest.mark.parametrize("stream", [False, True])
def test_benign_call_passes(rs: Stack, stream: bool) -> None:
    res = ask_responses(rs, "use bash to run `ls -la`", stream, tools=True)
    assert res.kinds == ["message", "function_call"]
    assert res.calls == [("bash", {"command": "ls -la"})]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_filter_blocks_by_name(rs: Stack, stream: bool) -> None:
    res = ask_responses(rs, "use delete_file to remove `/tmp/old.log`", stream, tools=True)
    assert res.kinds == ["message", "message"]
    assert res.messages == ["I'll use the delete_file tool.", NAME_BLOCK]
    assert b"function_call" not in res.received


# A call with no text before it is the output's first item (output_index 0): what a model
# does when the request requires a tool, and often unasked.
FIRST_ITEM_CALLS = {
    "judge-forced": ("run `rm -rf /`", {"type": "function", "name": "bash"}, JUDGE_BLOCK),
    "judge-required": ("use bash to run `rm -rf /`", "required", JUDGE_BLOCK),
    "filter-required": ("use delete_file on `/etc/passwd`", "required", NAME_BLOCK),
}


@pytest.mark.parametrize("case", FIRST_ITEM_CALLS)
def test_blocked_first_item_call_never_streams(rs: Stack, case: str) -> None:
    """Read as Codex reads a stream (raw events; it runs the tools of output_item.done):
    the blocked call must not be among them."""
    prompt, choice, block = FIRST_ITEM_CALLS[case]
    clear_mock(rs)
    client, transport = responses_client(rs)
    body: dict[str, Any] = {
        "model": O_MODEL,
        "input": prompt,
        "tools": R_TOOLS,
        "tool_choice": choice,
    }
    with client:
        events = list(client.responses.create(stream=True, **body))
    ((_, raw),) = transport.bodies
    done = [e.item.type for e in events if e.type == "response.output_item.done"]
    assert done == ["message"], f"items the client was handed: {done}"
    assert b"function_call" not in raw
    assert events[-1].response.output_text == block
    if case.startswith("judge"):
        assert [r for r in mock_requests(rs) if r["body"].get("model") == "judge-mock"]
    assert validate_responses_stream(raw, body) == []


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("case", FIRST_ITEM_CALLS)
def test_blocked_first_item_call_leaves_only_the_message(
    rs: Stack, case: str, stream: bool
) -> None:
    """The same through the SDK's accumulator and `create`: the block message is the
    whole output, at index 0."""
    prompt, choice, block = FIRST_ITEM_CALLS[case]
    res = ask_responses(rs, prompt, stream, tools=True, tool_choice=choice)
    assert res.kinds == ["message"]
    assert res.messages == [block]
    if stream:
        assert res.raw is not None and _output_indices(res.raw) == [0]


@pytest.mark.parametrize("stream", [False, True])
def test_every_call_blocked_without_text(rs: Stack, stream: bool) -> None:
    """Two calls and nothing else, one refused by the judge and one by the filter: two
    messages in their places, nothing for the client to run."""
    prompt = "use bash to run `rm -rf /` and delete_file"
    res = ask_responses(rs, prompt, stream, tools=True, tool_choice="required")
    assert res.kinds == ["message", "message"]
    assert res.messages == [JUDGE_BLOCK, NAME_BLOCK]
    assert b"function_call" not in res.received
    if stream:
        assert res.raw is not None and _output_indices(res.raw) == [0, 1]


@pytest.mark.parametrize("stream", [False, True])
def test_allowed_first_item_call_arrives_whole(rs: Stack, stream: bool) -> None:
    choice = {"type": "function", "name": "bash"}
    res = ask_responses(rs, "run `ls -la`", stream, tools=True, tool_choice=choice)
    assert res.kinds == ["function_call"]
    assert res.calls == [("bash", {"command": "ls -la"})]
    if stream:
        assert res.raw is not None and _output_indices(res.raw) == [0]


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_text_and_calls_together(rs: Stack, stream: bool) -> None:
    """Reasoning, redacted text, a blocked call, a call by the deny list and an allowed
    one: every item in order, indices contiguous, the reasoning untouched."""
    prompt = f"use bash to run `rm -rf /`, delete_file and get_weather; one two three {EMAIL}"
    res = ask_responses(
        rs,
        prompt,
        stream,
        tools=True,
        headers=chunking("mix"),
        model="o4-mini",
        reasoning={"summary": "auto"},
        include=["reasoning.encrypted_content"],
    )
    assert res.kinds == ["reasoning", "message", "message", "message", "function_call"]
    assert res.messages == [
        "I'll use the bash, delete_file and get_weather tools.",
        JUDGE_BLOCK,
        NAME_BLOCK,
    ]
    assert res.calls == [("get_weather", {"city": "example city"})]
    assert res.response.output[0].encrypted_content.startswith("gAAAAA")
    if stream:
        assert res.raw is not None and _output_indices(res.raw) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("wire", ["whole", "random:3"])
def test_incomplete_answer_redacted_in_its_terminal_event(rs: Stack, wire: str) -> None:
    """max_output_tokens cuts the answer: `response.incomplete` ends the stream, and its
    output carries the redacted text too."""
    headers = {} if wire == "whole" else chunking(wire.split(":")[1])
    client, transport = responses_client(rs, headers)
    said = f"mail {EMAIL} " + "and more words " * 30
    body: dict[str, Any] = {
        "model": O_MODEL,
        "input": f"Repeat after me: {said}",
        "max_output_tokens": 16,
    }
    with client:
        events = list(client.responses.create(stream=True, **body))
    ((_, raw),) = transport.bodies
    assert validate_responses_stream(raw, body) == []
    assert events[-1].type == "response.incomplete"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert EMAIL not in raw.decode()
    text = responses_text(raw)
    assert text.startswith("mail [REDACTED:email] and more")
    assert events[-1].response.output[0].content[0].text == text


def test_upstream_ending_inside_a_held_call(rs: Stack) -> None:
    """The stream dies while the gate holds a call: the unfinished call never reaches the
    client, the stream ends with an error event, and the SDK raises."""
    client, transport = responses_client(rs, {"x-mock-truncate-after": "14"})
    body: dict[str, Any] = {"model": O_MODEL, "input": "use bash to run `ls -la`", "tools": R_TOOLS}
    seen: list[Any] = []
    with client, pytest.raises(openai.APIError):
        for event in client.responses.create(stream=True, **body):
            seen.append(event)
    ((_, raw),) = transport.bodies
    assert b"function_call" not in raw
    assert [p["type"] for p in responses_events(raw)][-1] == "error"
    assert "I'll use the bash tool." in responses_text(raw)


# -- response redaction ----------------------------------------------------------------------


def _assert_every_copy_redacted(raw: bytes, text: str) -> None:
    """Deltas, output_text.done, content_part.done, output_item.done and the terminal
    response all say `text`."""
    assert responses_text(raw) == text
    (done,) = responses_of_type(raw, "response.output_text.done")
    assert done["text"] == text
    (part,) = responses_of_type(raw, "response.content_part.done")
    assert part["part"]["text"] == text
    (item,) = responses_of_type(raw, "response.output_item.done")
    assert item["item"]["content"][0]["text"] == text
    (completed,) = responses_of_type(raw, "response.completed")
    assert completed["response"]["output"][0]["content"][0]["text"] == text


@pytest.mark.parametrize("wire", ["whole", "random:1", "random:7", "random:29"])
@pytest.mark.parametrize("stream", [False, True])
def test_email_redacted_everywhere(rs: Stack, stream: bool, wire: str) -> None:
    clear_mock(rs)
    headers = {} if wire == "whole" else chunking(wire.split(":")[1])
    res = ask_responses(rs, PROMPT, stream, headers=headers)
    # Requests are left alone on this chain: the model really said the address...
    (record,) = _responses_records(rs)
    assert record["body"]["input"] == PROMPT
    # ...and no copy of it reaches the client.
    assert EMAIL not in res.received.decode()
    assert res.text == REDACTED
    if stream:
        assert res.raw is not None
        _assert_every_copy_redacted(res.raw, REDACTED)
        deltas = [e.delta for e in res.events if e.type == "response.output_text.delta"]
        assert "".join(deltas) == REDACTED
        done = [e for e in res.events if e.type == "response.output_text.done"]
        assert [e.text for e in done] == [REDACTED]
    else:
        assert json.loads(res.received)["output"][0]["content"][0]["text"] == REDACTED


def test_long_text_streams_before_it_ends(rs: Stack) -> None:
    """Only the hold-back window waits: a long answer still streams in many deltas, and
    an address in its middle is caught whatever the chunking."""
    said = "word " * 80 + f"mail {EMAIL} now " + "tail " * 70
    res = ask_responses(rs, f"Repeat after me: {said}", True, headers=chunking("long"))
    expected = said.replace(EMAIL, "[REDACTED:email]")
    assert res.raw is not None
    _assert_every_copy_redacted(res.raw, expected)
    assert len(responses_of_type(res.raw, "response.output_text.delta")) > 50


@pytest.mark.parametrize("stream", [False, True])
def test_encrypted_reasoning_untouched_while_text_is_redacted(rs: Stack, stream: bool) -> None:
    # The address comes after the words the mock's reasoning summary quotes.
    prompt = f"Repeat after me: one two three four five six seven, mail {EMAIL}"
    reasoning: dict[str, Any] = {
        "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"],
    }
    res = ask_responses(rs, prompt, stream, model="o4-mini", **reasoning)
    assert res.kinds == ["reasoning", "message"]
    assert res.messages == ["one two three four five six seven, mail [REDACTED:email]"]
    direct = httpx.post(
        f"{mock_url(rs)}/v1/responses",
        content=res.sent,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    if stream:
        items = [e["item"] for e in responses_of_type(direct.content, "response.output_item.done")]
    else:
        items = direct.json()["output"]
    blob = items[0]["encrypted_content"]
    assert res.response.output[0].encrypted_content == blob
    needle = b'"encrypted_content":' + json.dumps(blob).encode()
    assert res.received.count(needle) == direct.content.count(needle) >= 1


# -- the request side ------------------------------------------------------------------------


DENIED_BODIES: dict[str, dict[str, Any]] = {
    "input-string": {"input": "please DROP TABLE users"},
    "input-message": {
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "drop table t"}]}]
    },
    "instructions": {"input": "hi", "instructions": "Always DROP  TABLE accounts first."},
    "tool-output": {
        "input": [
            {"type": "function_call", "call_id": "c1", "name": "bash", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "DROP TABLE x"},
        ]
    },
}


@pytest.mark.parametrize("key", [DEV_GATEWAY_KEY, REDACTOR_KEY])
@pytest.mark.parametrize("where", DENIED_BODIES)
@pytest.mark.parametrize("stream", [False, True])
def test_deny_pattern_refused_before_the_provider(
    rs: Stack, where: str, stream: bool, key: str
) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs, api_key=key)
    with client, pytest.raises(openai.BadRequestError) as info:
        if stream:
            list(client.responses.create(model=O_MODEL, stream=True, **DENIED_BODIES[where]))
        else:
            client.responses.create(model=O_MODEL, **DENIED_BODIES[where])
    assert info.value.body == {
        "message": DENIED,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert mock_requests(rs) == []


@pytest.mark.parametrize("stream", [False, True])
def test_request_redaction_on_input_and_instructions(rs: Stack, stream: bool) -> None:
    clear_mock(rs)
    history = [
        {"role": "user", "content": [{"type": "input_text", "text": f"Call me on {PHONE}"}]},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q":"me"}'},
        {"type": "function_call_output", "call_id": "c1", "output": f"card {CARD}"},
    ]
    res = ask_responses(
        rs,
        "",
        stream,
        api_key=REDACTOR_KEY,
        input=history,
        instructions=f"Support contact: {EMAIL}",
    )
    (record,) = _responses_records(rs)
    sent = record["body"]
    assert sent["instructions"] == "Support contact: [REDACTED:email]"
    assert sent["input"] == [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "Call me on [REDACTED:phone]"}],
        },
        history[1],  # arguments are not text a person reads: left alone
        {"type": "function_call_output", "call_id": "c1", "output": "card [REDACTED:credit_card]"},
    ]
    for secret in (EMAIL, PHONE, CARD):
        assert secret not in json.dumps(sent)
    assert res.text == "The tool returned: card [REDACTED:credit_card]"


@pytest.mark.parametrize("asked,forwarded", [(5000, 1000), (1000, 1000), (300, 300), (None, None)])
def test_max_output_tokens_clamped(rs: Stack, asked: int | None, forwarded: int | None) -> None:
    clear_mock(rs)
    extra: dict[str, Any] = {} if asked is None else {"max_output_tokens": asked}
    res = ask_responses(rs, "Count to 3", True, **extra)
    assert res.text == "1, 2, 3"
    (record,) = _responses_records(rs)
    assert record["body"].get("max_output_tokens") == forwarded


# -- a Codex CLI turn ---------------------------------------------------------------------


CODEX_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Runs a command in a PTY, returning output or a session ID.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {
                "cmd": {"type": "string", "description": "Shell command to execute."},
                "workdir": {"type": "string"},
                "yield_time_ms": {"type": "number"},
            },
            "required": ["cmd"],
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "update_plan",
        "description": "Updates the task plan.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {"plan": {"type": "array", "items": {"type": "object"}}},
            "required": ["plan"],
            "additionalProperties": False,
        },
    },
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool.",
        "format": {
            "type": "grammar",
            "syntax": "lark",
            "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
            'end_patch: "*** End Patch" LF?\nhunk: add_hunk\n'
            'add_hunk: "*** Add File: " filename LF add_line+\n'
            'filename: /(.+)/\nadd_line: "+" /(.*)/ LF -> line\n%import common.LF\n',
        },
    },
]
ENCRYPTED = "gAAAAABo2TBCz8-Mx1rT3cA0Hq9wqv9fRk4b0x5cJ8Hq1Yt2Zl6pQeN3vW7sUaK_codex-history=="
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
CODEX_HISTORY: list[dict[str, Any]] = [
    {
        "type": "message",
        "role": "user",
        "content": [
            {
                "type": "input_text",
                "text": "<environment_context>\n  <cwd>/work/repo</cwd>\n  "
                "<approval_policy>on-request</approval_policy>\n</environment_context>",
            }
        ],
    },
    {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "add hello.txt"}],
    },
    # Codex replays reasoning without an id when store is false, with its encrypted content.
    {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "**Checking the repository**"}],
        "content": None,
        "encrypted_content": ENCRYPTED,
    },
    {
        "type": "function_call",
        "name": "exec_command",
        "arguments": '{"cmd":"ls -la","workdir":"/work/repo"}',
        "call_id": "call_Xq1",
    },
    {"type": "function_call_output", "call_id": "call_Xq1", "output": "total 8\nREADME.md\n"},
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "I'll add the file with a patch."}],
    },
    {"type": "custom_tool_call", "call_id": "call_Pa2", "name": "apply_patch", "input": PATCH},
    {
        "type": "custom_tool_call_output",
        "call_id": "call_Pa2",
        "output": "Success. Updated the following files:\nA hello.txt\n",
    },
]
CODEX_HEADERS = {"originator": "codex_cli_rs", "session_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"}


def _codex_body(history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": "gpt-5-codex",
        "instructions": "You are Codex, based on GPT-5. You are running as a coding agent.",
        "input": history,
        "tools": CODEX_TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": CODEX_HEADERS["session_id"],
    }


def _codex_turn(st: Stack, key: str, history: list[dict[str, Any]]) -> tuple[list[Any], bytes]:
    """One Codex-shaped turn as Codex reads it: raw events, items from output_item.done."""
    clear_mock(st)
    client, transport = responses_client(st, CODEX_HEADERS, api_key=key)
    body: dict[str, Any] = _codex_body(history)
    with client:
        events = list(client.responses.create(**body))
    assert_sdk_events(events)
    ((response, raw),) = transport.bodies
    assert response.status_code == 200
    assert validate_responses_stream(raw, body) == []
    (record,) = _responses_records(st)
    # Everything Codex sent reached the provider as it was: history, tools, flags.
    assert record["body"] == json.loads(transport.requests[0].content)
    assert record["body"]["input"] == history
    assert record["headers"]["originator"] == "codex_cli_rs"
    assert record["headers"]["session_id"] == CODEX_HEADERS["session_id"]
    _assert_key_swapped(record)
    return events, raw


@pytest.mark.parametrize("key", [DEV_GATEWAY_KEY, REDACTOR_KEY])
def test_codex_history_replayed_unchanged(rs: Stack, key: str) -> None:
    events, _ = _codex_turn(rs, key, CODEX_HISTORY)
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.type for item in done] == ["reasoning", "message"]
    assert done[0].encrypted_content and done[0].encrypted_content.startswith("gAAAAA")
    assert (
        done[1].content[0].text
        == "The tool returned: Success. Updated the following files: A hello.txt"
    )
    assert events[-1].response.output_text == done[1].content[0].text
    # Reasoning summaries are events of their own, typed by the SDK.
    kinds = {e.type for e in events}
    assert "response.reasoning_summary_text.delta" in kinds


def test_codex_custom_tool_call_passes_the_gate(rs: Stack) -> None:
    ask = {"role": "user", "content": f"now use apply_patch:\n```\n{PATCH}```"}
    events, _ = _codex_turn(rs, DEV_GATEWAY_KEY, [*CODEX_HISTORY, ask])
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.type for item in done] == ["reasoning", "message", "custom_tool_call"]
    assert done[2].name == "apply_patch" and done[2].input == PATCH.strip()
    assert [i.type for i in events[-1].response.output] == [i.type for i in done]
    # The judge was asked about it.
    assert any(r["body"].get("model") == "judge-mock" for r in mock_requests(rs))


def test_codex_dangerous_command_becomes_a_message(rs: Stack) -> None:
    ask = {"role": "user", "content": "use exec_command to run `rm -rf /`"}
    events, raw = _codex_turn(rs, DEV_GATEWAY_KEY, [*CODEX_HISTORY, ask])
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.type for item in done] == ["reasoning", "message", "message"]
    assert "'exec_command' was blocked by the gateway (risk 0.97)" in done[2].content[0].text
    assert b"function_call" not in raw
    assert summary(events[-1].response.output) == summary(done)


# -- the forwarded surface ------------------------------------------------------------------


def _one_record(st: Stack, method: str, path: str) -> dict[str, Any]:
    (record,) = mock_requests(st)
    assert (record["method"], record["path"]) == (method, path)
    _assert_key_swapped(record)
    return record


def test_retrieve(rs: Stack) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs)
    with client:
        got = client.responses.retrieve("resp_stored1")
    assert got.id == "resp_stored1" and got.status == "completed"
    # A stored answer is the model's answer again: the response policies rewrite it.
    assert got.output_text == "Hello! This is a stored answer."
    _one_record(rs, "GET", "/v1/responses/resp_stored1")


def test_retrieve_as_a_stream(rs: Stack) -> None:
    """`responses.stream(response_id=..., starting_after=N)`: a forwarded GET whose answer
    is a stream. The SDK asks for the whole stream and drops events up to N itself."""
    clear_mock(rs)
    client, transport = responses_client(rs)
    with client, client.responses.stream(response_id="resp_stored2", starting_after=1) as s:
        events = list(s)
        final = s.get_final_response()
    assert final.id == "resp_stored2"
    assert final.output_text == "Hello! This is a stored answer."
    assert events[0].sequence_number == 2 and events[-1].type == "response.completed"
    record = _one_record(rs, "GET", "/v1/responses/resp_stored2")
    assert record["query"] == "stream=true"
    ((_, raw),) = transport.bodies
    direct = httpx.get(f"{mock_url(rs)}/v1/responses/resp_stored2?stream=true", timeout=30)
    assert b"mock response" in direct.content and b"mock response" not in raw
    assert responses_text(raw) == "Hello! This is a stored answer."
    assert validate_responses_stream(raw, {}) == []


def test_delete(rs: Stack) -> None:
    clear_mock(rs)
    client, transport = responses_client(rs)
    with client:
        client.responses.delete("resp_stored3")  # the SDK returns None, body unread
    assert json.loads(transport.bodies[0][1])["deleted"] is True
    _one_record(rs, "DELETE", "/v1/responses/resp_stored3")


def test_cancel(rs: Stack) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs)
    with client:
        got = client.responses.cancel("resp_stored4")
    assert got.status == "cancelled" and got.background
    _one_record(rs, "POST", "/v1/responses/resp_stored4/cancel")


def test_input_items_list(rs: Stack) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs)
    with client:
        page = client.responses.input_items.list("resp_stored5", limit=2, order="asc")
        assert list(page) == []
    record = _one_record(rs, "GET", "/v1/responses/resp_stored5/input_items")
    assert "limit=2" in record["query"] and "order=asc" in record["query"]


def test_input_tokens_count(rs: Stack) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs)
    with client:
        counted = client.responses.input_tokens.count(
            model=O_MODEL, input="How many tokens is this?", instructions="Be brief."
        )
    assert counted.input_tokens > 0
    record = _one_record(rs, "POST", "/v1/responses/input_tokens")
    assert record["body"]["input"] == "How many tokens is this?"


def test_compact(rs: Stack) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs)
    history = [{"role": "user", "content": "add hello.txt"}]
    with client:
        compacted = client.responses.compact(model=O_MODEL, input=history)  # type: ignore[arg-type]
    assert compacted.object == "response.compaction"
    assert [item.type for item in compacted.output] == ["message", "compaction"]
    record = _one_record(rs, "POST", "/v1/responses/compact")
    assert record["body"]["input"] == history


@pytest.mark.parametrize("key", [DEV_GATEWAY_KEY, REDACTOR_KEY])
def test_compact_runs_the_request_policies(rs: Stack, key: str) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs, api_key=key)
    with client, pytest.raises(openai.BadRequestError) as info:
        client.responses.compact(
            model=O_MODEL,
            input=[{"role": "user", "content": "then DROP TABLE users"}],  # type: ignore[list-item]
        )
    assert info.value.body == {
        "message": DENIED,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert mock_requests(rs) == []


def test_compact_redacts_for_the_redactor(rs: Stack) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs, api_key=REDACTOR_KEY)
    with client:
        client.responses.compact(
            model=O_MODEL,
            instructions=f"Escalate to {EMAIL}",
            input=[{"role": "user", "content": f"call {PHONE}"}],  # type: ignore[list-item]
        )
    record = _one_record(rs, "POST", "/v1/responses/compact")
    assert record["body"]["instructions"] == "Escalate to [REDACTED:email]"
    assert record["body"]["input"] == [{"role": "user", "content": "call [REDACTED:phone]"}]


def test_gateway_key_as_x_api_key_is_removed(rs: Stack) -> None:
    clear_mock(rs)
    resp = httpx.get(
        f"{rs.base_url}/v1/responses/resp_stored6",
        headers={"x-api-key": DEV_GATEWAY_KEY},
        timeout=30,
    )
    assert resp.status_code == 200
    _one_record(rs, "GET", "/v1/responses/resp_stored6")


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("put", "/responses/resp_1", "GET or DELETE"),
        ("post", "/responses/resp_1", "GET or DELETE"),
        ("get", "/responses", "POST"),
        ("get", "/responses/resp_1/cancel", "POST"),
        ("delete", "/responses/input_tokens", "POST"),
        ("get", "/responses/compact", "POST"),
    ],
)
def test_wrong_method_is_405_in_format(rs: Stack, method: str, path: str, allowed: str) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs)
    with client, pytest.raises(openai.APIStatusError) as info:
        getattr(client, method)(path, cast_to=object)
    assert info.value.status_code == 405
    body = info.value.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert allowed in body["error"]["message"]
    assert mock_requests(rs) == []


def test_unknown_responses_path_is_404_in_format(rs: Stack) -> None:
    client, _ = responses_client(rs)
    with client, pytest.raises(openai.NotFoundError) as info:
        client.get("/responses/resp_1/nothing_here", cast_to=object)
    assert set(info.value.response.json()["error"]) >= {"message", "type", "param", "code"}


def test_forwarded_paths_need_the_gateway_key(rs: Stack) -> None:
    client, _ = responses_client(rs, api_key="sk-not-a-gateway-key")
    with client:
        with pytest.raises(openai.AuthenticationError):
            client.responses.retrieve("resp_stored7")
        with pytest.raises(openai.AuthenticationError):
            client.responses.input_tokens.count(model=O_MODEL, input="hi")


# -- last ----------------------------------------------------------------------------------


def test_no_stream_violations_logged(rs: Stack) -> None:
    assert_no_stream_violations(rs)


# -- embeddings: the request policies on its input -----------------------------------------


def test_embeddings_input_is_redacted_before_it_is_embedded(rs: Stack) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs, api_key=REDACTOR_KEY)
    with client:
        got = client.embeddings.create(
            model="text-embedding-3-small",
            input=[f"mail {EMAIL}", "plain text"],
            encoding_format="float",
        )
    assert len(got.data) == 2 and got.data[0].embedding
    (record,) = _responses_records(rs, "/v1/embeddings")
    assert record["body"]["input"] == ["mail [REDACTED:email]", "plain text"]
    _assert_key_swapped(record)


def test_embeddings_denied_input_is_a_400_in_format(rs: Stack) -> None:
    clear_mock(rs)
    client, _ = responses_client(rs)
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="DROP TABLE users")
    assert caught.value.message.endswith(DENIED)
    assert _responses_records(rs, "/v1/embeddings") == []


def test_a_stored_stream_resumed_midway_is_refused_in_format(rs: Stack) -> None:
    """`responses.retrieve(id, stream=True, starting_after=N)` would replay from midway,
    after the parts and calls the policies must see whole."""
    clear_mock(rs)
    client, _ = responses_client(rs)
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.responses.retrieve("resp_stored9", stream=True, starting_after=3)
    assert caught.value.param == "starting_after"
    assert _responses_records(rs, "/v1/responses/resp_stored9") == []
