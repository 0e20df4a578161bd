"""Per-caller limits and budgets end to end through the real Envoy: token, request and USD
windows counted per caller, refusals in each API's format with `retry-after`, streams
metered (never cut), OpenAI chat streams asked for usage behind the client's back, the
counters shared by two workers through a real Redis, and what happens when it is gone.

Token counts are the mock's: it reports `estimate_tokens` (len + 3) // 4 of the JSON of
`[system, messages, tools]` as input and of its answer's text as output, so "Count to 20"
on /v1/messages is 14 in + 18 out (extproc/mock_llm/scenario.py, anthropic_format.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import SecretStr

from extproc.stack import Stack, free_port
from tests.helpers.admin import metric, scrape, wait_decisions
from tests.helpers.limits import (
    current_minute,
    fresh_minute,
    key_for,
    limited_stack,
    seconds_left_in_minute,
    seconds_to_utc_midnight,
    usage_windows,
    wait_usage,
    wait_used,
    write_keys_file,
)
from tests.helpers.redis import RedisServer, running_redis
from tests.helpers.stack import run_cli, running_stack
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

CLAUDE = "claude-sonnet-4-6"
GPT = "gpt-4o-mini"
COUNT_20: Any = [{"role": "user", "content": "Count to 20"}]
# The price table, USD per million tokens.
CLAUDE_IN, CLAUDE_OUT = 3.0, 15.0

POLICY = f"""
policies: [{{type: noop}}]
chains:
  metered: [{{type: noop}}]
limits:
  chains:
    metered: {{tokens: {{per_day: 70}}}}
  prices:
    - {{model: "claude-*", input: {CLAUDE_IN}, output: {CLAUDE_OUT},
       cache_read: 0.3, cache_write: 3.75}}
    - {{model: "gpt-*", input: 0.15, output: 0.6}}
"""
CALLERS: dict[str, tuple[dict[str, Any] | None, str | None]] = {
    # Both get the metered chain's 70 tokens a day, each its own.
    "budget-a": (None, "metered"),
    "budget-b": (None, "metered"),
    "rpm": ({"requests": {"per_minute": 3}}, None),
    "streamer": ({"tokens": {"per_day": 30}}, None),
    "oai-stream": ({"tokens": {"per_day": 1_000_000}}, None),
    "dollars": ({"usd": {"per_day": 0.0003}}, None),
    "leaver": ({"tokens": {"per_day": 1_000_000}}, None),
    "audited": ({"tokens": {"per_day": 1}}, None),
    "oai-code": ({"tokens": {"per_day": 1}}, None),
    "compactor": ({"tokens": {"per_day": 1}}, None),
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # One worker, counters in its memory; RESPONSE_PROCESSING left at auto: a noop chain
    # alone would keep responses out of ext_proc, the limits must bring them in.
    yield from limited_stack(tmp_path_factory, "limits", POLICY, CALLERS)


def _claude(st: Stack, caller: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=st.base_url, api_key=key_for(caller), max_retries=0)


def _openai(st: Stack, caller: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{st.base_url}/v1", api_key=key_for(caller), max_retries=0)


def _go_seconds(duration: str) -> int:
    """`9h7m53s` -> seconds."""
    found = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+)s", duration)
    assert found is not None, duration
    hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def _tokens(usage: Any) -> int:
    """What the gateway charges: input + output (+ cache writes, none from the mock)."""
    return int(usage.input_tokens + usage.output_tokens)


# -- 1. a token budget exhausted mid-conversation ------------------------------------------


def test_token_budget_counts_down_and_then_refuses_in_each_format(gw: Stack) -> None:
    client = _claude(gw, "budget-a")
    limit, used, conversation = 70, 0, list(COUNT_20)
    turns = 0
    while used < limit:
        raw = client.messages.with_raw_response.create(
            model=CLAUDE, max_tokens=100, messages=conversation
        )
        reply = raw.parse()
        h = raw.headers
        assert h["x-ratelimit-limit-tokens"] == str(limit)
        # What is left before this request: the limit less every earlier report exactly.
        assert h["x-ratelimit-remaining-tokens"] == str(limit - used)
        assert h["anthropic-ratelimit-tokens-remaining"] == str(limit - used)
        assert h["anthropic-ratelimit-tokens-limit"] == str(limit)
        assert abs(_go_seconds(h["x-ratelimit-reset-tokens"]) - seconds_to_utc_midnight()) <= 2
        reset = datetime.fromisoformat(h["anthropic-ratelimit-tokens-reset"])
        assert abs(reset.timestamp() - time.time() - seconds_to_utc_midnight()) <= 2
        if turns == 0:
            assert (reply.usage.input_tokens, reply.usage.output_tokens) == (14, 18)
        used += _tokens(reply.usage)
        turns += 1
        wait_used(gw, "budget-a", "tokens.per_day", used)
        conversation += [
            {"role": "assistant", "content": reply.content[0].text},  # type: ignore[union-attr]
            {"role": "user", "content": "Count to 5"},
        ]
    assert turns >= 2  # the budget ran out mid-conversation, not at once

    with pytest.raises(anthropic.RateLimitError) as a_err:
        client.messages.create(model=CLAUDE, max_tokens=100, messages=conversation)
    a_resp = a_err.value.response
    assert a_resp.status_code == 429
    assert abs(int(a_resp.headers["retry-after"]) - seconds_to_utc_midnight()) <= 2
    assert a_resp.headers["x-ratelimit-remaining-tokens"] == "0"
    body = a_err.value.body
    assert body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert "token budget" in body["error"]["message"]  # type: ignore[index]

    with pytest.raises(openai.RateLimitError) as o_err:
        _openai(gw, "budget-a").chat.completions.create(model=GPT, messages=COUNT_20)
    o_resp = o_err.value.response
    assert o_resp.status_code == 429
    assert abs(int(o_resp.headers["retry-after"]) - seconds_to_utc_midnight()) <= 2
    assert o_err.value.type == "rate_limit_exceeded"
    # Refused requests cost nothing.
    assert usage_windows(gw, "budget-a")["tokens.per_day"]["used"] == used

    # Another caller of the same chain has its own, untouched, budget.
    raw = _claude(gw, "budget-b").messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, messages=COUNT_20
    )
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(limit)
    assert raw.parse().content[0].text.startswith("1, 2, 3")  # type: ignore[union-attr]


# -- 2. requests per minute ----------------------------------------------------------------


def test_requests_per_minute_refuses_the_one_over(gw: Stack) -> None:
    client = _claude(gw, "rpm")
    minute = fresh_minute()
    for i in range(1, 4):
        raw = client.messages.with_raw_response.create(
            model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "Count to 2"}]
        )
        assert raw.parse().content[0].text == "1, 2"  # type: ignore[union-attr]
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-remaining-requests"] == str(3 - i)
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == str(3 - i)
    with pytest.raises(anthropic.RateLimitError) as err:
        client.messages.create(
            model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "Count to 2"}]
        )
    left = seconds_left_in_minute()
    assert current_minute() == minute, "the test crossed a minute boundary"
    retry_after = int(err.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert abs(retry_after - left) <= 2
    assert "request rate limit" in err.value.message


# -- 3. a running stream is never cut ------------------------------------------------------


def test_stream_running_when_the_budget_runs_out_completes(gw: Stack) -> None:
    client = _claude(gw, "streamer")
    slow = {"x-mock-chunk-delay-ms": "50"}  # 46 events: over 2 s
    with client.messages.stream(
        model=CLAUDE,
        max_tokens=200,
        messages=[{"role": "user", "content": "Count to 40"}],
        extra_headers=slow,
    ) as stream:
        events = iter(stream)
        assert next(events).type == "message_start"
        # While it runs, a quick request of the same caller crosses the budget (30).
        quick = client.messages.create(model=CLAUDE, max_tokens=100, messages=COUNT_20)
        spent = _tokens(quick.usage)
        assert spent >= 30
        # Charged while the stream is still open (its own tokens not yet counted).
        wait_used(gw, "streamer", "tokens.per_day", spent)
        types = [e.type for e in events]
        final = stream.get_final_message()
    assert types[-1] == "message_stop" and "error" not in types
    assert final.content[0].text == ", ".join(str(i) for i in range(1, 41))  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    # The stream's own tokens are charged too, once it ended.
    wait_used(gw, "streamer", "tokens.per_day", spent + _tokens(final.usage))
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=CLAUDE, max_tokens=100, messages=COUNT_20)


# -- 4. OpenAI chat streams: usage asked for, hidden unless the client asked ----------------

_CHAT_ID = re.compile(rb"chatcmpl-[0-9a-f]+")


def _raw_chat(url: str, body: bytes, key: str | None = None) -> bytes:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    with httpx.stream("POST", url, content=body, headers=headers, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        return resp.read()


def test_openai_stream_usage_is_metered_and_hidden_unless_asked(gw: Stack) -> None:
    gateway = f"{gw.base_url}/v1/chat/completions"
    mock = f"http://127.0.0.1:{gw.settings.mock_port}/v1/chat/completions"
    key = key_for("oai-stream")
    request: dict[str, Any] = {"model": GPT, "stream": True, "messages": COUNT_20}

    # Asked for by the client: the usage chunk arrives exactly as the provider sent it.
    asked = json.dumps({**request, "stream_options": {"include_usage": True}}).encode()
    via = _raw_chat(gateway, asked, key)
    assert via == _raw_chat(mock, asked)
    report = [
        json.loads(line[6:])
        for line in via.split(b"\n")
        if line.startswith(b"data: {") and b'"choices":[]' in line
    ]
    assert len(report) == 1 and via.count(b'"usage":null') > 1
    usage = report[0]["usage"]
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    wait_used(gw, "oai-stream", "tokens.per_day", tokens)

    # Not asked for: the gateway asks the provider, and the client sees the stream as the
    # provider sends it unasked (only the id, derived from the changed body, differs).
    plain = json.dumps(request).encode()
    via = _raw_chat(gateway, plain, key)
    assert b'"usage"' not in via and b'"choices":[]' not in via
    assert via.endswith(b"data: [DONE]\n\n")
    direct = _raw_chat(mock, plain)
    assert _CHAT_ID.sub(b"chatcmpl-ID", via) == _CHAT_ID.sub(b"chatcmpl-ID", direct)
    # ... and it was charged the same tokens as the asked-for one.
    wait_used(gw, "oai-stream", "tokens.per_day", 2 * tokens)

    # The SDK reads the hidden stream as usual.
    chunks = list(
        _openai(gw, "oai-stream").chat.completions.create(model=GPT, messages=COUNT_20, stream=True)
    )
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ", ".join(str(i) for i in range(1, 21))
    wait_used(gw, "oai-stream", "tokens.per_day", 3 * tokens)


# -- 5. a USD budget priced from the table -------------------------------------------------


def test_usd_budget_charges_the_priced_cost(gw: Stack) -> None:
    client = _claude(gw, "dollars")
    reply = client.messages.create(model=CLAUDE, max_tokens=100, messages=COUNT_20)
    u = reply.usage
    # Micro-dollars, rounded up: 14 * 3 + 18 * 15 = 312 -> $0.000312.
    cost = math.ceil(u.input_tokens * CLAUDE_IN + u.output_tokens * CLAUDE_OUT) / 1e6
    window = wait_used(gw, "dollars", "usd.per_day", cost)
    assert window["max"] == pytest.approx(0.0003)
    assert window["remaining"] == 0
    with pytest.raises(anthropic.RateLimitError) as err:
        client.messages.create(model=CLAUDE, max_tokens=100, messages=COUNT_20)
    assert "USD budget" in err.value.message
    assert abs(int(err.value.response.headers["retry-after"]) - seconds_to_utc_midnight()) <= 2


# -- 6. a client gone mid-stream is charged for what was produced --------------------------


def test_client_gone_mid_stream_is_charged(gw: Stack) -> None:
    client = _claude(gw, "leaver")
    full_output = (len(", ".join(str(i) for i in range(1, 61))) + 3) // 4
    with client.messages.stream(
        model=CLAUDE,
        max_tokens=300,
        messages=[{"role": "user", "content": "Count to 60"}],
        extra_headers={"x-mock-chunk-delay-ms": "100"},  # 66 events: over 6 s
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break
        start = stream.current_message_snapshot
    input_tokens = start.usage.input_tokens
    assert input_tokens == 14
    # The report never came; message_start's input (and its output so far) is charged.
    window = wait_usage(
        gw, "leaver", "tokens.per_day", lambda v: v > 0, "> 0 once the stream closed"
    )
    assert input_tokens <= window["used"] < input_tokens + full_output


# -- 9. a refusal is a decision and a metric -----------------------------------------------


def test_refusal_is_recorded_and_counted(gw: Stack) -> None:
    client = _claude(gw, "audited")
    before = metric(
        scrape(gw), "gateway_rate_limited_total", caller="audited", limit="tokens.per_day"
    )
    first = client.messages.create(model=CLAUDE, max_tokens=100, messages=COUNT_20)
    wait_used(gw, "audited", "tokens.per_day", _tokens(first.usage))
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=CLAUDE, max_tokens=100, messages=COUNT_20)
    (decision,) = wait_decisions(gw, caller="audited", action="rate_limited")
    assert decision["policy"] == "limits"
    assert decision["target"] == {"status": 429, "limit": "tokens.per_day"}
    assert "token budget" in decision["message"]
    after = metric(
        scrape(gw), "gateway_rate_limited_total", caller="audited", limit="tokens.per_day"
    )
    assert after == before + 1


# -- found gaps ----------------------------------------------------------------------------


def _over_budget(st: Stack, caller: str) -> openai.OpenAI:
    """An OpenAI client of `caller`, whose one-token budget one request has used up."""
    client = _openai(st, caller)
    reply = client.chat.completions.create(model=GPT, messages=COUNT_20)
    assert reply.usage is not None
    tokens = reply.usage.prompt_tokens + reply.usage.completion_tokens
    wait_used(st, caller, "tokens.per_day", tokens)
    return client


def test_openai_refusal_carries_openai_code(gw: Stack) -> None:
    client = _over_budget(gw, "oai-code")
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model=GPT, messages=COUNT_20)
    assert err.value.type == "rate_limit_exceeded"
    # Clients tell a rate limit from `insufficient_quota` by this field.
    assert err.value.code == "rate_limit_exceeded"


def test_compact_is_held_to_the_budget(gw: Stack) -> None:
    client = _over_budget(gw, "compactor")
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model=GPT, input="Count to 3")
    history: Any = [{"role": "user", "content": "Count to 3 " * 50}]
    try:
        compacted = client.responses.compact(model=GPT, input=history)
    except openai.RateLimitError:
        return
    charged = usage_windows(gw, "compactor")["tokens.per_day"]["used"]
    raise AssertionError(
        f"an over-budget caller compacted {compacted.usage.total_tokens} tokens "  # type: ignore[union-attr]
        f"(charged so far: {charged})"
    )


# -- 7. two workers sharing the counters through Redis -------------------------------------

SHARED_RPM = 6
SHARED_CALLERS: dict[str, tuple[dict[str, Any] | None, str | None]] = {
    "shared": ({"requests": {"per_minute": SHARED_RPM}}, None),
    "rpm-only": ({"requests": {"per_minute": 1000}}, None),
    "budgeted": ({"tokens": {"per_day": 1_000_000}}, None),
}


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer
) -> Iterator[tuple[Stack, dict[str, str]]]:
    log_dir = tmp_path_factory.mktemp("limits-redis")
    policy = log_dir / "policy.yaml"
    policy.write_text("policies: [{type: noop}]\n")
    keys = write_keys_file(log_dir / "keys.yaml", SHARED_CALLERS)
    with running_stack(
        log_dir,
        extproc_workers=2,
        rate_limit_redis_url=SecretStr(redis.url),
        policy_config=str(policy),
        keys_file=str(keys),
    ) as st:
        env = {
            **_clean_env(),
            "RATE_LIMIT_REDIS_URL": redis.url,
            "POLICY_CONFIG": str(policy),
            "GATEWAY_KEYS_FILE": str(keys),
        }
        yield st, env


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "RATE_LIMIT_REDIS_URL",
        "GATEWAY_ADMIN_KEY",
        "EXTPROC_WORKERS",
        "GATEWAY_KEYS_FILE",
    ):
        env.pop(name, None)
    return env


def _served(st: Stack, caller: str) -> list[int]:
    """How many of `caller`'s requests each worker logged (at the end of each)."""
    assert st.log_dir is not None
    needle = f'"caller":"{caller}"'
    return [
        (st.log_dir / name).read_text(errors="replace").count(needle)
        for name in ("extproc.log", "extproc-1.log")
    ]


def _count_2(st: Stack, caller: str) -> str:
    msg = _claude(st, caller).messages.create(
        model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "Count to 2"}]
    )
    return msg.content[0].text  # type: ignore[union-attr]


def test_two_workers_share_one_budget_through_redis(
    shared: tuple[Stack, dict[str, str]],
) -> None:
    st, env = shared
    reply = _claude(st, "budgeted").messages.create(model=CLAUDE, max_tokens=100, messages=COUNT_20)
    tokens = _tokens(reply.usage)

    client = _claude(st, "shared")
    sent = 2 * SHARED_RPM
    # Room for the requests and the CLI's reading in one minute.
    minute = fresh_minute(margin_s=10)
    passed, refused = 0, 0
    for _ in range(sent):
        try:
            client.messages.create(
                model=CLAUDE, max_tokens=20, messages=[{"role": "user", "content": "Count to 2"}]
            )
            passed += 1
        except anthropic.RateLimitError:
            refused += 1
    assert (passed, refused) == (SHARED_RPM, SHARED_RPM)

    # `llm-gateway usage` reads Redis itself. The token charge lands just after its
    # response ended: wait for it.
    rows: dict[tuple[str, str], list[str]] = {}

    def charged() -> bool:
        done = run_cli("usage", env)
        assert done.returncode == 0, done.stderr[-2000:]
        rows.clear()
        for line in done.stdout.splitlines()[1:]:
            cells = line.split()
            rows[(cells[0], cells[1])] = cells[2:5]
        return rows.get(("budgeted", "tokens.per_day"), [""])[0] == str(tokens)

    wait_for(charged, "the CLI to show the budgeted caller's tokens", timeout=30)
    assert current_minute() == minute, "the test crossed a minute boundary"
    assert rows[("shared", "requests.per_minute")] == [str(SHARED_RPM), str(SHARED_RPM), "0"]
    assert rows[("budgeted", "tokens.per_day")] == [
        str(tokens),
        "1,000,000",
        f"{1_000_000 - tokens:,}",
    ]

    wait_for(lambda: sum(_served(st, "shared")) == sent, "both workers to log their requests")
    # Both workers decided: counting apart, they would have let more than SHARED_RPM by.
    assert min(_served(st, "shared")) > 0


def test_redis_gone_requests_fail_open_budgets_closed(
    shared: tuple[Stack, dict[str, str]], redis: RedisServer
) -> None:
    st, _ = shared
    assert _count_2(st, "rpm-only") == "1, 2"
    assert _count_2(st, "budgeted") == "1, 2"
    redis.stop()
    try:
        # Several requests, so both workers meet the dead store.
        for _ in range(4):
            assert _count_2(st, "rpm-only") == "1, 2"  # fail open
            with pytest.raises(anthropic.APIStatusError) as err:
                _count_2(st, "budgeted")  # fail closed
            assert err.value.status_code == 503
            assert err.value.response.headers["retry-after"] == "1"
            assert err.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    finally:
        redis.start()
    for _ in range(4):
        assert _count_2(st, "rpm-only") == "1, 2"
        assert _count_2(st, "budgeted") == "1, 2"


# -- 8. start-up refusals ------------------------------------------------------------------


def _run_env(policy: str, **extra: str) -> dict[str, str]:
    root = Path(tempfile.mkdtemp(prefix="gw-limits-"))
    (root / "policy.yaml").write_text(policy)
    return {
        **_clean_env(),
        "GATEWAY_PORT": str(free_port()),
        "ENVOY_ADMIN_PORT": str(free_port()),
        "EXTPROC_PORT": str(free_port()),
        "MOCK_LLM_PORT": str(free_port()),
        "GATEWAY_ADMIN_PORT": str(free_port()),
        "AUDIT_DB": str(root / "audit.db"),
        "POLICY_CONFIG": str(root / "policy.yaml"),
        **extra,
    }


@pytest.mark.parametrize(
    ("limits", "extra", "expected"),
    [
        (
            "{tokens: {per_week: 5}}",
            {},
            ["limits.default.tokens", "per_week", "per_minute, per_day, per_month"],
        ),
        ("{tokens: {per_day: -5}}", {}, ["limits.default.tokens.per_day", ">= 0"]),
        (
            "{requests: {per_minute: 5}}",
            {"EXTPROC_WORKERS": "2"},
            ["EXTPROC_WORKERS=2", "RATE_LIMIT_REDIS_URL"],
        ),
    ],
    ids=["unknown-window", "negative", "workers-without-redis"],
)
def test_bad_limits_stop_the_start(limits: str, extra: dict[str, str], expected: list) -> None:
    env = _run_env(f"policies: [{{type: noop}}]\nlimits:\n  default: {limits}\n", **extra)
    done = run_cli("run", env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr[-2000:]
    assert env["POLICY_CONFIG"] in done.stderr
