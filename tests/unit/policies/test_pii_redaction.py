"""pii_redaction (extproc/policies/pii_redaction.py): its detectors, streaming and
requests."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from extproc.dialects.registry import OPENAI_CHAT
from extproc.policies.pii_redaction import (
    PiiRedactionConfig,
    PiiRedactionPolicy,
    open_pem_block,
)
from tests.helpers.dialects import THINKING, anthropic_body, api_request, openai_body
from tests.helpers.engine import CUTS, rewrite_stream, rewrite_whole, rewriter_of, split_text

PII = PiiRedactionPolicy(PiiRedactionConfig())


def redact(text: str) -> str:
    return PII.redact(text)


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


# -- detectors ---------------------------------------------------------------------------


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
    assert only.config.effective_holdback == 256
    secrets = PiiRedactionPolicy(PiiRedactionConfig(detectors=["secrets"]))
    assert secrets.redact(text) == "bob@x.com [REDACTED:secret] 4111111111111111"
    # PEM blocks are held from BEGIN to END by hold_from, so the window stays short.
    assert secrets.config.effective_holdback == 256
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
def test_pii_config_errors(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        PiiRedactionConfig(**config)


def test_pii_response_switch() -> None:
    off = PiiRedactionPolicy(PiiRedactionConfig(redact_responses=False))
    assert off.rewriter(None) is None  # type: ignore[arg-type]
    assert PII.rewriter(None) is not None  # type: ignore[arg-type]
    assert PiiRedactionPolicy.rewrites_text


def test_open_pem_block() -> None:
    begin = "-----BEGIN RSA PRIVATE KEY-----\nMII"
    assert open_pem_block("text " + begin, 0) == 5
    closed = "text " + begin + "\n-----END RSA PRIVATE KEY----- done"
    assert open_pem_block(closed, 0) is None
    # An END line's dashes might be the start of another BEGIN: they wait.
    assert open_pem_block(closed[: -len(" done")], 0) == len(closed) - len(" done") - 5
    # A BEGIN marker that may still be arriving is held too.
    assert open_pem_block("text -----BEG", 0) == 5
    assert open_pem_block("text -", 0) == 5
    assert open_pem_block("plain text", 0) is None
    # Only the part not yet sent is looked at.
    assert open_pem_block("text -----BEG", 5) == 5
    assert open_pem_block("text -----BEG", 8) is None
    assert open_pem_block(begin + " more", 3) is None


def test_only_detectors_with_a_private_key_hold_growing_matches() -> None:
    with_pem = rewriter_of(PII)
    without = rewriter_of(PiiRedactionPolicy(PiiRedactionConfig(detectors=["email"])))
    assert hasattr(with_pem, "hold_from") and not hasattr(without, "hold_from")


# -- streaming ---------------------------------------------------------------------------

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
    assert rewrite_stream(rw, split_text(text, cuts)) == whole
    if all(s in ("\n", ", ", " and ") for s in seps):  # cleanly apart: all are caught
        for part in parts:
            if any(part in values for values in POSITIVES.values()):
                assert part not in whole


def test_pii_split_inside_a_match_char_by_char() -> None:
    rw = rewriter_of(PII)
    text = "mail bob@example.com or call +44 20 7946 0958, card 4111-1111-1111-1111."
    expected = "mail [REDACTED:email] or call [REDACTED:phone], card [REDACTED:credit_card]."
    assert rewrite_stream(rw, list(text)) == expected == rewrite_whole(rw, text)


# -- requests ----------------------------------------------------------------------------


async def test_pii_redacts_requests_of_both_apis() -> None:
    policy = PiiRedactionPolicy()
    body = anthropic_body()
    body["messages"][3]["content"][0]["content"] = "key AKIAIOSFODNN7EXAMPLE"
    req = api_request(body)
    await policy.on_request(req)
    assert req.body_changed
    assert req.body["messages"][3]["content"][0]["content"] == "key [REDACTED:secret]"
    assert req.body["messages"][1]["content"][0] == THINKING

    body = openai_body()
    body["messages"][0]["content"] = "mail bob@example.com"
    req = api_request(body, OPENAI_CHAT)
    await policy.on_request(req)
    assert req.body["messages"][0]["content"] == "mail [REDACTED:email]"

    off = PiiRedactionPolicy(PiiRedactionConfig(redact_requests=False))
    req = api_request(body, OPENAI_CHAT)
    await off.on_request(req)
    assert not req.body_changed
