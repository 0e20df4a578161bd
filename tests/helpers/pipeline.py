"""Driving a RequestPipeline (or one of its parts) the way Envoy would, for the pipeline,
server, routing and Envoy-config unit tests.

- Request headers and a request sent through a pipeline: `request_headers()`,
  `started()`, `send()`.
- A response body in chunks: `split()`, `run_chunks()`.
- Upstream streams of both APIs, as bytes: `ANTHROPIC_STREAM`, `OPENAI_STREAM`,
  `ANTHROPIC_TOOL_STREAM`, `OPENAI_TOOL_STREAM`.
- Small policies with one behaviour each: `Touching`, `Upper`, `Slow`, `Broken`,
  `BlockAll`, `Waits`, `SwapModel`.
- A router from a policy file's `providers:` / `routes:` text, and a gateway around it:
  `router_from()`, `gateway_with()`.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import yaml
from pydantic import SecretStr

from extproc.config import Settings
from extproc.core.decisions import BlockToolCall, Deny, ToolCall
from extproc.core.request import ApiRequest
from extproc.core.rewriting import Span
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC
from extproc.gateway import Gateway
from extproc.keys import KeyRegistry
from extproc.pipeline import Continue, Immediate, RequestPipeline
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.routing import ProviderConfig, RouteConfig, Router
from tests.helpers.runtime import KEY, make_pipeline

# -- upstream streams ----------------------------------------------------------------------

ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"h\xc3\xa9llo \xf0\x9f\x8c\x8d"}}\n\n'
    b": keep-alive comment\n\n"
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":5}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
OPENAI_STREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\r\n\r\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{"content":"1, 2"},"finish_reason":null}]}\r\n\r\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\n'
    b"data: [DONE]\r\n\r\n"
)
OPENAI_TOOL_STREAM = (
    b'data: {"id":"c2","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1",'
    b'"type":"function","function":{"name":"bash","arguments":""}}]},"finish_reason":null}]}\n\n'
    b'data: {"id":"c2","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"command\\":'
    b'\\"ls\\"}"}}]},"finish_reason":null}]}\n\n'
    b'data: {"id":"c2","object":"chat.completion.chunk","created":1,"model":"gpt-x","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    b"data: [DONE]\n\n"
)

ANTHROPIC_TOOL_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_2","type":"message",'
    b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"tool_use","id":"toolu_1","name":"bash","input":{}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"input_json_delta","partial_json":"{\\"command\\": \\"ls\\"}"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use",'
    b'"stop_sequence":null},"usage":{"output_tokens":5}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def stream_of(dialect: Dialect) -> bytes:
    """A complete, valid upstream stream of the dialect."""
    return ANTHROPIC_STREAM if dialect is ANTHROPIC else OPENAI_STREAM


# -- requests ------------------------------------------------------------------------------


def request_headers(path: str = "/v1/messages", **extra: str) -> dict[str, str]:
    """A JSON POST to `path` with the test gateway key; `extra` adds or replaces headers."""
    return {
        ":method": "POST",
        ":path": path,
        "content-type": "application/json",
        "x-api-key": KEY,
        **extra,
    }


def model_for(dialect: Dialect) -> str:
    """A model the default routing table serves to a client of `dialect`."""
    return "claude-x" if dialect is ANTHROPIC else "gpt-x"


async def send(p: RequestPipeline, path: str, model: str, **headers: str) -> Continue | Immediate:
    """A one-message request through `p`'s request side: its answer to the body."""
    assert isinstance(p.on_request_headers(request_headers(path, **headers), False), Continue)
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    return await p.on_request_body(orjson.dumps(body))


async def started(
    dialect: Dialect = ANTHROPIC,
    chain: PolicyChain | None = None,
    ctype: str = "text/event-stream",
    **overrides: object,
) -> RequestPipeline:
    """A pipeline whose streaming request of the dialect went upstream and whose 200
    response headers (of this content type) arrived: the body comes next."""
    p = make_pipeline(chain, True, **overrides)
    assert isinstance(p.on_request_headers(request_headers(dialect.path), False), Continue)
    body = {
        "model": model_for(dialect),
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert isinstance(await p.on_request_body(orjson.dumps(body)), Continue)
    p.on_response_headers({":status": "200", "content-type": ctype}, False)
    return p


# -- response bodies -----------------------------------------------------------------------


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at these offsets; one empty chunk for empty data."""
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a] or [b""]


async def run_chunks(p: RequestPipeline, chunks: list[bytes]) -> bytes:
    """Feed the chunks as the whole response body (the last one ends it) and return what
    the client gets; every reply ends the stream exactly when its chunk did."""
    out = bytearray()
    for i, chunk in enumerate(chunks):
        res = await p.on_response_body(chunk, i == len(chunks) - 1)
        out += res.data
        assert res.end_of_stream == (i == len(chunks) - 1)
    return bytes(out)


def data_payloads(raw: bytes) -> list[Any]:
    """The JSON of every `data: {...}` line (CRLF or LF)."""
    return [
        orjson.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")
    ]


# -- policies ------------------------------------------------------------------------------


class Touching(Policy[PolicyConfig]):
    """Looks at every event, every text and every tool call, and lets all through:
    the engine runs, and its output must still be byte-identical."""

    type = "touching"
    observes_events = True
    gates_tool_calls = True
    rewrites_text = True
    holdback = 5

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        pass

    def rewriter(self, request: ApiRequest) -> Touching:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        return []


class Upper(Policy[PolicyConfig]):
    """Replaces every text that is not yet sent by "CHANGED"."""

    rewrites_text = True
    holdback = 0

    def rewriter(self, request: ApiRequest) -> Upper:
        return self

    def spans(self, text: str, start: int) -> list[Span]:
        return [Span(start, len(text), "CHANGED")] if start < len(text) else []


class Slow(Policy[PolicyConfig]):
    """Takes far longer to decide a tool call than any test's policy timeout."""

    gates_tool_calls = True

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        await asyncio.sleep(10)


class Broken(Policy[PolicyConfig]):
    """Raises on every event it observes."""

    observes_events = True

    def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
        raise RuntimeError("boom")


class BlockAll(Policy[PolicyConfig]):
    """Blocks every tool call, naming it and its command."""

    gates_tool_calls = True

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> BlockToolCall:
        return BlockToolCall(f"no {call.name} for you ({call.arguments['command']})")


class Waits(Policy[PolicyConfig]):
    """Decides no tool call until cancelled; `cancelled` is set when it was."""

    gates_tool_calls = True

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class SwapModel(Policy[PolicyConfig]):
    """Sets the request's model to `to` (any value, None included)."""

    type = "swap_model"
    reads_requests = True

    def __init__(self, to: object) -> None:
        super().__init__()
        self.to = to

    async def on_request(self, request: ApiRequest) -> Deny | None:
        request.replace_body({**request.body, "model": self.to})
        return None


# -- routing -------------------------------------------------------------------------------


def router_from(text: str = "", settings: Settings | None = None, **env: str) -> Router:
    """A router from a policy file's `providers:` and `routes:` (YAML text); `env` holds
    the variables providers name by `key_env`."""
    doc = yaml.safe_load(text) or {}
    providers = {
        name: ProviderConfig.model_validate(p) for name, p in doc.get("providers", {}).items()
    }
    routes = [RouteConfig.model_validate(r) for r in doc["routes"]] if "routes" in doc else None
    return Router.build(settings or Settings(), providers, routes, env=env)


def gateway_with(router: Router | None = None, settings: Settings | None = None) -> Gateway:
    """A gateway with these settings (default: all defaults) and router (default: built
    from the settings), callers from the settings, no policy file."""
    settings = settings or Settings()
    return Gateway(
        settings=settings,
        keys=KeyRegistry.build(settings.env_keys, None),
        router=router or Router.build(settings, env={}),
    )


def keyed(**overrides: object) -> Settings:
    """Settings with the test gateway key and these fields."""
    return Settings.model_validate({"gateway_keys": (SecretStr(KEY),), **overrides})
