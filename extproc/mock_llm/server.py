"""The mock LLM HTTP server: Anthropic and OpenAI endpoints, faults on demand, request log."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import orjson
from aiohttp import web

from . import anthropic_format, openai_format, openai_routes, responses_format, scripts
from . import judge as mock_judge
from .responses_stream import render_stream as render_responses_stream
from .scenario import Plan, plan_response

CREATED = 1735689600  # fixed "created" timestamp so responses are byte-stable
LINE_ENDINGS = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}
ERROR_KINDS = ("overloaded", "overloaded-midstream", "429", "500")
UNRECORDED = ("/healthz", "/_mock/requests")
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
ANTHROPIC_MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-6")


def parse_chunking(value: str) -> str | None:
    """Validate a chunking spec: ``random:SEED`` or ``none``; returns the seed or None."""
    if value == "none":
        return None
    kind, sep, seed = value.partition(":")
    if kind != "random" or not sep or not seed:
        raise ValueError(f"chunking must be 'random:SEED' or 'none', got {value!r}")
    return seed


@dataclass(frozen=True)
class MockConfig:
    """Server-wide defaults; request headers override them."""

    chunking: str | None = None  # "random:SEED" or None (one write per SSE event)
    chunk_delay_ms: int = 0
    max_recorded: int = 100

    def __post_init__(self) -> None:
        if self.chunking is not None:
            parse_chunking(self.chunking)
        if self.chunk_delay_ms < 0:
            raise ValueError("chunk_delay_ms must be >= 0")


CONFIG_KEY = web.AppKey("mock_config", MockConfig)
RECORDS_KEY: web.AppKey[deque[dict[str, Any]]] = web.AppKey("mock_records")


class BadHeader(ValueError):
    pass


@dataclass(frozen=True)
class Faults:
    error: str | None
    truncate_after: int | None
    die_after: int | None
    chunk_seed: str | None
    delay_ms: int
    line_ending: str
    stall_ms: int

    @classmethod
    def from_request(cls, request: web.Request, config: MockConfig) -> Faults:
        headers = request.headers

        def number(name: str) -> int | None:
            raw = headers.get(name)
            if raw is None:
                return None
            if not raw.strip().isdigit():
                raise BadHeader(f"{name} must be a non-negative integer, got {raw!r}")
            return int(raw)

        error = headers.get("x-mock-error")
        if error is not None and error not in ERROR_KINDS:
            raise BadHeader(f"x-mock-error must be one of {', '.join(ERROR_KINDS)}, got {error!r}")
        ending = headers.get("x-mock-line-ending", "lf").lower()
        if ending not in LINE_ENDINGS:
            raise BadHeader(f"x-mock-line-ending must be lf, crlf or cr, got {ending!r}")
        chunking = headers.get("x-mock-chunking", config.chunking or "none")
        try:
            seed = parse_chunking(chunking)
        except ValueError as exc:
            raise BadHeader(f"x-mock-chunking: {exc}") from None
        delay = number("x-mock-chunk-delay-ms")
        return cls(
            error=error,
            truncate_after=number("x-mock-truncate-after"),
            die_after=number("x-mock-die-after"),
            chunk_seed=seed,
            delay_ms=config.chunk_delay_ms if delay is None else delay,
            line_ending=LINE_ENDINGS[ending],
            stall_ms=number("x-mock-stall-ms") or 0,
        )


def split_random(data: bytes, seed: str) -> list[bytes]:
    """Split ``data`` at seeded pseudo-random positions into pieces of 1..64 bytes."""
    rng = random.Random(seed)
    pieces = []
    pos = 0
    while pos < len(data):
        size = rng.randint(1, 64)
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


async def _send_stream(
    request: web.Request, events: list[bytes], faults: Faults, headers: dict[str, str]
) -> web.StreamResponse:
    resp = web.StreamResponse(
        status=200,
        headers={"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache", **headers},
    )
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    limits = [n for n in (faults.truncate_after, faults.die_after) if n is not None]
    if limits:
        events = events[: min(limits)]
    pieces = split_random(b"".join(events), faults.chunk_seed) if faults.chunk_seed else events
    try:
        for i, piece in enumerate(pieces):
            if i and faults.delay_ms:
                await asyncio.sleep(faults.delay_ms / 1000)
            await resp.write(piece)
    except ConnectionError:  # the client went away mid-stream
        return resp
    if faults.die_after is not None and faults.die_after == min(limits):
        if request.transport is not None:
            request.transport.abort()  # no chunked terminator: the client sees a broken body
        return resp
    await resp.write_eof()
    return resp


Renderer = Callable[[Plan, dict[str, Any], str, Faults], tuple[Any, list[bytes] | None]]


async def _handle(
    request: web.Request, fmt: ModuleType, render: Renderer, id_header: str, id_prefix: str
) -> web.StreamResponse:
    raw = await request.read()
    seed = hashlib.sha256(request.path.encode() + b"\n" + raw).hexdigest()
    headers = {id_header: id_prefix + seed[-24:]}
    try:
        faults = Faults.from_request(request, request.app[CONFIG_KEY])
    except BadHeader as exc:
        return _json(fmt.invalid_request(str(exc)), 400, headers)
    if faults.stall_ms:
        await asyncio.sleep(faults.stall_ms / 1000)
    script = request.headers.get("x-mock-script")
    if script is not None:
        return await _run_script(request, script, fmt, faults, headers)
    if faults.error is not None and faults.error != "overloaded-midstream":
        status, body = fmt.fault_error(faults.error)
        if faults.error == "429":
            headers["retry-after"] = "7"
        return _json(body, status, headers)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _json(fmt.invalid_request("The request body is not valid JSON."), 400, headers)
    problem = fmt.validate(body)
    if problem is not None:  # a message, or (message, param[, code])
        args = problem if isinstance(problem, tuple) else (problem,)
        return _json(fmt.invalid_request(*args), 400, headers)
    inp = fmt.scenario_input(body, seed)
    if mock_judge.is_judge_model(body.get("model")):
        reply = mock_judge.review(inp, fenced=fmt is anthropic_format)
        await asyncio.sleep(reply.delay_s)
        if reply.plan is None:
            status, error = fmt.fault_error("500")
            return _json(error, status, headers)
        plan = reply.plan
    else:
        plan = plan_response(inp)
    document, events = render(plan, body, seed, faults)
    if events is None:
        return _json(document, 200, headers)
    return await _send_stream(request, events, faults, headers)


async def _run_script(
    request: web.Request, script: str, fmt: ModuleType, faults: Faults, headers: dict[str, str]
) -> web.StreamResponse:
    api = {anthropic_format: "anthropic", responses_format: "responses"}.get(fmt, "openai")
    name, _, arg = script.partition(":")
    if name == "html-error":
        return web.Response(
            status=502,
            body=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            content_type="text/html",
            headers=headers,
        )
    if name == "garbage":
        return await _send_stream(request, scripts.garbage(api), faults, headers)
    if name == "giant-event" and arg.isdigit():
        return await _send_stream(request, scripts.giant_event(api, int(arg)), faults, headers)
    message = f"x-mock-script must be one of {', '.join(scripts.SCRIPT_NAMES)} (giant-event:N)"
    return _json(fmt.invalid_request(message), 400, headers)


def _render_anthropic(
    plan: Plan, body: dict[str, Any], seed: str, faults: Faults
) -> tuple[Any, list[bytes] | None]:
    msg_id, model = "msg_01" + seed[:22], str(body["model"])
    if body.get("stream") is not True:
        return anthropic_format.render_message(plan, msg_id=msg_id, model=model), None
    events = anthropic_format.render_stream(
        plan,
        msg_id=msg_id,
        model=model,
        line_ending=faults.line_ending,
        midstream_error=faults.error == "overloaded-midstream",
    )
    return None, events


def _render_openai(
    plan: Plan, body: dict[str, Any], seed: str, faults: Faults
) -> tuple[Any, list[bytes] | None]:
    cid, model = "chatcmpl-" + seed[:24], str(body["model"])
    if body.get("stream") is not True:
        return openai_format.render_completion(plan, cid=cid, model=model, created=CREATED), None
    options = body.get("stream_options")
    events = openai_format.render_stream(
        plan,
        cid=cid,
        model=model,
        created=CREATED,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        line_ending=faults.line_ending,
        midstream_error=faults.error == "overloaded-midstream",
    )
    return None, events


def _render_responses(
    plan: Plan, body: dict[str, Any], seed: str, faults: Faults
) -> tuple[Any, list[bytes] | None]:
    ctx = responses_format.Rendering.make(body, seed, CREATED)
    if body.get("stream") is not True:
        return responses_format.render_response(plan, ctx), None
    events = render_responses_stream(
        plan,
        ctx,
        line_ending=faults.line_ending,
        midstream_error=faults.error == "overloaded-midstream",
    )
    return None, events


async def messages(request: web.Request) -> web.StreamResponse:
    return await _handle(request, anthropic_format, _render_anthropic, "request-id", "req_01")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, openai_format, _render_openai, "x-request-id", "req_")


async def responses(request: web.Request) -> web.StreamResponse:
    return await _handle(request, responses_format, _render_responses, "x-request-id", "req_")


async def models(request: web.Request) -> web.Response:
    if "anthropic-version" not in request.headers:
        return _json(openai_format.models_list())
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in ANTHROPIC_MODELS
    ]
    return _json({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": None})


async def count_tokens(request: web.Request) -> web.Response:
    """Anthropic's token counter: a word count stands in for the tokenizer."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _json(anthropic_format.invalid_request("The request body is not valid JSON."), 400)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _json(anthropic_format.invalid_request("messages: Field required", "messages"), 400)
    words = len(orjson.dumps(body.get("messages")).split()) + len(
        str(body.get("system", "")).split()
    )
    return _json({"input_tokens": max(1, words)})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def get_requests(request: web.Request) -> web.Response:
    records = request.app[RECORDS_KEY]
    return _json(list(records))


async def clear_requests(request: web.Request) -> web.Response:
    request.app[RECORDS_KEY].clear()
    return _json({"cleared": True})


@web.middleware
async def record_requests(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    if request.path not in UNRECORDED:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        request.app[RECORDS_KEY].append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
            }
        )
    response: web.StreamResponse = await handler(request)
    return response


def create_app(config: MockConfig | None = None) -> web.Application:
    """The mock LLM as an aiohttp application."""
    config = config or MockConfig()
    app = web.Application(middlewares=[record_requests], client_max_size=64 * 1024 * 1024)
    app[CONFIG_KEY] = config
    app[RECORDS_KEY] = deque(maxlen=config.max_recorded)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    for prefix in ("/v1", ""):  # the OpenAI SDK's base_url usually ends in /v1
        app.router.add_post(prefix + "/chat/completions", chat_completions)
        app.router.add_get(prefix + "/models", models)
        app.router.add_post(prefix + "/responses", responses)
        openai_routes.add_routes(app, prefix)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/_mock/requests", get_requests)
    app.router.add_delete("/_mock/requests", clear_requests)
    return app
