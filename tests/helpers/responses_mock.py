"""The mock LLM's Responses API under test: a server on a real port for the synchronous
OpenAI SDK, and checks of a Responses event stream framed by the project's SSE framer."""

from __future__ import annotations

import asyncio
import threading
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
from aiohttp import web

from extproc.mock_llm import MockConfig, create_app
from extproc.sse import SSEFramer

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@contextmanager
def serve_mock(config: MockConfig | None = None) -> Iterator[str]:
    """Run the mock on 127.0.0.1 in a thread with its own event loop; yields its base URL.

    A thread, because the synchronous SDK blocks: on the test's own loop the server
    could never answer it.
    """
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(config or MockConfig()), access_log=None)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    port = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def raw_stream(base_url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """POST a streaming Responses request and return the body bytes (status 200 checked)."""
    resp = httpx.post(
        base_url + "/v1/responses", json={**body, "stream": True}, headers=headers, timeout=10
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["x-request-id"].startswith("req_")
    return resp.content


def is_typed(event: Any) -> bool:
    """True when the SDK built the event's own class, not a stand-in for an unknown type."""
    return typing.get_args(type(event).model_fields["type"].annotation) == (event.type,)


def events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """(event name, JSON payload) of every frame whose data is a JSON object."""
    framer = SSEFramer(max_frame_bytes=1 << 30)
    out = []
    for frame in [*framer.feed(raw), *framer.flush()]:
        if frame.data is None:
            continue
        try:
            payload = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(payload, dict):
            out.append((frame.event, payload))
    return out


def stream_problems(raw: bytes) -> list[str]:
    """What breaks the Responses stream contract: names, numbering, pairing, terminal."""
    got = events(raw)
    problems = []
    if not got or got[0][1].get("type") != "response.created":
        problems.append("the first event is not response.created")
    for n, (name, payload) in enumerate(got):
        if name != payload.get("type"):
            problems.append(f"event {n}: name {name!r} != type {payload.get('type')!r}")
        if payload.get("sequence_number") != n:
            problems.append(f"event {n}: sequence_number {payload.get('sequence_number')}")
    payloads = [p for _, p in got]
    terminal = [p for p in payloads if p["type"] in TERMINAL]
    if len(terminal) != 1 or terminal[0] is not payloads[-1]:
        problems.append("not exactly one terminal event, last")
        return problems
    ids = {p["response"]["id"] for p in payloads if "response" in p}
    if len(ids) != 1:
        problems.append(f"the response id changes: {sorted(ids)}")
    problems += _pairing(payloads)
    end = terminal[0]
    done = [p["item"] for p in payloads if p["type"] == "response.output_item.done"]
    if end["type"] != "response.failed" and end["response"]["output"] != done:
        problems.append("the terminal output differs from the output_item.done items")
    status = end["response"]["status"]
    if end["type"] != f"response.{status}":
        problems.append(f"{end['type']} carries status {status}")
    return problems


# Event families that open with `.added` and close with `.done`, and what else keys them.
_PAIRED = {
    "response.output_item": None,
    "response.content_part": "content_index",
    "response.reasoning_summary_part": "summary_index",
}


def _pairing(payloads: list[dict[str, Any]]) -> list[str]:
    """Every added has its done (same place, same id) unless the stream failed, and
    every content event falls inside its item."""
    opened: dict[tuple[str, int, Any], str] = {}
    problems = []
    for p in payloads:
        n = p.get("sequence_number")
        if (
            "item_id" in p
            and opened.get(("response.output_item", p["output_index"], None)) != (p["item_id"])
        ):
            problems.append(f"#{n} {p['type']} is outside its item")
        kind, _, phase = p["type"].rpartition(".")
        if kind not in _PAIRED or phase not in ("added", "done"):
            continue
        sub = _PAIRED[kind]
        key = (kind, p["output_index"], p.get(sub) if sub else None)
        ident = p["item"]["id"] if "item" in p else p["item_id"]
        if phase == "added":
            if key in opened:
                problems.append(f"#{n} {p['type']} opens {key} twice")
            opened[key] = ident
        elif opened.pop(key, None) != ident:
            problems.append(f"#{n} {p['type']} has no matching added")
    if opened and payloads[-1]["type"] != "response.failed":
        problems.append(f"added but never done: {sorted(opened)}")
    return problems


def summary(items: list[Any]) -> list[tuple[str, ...]]:
    """Output items as comparable tuples, ids left out: the same for raw JSON items and
    SDK models, and for a streamed and a non-streamed answer to the same request."""
    out: list[tuple[str, ...]] = []
    for item in items:
        data = item if isinstance(item, dict) else item.to_dict()
        kind = data["type"]
        if kind == "message":
            out.append((kind, "".join(c.get("text", "") for c in data["content"])))
        elif kind == "function_call":
            out.append((kind, data["name"], data["arguments"]))
        elif kind == "custom_tool_call":
            out.append((kind, data["name"], data["input"]))
        elif kind == "reasoning":
            texts = [s["text"] for s in data["summary"]]
            out.append((kind, *texts, "encrypted" if data.get("encrypted_content") else ""))
        else:
            out.append((kind,))
    return out


def deltas(raw: bytes, kind: str = "response.output_text.delta") -> list[str]:
    return [p["delta"] for _, p in events(raw) if p["type"] == kind]
