"""pii_redaction end to end, both ways, and a chain with string_replacement after it.

Two stacks: `pii_stack` redacts requests and responses (the defaults); `chain_stack`
redacts responses only (so the mock can echo personal data back) and runs a
string_replacement after the redaction, which sees the redacted text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from extproc.stack import Stack
from tests.helpers.policy_stack import (
    APIS,
    ask,
    ask_anthropic,
    ask_openai,
    assert_no_stream_violations,
    chunking,
    clear_mock,
    last_mock_body,
    mock_requests,
    policy_stack,
)

pytestmark = pytest.mark.e2e

PII_CONFIG = """
policies:
  - type: pii_redaction
validate_streams: true
"""
CHAIN_CONFIG = """
policies:
  - type: pii_redaction
    redact_requests: false
  - type: string_replacement
    replacements:
      - {pattern: "[REDACTED:iban]", replacement: "[IBAN withheld]"}
      - {pattern: "alice@example.com", replacement: "bob@example.org"}
validate_streams: true
"""

EMAIL = "alice.smith@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"  # passes the Luhn check
NOT_A_CARD = "4111 1111 1111 1112"  # fails it: left alone
IBAN = "DE89 3704 0044 0532 0130 00"
ANTHROPIC_KEY = "sk-ant-api03-AbCdEf0123456789GhIjKlMnOpQrStUv"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "q3Zx9fKf0Lw2Yh8T1pN5sV4mR6uJ0eW3cX7bA2dE9gH1iK4==\n"
    "-----END PRIVATE KEY-----"
)
SECRETS = [EMAIL, PHONE, CARD, IBAN, ANTHROPIC_KEY, AWS_KEY, PEM, "MIIEvQIBADANBgkq"]

SAID = (
    f"Mail {EMAIL} or call {PHONE}. Card {CARD}, not {NOT_A_CARD}. IBAN {IBAN}. "
    f"Keys {ANTHROPIC_KEY} and {AWS_KEY}.\n{PEM}\nDone."
)
REDACTED = (
    f"Mail [REDACTED:email] or call [REDACTED:phone]. Card [REDACTED:credit_card], not "
    f"{NOT_A_CARD}. IBAN [REDACTED:iban]. Keys [REDACTED:secret] and [REDACTED:secret].\n"
    "[REDACTED:secret]\nDone."
)
PROMPT = f"Repeat after me: {SAID}"


@pytest.fixture(scope="module")
def pii_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from policy_stack(tmp_path_factory, "pii", PII_CONFIG)


@pytest.fixture(scope="module")
def chain_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from policy_stack(tmp_path_factory, "pii-chain", CHAIN_CONFIG)


def _assert_never_reached_the_mock(st: Stack) -> None:
    recorded = json.dumps(mock_requests(st))
    for secret in SECRETS:
        assert json.dumps(secret)[1:-1] not in recorded, secret


# -- responses ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_response_redacted(chain_stack: Stack, api: str, stream: bool) -> None:
    clear_mock(chain_stack)
    text, calls, stop = ask(chain_stack, api, PROMPT, stream, headers=chunking(f"pii-{api}"))
    # This stack leaves requests alone: the model really said all of it...
    assert last_mock_body(chain_stack)["messages"][0]["content"] == PROMPT
    # ...and the client sees it redacted ("[REDACTED:iban]" then goes through the chain's
    # string_replacement, see test_chain_order_matters).
    assert text == REDACTED.replace("[REDACTED:iban]", "[IBAN withheld]")
    assert calls == []
    assert stop == ("end_turn" if api == "anthropic" else "stop")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_chain_order_matters(chain_stack: Stack, api: str, stream: bool) -> None:
    """string_replacement runs second: it rewrites pii_redaction's placeholder, and never
    sees the raw address it would have replaced."""
    prompt = "Repeat after me: Write to alice@example.com about DE89 3704 0044 0532 0130 00."
    text, _, _ = ask(chain_stack, api, prompt, stream, headers=chunking(7))
    assert text == "Write to [REDACTED:email] about [IBAN withheld]."
    assert "bob@example.org" not in text


def test_tool_call_arguments_not_redacted(chain_stack: Stack) -> None:
    """Tool arguments are not response text: response redaction leaves them alone."""
    res = ask_anthropic(chain_stack, f"use bash to run `echo {EMAIL}`", True, tools=True)
    assert res.tool_uses == [("bash", {"command": f"echo {EMAIL}"})]
    assert res.stop_reason == "tool_use"


# -- requests ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", APIS)
def test_request_redacted_before_the_provider(pii_stack: Stack, api: str, stream: bool) -> None:
    clear_mock(pii_stack)
    text, _, _ = ask(pii_stack, api, PROMPT, stream)
    sent = last_mock_body(pii_stack)["messages"]
    assert sent == [{"role": "user", "content": f"Repeat after me: {REDACTED}"}]
    _assert_never_reached_the_mock(pii_stack)
    # The mock repeats what it got.
    assert text == REDACTED


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_system_and_tool_result_redacted(pii_stack: Stack, stream: bool) -> None:
    clear_mock(pii_stack)
    messages = [
        {"role": "user", "content": "Look up the customer"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": f"card {CARD}, key {AWS_KEY}"}],
                }
            ],
        },
    ]
    res = ask_anthropic(
        pii_stack,
        "",
        stream,
        tools=True,
        system=[{"type": "text", "text": f"Support contact: {EMAIL}"}],
        messages=messages,
    )
    sent = last_mock_body(pii_stack)
    assert sent["system"] == [{"type": "text", "text": "Support contact: [REDACTED:email]"}]
    redacted = "card [REDACTED:credit_card], key [REDACTED:secret]"
    assert sent["messages"][2]["content"][0]["content"] == [{"type": "text", "text": redacted}]
    _assert_never_reached_the_mock(pii_stack)
    assert res.text == f"The tool returned: {redacted}"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_system_message_redacted(pii_stack: Stack, stream: bool) -> None:
    clear_mock(pii_stack)
    messages = [
        {"role": "system", "content": f"Escalate to {PHONE} with key {ANTHROPIC_KEY}"},
        {"role": "user", "content": f"Repeat after me: IBAN {IBAN} and {NOT_A_CARD}"},
    ]
    res = ask_openai(pii_stack, "", stream, messages=messages)
    sent = last_mock_body(pii_stack)["messages"]
    assert sent == [
        {"role": "system", "content": "Escalate to [REDACTED:phone] with key [REDACTED:secret]"},
        {"role": "user", "content": f"Repeat after me: IBAN [REDACTED:iban] and {NOT_A_CARD}"},
    ]
    _assert_never_reached_the_mock(pii_stack)
    assert res.content == f"IBAN [REDACTED:iban] and {NOT_A_CARD}"


def test_no_stream_violations_logged(pii_stack: Stack, chain_stack: Stack) -> None:
    assert_no_stream_violations(pii_stack)
    assert_no_stream_violations(chain_stack)
