"""The policy engine on realistic responses: valid output and the same content whatever
the chunking, and the same content streaming or not (extproc/engine/whole.py shares the
rewriters and the tool gate with the stream engines to keep that promise)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.engine.whole import decide, observe, rewrite_text
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from tests.helpers.dialects import anthropic_body, api_request
from tests.helpers.engine import (
    SECRET,
    BlockBash,
    Redact,
    StopOnDelete,
    blocks_of,
    plan,
    run_pipeline,
    streams,
)
from tests.helpers.streams import anthropic_text, openai_text, validate_stream

TEXTS = st.lists(
    st.sampled_from(["hi ", SECRET[:7], SECRET[7:], SECRET, " and ", "🌍", "x"]),
    min_size=1,
    max_size=12,
)


@settings(max_examples=120, deadline=None)
@given(
    chunks=TEXTS,
    tools=st.lists(st.sampled_from(["bash", "get_weather"]), max_size=3),
    dialect=st.sampled_from([ANTHROPIC, OPENAI_CHAT]),
    data=st.data(),
)
def test_same_content_any_chunking_and_streaming_or_not(
    chunks: list[str], tools: list[str], dialect: Dialect, data: st.DataObject
) -> None:
    chain = PolicyChain([Redact(), BlockBash()])
    p = plan(chunks, tools)
    stream, message = streams(p, dialect)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=30))
    out = asyncio.run(run_pipeline(dialect, chain, stream, cuts, "text/event-stream"))
    assert validate_stream(dialect.path, {}, out) == []
    expected_text = "".join(chunks).replace(SECRET, "[REDACTED]")
    json_out = json.loads(
        asyncio.run(
            run_pipeline(dialect, chain, json.dumps(message).encode(), [], "application/json")
        )
    )
    blocked = [f"blocked {t}" for t in tools if t == "bash"]
    if dialect is ANTHROPIC:
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
    if dialect is ANTHROPIC:
        assert stop == ("tool_use" if allowed else "end_turn")
    else:
        assert stop == ("tool_calls" if allowed else "stop")


# -- the helpers themselves --------------------------------------------------------------

REQUEST = api_request(anthropic_body())


def call(name: str, index: int) -> ToolCall:
    return ToolCall(f"c{index}", name, {}, "{}", index)


def test_rewrite_text() -> None:
    text = f"a {SECRET} b"
    assert rewrite_text(PolicyChain([Redact()]), REQUEST, text) == "a [REDACTED] b"
    assert rewrite_text(PolicyChain([BlockBash()]), REQUEST, text) == text


async def test_decide_keeps_the_allowed_items_in_order() -> None:
    calls = [call("bash", 0), call("get_weather", 1), call("read", 2)]
    items = ["first", "second", "third"]
    assert await decide(PolicyChain([BlockBash()]), REQUEST, calls, items) == (
        ["blocked bash"],
        ["second", "third"],
    )
    stop = [call("read", 0), call("delete_all", 1)]
    assert await decide(PolicyChain([StopOnDelete()]), REQUEST, stop, ["a", "b"]) == (
        ["stopped"],
        [],
    )


def test_observe_only_when_a_policy_observes() -> None:
    seen: list[tuple[str, Any]] = []

    class Observer(Policy[PolicyConfig]):
        observes_events = True

        def observe(self, event_type: str, payload: Any, request: ApiRequest) -> None:
            seen.append((event_type, payload))

    observe(PolicyChain([Redact()]), REQUEST, {"x": 1})
    assert seen == []
    observe(PolicyChain([Observer()]), REQUEST, {"x": 1})
    assert seen == [("response", {"x": 1})]
