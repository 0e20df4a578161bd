"""OpenAI's endpoints around the Responses API, and embeddings.

The mock stores nothing, so a response fetched by id is made up from the id alone:
the same id always gets the same body. Bodies are shaped like the real API's so the
official SDK parses them; faults (`x-mock-*`) apply only to the generating endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import orjson
from aiohttp import web

from . import openai_format
from .responses_format import (
    Rendering,
    digest,
    encrypted_content,
    invalid_request,
    render_response,
    scenario_input,
)
from .responses_stream import encode, stream_events
from .scenario import estimate_tokens, plan_response

CREATED = 1735689600  # the server's fixed timestamp, so bodies are byte-stable
STORED_MODEL = "gpt-4o"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
EMBEDDING_DIMENSIONS = 8
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)


def _json(request: web.Request, body: Any, status: int = 200, raw: bytes = b"") -> web.Response:
    seed = hashlib.sha256(request.path.encode() + b"\n" + raw).hexdigest()
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={"x-request-id": "req_" + seed[-24:]},
    )


async def _read_object(request: web.Request) -> tuple[bytes, dict[str, Any] | None]:
    """The raw body and its JSON object (None when it is not one)."""
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return raw, None
    return raw, body if isinstance(body, dict) else None


def _not_json(request: web.Request, raw: bytes) -> web.Response:
    return _json(request, invalid_request("The request body is not valid JSON."), 400, raw)


def _response_id(request: web.Request) -> str | None:
    rid = request.match_info["response_id"]
    return rid if rid.startswith("resp_") else None


def _not_found(request: web.Request) -> web.Response:
    rid = request.match_info["response_id"]
    return _json(request, invalid_request(f"Response with id '{rid}' not found."), 404)


def _stored(rid: str) -> tuple[dict[str, Any], Rendering]:
    """A completed answer to an empty prompt, with ids derived from the response id."""
    body = {"model": STORED_MODEL, "input": ""}
    seed = digest("stored", rid)
    ctx = Rendering.make(body, seed, CREATED, resp_id=rid)
    return render_response(plan_response(scenario_input(body, seed)), ctx), ctx


async def retrieve(request: web.Request) -> web.StreamResponse:
    rid = _response_id(request)
    if rid is None:
        return _not_found(request)
    document, ctx = _stored(rid)
    if request.query.get("stream") != "true":
        return _json(request, document)
    # `?stream=true` replays the events; `starting_after` skips those already seen.
    events = stream_events(plan_response(scenario_input(ctx.body, ctx.seed)), ctx)
    after = request.query.get("starting_after", "")
    if after.isdigit():
        events = [e for e in events if e["sequence_number"] > int(after)]
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    for frame in encode(events):
        await resp.write(frame)
    await resp.write_eof()
    return resp


async def delete(request: web.Request) -> web.Response:
    rid = _response_id(request)
    if rid is None:
        return _not_found(request)
    return _json(request, {"id": rid, "object": "response", "deleted": True})


async def cancel(request: web.Request) -> web.Response:
    rid = _response_id(request)
    if rid is None:
        return _not_found(request)
    # Only background responses can be cancelled, and they stop before producing output.
    body = {"model": STORED_MODEL, "input": "", "background": True}
    ctx = Rendering.make(body, digest("stored", rid), CREATED, resp_id=rid)
    return _json(request, ctx.envelope("cancelled", [], None))


async def input_items(request: web.Request) -> web.Response:
    if _response_id(request) is None:
        return _not_found(request)
    page: dict[str, Any] = {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    return _json(request, page)


async def input_tokens(request: web.Request) -> web.Response:
    """A word count stands in for the tokenizer, as Anthropic's count_tokens does."""
    raw, body = await _read_object(request)
    if body is None:
        return _not_json(request, raw)
    words = len(orjson.dumps(body.get("input")).split())
    words += len(str(body.get("instructions") or "").split())
    return _json(
        request, {"object": "response.input_tokens", "input_tokens": max(1, words)}, raw=raw
    )


def _user_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's user messages, kept verbatim as the real endpoint keeps them."""
    inp = body.get("input")
    if isinstance(inp, str):
        return [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": inp}]}
        ]
    return [
        {"type": "message", **item}
        for item in (inp if isinstance(inp, list) else [])
        if isinstance(item, dict) and item.get("role") == "user"
    ]


async def compact(request: web.Request) -> web.Response:
    """The user messages kept as they were, then one opaque compaction item."""
    raw, body = await _read_object(request)
    if body is None:
        return _not_json(request, raw)
    if not isinstance(body.get("model"), str):
        message = "Missing required parameter: 'model'."
        return _json(
            request, invalid_request(message, "model", "missing_required_parameter"), 400, raw
        )
    seed = hashlib.sha256(raw).hexdigest()
    blob = encrypted_content(seed)
    output = [
        *_user_messages(body),
        {"id": "cmp_" + seed[:48], "type": "compaction", "encrypted_content": blob},
    ]
    used = estimate_tokens(orjson.dumps([body.get("instructions"), body.get("input")]).decode())
    produced = estimate_tokens(blob)
    usage = {
        "input_tokens": used,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": produced,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": used + produced,
    }
    document = {
        "id": "resp_" + seed[:48],
        "object": "response.compaction",
        "created_at": CREATED,
        "output": output,
        "usage": usage,
    }
    return _json(request, document, raw=raw)


def _vector(model: str, item: Any, size: int) -> list[float]:
    """Floats in [-1, 1) that are exact in float32, so base64 round-trips unchanged."""
    pool = b""
    while len(pool) < size:
        pool += bytes.fromhex(digest(model, orjson.dumps(item).decode(), str(len(pool))))
    return [(b - 128) / 128 for b in pool[:size]]


def _embedding_inputs(value: Any) -> list[Any] | None:
    """The inputs to embed: strings or token arrays; None when `input` is malformed."""
    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return [value]  # one token array
    ok = all(
        (isinstance(v, str) and v)
        or (isinstance(v, list) and v and all(isinstance(t, int) for t in v))
        for v in value
    )
    return value if ok else None


async def embeddings(request: web.Request) -> web.Response:
    raw, body = await _read_object(request)
    if body is None:
        return _not_json(request, raw)
    model = body.get("model")
    if not isinstance(model, str):
        error = openai_format.invalid_request("you must provide a model parameter", "model")
        return _json(request, error, 400, raw)
    inputs = _embedding_inputs(body.get("input"))
    if inputs is None:
        return _json(request, openai_format.invalid_request(_INVALID_INPUT, "input"), 400, raw)
    dims = body.get("dimensions")
    size = dims if isinstance(dims, int) and 1 <= dims <= 256 else EMBEDDING_DIMENSIONS
    data = []
    for index, item in enumerate(inputs):
        vector: Any = _vector(model, item, size)
        if body.get("encoding_format") == "base64":  # what the Python SDK asks for by default
            vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(i) if isinstance(i, list) else estimate_tokens(i) for i in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _json(request, {"object": "list", "data": data, "model": model, "usage": usage}, raw=raw)


def add_routes(app: web.Application, prefix: str) -> None:
    """Register under `prefix` ("/v1" or "", as the OpenAI SDK's base_url may end)."""
    base = prefix + "/responses"
    app.router.add_post(base + "/input_tokens", input_tokens)
    app.router.add_post(base + "/compact", compact)
    app.router.add_get(base + "/{response_id}", retrieve)
    app.router.add_delete(base + "/{response_id}", delete)
    app.router.add_post(base + "/{response_id}/cancel", cancel)
    app.router.add_get(base + "/{response_id}/input_items", input_items)
    app.router.add_post(prefix + "/embeddings", embeddings)
