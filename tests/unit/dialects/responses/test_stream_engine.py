"""The policy engine for OpenAI Responses streams
(extproc/dialects/responses/stream_engine.py): alone, fed SSE frames cut anywhere, and
through the pipeline; every output checked against the wire contract (numbering,
pairing, the terminal output equal to the done items, contiguous output indices, the
dialect's validator) and, where a policy changed something, against what the message
engine makes of the same answer not streamed."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.registry import OPENAI_RESPONSES
from extproc.dialects.responses.message_engine import process_message
from extproc.dialects.responses.stream_engine import ResponsesStreamEngine
from extproc.mock_llm import responses_stream
from extproc.mock_llm.scenario import Plan
from extproc.policies.base import Policy, PolicyChain, PolicyConfig
from extproc.policies.noop import NoOpPolicy
from tests.helpers.engine import SECRET, BlockBash, Observer, Redact, StopOnDelete
from tests.helpers.pipeline import Touching, Waits
from tests.helpers.responses_engine import (
    BODY,
    ITEM_ADDED,
    ITEM_DONE,
    PATH,
    REASONING_BODY,
    encode,
    engine_output,
    of_type,
    payloads,
    rendering,
    renumber,
    request_of,
    response,
    rplan,
    sequence_problems,
    stream,
    stream_events,
    terminal,
    texts_everywhere,
    through_pipeline,
    wire_problems,
)
from tests.helpers.streams import frames, validate_stream

Event = dict[str, Any]

# The answers the byte-fidelity properties run on: (plan, request body).
KINDS: dict[str, tuple[Plan, dict[str, Any]]] = {
    "text": (rplan(["Hello", ", wörld ", "🌍", "!"]), BODY),
    "function call": (rplan([], ["get_weather"]), BODY),
    "text then call": (rplan(["Let me check."], ["get_weather"]), BODY),
    "parallel calls": (rplan(["Checking."], ["get_weather", "read_file"]), BODY),
    "parallel calls alone": (rplan([], ["get_weather", "read_file"]), BODY),
    "reasoning": (rplan(["1, 2"], ["get_weather"], thinking=["Count ", "to two."]), REASONING_BODY),
}
# Chains that change nothing on these answers: no policy, a policy that reads nothing,
# gates that let every call through (no `bash`, no `delete_all` in them).
IDENTITY_CHAINS: dict[str, Callable[[], PolicyChain]] = {
    "empty chain": lambda: PolicyChain([]),
    "noop": lambda: PolicyChain([NoOpPolicy()]),
    "gate": lambda: PolicyChain([BlockBash()]),
    "two gates": lambda: PolicyChain([BlockBash(), StopOnDelete()]),
}
# Text pieces a secret may be split into.
PIECES = st.sampled_from(["hi ", SECRET[:7], SECRET[7:], SECRET, " and ", "🌍", "x", "\n"])


def output_of(chain: PolicyChain, raw: bytes, cuts: list[int] | None = None) -> bytes:
    return asyncio.run(engine_output(chain, raw, cuts or []))


async def message_engine(p: Plan, chain: PolicyChain, body: dict[str, Any] = BODY) -> Any:
    return await process_message(response(p, body), chain, request_of(body))


def without_seq(payload: Event) -> Event:
    return {k: v for k, v in payload.items() if k != "sequence_number"}


def item_events(raw: bytes, item_id: str) -> list[Event]:
    """The payloads of one item's events (its added, content events and done), without
    their sequence numbers."""
    return [
        without_seq(p)
        for p in payloads(raw)
        if p.get("item_id") == item_id or (p.get("item") or {}).get("id") == item_id
    ]


def added_items(raw: bytes) -> list[tuple[int, str, str]]:
    """(output_index, type, name or text) of every item the client saw finished."""
    out = []
    for p in of_type(raw, ITEM_DONE):
        item = p["item"]
        label = item.get("name") or "".join(c.get("text", "") for c in item.get("content", []))
        out.append((p["output_index"], item["type"], label))
    return out


# -- byte fidelity ------------------------------------------------------------------------


@pytest.mark.parametrize("chain", IDENTITY_CHAINS)
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data(), line_ending=st.sampled_from(["\n", "\r\n"]))
def test_a_chain_that_changes_nothing_is_byte_identical_for_any_chunking(
    kind: str, chain: str, data: st.DataObject, line_ending: str
) -> None:
    p, body = KINDS[kind]
    raw = stream(p, body, line_ending)
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=40))
    assert output_of(IDENTITY_CHAINS[chain](), raw, cuts) == raw


PIPELINE_CHAINS: dict[str, Callable[[], PolicyChain]] = {
    # Responses never reach the engine: the pipeline forwards them.
    "noop": lambda: PolicyChain([NoOpPolicy()]),
    # Observes every event, rewrites every text (no span) and gates every call.
    "touching": lambda: PolicyChain([Touching()]),
    "gate": lambda: PolicyChain([BlockBash()]),
}


@pytest.mark.parametrize("chain", PIPELINE_CHAINS)
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data(), line_ending=st.sampled_from(["\n", "\r\n"]))
def test_through_the_pipeline_a_chain_that_changes_nothing_is_byte_identical(
    kind: str, chain: str, data: st.DataObject, line_ending: str
) -> None:
    p, body = KINDS[kind]
    raw = stream(p, body, line_ending)
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=40))
    out = asyncio.run(through_pipeline(PIPELINE_CHAINS[chain](), raw, cuts, body=body))
    assert out == raw


# -- text rewriting -----------------------------------------------------------------------


async def test_a_secret_split_across_deltas_is_redacted_everywhere_the_text_is() -> None:
    p = rplan(["My key is AKIAABCD", "EFGHIJKLMNOP", ", keep it", " safe."])
    out = await engine_output(PolicyChain([Redact()]), stream(p))
    assert SECRET.encode() not in out and b"AKIAABCD" not in out
    expected = "My key is [REDACTED], keep it safe."
    assert set(texts_everywhere(out, 0).values()) == {expected}, texts_everywhere(out, 0)
    assert wire_problems(out) == []
    # The same response the message engine makes of the same answer not streamed.
    same = await message_engine(p, PolicyChain([Redact()]))
    assert terminal(out)["response"] == same


@settings(max_examples=120, deadline=None)
@given(
    text=st.lists(PIECES, min_size=1, max_size=10),
    tools=st.lists(st.sampled_from(["bash", "get_weather"]), max_size=3),
    line_ending=st.sampled_from(["\n", "\r\n"]),
    data=st.data(),
)
def test_same_content_streaming_or_not_for_any_chunking(
    text: list[str], tools: list[str], line_ending: str, data: st.DataObject
) -> None:
    chain = PolicyChain([Redact(), BlockBash()])
    p = rplan(text, tools)
    raw = stream(p, line_ending=line_ending)
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=40))
    out = asyncio.run(through_pipeline(chain, raw, cuts))
    assert SECRET.encode() not in out
    assert wire_problems(out) == []
    expected = "".join(text).replace(SECRET, "[REDACTED]")
    assert set(texts_everywhere(out, 0).values()) == {expected}
    same = asyncio.run(message_engine(p, chain))
    assert terminal(out)["response"] == same
    # And through the pipeline as a JSON body: the message engine's answer.
    whole = asyncio.run(
        through_pipeline(chain, orjson.dumps(response(p)), ctype="application/json")
    )
    assert orjson.loads(whole) == same


async def test_logprobs_of_a_rewritten_part_are_emptied() -> None:
    logprobs = [{"token": "AKIA", "bytes": [65], "logprob": -0.1, "top_logprobs": []}]

    def with_logprobs(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: with_logprobs(v) for k, v in node.items()}
            return {**node, "logprobs": logprobs} if "logprobs" in node else node
        return [with_logprobs(v) for v in node] if isinstance(node, list) else node

    p = rplan([f"key {SECRET} ", "end"])
    evs = [with_logprobs(e) for e in stream_events(p)]
    out = await engine_output(PolicyChain([Redact()]), encode(evs))
    assert SECRET.encode() not in out and wire_problems(out) == []
    (text_done,) = of_type(out, "response.output_text.done")
    (part_done,) = of_type(out, "response.content_part.done")
    (item_done,) = of_type(out, ITEM_DONE)
    final = terminal(out)["response"]["output"][0]
    assert text_done["logprobs"] == []
    assert part_done["part"]["logprobs"] == []
    assert item_done["item"]["content"][0]["logprobs"] == []
    assert final["content"][0]["logprobs"] == []
    # A part nothing rewrote keeps them: its events leave as they came.
    clean = encode([with_logprobs(e) for e in stream_events(rplan(["nothing ", "secret"]))])
    assert await engine_output(PolicyChain([Redact()]), clean) == clean


async def test_reasoning_items_and_refusals_pass_byte_identical_under_rewriters() -> None:
    # The summary holds the secret: reasoning is never rewritten (its encrypted content
    # must match it), only the message's text is.
    p = rplan([f"a {SECRET}"], thinking=[f"The key {SECRET[:5]}", f"{SECRET[5:]} is"])
    raw = stream(p, REASONING_BODY)
    out = await engine_output(PolicyChain([Redact()]), raw)
    # The reasoning item is output_index 0: every one of its events, byte for byte.
    reasoning = [
        f.raw for f in frames(raw) if orjson.loads(f.data or "{}").get("output_index") == 0
    ]
    assert len(reasoning) == 7 and all(r in out for r in reasoning)
    final = terminal(out)["response"]["output"]
    assert final[0] == response(p, REASONING_BODY)["output"][0]
    assert final[0]["encrypted_content"].startswith("gAAAAA")
    assert texts_everywhere(out, 1)["response.output"] == "a [REDACTED]"
    assert wire_problems(out, REASONING_BODY) == []

    refusal = encode(refusal_events(f"I can't share {SECRET}."))
    assert await engine_output(PolicyChain([Redact(), BlockBash()]), refusal) == refusal


def refusal_events(text: str) -> list[Event]:
    """A whole stream whose one message is a refusal."""
    start = stream_events(rplan(["x"]))[:2]
    at = {"item_id": "msg_r", "output_index": 0, "content_index": 0}
    item = {"id": "msg_r", "type": "message", "status": "completed", "role": "assistant"}
    done = {**item, "content": [{"type": "refusal", "refusal": text}]}
    end = copy.deepcopy(stream_events(rplan(["x"]))[-1])
    end["response"]["output"] = [done]
    return renumber(
        [
            *start,
            {"type": ITEM_ADDED, "output_index": 0, "item": {**item, "content": []}},
            {"type": "response.content_part.added", **at, "part": {"type": "refusal"}},
            *(
                {"type": "response.refusal.delta", **at, "delta": text[i : i + 6]}
                for i in range(0, len(text), 6)
            ),
            {"type": "response.refusal.done", **at, "refusal": text},
            {"type": "response.content_part.done", **at, "part": done["content"][0]},
            {"type": ITEM_DONE, "output_index": 0, "item": done},
            end,
        ]
    )


# -- the tool gate ------------------------------------------------------------------------


async def test_a_blocked_call_becomes_a_message_in_its_place() -> None:
    p = rplan(["hi"], ["get_weather", "bash", "read_file"])
    raw = stream(p)
    out = await engine_output(PolicyChain([BlockBash()]), raw)
    assert wire_problems(out) == []
    assert added_items(out) == [
        (0, "message", "hi"),
        (1, "function_call", "get_weather"),
        (2, "message", "blocked bash"),
        (3, "function_call", "read_file"),
    ]
    assert texts_everywhere(out, 2) == dict.fromkeys(
        ("deltas", "output_text.done", "content_part.done", "output_item.done", "response.output"),
        "blocked bash",
    )
    assert b'"name":"bash"' not in out
    final = terminal(out)["response"]
    assert [i["type"] for i in final["output"]] == [
        "message",
        "function_call",
        "message",
        "function_call",
    ]
    assert final == await message_engine(p, PolicyChain([BlockBash()]))
    # The calls let through are the upstream's, event for event.
    upstream = response(p)["output"]
    for item in (upstream[1], upstream[3]):
        assert item_events(out, item["id"]) == item_events(raw, item["id"])


async def test_a_blocked_call_first_in_the_output_becomes_a_message_in_its_place() -> None:
    # No text before the calls: the blocked call is output_index 0.
    p = rplan([], ["bash", "get_weather"])
    out = await engine_output(PolicyChain([BlockBash()]), stream(p))
    assert b'"name":"bash"' not in out
    assert added_items(out) == [(0, "message", "blocked bash"), (1, "function_call", "get_weather")]
    assert wire_problems(out) == []
    assert terminal(out)["response"] == await message_engine(p, PolicyChain([BlockBash()]))


async def test_an_allowed_call_first_in_the_output_keeps_all_its_events() -> None:
    p = rplan([], ["get_weather"])
    raw = stream(p)
    out = await engine_output(PolicyChain([BlockBash()]), raw)
    assert out == raw


async def test_custom_tool_calls_are_gated_too() -> None:
    body = {**BODY, "tools": [{"type": "custom", "name": "bash"}]}
    p = rplan(["patching"], ["bash"])
    raw = stream(p, body)
    assert b'"type":"custom_tool_call"' in raw
    out = await engine_output(PolicyChain([BlockBash()]), raw, request=request_of(body))
    assert added_items(out) == [(0, "message", "patching"), (1, "message", "blocked bash")]
    assert b"custom_tool_call" not in out.replace(b'"tools":[{"type":"custom"', b"")
    assert wire_problems(out, body) == []


class Rendezvous(Policy[PolicyConfig]):
    """Lets a call through only once `expected` calls are being decided at the same
    time; a call still alone after `patience` seconds is blocked (by the gate, as the
    policy failed)."""

    gates_tool_calls = True

    def __init__(self, expected: int, patience: float = 5.0) -> None:
        super().__init__()
        self.expected = expected
        self.patience = patience
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def on_tool_call(self, call: ToolCall, request: ApiRequest) -> None:
        self.arrived += 1
        if self.arrived == self.expected:
            self.all_here.set()
        await asyncio.wait_for(self.all_here.wait(), self.patience)


async def test_parallel_calls_are_decided_concurrently() -> None:
    p = rplan(["Checking."], ["get_weather", "read_file"])
    raw = stream(p)
    policy = Rendezvous(2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await engine_output(PolicyChain([policy]), raw)
    # Decided one after the other, the first would have waited for the second in vain.
    assert policy.arrived == 2 and policy.all_here.is_set()
    assert out == raw
    assert loop.time() - started < policy.patience


async def test_block_response_leaves_one_message_in_the_first_calls_place() -> None:
    p = rplan(["ok"], ["get_weather", "delete_all", "bash"])
    raw = encode(renumber(stream_events(p), start=100))
    out = await engine_output(PolicyChain([StopOnDelete()]), raw)
    assert wire_problems(out) == [] and payloads(out)[0]["sequence_number"] == 100
    assert added_items(out) == [(0, "message", "ok"), (1, "message", "stopped")]
    for name in (b"get_weather", b"delete_all", b"bash", b"function_call"):
        assert name not in out
    assert terminal(out)["response"] == await message_engine(p, PolicyChain([StopOnDelete()]))


async def test_items_after_dropped_calls_move_up() -> None:
    # A message after the calls (as a model that comments on them would send): once the
    # calls are gone, it takes the next index.
    p = rplan(["ok"], ["get_weather", "delete_all"])
    evs = stream_events(p)
    end = evs.pop()
    first = [e for e in evs if e.get("output_index") == 0 and e["type"] != "response.created"]
    later = copy.deepcopy(first)
    for e in later:
        e["output_index"] = 3
        if "item_id" in e:
            e["item_id"] = "msg_after"
        if "item" in e:
            e["item"]["id"] = "msg_after"
    end["response"]["output"].append(later[-1]["item"])
    raw = encode(renumber([*evs, *later, end], start=7))
    out = await engine_output(PolicyChain([StopOnDelete()]), raw)
    assert wire_problems(out) == []
    assert added_items(out) == [
        (0, "message", "ok"),
        (1, "message", "stopped"),
        (2, "message", "ok"),
    ]
    assert [i["id"] for i in terminal(out)["response"]["output"]][2] == "msg_after"


async def test_sequence_numbers_run_on_from_the_upstreams_first() -> None:
    # Events replaced (a blocked call: 7 events become a 6-event message), added
    # (a rewritten text's deltas), dropped (calls after a BlockResponse).
    p = rplan([f"a {SECRET[:4]}", f"{SECRET[4:]} b"], ["bash", "get_weather", "delete_all", "x"])
    for start in (0, 1, 41):
        raw = encode(renumber(stream_events(p), start))
        for chain in (
            PolicyChain([BlockBash()]),
            PolicyChain([Redact()]),
            PolicyChain([StopOnDelete(), Redact()]),
        ):
            out = await engine_output(chain, raw)
            assert out != raw and wire_problems(out) == []
            assert payloads(out)[0]["sequence_number"] == start


async def test_a_call_the_upstream_never_finished_never_reaches_the_client() -> None:
    p = rplan(["hi there"], ["get_weather"])
    evs = stream_events(p)
    cut = next(n for n, e in enumerate(evs) if e["type"] == "response.function_call_arguments.done")
    raw = encode(evs[: cut + 1])  # the call's arguments, but not its output_item.done
    out = await engine_output(PolicyChain([BlockBash()]), raw)
    assert b"get_weather" not in out and b"function_call" not in out
    assert sequence_problems(out) == []
    assert "".join(p["delta"] for p in of_type(out, "response.output_text.delta")) == "hi there"
    # Through the pipeline, the stream then ends with the gateway's error event.
    piped = await through_pipeline(PolicyChain([BlockBash()]), raw)
    assert b"get_weather" not in piped
    assert payloads(piped)[-1]["type"] == "error"
    # An upstream that ends it as incomplete lists the call, unfinished: not to this client.
    incomplete = copy.deepcopy(evs[-1])
    incomplete["type"] = "response.incomplete"
    incomplete["response"]["status"] = "incomplete"
    raw = encode(renumber([*evs[: cut + 1], incomplete]))
    out = await engine_output(PolicyChain([BlockBash()]), raw)
    assert b"get_weather" not in out and wire_problems(out) == []
    assert [i["type"] for i in terminal(out)["response"]["output"]] == ["message"]


async def test_a_stream_cut_mid_text_releases_the_held_text() -> None:
    evs = stream_events(rplan(["Hello there", ", world"]))
    cut = next(n for n, e in enumerate(evs) if e["type"] == "response.output_text.done")
    raw = encode(evs[:cut])
    held = await engine_output(PolicyChain([Redact()]), raw, flush=False)
    assert b"world" not in held  # within the hold-back window
    out = await engine_output(PolicyChain([Redact()]), raw)
    deltas = "".join(p["delta"] for p in of_type(out, "response.output_text.delta"))
    assert deltas == "Hello there, world" and sequence_problems(out) == []
    piped = await through_pipeline(PolicyChain([Redact()]), raw)
    assert b"Hello there" in piped and payloads(piped)[-1]["type"] == "error"


async def test_an_upstream_error_then_failed_passes_after_what_was_held() -> None:
    p = rplan(["partial answer", " never sent"])
    # The mock's midstream failure: one delta, then `error` and `response.failed`.
    failing = responses_stream.stream_events(p, rendering(), midstream_error=True)
    assert [e["type"] for e in failing[-2:]] == ["error", "response.failed"]
    raw = encode(failing)
    out = await engine_output(PolicyChain([Redact()]), raw)
    kinds = [p["type"] for p in payloads(out)]
    assert kinds[-3:] == ["response.output_text.delta", "error", "response.failed"]
    assert of_type(out, "response.output_text.delta")[0]["delta"] == "partial answer"
    error, failed = frames(raw)[-2:]
    assert out.endswith(error.raw + failed.raw)  # as they came, numbers included
    assert wire_problems(out) == []

    # A complete call held for its decision goes (here: replaced) before the error.
    evs = stream_events(rplan(["a"], ["bash"]))
    done = max(n for n, e in enumerate(evs) if e["type"] == ITEM_DONE)
    tail = [failing[-2], failing[-1]]
    raw = encode(renumber([*evs[: done + 1], *tail]))
    out = await engine_output(PolicyChain([BlockBash()]), raw)
    kinds = [p["type"] for p in payloads(out)]
    assert kinds[-2:] == ["error", "response.failed"]
    assert added_items(out) == [(0, "message", "a"), (1, "message", "blocked bash")]
    assert b'"name":"bash"' not in out and wire_problems(out) == []


async def test_garbage_and_unnumbered_events_pass_untouched() -> None:
    odd = [
        b": keep-alive\n\n",
        b"event: response.in_progress\ndata: {not json\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"type":"response.noise","sequence_number":"seven"}\n\n',
        b'event: response.noise\ndata: {"type":"response.noise","output_index":1}\n\n',
        b"event: ping\n\n",
    ]
    p = rplan([f"x {SECRET[:9]}", f"{SECRET[9:]} y"], ["bash", "get_weather"])
    evs = [encode([e]) for e in stream_events(p)]
    # Between the items, inside the text and inside a held call.
    text_at = next(n for n, e in enumerate(evs) if b"output_text.delta" in e)
    call_at = next(n for n, e in enumerate(evs) if b"function_call_arguments.delta" in e)
    raw = b"".join([*evs[:2], *odd, *evs[2 : text_at + 1], *odd, *evs[text_at + 1 : call_at + 1]])
    raw += b"".join([*odd, *evs[call_at + 1 :]])
    for chain in (PolicyChain([Redact(), BlockBash()]), PolicyChain([StopOnDelete()])):
        out = await engine_output(chain, raw)
        for frame in odd:
            assert out.count(frame) >= 2, frame
        if chain.rewrites_text:
            assert SECRET.encode() not in out
        numbered = [x for x in payloads(out) if isinstance(x.get("sequence_number"), int)]
        seqs = [x["sequence_number"] for x in numbered]
        assert seqs == list(range(len(seqs)))


async def test_events_without_sequence_numbers_never_crash_the_engine() -> None:
    evs = [
        {k: v for k, v in e.items() if k != "sequence_number"}
        for e in stream_events(rplan(["hi"], ["bash"]))
    ]
    raw = encode(evs)
    out = await engine_output(PolicyChain([Redact(), BlockBash()]), raw)
    assert added_items(out) == [(0, "message", "hi"), (1, "message", "blocked bash")]
    assert b'"name":"bash"' not in out


async def test_unknown_event_types_pass() -> None:
    evs = stream_events(rplan(["hello"], ["get_weather"]))
    novel = {"type": "response.future.thing", "payload": {"x": [1]}}
    evs.insert(2, novel)
    raw = encode(renumber(evs))
    for chain in (PolicyChain([Redact(), BlockBash()]), PolicyChain([Touching()])):
        assert await engine_output(chain, raw) == raw
    # Inside a text being rewritten, it still reaches the client, as it was.
    evs = stream_events(rplan([f"a {SECRET} b"]))
    at = next(n for n, e in enumerate(evs) if e["type"] == "response.output_text.delta")
    inside = {
        "type": "response.output_text.future",
        "item_id": evs[at]["item_id"],
        "output_index": 0,
        "content_index": 0,
    }
    evs.insert(at + 1, inside)
    out = await engine_output(PolicyChain([Redact()]), encode(renumber(evs)))
    assert [without_seq(x) for x in of_type(out, "response.output_text.future")] == [inside]
    assert SECRET.encode() not in out and sequence_problems(out) == []


async def test_provider_run_items_pass_untouched() -> None:
    evs = stream_events(rplan(["found it"]))
    end = evs.pop()
    item = {
        "id": "ws_1",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "bash"},
    }
    at = {"item_id": "ws_1", "output_index": 1}
    search = [
        {"type": ITEM_ADDED, "output_index": 1, "item": {**item, "status": "in_progress"}},
        {"type": "response.web_search_call.in_progress", **at},
        {"type": "response.web_search_call.searching", **at},
        {"type": "response.web_search_call.completed", **at},
        {"type": ITEM_DONE, "output_index": 1, "item": item},
    ]
    end["response"]["output"].append(item)
    raw = encode(renumber([*evs, *search, end]))
    assert await engine_output(PolicyChain([BlockBash(), Redact()]), raw) == raw


async def test_observers_see_every_event() -> None:
    observer = Observer()
    raw = stream(rplan(["hi"], ["get_weather"]))
    assert await engine_output(PolicyChain([observer]), raw) == raw
    assert observer.seen == [(e["type"], e) for e in stream_events(rplan(["hi"], ["get_weather"]))]


async def test_close_cancels_pending_decisions() -> None:
    policy = Waits()
    engine = ResponsesStreamEngine(PolicyChain([policy]), request_of())
    raw = stream(rplan(["hi"], ["bash"]))
    before_end = raw[: raw.index(b"event: response.completed")]
    out = await engine.feed(frames(before_end))
    await asyncio.wait_for(policy.started.wait(), 5)
    assert b"bash" not in out  # held while it is decided
    assert engine.gate is not None
    (task,) = engine.gate.tasks
    engine.close()
    await asyncio.wait_for(policy.cancelled.wait(), 5)
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_events_the_engine_writes_are_named_by_their_type() -> None:
    out = await engine_output(PolicyChain([BlockBash()]), stream(rplan(["x"], ["bash"])))
    made = [f for f in frames(out) if b"msg_gw_" in f.raw]
    assert len(made) >= 6
    for frame in made:
        assert frame.event == orjson.loads(frame.data or "null")["type"]
    assert OPENAI_RESPONSES.event({"type": "a.b"}).raw == b'event: a.b\ndata: {"type":"a.b"}\n\n'


# -- more shapes --------------------------------------------------------------------------


def unnamed(raw: bytes) -> bytes:
    """The stream without its `event:` lines (data only, as some compatible servers
    write it): the payload's type names each event."""
    return b"\n".join(line for line in raw.split(b"\n") if not line.startswith(b"event: "))


@pytest.mark.parametrize(
    ("tools", "chain"),
    [
        (["get_weather", "bash", "read_file"], lambda: PolicyChain([BlockBash()])),
        (["get_weather", "delete_all", "bash"], lambda: PolicyChain([StopOnDelete()])),
        (["get_weather"], lambda: PolicyChain([Redact()])),
    ],
    ids=["blocked", "stopped", "rewritten"],
)
async def test_unnamed_events_get_the_same_decisions(
    tools: list[str], chain: Callable[[], PolicyChain]
) -> None:
    raw = stream(rplan([f"a {SECRET} b"], tools))
    named = await engine_output(chain(), raw)
    bare = await engine_output(chain(), unnamed(raw))
    assert SECRET.encode() not in bare or "rewritten" not in str(tools)
    assert payloads(bare) == payloads(named)
    assert [p["output_index"] for p in of_type(bare, ITEM_ADDED)] == list(
        range(len(of_type(bare, ITEM_ADDED)))
    )


def with_sequence_number(evs: list[Event], at: int, value: object) -> list[Event]:
    """The events with one sequence number replaced (`...`: removed)."""
    out = [dict(e) for e in evs]
    if value is ...:
        del out[at]["sequence_number"]
    else:
        out[at]["sequence_number"] = value
    return out


@pytest.mark.parametrize(
    "value",
    [..., "3", None, 7.5, 10, 2, -1],
    ids=["missing", "string", "null", "float", "gap", "repeated", "negative"],
)
async def test_garbage_sequence_numbers_pass_untouched(value: object) -> None:
    # The upstream's numbering, whatever it is, is not the gateway's to fix when no
    # policy changed anything: every event leaves as the bytes it came as.
    evs = stream_events(rplan(["hello"], ["get_weather"]))
    raw = encode(with_sequence_number(evs, 3, value))
    for chain in (PolicyChain([Redact()]), PolicyChain([BlockBash()])):
        assert await engine_output(chain, raw) == raw


async def test_two_parts_and_two_messages_each_keep_their_own_text() -> None:
    evs = stream_events(rplan(["plain"]))
    end = evs.pop()
    message = [e for e in evs if e.get("output_index") == 0]
    logprobs = [{"token": "plain", "bytes": [112], "logprob": -0.5, "top_logprobs": []}]

    def part(index: int, text: str, item_id: str, output_index: int) -> list[Event]:
        at = {"item_id": item_id, "output_index": output_index, "content_index": index}
        done = {"type": "output_text", "annotations": [], "logprobs": logprobs, "text": text}
        return [
            {"type": "response.content_part.added", **at, "part": {**done, "text": ""}},
            *(
                {"type": "response.output_text.delta", **at, "delta": text[i : i + 5]}
                | {"logprobs": logprobs}
                for i in range(0, len(text), 5)
            ),
            {"type": "response.output_text.done", **at, "text": text, "logprobs": logprobs},
            {"type": "response.content_part.done", **at, "part": done},
        ]

    def item(item_id: str, output_index: int, texts: list[str]) -> tuple[list[Event], Event]:
        base = {"id": item_id, "type": "message", "status": "completed", "role": "assistant"}
        parts = [e for n, t in enumerate(texts) for e in part(n, t, item_id, output_index)]
        content = [e["part"] for e in parts if e["type"] == "response.content_part.done"]
        done = {**base, "content": content}
        return [
            {"type": ITEM_ADDED, "output_index": output_index, "item": {**base, "content": []}},
            *parts,
            {"type": ITEM_DONE, "output_index": output_index, "item": done},
        ], done

    first, first_done = item("msg_a", 0, ["plain text", f"then {SECRET} here"])
    second, second_done = item("msg_b", 1, [f"{SECRET[:4]}", f"{SECRET[4:]}."])
    evs = [e for e in evs if e not in message]
    end["response"]["output"] = [first_done, second_done]
    raw = encode(renumber([*evs, *first, *second, end]))
    out = await engine_output(PolicyChain([Redact()]), raw)
    assert SECRET.encode() not in out and wire_problems(out) == []
    final = terminal(out)["response"]["output"]
    assert [p["text"] for p in final[0]["content"]] == ["plain text", "then [REDACTED] here"]
    assert final[0]["content"][0]["logprobs"] == logprobs  # not rewritten: kept
    assert final[0]["content"][1]["logprobs"] == []
    # Each part is rewritten on its own: a secret split across two parts is two texts.
    assert [p["text"] for p in final[1]["content"]] == ["AKIA", f"{SECRET[4:]}."]
    (item_done,) = [p["item"] for p in of_type(out, ITEM_DONE) if p["item"]["id"] == "msg_a"]
    assert item_done == final[0]
    ends = {
        (p["output_index"], p["content_index"]): p["text"]
        for p in of_type(out, "response.output_text.done")
    }
    assert ends[(0, 1)] == "then [REDACTED] here" and ends[(0, 0)] == "plain text"


async def test_annotations_ride_along_with_the_text() -> None:
    evs = stream_events(rplan(["see ", SECRET[:8], SECRET[8:], " here"]))
    at = next(n for n, e in enumerate(evs) if e["type"] == "response.output_text.delta")
    where = {k: evs[at][k] for k in ("item_id", "output_index", "content_index")}
    note = {
        "type": "response.output_text.annotation.added",
        **where,
        "annotation_index": 0,
        "annotation": {
            "type": "url_citation",
            "url": "https://x",
            "start_index": 0,
            "end_index": 3,
        },
    }
    evs.insert(at + 1, note)
    out = await engine_output(PolicyChain([Redact()]), encode(renumber(evs)))
    got = payloads(out)
    kinds = [p["type"] for p in got]
    (note_at,) = [n for n, k in enumerate(kinds) if k == note["type"]]
    assert without_seq(got[note_at]) == note
    before = "".join(p["delta"] for p in got[:note_at] if p["type"] == "response.output_text.delta")
    assert before.startswith("see ")  # never ahead of the text it came after
    assert SECRET.encode() not in out and wire_problems(out) == []


async def test_an_incomplete_response_carries_the_rewritten_text() -> None:
    p = dataclasses.replace(rplan([f"key {SECRET}", " and more"]), stop_reason="max_tokens")
    raw = stream(p)
    assert terminal(raw)["type"] == "response.incomplete"
    out = await engine_output(PolicyChain([Redact()]), raw)
    assert SECRET.encode() not in out and wire_problems(out) == []
    assert set(texts_everywhere(out, 0).values()) == {"key [REDACTED] and more"}
    assert terminal(out)["response"] == await message_engine(p, PolicyChain([Redact()]))


async def test_a_failed_response_lists_the_text_as_it_was_sent() -> None:
    p = rplan([f"key {SECRET}"], ["get_weather"])
    evs = stream_events(p)
    failing = responses_stream.stream_events(p, rendering(), midstream_error=True)
    done = max(n for n, e in enumerate(evs) if e["type"] == ITEM_DONE)
    failed = copy.deepcopy(failing[-1])
    failed["response"]["output"] = [e["item"] for e in evs[: done + 1] if e["type"] == ITEM_DONE]
    raw = encode(renumber([*evs[: done + 1], failing[-2], failed]))
    out = await engine_output(PolicyChain([Redact(), BlockBash()]), raw)
    assert SECRET.encode() not in out and sequence_problems(out) == []
    output = terminal(out)["response"]["output"]
    assert [i["type"] for i in output] == ["message", "function_call"]
    assert output[0]["content"][0]["text"] == "key [REDACTED]"
    assert wire_problems(out) == []


@pytest.mark.parametrize(
    "cut_before",
    ["response.output_text.done", "response.function_call_arguments.done", ITEM_DONE],
)
async def test_a_stream_the_gateway_ends_passes_the_validator(cut_before: str) -> None:
    # The upstream stops early; the pipeline releases what was held and ends the stream
    # with the dialect's error event: the client's stream is still a valid one.
    evs = stream_events(rplan(["Hello there"], ["get_weather"]))
    cut = max(n for n, e in enumerate(evs) if e["type"] == cut_before)
    piped = await through_pipeline(PolicyChain([Redact(), BlockBash()]), encode(evs[:cut]))
    assert payloads(piped)[-1]["type"] == "error"
    assert validate_stream(PATH, BODY, piped) == []


async def test_nothing_follows_the_terminal_event() -> None:
    # A call after response.completed would reach a client that reads every event
    # without any policy having decided it.
    evs = stream_events(rplan(["hi"]))
    late_call = [e for e in stream_events(rplan(["x"], ["bash"])) if e.get("output_index") == 1]
    raw = encode(renumber([*evs, *late_call]))
    for chain in (PolicyChain([BlockBash()]), PolicyChain([Redact(), BlockBash()])):
        out = await engine_output(chain, raw)
        assert b'"name":"bash"' not in out
        assert payloads(out)[-1]["type"] == "response.completed"


async def test_reasoning_text_and_calls_same_streaming_or_not() -> None:
    chain = PolicyChain([Redact(), BlockBash()])
    p = rplan([f"the key: {SECRET}"], ["bash", "get_weather"], thinking=[f"{SECRET} hmm"])
    out = await engine_output(chain, stream(p, REASONING_BODY), request=request_of(REASONING_BODY))
    assert wire_problems(out, REASONING_BODY) == []
    same = await message_engine(p, chain, REASONING_BODY)
    assert terminal(out)["response"] == same
    assert [i["type"] for i in same["output"]] == [
        "reasoning",
        "message",
        "message",
        "function_call",
    ]


async def test_an_unknown_event_inside_a_text_keeps_its_place_behind_it() -> None:
    # As annotations do (and as the Anthropic engine keeps any unknown event): an event
    # the engine does not know, sent after some text, never overtakes that text while
    # the text is held back.
    evs = stream_events(rplan(["see ", SECRET, " here"]))
    first = next(n for n, e in enumerate(evs) if e["type"] == "response.output_text.delta")
    where = {k: evs[first][k] for k in ("item_id", "output_index", "content_index")}
    novel = {"type": "response.output_text.future", **where, "note": 1}
    evs.insert(first + 1, novel)
    out = await engine_output(PolicyChain([Redact()]), encode(renumber(evs)))
    got = payloads(out)
    (at,) = [n for n, p in enumerate(got) if p["type"] == novel["type"]]
    before = "".join(p["delta"] for p in got[:at] if p["type"] == "response.output_text.delta")
    assert before.startswith("see ")
    assert sequence_problems(out) == [] and SECRET.encode() not in out
