"""Callers' limits in the pipeline, with a real Limiter over in-process counters and a
clock the test holds: a request over a limit is refused in its API's format before it
goes upstream, an admitted one learns what it has left, and what a response used is
charged to the caller when the request finishes."""

from __future__ import annotations

import orjson
import pytest
from pydantic import SecretStr

from extproc.config import Settings
from extproc.core.audit import Action, Decision, DecisionLog, Mode
from extproc.core.providers import ProviderApi
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.gateway import Runtime
from extproc.limits import MemoryCounters, Window
from extproc.limits.counters import Metric
from extproc.pipeline import Continue, Immediate, Phase, RequestPipeline
from extproc.pipeline.metering import drain_charges
from extproc.routing import ProviderConfig, Router
from tests.helpers.dialects import USAGE_CHUNK, openai_chunk, openai_sse
from tests.helpers.limits_runtime import CALLER, limited_runtime
from tests.helpers.pipeline import ANTHROPIC_STREAM, model_for, request_headers, run_chunks
from tests.helpers.runtime import KEY
from tests.unit.limits.conftest import Clock, epoch

NOW = "2026-12-03T10:14:30"  # 30 s before the minute resets, 13h45m30s before the day
DRAIN_S = 5.0
PRICES = [
    {"model": "claude-*", "input": 3, "output": 15},
    {"model": "gpt-*", "input": 1, "output": 2},
]
ONE_PER_MINUTE = {"default": {"requests": {"per_minute": 1}}}
BUDGETS = {
    "prices": PRICES,
    "default": {
        "requests": {"per_minute": 10},
        "tokens": {"per_day": 1000},
        "usd": {"per_day": 5},
    },
}
# An OpenAI stream that reports usage because the gateway asked (82 in, 51 out).
OPENAI_ASKED = openai_sse(
    [
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Hi"}),
        openai_chunk({}, "stop"),
        USAGE_CHUNK,
        "[DONE]",
    ]
)
OPENAI_UNASKED = OPENAI_ASKED.replace(b',"usage":null', b"").replace(openai_sse([USAGE_CHUNK]), b"")


class Sent:
    """One request through a pipeline, its decisions recorded."""

    def __init__(self, runtime: Runtime, dialect: Dialect) -> None:
        self.dialect = dialect
        self.pipeline = RequestPipeline(runtime, True)
        self.decisions: list[Decision] = []
        self.pipeline.decisions = DecisionLog(self.decisions.append)

    async def request(self, stream: bool = True) -> Continue | Immediate:
        p = self.pipeline
        assert isinstance(p.on_request_headers(request_headers(self.dialect.path), False), Continue)
        body = {
            "model": model_for(self.dialect),
            "stream": stream,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
        }
        return await p.on_request_body(orjson.dumps(body))

    def response_headers(
        self, status: int = 200, ctype: str = "text/event-stream"
    ) -> Continue | Immediate:
        headers = {":status": str(status), "content-type": ctype}
        return self.pipeline.on_response_headers(headers, False)


async def sent(runtime: Runtime, dialect: Dialect, stream: bool = True) -> Sent:
    """A request that was admitted and sent upstream."""
    s = Sent(runtime, dialect)
    assert isinstance(await s.request(stream), Continue)
    return s


async def used(
    runtime: Runtime, *keys: tuple[Metric, Window], clock: Clock
) -> dict[tuple[Metric, Window], int]:
    """The caller's counters, once every charge under way was made."""
    await drain_charges(DRAIN_S)
    assert runtime.limiter is not None
    return await runtime.limiter.counters.read(CALLER, keys, clock())


@pytest.fixture
def clock() -> Clock:
    return Clock(epoch(NOW))


# -- refusal ----------------------------------------------------------------------------

REFUSAL = (
    "caller 'ci-bot' is over its request rate limit for the minute (1 request); "
    "it resets at 2026-12-03T10:15:00Z"
)


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_a_request_over_its_limit_is_refused_in_its_apis_format(
    dialect: Dialect, clock: Clock
) -> None:
    runtime = limited_runtime(ONE_PER_MINUTE, clock)
    first = await sent(runtime, dialect)
    assert first.decisions == []

    refused = Sent(runtime, dialect)
    out = await refused.request()
    assert isinstance(out, Immediate) and out.status == 429
    assert out.body == dialect.error_body(429, REFUSAL)
    own = {k: v for k, v in out.headers.items() if k.startswith("anthropic-ratelimit-")}
    assert {k: v for k, v in out.headers.items() if k not in own} == {
        "content-type": "application/json",
        "retry-after": "30",
        "x-ratelimit-limit-requests": "1",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "30s",
    }
    if dialect is ANTHROPIC:
        assert orjson.loads(out.body)["error"]["type"] == "rate_limit_error"
        assert set(own) == {
            f"anthropic-ratelimit-requests-{f}" for f in ("limit", "remaining", "reset")
        }
        assert own["anthropic-ratelimit-requests-remaining"] == "0"
    else:
        assert orjson.loads(out.body)["error"]["type"] == "rate_limit_exceeded"
        assert own == {}
    (decision,) = refused.decisions
    assert (decision.policy, decision.policy_type) == ("limits", "limits")
    assert (decision.action, decision.mode) == (Action.RATE_LIMITED, Mode.ENFORCE)
    assert decision.target == {"status": 429, "limit": "requests.per_minute"}
    assert decision.message == REFUSAL
    assert refused.pipeline.decisions.acted == ["limits"]
    assert refused.pipeline.phase is Phase.DONE and refused.pipeline.status == 429

    # A refused request counts nothing and is charged nothing.
    refused.pipeline.finish("rejected")
    counts = await used(runtime, ("requests", Window.MINUTE), ("tokens", Window.DAY), clock=clock)
    assert counts == {("requests", Window.MINUTE): 1, ("tokens", Window.DAY): 0}
    # The next minute it goes through.
    clock.now = epoch("2026-12-03T10:15:00")
    assert isinstance(await Sent(runtime, dialect).request(), Continue)


async def test_a_caller_without_limits_is_neither_counted_nor_asked(clock: Clock) -> None:
    runtime = limited_runtime({"chains": {"strict": {"requests": {"per_minute": 1}}}}, clock)
    for _ in range(3):
        s = await sent(runtime, OPENAI_CHAT)
        out = s.response_headers()
        assert isinstance(out, Continue)
        assert not any("ratelimit" in k for k in out.set_headers)
    # The request body went upstream as the client sent it: no usage asked for.
    s = Sent(runtime, OPENAI_CHAT)
    out = await s.request()
    assert isinstance(out, Continue) and out.body is None
    counts = await used(runtime, ("requests", Window.MINUTE), clock=clock)
    assert counts == {("requests", Window.MINUTE): 0}


# -- admitted ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
async def test_an_admitted_response_carries_what_is_left(dialect: Dialect, clock: Clock) -> None:
    runtime = limited_runtime(BUDGETS, clock)
    await sent(runtime, dialect)
    s = await sent(runtime, dialect)
    out = s.response_headers()
    assert isinstance(out, Continue)
    assert {k: v for k, v in out.set_headers.items() if k.startswith("x-ratelimit-")} == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "8",
        "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "1000",
        "x-ratelimit-reset-tokens": "13h45m30s",
    }
    anthropic_named = {k for k in out.set_headers if k.startswith("anthropic-ratelimit-")}
    assert bool(anthropic_named) is (dialect is ANTHROPIC)
    assert s.decisions == []


async def test_an_error_response_carries_what_is_left_too(clock: Clock) -> None:
    runtime = limited_runtime(BUDGETS, clock)
    s = await sent(runtime, ANTHROPIC)
    out = s.response_headers(529, "application/json")
    assert isinstance(out, Continue)
    assert out.set_headers["x-ratelimit-remaining-requests"] == "9"


async def test_an_admitted_openai_stream_asks_for_usage_and_hides_it(clock: Clock) -> None:
    runtime = limited_runtime(BUDGETS, clock)
    s = Sent(runtime, OPENAI_CHAT)
    out = await s.request()
    assert isinstance(out, Continue) and out.body is not None
    upstream = orjson.loads(out.body)
    assert upstream["stream_options"] == {"include_usage": True}
    assert out.set_headers["content-length"] == str(len(out.body))
    assert isinstance(s.response_headers(), Continue)
    assert await run_chunks(s.pipeline, [OPENAI_ASKED]) == OPENAI_UNASKED
    s.pipeline.finish("ok")
    counts = await used(runtime, ("tokens", Window.DAY), ("usd_micros", Window.DAY), clock=clock)
    # 82 + 51 tokens; 82 * $1 + 51 * $2 per million.
    assert counts == {("tokens", Window.DAY): 133, ("usd_micros", Window.DAY): 184}


# -- charging ---------------------------------------------------------------------------


async def test_finish_charges_the_usage_the_stream_reported(clock: Clock) -> None:
    runtime = limited_runtime(BUDGETS, clock)
    s = await sent(runtime, ANTHROPIC)
    s.response_headers()
    assert await run_chunks(s.pipeline, [ANTHROPIC_STREAM]) == ANTHROPIC_STREAM
    counts = await used(runtime, ("tokens", Window.DAY), clock=clock)
    assert counts == {("tokens", Window.DAY): 0}  # nothing before the request finishes
    s.pipeline.finish("ok")
    keys: list[tuple[Metric, Window]] = [
        ("tokens", Window.DAY),
        ("usd_micros", Window.DAY),
        ("requests", Window.MINUTE),
    ]
    counts = await used(runtime, *keys, clock=clock)
    # 3 input and 5 output tokens; 3 * $3 + 5 * $15 per million.
    assert counts == {
        ("tokens", Window.DAY): 8,
        ("usd_micros", Window.DAY): 84,
        ("requests", Window.MINUTE): 1,
    }


async def test_a_whole_json_response_is_charged_its_usage(clock: Clock) -> None:
    runtime = limited_runtime(BUDGETS, clock)
    s = await sent(runtime, OPENAI_CHAT, stream=False)
    s.response_headers(200, "application/json")
    message = {
        "id": "c1",
        "object": "chat.completion",
        "model": "gpt-x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7},
    }
    await run_chunks(s.pipeline, [orjson.dumps(message)])
    s.pipeline.finish("ok")
    assert await used(runtime, ("tokens", Window.DAY), clock=clock) == {("tokens", Window.DAY): 27}


async def test_a_stream_cut_before_its_usage_is_charged_a_token_per_event(clock: Clock) -> None:
    runtime = limited_runtime(BUDGETS, clock)
    s = await sent(runtime, OPENAI_CHAT)
    s.response_headers()
    events = openai_sse([openai_chunk({"content": "a"}), openai_chunk({"content": "b"})])
    out = await s.pipeline.on_response_body(events, False)
    assert not out.end_of_stream
    s.pipeline.finish("cancelled")  # the client went away
    counts = await used(runtime, ("tokens", Window.DAY), clock=clock)
    # No report: the request body's bytes / 4 as input, one token per event as output.
    assert s.pipeline.request_bytes > 0
    assert counts == {("tokens", Window.DAY): s.pipeline.request_bytes // 4 + 2}


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_a_failed_response_is_not_charged(status: int, clock: Clock) -> None:
    runtime = limited_runtime(BUDGETS, clock)
    s = await sent(runtime, ANTHROPIC)
    s.response_headers(status, "application/json")
    error = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
    await run_chunks(s.pipeline, [error])
    s.pipeline.finish("ok")
    keys: list[tuple[Metric, Window]] = [
        ("tokens", Window.DAY),
        ("usd_micros", Window.DAY),
        ("requests", Window.MINUTE),
    ]
    counts = await used(runtime, *keys, clock=clock)
    # The request was counted when admitted; no tokens or dollars for a failure.
    assert counts == {
        ("tokens", Window.DAY): 0,
        ("usd_micros", Window.DAY): 0,
        ("requests", Window.MINUTE): 1,
    }


async def test_a_spent_token_budget_refuses_the_next_request(clock: Clock) -> None:
    """A budget is checked against what earlier requests used: the request that crosses
    it completes, the next one is refused with the budget named."""
    runtime = limited_runtime(
        {"default": {"tokens": {"per_day": 8}}}, clock, counters=MemoryCounters()
    )
    s = await sent(runtime, ANTHROPIC)
    s.response_headers()
    await run_chunks(s.pipeline, [ANTHROPIC_STREAM])
    s.pipeline.finish("ok")
    await drain_charges(DRAIN_S)
    refused = Sent(runtime, ANTHROPIC)
    out = await refused.request()
    assert isinstance(out, Immediate) and out.status == 429
    assert out.headers["x-ratelimit-remaining-tokens"] == "0"
    (decision,) = refused.decisions
    assert decision.target == {"status": 429, "limit": "tokens.per_day"}


async def test_a_callers_own_limits_apply_over_the_default(clock: Clock) -> None:
    runtime = limited_runtime(BUDGETS, clock, own={"requests": {"per_minute": 1}})
    await sent(runtime, ANTHROPIC)
    out = await Sent(runtime, ANTHROPIC).request()
    assert isinstance(out, Immediate) and out.status == 429


async def test_a_provider_that_refuses_stream_options_is_not_asked(clock: Clock) -> None:
    """`stream_usage: false` on a provider: the request goes as the client sent it, and
    the stream (which then reports no usage) is charged from its events."""
    settings = Settings.model_validate({"gateway_keys": (SecretStr(KEY),)})
    providers = {"openai": ProviderConfig(api=ProviderApi.OPENAI, stream_usage=False)}
    router = Router.build(settings, providers, env={})
    runtime = limited_runtime(BUDGETS, clock, router=router)
    s = Sent(runtime, OPENAI_CHAT)
    out = await s.request()
    assert isinstance(out, Continue) and out.body is None  # the body untouched
    assert isinstance(s.response_headers(), Continue)
    assert await run_chunks(s.pipeline, [OPENAI_UNASKED]) == OPENAI_UNASKED
    s.pipeline.finish("ok")
    counts = await used(runtime, ("tokens", Window.DAY), clock=clock)
    assert counts[("tokens", Window.DAY)] > 0
