"""The embedded mock LLM's server, exercised over real HTTP with the official SDKs and raw
httpx."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import pytest_asyncio
from aiohttp import web

from extproc.mock_llm import MockConfig, create_app

MODEL = "claude-sonnet-4-6"
BASH = {
    "name": "bash",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
        "required": ["command"],
    },
}
SEARCH = {
    "name": "web_search",
    "description": "Search the web",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
    for t in (BASH, SEARCH)
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def base_url() -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(MockConfig()), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture(scope="module")
def claude(base_url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url, api_key="test", max_retries=0)


@pytest.fixture(scope="module")
def gpt(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="test", max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def raw_stream(
    base_url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[bytes, list[bytes]]:
    """POST and collect the body as received: (all bytes, the pieces as they arrived)."""
    pieces: list[bytes] = []
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=5) as http,
        http.stream("POST", path, json=body, headers=headers or {}) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
        async for piece in resp.aiter_raw():
            pieces.append(piece)
    return b"".join(pieces), pieces


def anthropic_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "stream": True, "messages": user(text), **extra}


async def test_anthropic_count_non_streaming(claude: anthropic.AsyncAnthropic) -> None:
    msg = await claude.messages.create(
        model=MODEL, max_tokens=100, system="be terse", messages=user("Please COUNT TO 3")
    )
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "1, 2, 3"
    assert msg.stop_reason == "end_turn" and msg.model == MODEL and msg.id.startswith("msg_")
    assert msg.usage.output_tokens > 0


async def test_anthropic_count_streaming(claude: anthropic.AsyncAnthropic) -> None:
    content = [{"type": "text", "text": "Count to 3"}]
    async with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": content}]
    ) as stream:
        deltas = [text async for text in stream.text_stream]
        msg = await stream.get_final_message()
    assert deltas == ["1", ", 2", ", 3"]
    assert msg.content[0].text == "1, 2, 3" and msg.stop_reason == "end_turn"


async def test_say_is_echoed_exactly_in_small_deltas(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=user("Say: the secret is hunter2 ")
    ) as stream:
        deltas = [text async for text in stream.text_stream]
    assert "".join(deltas) == "the secret is hunter2 "
    assert len(deltas) > 4 and all(len(d) <= 5 for d in deltas)


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_tool_calls(claude: anthropic.AsyncAnthropic, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 200,
        "tools": [BASH, SEARCH],
        "messages": user("Search with WEB_SEARCH, then use bash to run `rm -rf /`"),
    }
    if stream:
        async with claude.messages.stream(**kwargs) as s:
            msg = await s.get_final_message()
    else:
        msg = await claude.messages.create(**kwargs)
    assert [b.type for b in msg.content] == ["text", "tool_use", "tool_use"]
    assert msg.content[0].text == "I'll use the web_search and bash tools."
    search, bash = msg.content[1], msg.content[2]
    assert search.name == "web_search" and search.input == {"query": "rm -rf /"}
    assert bash.name == "bash" and bash.input == {"command": "rm -rf /", "timeout": 1}
    assert bash.id.startswith("toolu_") and bash.id != search.id
    assert msg.stop_reason == "tool_use"


async def test_anthropic_tool_choice_none(claude: anthropic.AsyncAnthropic) -> None:
    msg = await claude.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=[BASH],
        tool_choice={"type": "none"},
        messages=user("use the tool please"),
    )
    assert [b.type for b in msg.content] == ["text"] and msg.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_tool_calls(gpt: openai.AsyncOpenAI, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": "gpt-4o",
        "tools": OPENAI_TOOLS,
        "messages": [
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": [{"type": "text", "text": "use bash: `ls -la`"}]},
        ],
    }
    if not stream:
        done = await gpt.chat.completions.create(**kwargs)
        choice = done.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == "I'll use the bash tool."
        [call] = choice.message.tool_calls or []
        name, args, call_id = call.function.name, call.function.arguments, call.id
    else:
        text, finish, calls = "", None, {}
        async for chunk in await gpt.chat.completions.create(stream=True, **kwargs):
            delta = chunk.choices[0].delta
            text += delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
            for tc in delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": tc.id, "name": "", "args": ""})
                slot["name"] += (tc.function and tc.function.name) or ""
                slot["args"] += (tc.function and tc.function.arguments) or ""
        assert text == "I'll use the bash tool." and finish == "tool_calls"
        [(name, args, call_id)] = [(c["name"], c["args"], c["id"]) for c in calls.values()]
    assert name == "bash" and json.loads(args) == {"command": "ls -la", "timeout": 1}
    assert call_id.startswith("call_")


async def test_openai_claude_model_and_include_usage(
    base_url: str, gpt: openai.AsyncOpenAI
) -> None:
    chunks = [
        c
        async for c in await gpt.chat.completions.create(
            model="claude-haiku-4-5",
            messages=user("Count to 5"),
            stream=True,
            stream_options={"include_usage": True},
        )
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "1, 2, 3, 4, 5"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == (
        chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    )
    assert {c.id for c in chunks} == {chunks[0].id} and {c.model for c in chunks} == {
        "claude-haiku-4-5"
    }
    raw, _ = await raw_stream(
        base_url, "/v1/chat/completions", {"model": "m", "stream": True, "messages": user("x")}
    )
    assert raw.endswith(b"data: [DONE]\n\n") and b'"usage"' not in raw


async def test_thinking_block(claude: anthropic.AsyncAnthropic) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": user("unicode test"),
    }
    async with claude.messages.stream(**kwargs) as stream:
        streamed = await stream.get_final_message()
    created = await claude.messages.create(**kwargs)
    for msg in (streamed, created):
        thinking, text = msg.content
        assert thinking.type == "thinking" and thinking.thinking and len(thinking.signature) > 40
        assert text.type == "text" and text.text == "héllo wörld — 你好 🌍 ✓"
    assert streamed.content[0].thinking == created.content[0].thinking  # type: ignore[union-attr]


async def test_overloaded_and_rate_limit_errors(
    claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    hdr = {"x-mock-error": "overloaded"}
    with pytest.raises(anthropic.InternalServerError) as err:
        await claude.messages.create(
            model=MODEL, max_tokens=10, messages=user("hi"), extra_headers=hdr
        )
    assert err.value.status_code == 529
    assert err.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    with pytest.raises(openai.InternalServerError) as oerr:
        await gpt.chat.completions.create(model="gpt-4o", messages=user("hi"), extra_headers=hdr)
    assert oerr.value.status_code == 503
    with pytest.raises(anthropic.RateLimitError) as rate:
        await claude.messages.create(
            model=MODEL, max_tokens=10, messages=user("hi"), extra_headers={"x-mock-error": "429"}
        )
    assert rate.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError) as server:
        await gpt.chat.completions.create(
            model="gpt-4o", messages=user("hi"), extra_headers={"x-mock-error": "500"}
        )
    assert server.value.status_code == 500 and server.value.type == "server_error"


async def test_overloaded_midstream(
    claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI
) -> None:
    hdr = {"x-mock-error": "overloaded-midstream"}
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as err:
        async with claude.messages.stream(
            model=MODEL, max_tokens=50, messages=user("Count to 9"), extra_headers=hdr
        ) as stream:
            async for text in stream.text_stream:
                seen.append(text)
    assert seen == ["1"] and err.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(openai.APIError, match="Overloaded"):
        async for _ in await gpt.chat.completions.create(
            model="gpt-4o", messages=user("Count to 9"), stream=True, extra_headers=hdr
        ):
            pass


async def test_random_chunking_is_byte_identical(base_url: str) -> None:
    body = anthropic_body("emoji please", thinking={"type": "enabled", "budget_tokens": 1024})
    plain, _ = await raw_stream(base_url, "/v1/messages", body)
    hdr = {"x-mock-chunking": "random:42", "x-mock-chunk-delay-ms": "1"}
    chunked, pieces = await raw_stream(base_url, "/v1/messages", body, hdr)
    assert chunked == plain and "🌍".encode() in plain
    assert len(pieces) > 10 and max(len(p) for p in pieces) <= 64  # flushed write by write
    obody = {"model": "gpt-4o", "stream": True, "messages": user("emoji")}
    oplain, _ = await raw_stream(base_url, "/v1/chat/completions", obody)
    ochunked, _ = await raw_stream(
        base_url, "/v1/chat/completions", obody, {"x-mock-chunking": "random:3"}
    )
    assert oplain == ochunked


@pytest.mark.parametrize("ending", ["crlf", "cr"])
async def test_line_endings(
    base_url: str, claude: anthropic.AsyncAnthropic, gpt: openai.AsyncOpenAI, ending: str
) -> None:
    sep = {"crlf": b"\r\n", "cr": b"\r"}[ending]
    hdr = {"x-mock-line-ending": ending, "x-mock-chunking": "random:7"}
    raw, _ = await raw_stream(base_url, "/v1/messages", anthropic_body("hi"), hdr)
    assert raw.startswith(b"event: message_start" + sep + b"data: {")
    assert raw.endswith(b'data: {"type":"message_stop"}' + sep + sep)
    assert b"\n" not in raw.replace(b"\r\n", b"") if ending == "crlf" else b"\n" not in raw
    async with claude.messages.stream(
        model=MODEL, max_tokens=99, messages=user("unicode"), extra_headers=hdr
    ) as stream:
        msg = await stream.get_final_message()
    assert msg.content[0].text == "héllo wörld — 你好 🌍 ✓"
    text = ""
    async for chunk in await gpt.chat.completions.create(
        model="gpt-4o", messages=user("Count to 4"), stream=True, extra_headers=hdr
    ):
        text += chunk.choices[0].delta.content or ""
    assert text == "1, 2, 3, 4"


async def test_truncate_after_and_die_after(base_url: str) -> None:
    raw, _ = await raw_stream(
        base_url, "/v1/messages", anthropic_body("Count to 5"), {"x-mock-truncate-after": "3"}
    )
    assert raw.count(b"event: ") == 3 and raw.endswith(b"\n\n")
    assert b"message_stop" not in raw
    with pytest.raises(httpx.RemoteProtocolError):
        await raw_stream(
            base_url, "/v1/messages", anthropic_body("Count to 5"), {"x-mock-die-after": "2"}
        )


async def test_validation_errors(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        r = await http.post("/v1/messages", json={"model": MODEL, "messages": user("hi")})
        assert r.status_code == 400
        assert r.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        }
        r = await http.post("/v1/messages", json={"model": MODEL, "max_tokens": 5})
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("messages")
        r = await http.post("/v1/messages", content=b"{not json")
        assert r.status_code == 400 and r.json()["type"] == "error"
        r = await http.post("/v1/chat/completions", json={"model": "gpt-4o"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert r.headers["x-request-id"].startswith("req_")
        r = await http.post("/v1/messages", json={}, headers={"x-mock-error": "nope"})
        assert r.status_code == 400 and "x-mock-error" in r.json()["error"]["message"]


async def test_recorded_requests_models_health_and_stall(
    base_url: str, gpt: openai.AsyncOpenAI
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.delete("/_mock/requests")).status_code == 200
        started = time.monotonic()
        r = await http.post(
            "/v1/messages",
            json={"model": MODEL, "max_tokens": 9, "messages": user("hi")},
            headers={"X-Custom-Thing": "Yes", "x-mock-stall-ms": "100"},
        )
        assert r.status_code == 200 and time.monotonic() - started >= 0.1
        assert r.headers["request-id"].startswith("req_")
        assert r.headers["content-type"] == "application/json"
        assert (await http.get("/healthz")).text == "ok"
        [record] = (await http.get("/_mock/requests")).json()
        assert record["method"] == "POST" and record["path"] == "/v1/messages"
        assert record["headers"]["x-custom-thing"] == "Yes"
        assert record["body"]["messages"] == user("hi")
        assert {m.id async for m in gpt.models.list()} >= {"gpt-4o"}
        await http.delete("/_mock/requests")
        assert (await http.get("/_mock/requests")).json() == []
