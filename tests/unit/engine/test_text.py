"""Streaming text rewriting with a hold-back window (extproc/engine/text.py)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.core.rewriting import Span
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.engine.text import FaithfulText, RewriteStage, TextPipeline
from extproc.policies.all_caps import AllCapsPolicy
from extproc.policies.base import PolicyChain
from extproc.policies.pii_redaction import PiiRedactionConfig, PiiRedactionPolicy
from tests.helpers.engine import (
    SECRET,
    Redact,
    plan,
    rewrite_whole,
    rewriter_of,
    run_pipeline,
    split_text,
    streams,
)
from tests.helpers.streams import anthropic_text, openai_text, validate_stream

TEXTS = st.lists(
    st.sampled_from(["hi ", SECRET[:7], SECRET[7:], SECRET, " and ", "🌍", "x"]),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(
    chunks=TEXTS,
    dialect=st.sampled_from([ANTHROPIC, OPENAI_CHAT]),
    data=st.data(),
)
def test_rewrite_only_chain_keeps_every_tool_call(
    chunks: list[str], dialect: Dialect, data: st.DataObject
) -> None:
    """Tool-call events queued behind held-back text survive that text being rewritten."""
    stream, _ = streams(plan(chunks, ["bash", "get_weather"]), dialect)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=30))
    out = asyncio.run(
        run_pipeline(dialect, PolicyChain([Redact()]), stream, cuts, "text/event-stream")
    )
    assert validate_stream(dialect.path, {}, out) == []
    assert out.count(b'"name":"bash"') == 1 and out.count(b'"name":"get_weather"') == 1
    text = anthropic_text(out) if dialect is ANTHROPIC else openai_text(out)
    assert text == "".join(chunks).replace(SECRET, "[REDACTED]")


def test_pem_block_held_from_begin_only() -> None:
    pii = PiiRedactionPolicy(PiiRedactionConfig(detectors=["private_key"]))
    text = TextPipeline([rewriter_of(pii)])
    out = text.feed("x" * 600 + " -----BEG")
    out += text.feed("IN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA")
    # Text before the block is not held behind a 4 KiB window; the block itself is.
    assert out.startswith("x" * 300) and "BEG" not in out and "MIIE" not in out
    for _ in range(40):
        out += text.feed("q" * 64 + "\n")
    out += text.feed("-----END RSA PRIVATE KEY----- done") + text.flush()
    assert out.endswith(" [REDACTED:secret] done") and "MIIE" not in out


# -- one stage, a pipeline ---------------------------------------------------------------


def test_stage_holds_back_the_window_and_never_half_a_span() -> None:
    stage = RewriteStage(Redact())
    assert stage.feed("a" * 20) == ""  # within window + batch: nothing yet
    assert stage.feed("b" * 30 + SECRET[:5]) == "a" * 20 + "b" * 15
    assert stage.feed(SECRET[5:] + "c" * 50) == "b" * 15 + "[REDACTED]" + "c" * 30
    assert stage.flush() == "c" * 20
    assert stage.flush() == "" and stage.feed("") == ""
    crossing = RewriteStage(Redact())  # a span across the window's edge waits whole
    assert crossing.feed("a" * 35 + SECRET + "b" * 5) == "a" * 35
    assert crossing.flush() == "[REDACTED]" + "b" * 5


def test_pipeline_feeds_each_stage_what_the_previous_sent() -> None:
    chain = [Redact(), rewriter_of(AllCapsPolicy())]
    # The secret is redacted before it is upper-cased: caps cannot hide it from Redact.
    pipeline = TextPipeline(chain)  # type: ignore[list-item]
    out = "".join(pipeline.feed(piece) for piece in ["see ", SECRET[:3], SECRET[3:], " end"])
    assert out + pipeline.flush() == "SEE [REDACTED] END"
    assert TextPipeline([]).rewrite_all("same") == "same"


@settings(max_examples=100, deadline=None)
@given(
    text=st.lists(st.sampled_from(["a", " ", SECRET, SECRET[:4], "é"]), max_size=12).map("".join),
    cuts=st.data(),
)
def test_streaming_equals_rewrite_all(text: str, cuts: st.DataObject) -> None:
    pieces = split_text(text, cuts.draw(st.lists(st.integers(0, 1000), max_size=10)))
    pipeline = TextPipeline([Redact()])
    streamed = "".join(pipeline.feed(p) for p in pieces) + pipeline.flush()
    assert streamed == TextPipeline([Redact()]).rewrite_all(text) == rewrite_whole(Redact(), text)


# -- faithful text -----------------------------------------------------------------------


def test_faithful_text_forwards_original_events_until_a_rewrite() -> None:
    text: FaithfulText[str] = FaithfulText(TextPipeline([Redact()]))
    sent: list[str] = []
    for event, piece in [("e1", "x" * 30), ("e2", "y" * 30), ("ping", ""), ("e3", "z" * 30)]:
        sent += text.feed(event, piece)
    # Untouched text leaves as the original events, a passenger (ping) in its place.
    assert sent == ["e1", "e2", "ping"]
    sent += text.feed("e4", SECRET + " done")
    sent += text.flush()
    assert sent[:4] == ["e1", "e2", "ping", "e3"]
    assert "".join(s for s in sent[4:]) == "[REDACTED] done"


def test_faithful_text_passengers_never_overtake_text() -> None:
    text: FaithfulText[str] = FaithfulText(TextPipeline([Redact()]))
    out = text.feed("e1", "a " + SECRET)  # all held back
    out += text.feed("tool", "")
    out += text.feed("e2", " b" * 20)
    out += text.flush()
    assert out.index("tool") > 0 and isinstance(out[0], str)
    assert "".join(o for o in out if o != "tool") == "a [REDACTED]" + " b" * 20


def test_faithful_text_whose_end_was_deleted() -> None:
    class DropTail:
        holdback = 3

        def spans(self, text: str, start: int) -> list[Span]:
            at = text.find("END", start)
            return [Span(at, at + 3, "")] if at >= 0 else []

    text: FaithfulText[str] = FaithfulText(TextPipeline([DropTail()]))
    out = text.feed("e1", "keepEND") + text.feed("ping", "")
    assert out == []  # "keep" is produced, but e1 carries more than that
    out += text.flush()
    # What was produced goes out as new text, then the passenger: nothing is lost.
    assert out == ["keep", "ping"]
