"""Shadow mode end to end: every policy's decision is computed and recorded, and the
traffic is exactly what it would be without the gateway (bytes compared with the mock's
own answer to the same request)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extproc.stack import Stack
from tests.helpers.admin import decisions, observed_stack, wait_decisions
from tests.helpers.policy_stack import (
    MOCK_JUDGE,
    anthropic_body,
    assert_no_stream_violations,
    chunking,
    mock_requests,
    openai_body,
    post,
    responses_body,
)
from tests.helpers.streams import validate_stream

pytestmark = pytest.mark.e2e

CONFIG = (
    """
policies:
  - {type: request_guard, mode: shadow, deny_patterns: ["forbidden-topic"]}
  - {type: pii_redaction, mode: shadow}
  - type: string_replacement
    mode: shadow
    replacements: [{pattern: "Plain", replacement: "Fancy"}]
    apply_to_request: true
  - type: tool_call_judge
    mode: shadow
    judge: """
    + MOCK_JUDGE
    + """
validate_streams: true
"""
)
PATHS = {
    "anthropic": "/v1/messages",
    "openai": "/v1/chat/completions",
    "responses": "/v1/responses",
}
BODIES = {"anthropic": anthropic_body, "openai": openai_body, "responses": responses_body}
CASES = {
    # name -> (prompt, whether the request offers tools, the actions it is recorded with)
    "redacted": ("Repeat after me: Plain mail to bob@example.com", False, {"redact", "replace"}),
    "blocked": ("use bash to run `rm -rf /`", True, {"block_tool_call"}),
    "rejected": ("Repeat after me: the forbidden-topic", False, {"reject_request"}),
    # The judge answers 500: the shadow judge fails closed, on paper only.
    "judge_fails": ("use bash to run `echo JUDGE_500`", True, {"error_fail_closed"}),
}


@pytest.fixture(scope="module")
def shadow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from observed_stack(tmp_path_factory, "shadow", CONFIG)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", sorted(PATHS))
def test_traffic_untouched_and_decisions_recorded(
    shadow_stack: Stack, api: str, stream: bool, case: str
) -> None:
    prompt, tools, actions = CASES[case]
    body = {**BODIES[api](prompt, tools=tools), "stream": stream}
    headers = chunking(f"shadow-{api}-{case}") if stream else {}
    model = body["model"]
    before = {a: len(decisions(shadow_stack, action=a, model=model)) for a in actions}
    via = post(shadow_stack, PATHS[api], body, headers)
    # The judge's own calls reach the mock too: the client's request is the last for its model.
    sent = [r["body"] for r in mock_requests(shadow_stack) if r["body"].get("model") == model][-1]
    direct = post(shadow_stack, PATHS[api], body, headers, direct=True)
    assert via.status_code == direct.status_code == 200
    assert via.content == direct.content
    assert sent == body  # the request reached the provider as the client sent it
    if stream:
        assert validate_stream(PATHS[api], body, via.content) == []
    for action in actions:
        found = wait_decisions(shadow_stack, before[action] + 1, action=action, model=model)
        assert {d["mode"] for d in found} == {"shadow"}


def test_no_stream_violations_logged(shadow_stack: Stack) -> None:
    assert_no_stream_violations(shadow_stack)
