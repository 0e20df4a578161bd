"""The policy engine on realistic streams: valid output and the same content whatever
the chunking, and the same content streaming or not."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from extproc.apis.kind import ApiKind
from extproc.config import Settings
from extproc.keys import KeyRegistry
from extproc.mock_llm import anthropic_format, openai_format
from extproc.mock_llm.scenario import Plan, ToolCall, Usage
from extproc.pipeline import RequestPipeline
from extproc.policies.base import (
    ApiRequest,
    BlockResponse,
    BlockToolCall,
    Policy,
    PolicyChain,
    Span,
)
from extproc.policies.base import ToolCall as PolicyToolCall
from extproc.routing import Router
from tests.e2e.streams import anthropic_text, openai_text, validate_stream

KEY = "sk-engine"
SECRET = "AKIAABCDEFGHIJKLMNOP"


class Redact(Policy):
    """Replaces every SECRET, however the text is split: a hold-back rewriter."""

    rewrites_text = True
    holdback = len(SECRET)

    def rewriter(self, request: ApiRequest) -> Redact:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        out, pos = [], start
        while (i := text.find(SECRET, pos)) >= 0:
            out.append(Span(i, i + len(SECRET), "[REDACTED]"))
            pos = i + len(SECRET)
        return out


class BlockBash(Policy):
    gates_tool_calls = True

    async def on_tool_call(self, call: PolicyToolCall, request: ApiRequest) -> BlockToolCall | None:
        return BlockToolCall(f"blocked {call.name}") if call.name == "bash" else None


class StopOnDelete(Policy):
    gates_tool_calls = True

    async def on_tool_call(self, call: PolicyToolCall, request: ApiRequest) -> BlockResponse | None:
        return BlockResponse("stopped") if call.name == "delete_all" else None


def plan(text_chunks: list[str], tools: list[str]) -> Plan:
    calls = tuple(
        ToolCall(name, f"toolu_{n}", {"command": "ls -la /tmp"}) for n, name in enumerate(tools)
    )
    return Plan(
        text_chunks=tuple(text_chunks),
        tool_calls=calls,
        stop_reason="tool_use" if tools else "end_turn",
        usage=Usage(5, 9),
    )


def streams(p: Plan, api: ApiKind) -> tuple[bytes, dict[str, Any]]:
    if api is ApiKind.ANTHROPIC:
        events = anthropic_format.render_stream(p, msg_id="msg_1", model="claude-x")
        return b"".join(events), anthropic_format.render_message(
            p, msg_id="msg_1", model="claude-x"
        )
    events = openai_format.render_stream(p, cid="c1", model="gpt-x", created=1, include_usage=False)
    return b"".join(events), openai_format.render_completion(p, cid="c1", model="gpt-x", created=1)


async def run_pipeline(
    api: ApiKind, chain: PolicyChain, data: bytes, cuts: list[int], ctype: str
) -> bytes:
    cfg = Settings(gateway_keys=(SecretStr(KEY),))
    pipe = RequestPipeline(
        cfg,
        KeyRegistry.build(cfg.env_keys, None),
        chain,
        Router.build(cfg, env={}),
    )
    path = "/v1/messages" if api is ApiKind.ANTHROPIC else "/v1/chat/completions"
    pipe.on_request_headers(
        {":method": "POST", ":path": path, "content-type": "application/json", "x-api-key": KEY},
        False,
    )
    body = {
        "model": "claude-x" if api is ApiKind.ANTHROPIC else "gpt-x",
        "stream": ctype == "text/event-stream",
        "messages": [],
    }
    await pipe.on_request_body(json.dumps(body).encode())
    pipe.on_response_headers({":status": "200", "content-type": ctype}, False)
    points = [0, *sorted(set(cuts)), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(points) if b > a]
    out = bytearray()
    for i, chunk in enumerate(chunks):
        out += (await pipe.on_response_body(chunk, i == len(chunks) - 1)).data
    pipe.close()
    return bytes(out)


def blocks_of(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [(b["type"], b.get("text", b.get("name", ""))) for b in message["content"]]


TEXTS = st.lists(
    st.sampled_from(["hi ", SECRET[:7], SECRET[7:], SECRET, " and ", "🌍", "x"]),
    min_size=1,
    max_size=12,
)


@settings(max_examples=120, deadline=None)
@given(
    chunks=TEXTS,
    tools=st.lists(st.sampled_from(["bash", "get_weather"]), max_size=3),
    api=st.sampled_from([ApiKind.ANTHROPIC, ApiKind.OPENAI]),
    data=st.data(),
)
def test_same_content_any_chunking_and_streaming_or_not(
    chunks: list[str], tools: list[str], api: ApiKind, data: st.DataObject
) -> None:
    chain = PolicyChain([Redact(), BlockBash()])
    p = plan(chunks, tools)
    stream, message = streams(p, api)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=30))
    out = asyncio.run(run_pipeline(api, chain, stream, cuts, "text/event-stream"))
    path = "/v1/messages" if api is ApiKind.ANTHROPIC else "/v1/chat/completions"
    assert validate_stream(path, {}, out) == []
    expected_text = "".join(chunks).replace(SECRET, "[REDACTED]")
    json_out = json.loads(
        asyncio.run(run_pipeline(api, chain, json.dumps(message).encode(), [], "application/json"))
    )
    blocked = [f"blocked {t}" for t in tools if t == "bash"]
    if api is ApiKind.ANTHROPIC:
        streamed = anthropic_text(out)
        assert streamed == expected_text + "".join(blocked)
        assert [t for t, _ in blocks_of(json_out)].count("tool_use") == tools.count("get_weather")
        texts = [v for t, v in blocks_of(json_out) if t == "text"]
        assert "".join(texts) == streamed
        stop = json_out["stop_reason"]
    else:
        streamed = openai_text(out)
        content = json_out["choices"][0]["message"]["content"] or ""
        assert streamed.replace("\n\n", "") == content.replace("\n\n", "")
        assert content.replace("\n\n", "") == expected_text + "".join(blocked)
        stop = json_out["choices"][0]["finish_reason"]
    allowed = tools.count("get_weather")
    if api is ApiKind.ANTHROPIC:
        assert stop == ("tool_use" if allowed else "end_turn")
    else:
        assert stop == ("tool_calls" if allowed else "stop")


async def test_block_response_stops_with_message_and_valid_end() -> None:
    chain = PolicyChain([StopOnDelete()])
    for api in (ApiKind.ANTHROPIC, ApiKind.OPENAI):
        stream, _ = streams(plan(["ok "], ["get_weather", "delete_all"]), api)
        out = await run_pipeline(api, chain, stream, [], "text/event-stream")
        path = "/v1/messages" if api is ApiKind.ANTHROPIC else "/v1/chat/completions"
        assert validate_stream(path, {}, out) == []
        text = anthropic_text(out) if api is ApiKind.ANTHROPIC else openai_text(out)
        assert text.replace("\n\n", "") == "ok stopped"
        assert b"get_weather" not in out and b"delete_all" not in out


@settings(max_examples=80, deadline=None)
@given(
    chunks=TEXTS,
    api=st.sampled_from([ApiKind.ANTHROPIC, ApiKind.OPENAI]),
    data=st.data(),
)
def test_rewrite_only_chain_keeps_every_tool_call(
    chunks: list[str], api: ApiKind, data: st.DataObject
) -> None:
    """Tool-call events queued behind held-back text survive that text being rewritten."""
    stream, _ = streams(plan(chunks, ["bash", "get_weather"]), api)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=30))
    out = asyncio.run(run_pipeline(api, PolicyChain([Redact()]), stream, cuts, "text/event-stream"))
    path = "/v1/messages" if api is ApiKind.ANTHROPIC else "/v1/chat/completions"
    assert validate_stream(path, {}, out) == []
    assert out.count(b'"name":"bash"') == 1 and out.count(b'"name":"get_weather"') == 1
    text = anthropic_text(out) if api is ApiKind.ANTHROPIC else openai_text(out)
    assert text == "".join(chunks).replace(SECRET, "[REDACTED]")


def test_pem_block_held_from_begin_only() -> None:
    from extproc.engine.text import TextPipeline
    from extproc.policies.pii_redaction import PiiRedactionConfig, PiiRedactionPolicy

    pii = PiiRedactionPolicy(PiiRedactionConfig(detectors=["private_key"]))
    rewriter = pii.rewriter(None)  # type: ignore[arg-type]
    assert rewriter is not None
    text = TextPipeline([rewriter])
    out = text.feed("x" * 600 + " -----BEG")
    out += text.feed("IN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA")
    # Text before the block is not held behind a 4 KiB window; the block itself is.
    assert out.startswith("x" * 300) and "BEG" not in out and "MIIE" not in out
    for _ in range(40):
        out += text.feed("q" * 64 + "\n")
    out += text.feed("-----END RSA PRIVATE KEY----- done") + text.flush()
    assert out.endswith(" [REDACTED:secret] done") and "MIIE" not in out
