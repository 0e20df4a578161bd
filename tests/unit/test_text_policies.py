"""Text rewriters: all_caps, string_replacement, pii_redaction, and their streaming contract."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from extproc.policies.all_caps import AllCapsPolicy
from extproc.policies.base import Span, TextRewriter
from extproc.policies.pii_redaction import PiiRedactionConfig, PiiRedactionPolicy
from extproc.policies.string_replacement import (
    StringReplacementConfig,
    StringReplacementPolicy,
)


def _checked_spans(rewriter: TextRewriter, text: str, start: int) -> list[Span]:
    spans = list(rewriter.spans(text, start))
    pos = start
    for span in spans:  # sorted, non-overlapping, non-empty, inside text[start:]
        assert pos <= span.start < span.end <= len(text), (spans, start, len(text))
        pos = span.end
    return spans


def rewrite_stream(rewriter: TextRewriter, deltas: Iterable[str]) -> str:
    """The engine's contract, as simply as possible.

    `context` is the last `holdback` characters of already-sent original text, `pending`
    the unsent text; `spans(context + pending, len(context))` is called on every delta.
    Text up to `len(text) - holdback` is sent, except that a span crossing that point
    moves it back to the span's start; spans ending at or before it are applied. At the
    end, `spans` is called once more and everything is sent with all spans applied.
    """
    hb = rewriter.holdback
    out: list[str] = []
    context = pending = ""

    def emit(text: str, start: int, cut: int, spans: list[Span]) -> None:
        pos = start
        for span in spans:
            if span.end > cut:
                break
            out.extend((text[pos : span.start], span.replacement))
            pos = span.end
        out.append(text[pos:cut])

    for delta in deltas:
        pending += delta
        text, start = context + pending, len(context)
        spans = _checked_spans(rewriter, text, start)
        cut = len(text) - hb
        hold_from = getattr(rewriter, "hold_from", None)
        growing = hold_from(text, start) if hold_from is not None else None
        if growing is not None:
            cut = min(cut, growing)  # a match that may still grow is kept whole
        for span in spans:
            if span.start < cut < span.end:
                cut = span.start
        if cut <= start:
            continue
        emit(text, start, cut, spans)
        context, pending = (text[max(0, cut - hb) : cut] if hb else ""), text[cut:]
    text, start = context + pending, len(context)
    emit(text, start, len(text), _checked_spans(rewriter, text, start))
    return "".join(out)


def rewrite_whole(rewriter: TextRewriter, text: str) -> str:
    out: list[str] = []
    pos = 0
    for span in _checked_spans(rewriter, text, 0):
        out.extend((text[pos : span.start], span.replacement))
        pos = span.end
    return "".join(out) + text[pos:]


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


def replacer(*items: dict, **kw: Any) -> StringReplacementPolicy:
    return StringReplacementPolicy(
        StringReplacementConfig.model_validate({"replacements": items, **kw})
    )


def rewriter_of(policy: Any) -> TextRewriter:
    rw = policy.rewriter(None)
    assert rw is not None
    return rw


PII = PiiRedactionPolicy(PiiRedactionConfig())


def redact(text: str) -> str:
    return PII.redact(text)


CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


# -- the driver itself -------------------------------------------------------------------


def test_driver_holds_back_and_never_splits_a_span() -> None:
    rw = rewriter_of(replacer({"pattern": "secret", "replacement": "XX"}))
    assert rw.holdback == 6
    assert rewrite_stream(rw, ["a se", "cr", "et b ", "", "secre", "t"]) == "a XX b XX"
    assert rewrite_stream(rw, list("my secret is secret")) == "my XX is XX"


# -- all_caps ----------------------------------------------------------------------------


@given(text=st.text(max_size=40), cuts=CUTS)
def test_all_caps_streams_like_whole(text: str, cuts: list[int]) -> None:
    rw = rewriter_of(AllCapsPolicy())
    assert rw.holdback == 0 and AllCapsPolicy.rewrites_text and AllCapsPolicy().name == "all_caps"
    assert rewrite_stream(rw, split(text, cuts)) == rewrite_whole(rw, text) == text.upper()


# -- string_replacement ------------------------------------------------------------------


def test_literal_default_holdback_and_ignore_case() -> None:
    policy = replacer(
        {"pattern": "foo", "replacement": "bar"},
        {"pattern": "Hello World", "replacement": "hi", "ignore_case": True},
    )
    assert policy.settings.effective_holdback == 11
    assert policy.rewrite("HELLO world, foo!") == "hi, bar!"


def test_regex_groups_and_default_holdback() -> None:
    policy = replacer(
        {"pattern": r"(\w+)@(?P<host>\w+)\.com", "replacement": r"\g<host>:\1", "regex": True}
    )
    assert policy.settings.effective_holdback == 256
    assert policy.rewrite("mail bob@corp.com") == "mail corp:bob"


def test_overlaps_first_start_wins_then_list_order() -> None:
    policy = replacer(
        {"pattern": "bc", "replacement": "2"},
        {"pattern": "abc", "replacement": "1"},
        {"pattern": "ab", "replacement": "3"},
    )
    # "abc" and "ab" start first; "abc" is listed first among them.
    assert policy.rewrite("abcd bcd") == "1d 2d"
    # Replacements do not apply to each other's output.
    chain = replacer({"pattern": "a", "replacement": "b"}, {"pattern": "b", "replacement": "c"})
    assert chain.rewrite("ab") == "bc"


def test_match_before_start_is_not_returned() -> None:
    rw = rewriter_of(replacer({"pattern": "abc", "replacement": "X"}))
    assert list(rw.spans("abcabc", 1)) == [Span(3, 6, "X")]
    assert list(rw.spans("abcabc", 4)) == []


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"replacements": []}, "at least 1"),
        ({"replacements": [{"pattern": "x(", "replacement": "", "regex": True}]}, "'x('"),
        ({"replacements": [{"pattern": "a*", "replacement": "", "regex": True}]}, "empty string"),
        ({"replacements": [{"pattern": "(a)", "replacement": r"\2", "regex": True}]}, "group"),
        ({"replacements": [{"pattern": "", "replacement": "x"}]}, "pattern"),
        ({"replacements": [{"pattern": "abcdef", "replacement": ""}], "holdback": 3}, "holdback"),
        ({"replacements": [{"pattern": "a", "replacement": "", "regx": True}]}, "regx"),
    ],
)
def test_string_replacement_config_errors(config: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        StringReplacementConfig(**config)


@given(
    text=st.text(alphabet="ab c", max_size=50),
    pattern=st.sampled_from(["ab", "aba", "a b", "bb", "abab"]),
    cuts=CUTS,
)
def test_literal_streams_like_str_replace(text: str, pattern: str, cuts: list[int]) -> None:
    rw = rewriter_of(replacer({"pattern": pattern, "replacement": "<>"}))
    expected = text.replace(pattern, "<>")
    assert rewrite_whole(rw, text) == expected
    assert rewrite_stream(rw, split(text, cuts)) == expected


@given(text=st.text(alphabet="abc d", max_size=50), cuts=CUTS)
def test_several_literals_stream_like_whole(text: str, cuts: list[int]) -> None:
    rw = rewriter_of(
        replacer(
            {"pattern": "abc", "replacement": "1"},
            {"pattern": "ca", "replacement": "22"},
            {"pattern": "d d", "replacement": ""},
            {"pattern": "B", "replacement": "3", "ignore_case": True},
        )
    )
    assert rewrite_stream(rw, split(text, cuts)) == rewrite_whole(rw, text)


@given(text=st.text(alphabet="ab -", max_size=50), cuts=CUTS)
def test_regex_with_boundaries_streams_like_re_sub(text: str, cuts: list[int]) -> None:
    # The longest match is 4 characters; \b looks one further, which a hold-back of 4
    # already covers (a sent match starts strictly before the hold-back window).
    pattern = r"\b(a)(b{1,3})\b"
    rw = rewriter_of(
        replacer({"pattern": pattern, "replacement": r"[\2\1]", "regex": True}, holdback=4)
    )
    expected = re.sub(pattern, r"[\2\1]", text)
    assert rewrite_whole(rw, text) == expected
    assert rewrite_stream(rw, split(text, cuts)) == expected


# -- pii_redaction: detectors -----------------------------------------------------------


def alts(text: str) -> list[str]:
    return text.split("|")


KEY_BODY = "a1B2c3D4e5F6g7H8" * 6
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + KEY_BODY + "\n==\n-----END RSA PRIVATE KEY-----"
POSITIVES = {
    "email": alts("john.doe+tag@example.co.uk|a_b@sub.mail.example.org"),
    "phone": alts(
        "+44 20 7946 0958|+14155552671|+1 (415) 555-2671|(415) 555-2671|415-555-2671|"
        "415.555.2671|020 7946 0958|0049 30 12345678"
    ),
    "credit_card": alts(
        "4111 1111 1111 1111|4111-1111-1111-1111|5500005555555559|3782 822463 10005"
    ),
    "iban": alts("DE89 3704 0044 0532 0130 00|GB82WEST12345698765432|FR1420041010050500013M02606"),
    "secret": [
        "sk-ant-api03-" + KEY_BODY[:93] + "AA",
        "sk-" + KEY_BODY[:48],
        "sk-proj-" + KEY_BODY + "_-x9",
        "AKIAIOSFODNN7EXAMPLE",
        "ASIA" + "Z9Y8X7W6V5U4T3S2",
        "ghp_" + KEY_BODY[:36],
        "github_pat_11ABCDEFG0" + KEY_BODY[:72],
        "xoxb-123456789012-1234567890123-" + KEY_BODY[:24],
        PEM,
        "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
    ],
}


@pytest.mark.parametrize(
    ("kind", "value"), [(kind, v) for kind, values in POSITIVES.items() for v in values]
)
def test_detector_true_positives(kind: str, value: str) -> None:
    assert redact(f"see: {value}, ok") == f"see: [REDACTED:{kind}], ok"
    assert redact(value) == f"[REDACTED:{kind}]"


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 is Luhn-invalid",
        "iban DE89 3704 0044 0532 0130 01 has a wrong checksum",
        "in 2024, 1999-2024 and 2024-01-15 and 2024-01-15 10:30:00 and 15/01/2024",
        "dates 01.02.2024 12:00 and 2024.01.15",
        "order 12345678901 and 4155552671 are plain integers",
        "versions v1.2.3, 10.15.7.1234.5678 and IPs 192.168.100.200",
        "pi is 3.14159265358979323846",
        "years 1999 2000 2001 2002",
        "use sk-learn, the sk- prefix, or sk-abcdefghijklmnopqrstuvwxyzabcdefgh",
        "AKIAIOSFODNN7EXAMPLEXX and akiaiosfodnn7example",
        "ghp_short and xoxb-123",
        "-----BEGIN RSA PRIVATE KEY----- with no end",
        "user@localhost and @handle and a@b",
    ],
)
def test_detector_negatives(text: str) -> None:
    assert redact(text) == text


def test_greedy_candidates_are_trimmed() -> None:
    assert redact("4111 1111 1111 1111 12/27 123") == "[REDACTED:credit_card] 12/27 123"
    assert redact("4111 1111 1111 1111 123") == "[REDACTED:credit_card] 123"
    assert redact("+44 20 7946 0958 415-555-2671") == "[REDACTED:phone] [REDACTED:phone]"
    assert redact("GB82 WEST 1234 5698 7654 32 THEN") == "[REDACTED:iban] THEN"


def test_detector_selection_and_format() -> None:
    text = "bob@x.com AKIAIOSFODNN7EXAMPLE 4111111111111111"
    only = PiiRedactionPolicy(PiiRedactionConfig(detectors=["email"], replacement="<{kind}>"))
    assert only.redact(text) == "<email> AKIAIOSFODNN7EXAMPLE 4111111111111111"
    assert only.settings.effective_holdback == 256
    secrets = PiiRedactionPolicy(PiiRedactionConfig(detectors=["secrets"]))
    assert secrets.redact(text) == "bob@x.com [REDACTED:secret] 4111111111111111"
    # PEM blocks are held from BEGIN to END by hold_from, so the window stays short.
    assert secrets.settings.effective_holdback == 256
    assert PiiRedactionConfig(detectors=["email"], holdback=64).effective_holdback == 64


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"detectors": []}, "at least one detector"),
        ({"detectors": ["ssn"]}, "ssn"),
        ({"replacement": "[{what}]"}, "{kind}"),
        ({"holdback": 0}, "holdback"),
    ],
)
def test_pii_config_errors(config: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        PiiRedactionConfig(**config)


def test_pii_response_switch() -> None:
    off = PiiRedactionPolicy(PiiRedactionConfig(redact_responses=False))
    assert off.rewriter(None) is None  # type: ignore[arg-type]
    assert PII.rewriter(None) is not None  # type: ignore[arg-type]
    assert PiiRedactionPolicy.rewrites_text


# -- pii_redaction: streaming -----------------------------------------------------------

FRAGMENTS = [v for values in POSITIVES.values() for v in values] + [
    *alts("4111 1111 1111 1112|DE89 3704 0044 0532 0130 01|2024-01-15|sk-learn|call|12|-|@|+"),
    "filler " * 25,  # long texts, so the stream sends before its end
    "x" * 180,
]


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8),
    seps=st.lists(
        st.sampled_from([" ", ", ", "\n", "", "-", ".", " and "]), min_size=8, max_size=8
    ),
    cuts=CUTS,
    holdback=st.sampled_from([None, 256, 200]),
)
def test_pii_streams_like_whole(
    parts: list[str], seps: list[str], cuts: list[int], holdback: int | None
) -> None:
    # Every match here is shorter than 200 characters (the PEM blocks included).
    text = "".join(p + s for p, s in zip(parts, seps, strict=False))
    config = PiiRedactionConfig(holdback=holdback)
    rw = rewriter_of(PiiRedactionPolicy(config))
    whole = rewrite_whole(rw, text)
    assert rewrite_stream(rw, split(text, cuts)) == whole
    if all(s in ("\n", ", ", " and ") for s in seps):  # cleanly apart: all are caught
        for part in parts:
            if any(part in values for values in POSITIVES.values()):
                assert part not in whole


def test_pii_split_inside_a_match_char_by_char() -> None:
    rw = rewriter_of(PII)
    text = "mail bob@example.com or call +44 20 7946 0958, card 4111-1111-1111-1111."
    expected = "mail [REDACTED:email] or call [REDACTED:phone], card [REDACTED:credit_card]."
    assert rewrite_stream(rw, list(text)) == expected == rewrite_whole(rw, text)
