"""What the benchmark sends and what the fast upstream answers: bodies, requests, checks.

The streams are rendered by the mock LLM's own formatters from a 200-chunk plan, so they
carry the same JSON as the real APIs (ids, usage, `content_block_delta` events...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from extproc.config import DEV_GATEWAY_KEY
from extproc.mock_llm import anthropic_format, openai_format, responses_format
from extproc.mock_llm.responses_stream import render_stream as render_responses_stream
from extproc.mock_llm.scenario import Plan, Usage

TEXT_CHUNKS = 200
# The word the string_replacement benchmark policy rewrites: a few chunks carry it.
MATCH_WORD = "benchmark"
MATCH_REPLACEMENT = "test run"

_PROSE = (
    "The gateway sits between the client and the model and sees every event of the "
    "stream as it passes so a policy can rewrite text or hold a tool call back until "
    "it has been reviewed while the rest of the answer keeps flowing to the caller with "
    "as little added delay as we can manage on a small shared machine"
)
_WORDS = tuple(_PROSE.split())


def text_chunks(count: int = TEXT_CHUNKS) -> tuple[str, ...]:
    """`count` deltas of two to four words, prose-like, MATCH_WORD in every 50th."""
    chunks: list[str] = []
    pos = 0
    for i in range(count):
        size = 2 + i % 3
        words = [_WORDS[(pos + k) % len(_WORDS)] for k in range(size)]
        pos += size
        if i % 50 == 25:
            words[-1] = MATCH_WORD
        chunks.append((" " if i else "") + " ".join(words) + ("." if i % 9 == 8 else ""))
    return tuple(chunks)


def plan(count: int = TEXT_CHUNKS) -> Plan:
    chunks = text_chunks(count)
    output_tokens = (len("".join(chunks)) + 3) // 4
    return Plan(
        text_chunks=chunks,
        tool_calls=(),
        stop_reason="end_turn",
        usage=Usage(input_tokens=58, output_tokens=output_tokens),
    )


@dataclass(frozen=True)
class Api:
    """One API's benchmark traffic: request, upstream answers and how to check them."""

    name: str  # anthropic | openai | responses
    provider: str  # the provider serving it (the routing header without ext_proc)
    path: str
    request: bytes  # streaming request body
    json_request: bytes  # non-streaming request body
    stream_events: tuple[bytes, ...]
    json_body: bytes
    terminator: bytes  # what a complete stream ends with
    text: str  # the text the stream carries

    @property
    def stream_body(self) -> bytes:
        return b"".join(self.stream_events)

    @property
    def events(self) -> int:
        return len(self.stream_events)

    def headers(self) -> dict[str, str]:
        """Headers every benchmark request carries, whatever the configuration.

        x-gateway-upstream is the route Envoy takes; with ext_proc the gateway removes
        the client's value and sets its own, without ext_proc (passthrough) it is what
        routes the request. The direct upstream ignores it.
        """
        return {
            "content-type": "application/json",
            "x-api-key": DEV_GATEWAY_KEY,
            "x-gateway-upstream": self.provider,
        }


_PROMPT = (
    "You are reviewing a design document for an LLM gateway. Summarise in a few "
    "paragraphs how the gateway applies policies to streamed answers, and what it costs."
)


def anthropic(chunks: int = TEXT_CHUNKS) -> Api:
    p = plan(chunks)
    model = "claude-sonnet-4-5-20250929"
    msg_id = "msg_01XFDUDYJgAACzvnptvVoYEL"
    base = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "You are a concise technical writer.",
        "messages": [{"role": "user", "content": _PROMPT}],
    }
    events = anthropic_format.render_stream(p, msg_id=msg_id, model=model)
    message = anthropic_format.render_message(p, msg_id=msg_id, model=model)
    return Api(
        name="anthropic",
        provider="anthropic",
        path="/v1/messages",
        request=orjson.dumps({**base, "stream": True}),
        json_request=orjson.dumps(base),
        stream_events=tuple(events),
        json_body=orjson.dumps(message),
        terminator=b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        text=p.text,
    )


def openai() -> Api:
    p = plan()
    model = "gpt-4o-2024-08-06"
    cid = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    created = 1735689600
    base = {
        "model": "gpt-4o",
        "max_completion_tokens": 4096,
        "messages": [
            {"role": "system", "content": "You are a concise technical writer."},
            {"role": "user", "content": _PROMPT},
        ],
    }
    events = openai_format.render_stream(p, cid=cid, model=model, created=created)
    completion = openai_format.render_completion(p, cid=cid, model=model, created=created)
    return Api(
        name="openai",
        provider="openai",
        path="/v1/chat/completions",
        request=orjson.dumps({**base, "stream": True}),
        json_request=orjson.dumps(base),
        stream_events=tuple(events),
        json_body=orjson.dumps(completion),
        terminator=b"data: [DONE]\n\n",
        text=p.text,
    )


def responses() -> Api:
    p = plan()
    base = {
        "model": "gpt-4o",
        "max_output_tokens": 4096,
        "instructions": "You are a concise technical writer.",
        "input": [{"role": "user", "content": _PROMPT}],
        "store": False,
    }
    stream_ctx = responses_format.Rendering.make(
        {**base, "stream": True}, "b" * 64, 1735689600, "resp_68d930bench"
    )
    events = render_responses_stream(p, stream_ctx)
    json_ctx = responses_format.Rendering.make(base, "b" * 64, 1735689600, "resp_68d930bench")
    document = responses_format.render_response(p, json_ctx)
    # The terminal event's tail (usage, metadata): text policies rewrite its `output`,
    # never this.
    tail = events[-1][-48:]
    assert MATCH_WORD.encode() not in tail
    return Api(
        name="responses",
        provider="openai",
        path="/v1/responses",
        request=orjson.dumps({**base, "stream": True}),
        json_request=orjson.dumps(base),
        stream_events=tuple(events),
        json_body=orjson.dumps(document),
        terminator=tail,
        text=p.text,
    )


def apis() -> dict[str, Api]:
    return {"anthropic": anthropic(), "openai": openai(), "responses": responses()}


# -- slow streams (memory): the embedded mock LLM answers, one event every few ms -------

SLOW_COUNT = 100  # "Count to 100": 100 text deltas


def slow_request() -> bytes:
    return orjson.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": f"Count to {SLOW_COUNT}"}],
        }
    )


# -- policy files ---------------------------------------------------------------------

STRING_REPLACEMENT_YAML = f"""\
# Benchmark: a hold-back text policy. Three literals and a regex that never match the
# benchmark text, and one literal that matches a few times per stream.
policies:
  - type: string_replacement
    replacements:
      - {{pattern: "sk-live-", replacement: "[key]"}}
      - {{pattern: "CONFIDENTIAL", replacement: "[redacted]"}}
      - {{pattern: "internal.example.com", replacement: "example.com"}}
      - {{pattern: '\\b\\d{{3}}-\\d{{2}}-\\d{{4}}\\b', replacement: "[ssn]", regex: true}}
      - {{pattern: "{MATCH_WORD}", replacement: "{MATCH_REPLACEMENT}"}}
"""

TOOL_CALL_JUDGE_YAML = """\
# Benchmark: the judge is only asked about tool calls; text-only streams never call it.
# Its URL is a closed local port, so an unexpected call would fail (and block) visibly.
policies:
  - type: tool_call_judge
    threshold: 0.6
    judge:
      base_url: "http://127.0.0.1:${MOCK_LLM_PORT}/v1"
      model: judge-mock
      timeout_s: 10
    on_judge_error: block
"""


NOOP_LIMITS_YAML = """\
# Benchmark: what token accounting costs. The noop chain, and limits no run reaches:
# every response goes through ext_proc to be metered, each request is admitted against
# in-process counters, and charged when it ends.
policies: [{type: noop}]
limits:
  default:
    requests: {per_minute: 1000000000}
    tokens: {per_minute: 1000000000000, per_day: 1000000000000}
"""


def expected_text(text: str, policy: str) -> str:
    """The text a client should receive through `policy` (a configuration name)."""
    if policy == "string_replacement":
        return text.replace(MATCH_WORD, MATCH_REPLACEMENT)
    return text


def write_policy_files(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "string_replacement": directory / "string_replacement.yaml",
        "tool_call_judge": directory / "tool_call_judge.yaml",
        "noop_limits": directory / "noop_limits.yaml",
    }
    files["string_replacement"].write_text(STRING_REPLACEMENT_YAML)
    files["tool_call_judge"].write_text(TOOL_CALL_JUDGE_YAML)
    files["noop_limits"].write_text(NOOP_LIMITS_YAML)
    return files
