"""Human approval end to end: the real Envoy, the mock LLM, the official SDKs as clients
and the admin API as the approver.

A held tool call is found among the pending approvals by a token in its arguments (each
test's own), answered on the admin API while the SDK call waits in a thread, and what
the client then got is checked: an approved call released exactly as the mock wrote it
(the same request bytes sent straight to the mock give the same bytes, keepalives
aside), a denied or timed-out one turned into text, every stream valid.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from pydantic import SecretStr

from extproc.config import DEV_GATEWAY_KEY
from extproc.dialects.anthropic.dialect import PING_EVENT
from extproc.stack import Stack
from tests.helpers.admin import (
    ADMIN_KEY,
    admin_get,
    decisions,
    observed_stack,
    wait_decisions,
)
from tests.helpers.policy_stack import (
    A_MODEL,
    KEY_HEADERS,
    MOCK_JUDGE,
    O_MODEL,
    ExchangeRecorder,
    assert_no_stream_violations,
    mock_url,
    tool,
)
from tests.helpers.streams import (
    anthropic_text,
    openai_text,
    responses_text,
    validate_responses_stream,
    validate_stream,
)
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

ALICE_KEY = "adm-alice-3c9e1f7b2d"
BOB_KEY = "adm-bob-8a4d6e0c5f"
BOT_KEY = "adm-bot-1e5b9c3a7d"
NAMED_KEYS = f"alice:{ALICE_KEY},bob:{BOB_KEY},bot:{BOT_KEY}"
KEEPALIVE_S = 0.5
OPENAI_KEEPALIVE = b": keepalive\n\n"
INTRO = "I'll use the bash tool."

# bash calls running `echo` wait up to 20 s for a person; delete_file calls time out
# after 2 s and are denied, get_weather calls after 2 s and are allowed; deploy calls
# are told to a webhook's bot. read_file and other bash commands are never held.
CONFIG = """
policies:
  - type: tool_approval
    name: approve_bash
    rules: [{{tools: ["bash"], arguments: '\\becho\\b'}}]
    approval: {{timeout_s: 20}}
  - type: tool_approval
    name: deny_late
    rules: [{{tools: ["delete_*"]}}]
    approval: {{timeout_s: 2, on_timeout: deny}}
  - type: tool_approval
    name: allow_late
    rules: [{{tools: ["get_weather"]}}]
    approval: {{timeout_s: 2, on_timeout: allow}}
  - type: tool_approval
    name: bot
    rules: [{{tools: ["deploy"]}}]
    approval: {{timeout_s: 20, webhook_url: "{webhook}"}}
validate_streams: true
"""
JUDGE_CONFIG = (
    """
policies:
  - type: tool_call_judge
    threshold: 0.95
    on_uncertain: ask
    uncertain_from: 0.5
    judge: """
    + MOCK_JUDGE
    + """
    approval: {timeout_s: 20}
validate_streams: true
"""
)
WORKERS_CONFIG = """
policies:
  - type: tool_approval
    rules: [{tools: ["bash"]}]
    approval: {timeout_s: 20}
validate_streams: true
"""

A_TOOLS = [
    tool("bash", "command"),
    tool("delete_file", "path"),
    tool("get_weather", "city"),
    tool("deploy", "command"),
    tool("read_file", "path"),
]
O_TOOLS = [
    {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
    for t in A_TOOLS
]
R_TOOLS = [
    {"type": "function", "name": t["name"], "parameters": t["input_schema"], "strict": False}
    for t in A_TOOLS
]
APIS = ["anthropic", "chat", "responses"]
PATHS = {
    "anthropic": "/v1/messages",
    "chat": "/v1/chat/completions",
    "responses": "/v1/responses",
}
# What a client sees once a tool call went through, and once none did.
CALL_STOP = {"anthropic": "tool_use", "chat": "tool_calls", "responses": "completed"}
TEXT_STOP = {"anthropic": "end_turn", "chat": "stop", "responses": "completed"}


# -- a webhook's bot ---------------------------------------------------------------------


@dataclass
class Bot:
    """Receives approval webhooks; answers each pending call it is told of (approve,
    with the `bot` admin key) through the URL the message names."""

    port: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status codes of its answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/approvals"


@contextmanager
def webhook_bot() -> Iterator[Bot]:
    bot = Bot()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length))
            self.send_response(204)
            self.end_headers()
            with bot.lock:
                bot.events.append(body)
            if body["type"] == "approval.pending":
                resp = httpx.post(
                    body["answer"]["url"],
                    json={"decision": "approve", "reason": "bot checked it"},
                    headers={"authorization": f"Bearer {BOT_KEY}"},
                    timeout=10,
                )
                with bot.lock:
                    bot.answers.append(resp.status_code)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    bot.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield bot
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- stacks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bot() -> Iterator[Bot]:
    with webhook_bot() as found:
        yield found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, bot: Bot) -> Iterator[Stack]:
    yield from observed_stack(
        tmp_path_factory,
        "approval",
        CONFIG.format(webhook=bot.url),
        gateway_admin_keys=SecretStr(NAMED_KEYS),
        keepalive_interval_s=KEEPALIVE_S,
    )


@pytest.fixture(scope="module")
def judge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from observed_stack(tmp_path_factory, "approval-judge", JUDGE_CONFIG)


@pytest.fixture(scope="module")
def workers_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from observed_stack(
        tmp_path_factory, "approval-workers", WORKERS_CONFIG, extproc_workers=2
    )


# -- talking to a stack ------------------------------------------------------------------


def token() -> str:
    return "t" + secrets.token_hex(4)


def request_body(api: str, prompt: str) -> dict[str, Any]:
    if api == "anthropic":
        return {
            "model": A_MODEL,
            "max_tokens": 300,
            "tools": A_TOOLS,
            "messages": [{"role": "user", "content": prompt}],
        }
    if api == "chat":
        return {
            "model": O_MODEL,
            "tools": O_TOOLS,
            "messages": [{"role": "user", "content": prompt}],
        }
    return {"model": O_MODEL, "tools": R_TOOLS, "input": prompt}


@dataclass
class Result:
    """One SDK call's answer, API-neutral."""

    text: str
    calls: list[tuple[str, str, dict[str, Any]]]  # (name, id, arguments)
    stop: str  # stop_reason, finish_reason, or the response's status
    kinds: list[str]  # content blocks, or output items; chat: the message's parts
    sent: bytes  # the request body the SDK sent
    received: bytes  # the response body as it arrived (JSON, or the validated SSE)


def sdk_call(st: Stack, api: str, prompt: str, stream: bool) -> Result:
    """One request with the API's official SDK; a stream's bytes are validated."""
    body = request_body(api, prompt)
    transport = ExchangeRecorder()
    http = httpx2.Client(transport=transport, timeout=60)
    text, stop = "", ""
    calls: list[tuple[str, str, dict[str, Any]]] = []
    kinds: list[str] = []
    if api == "anthropic":
        client = anthropic.Anthropic(
            base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0, http_client=http
        )
        with client:
            if stream:
                with client.messages.stream(**body) as s:
                    message = s.get_final_message()
            else:
                message = client.messages.create(**body)
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [(b.name, b.id, b.input) for b in message.content if b.type == "tool_use"]
        kinds, stop = [b.type for b in message.content], str(message.stop_reason)
    elif api == "chat":
        oai = openai.OpenAI(
            base_url=f"{st.base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0, http_client=http
        )
        with oai:
            if stream:
                acc: dict[int, dict[str, str]] = {}
                for chunk in oai.chat.completions.create(stream=True, **body):
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
                        for tc in choice.delta.tool_calls or []:
                            entry = acc.setdefault(tc.index, {"id": "", "name": "", "args": ""})
                            entry["id"] += tc.id or ""
                            entry["name"] += (tc.function and tc.function.name) or ""
                            entry["args"] += (tc.function and tc.function.arguments) or ""
                        stop = choice.finish_reason or stop
                calls = [
                    (acc[i]["name"], acc[i]["id"], json.loads(acc[i]["args"])) for i in sorted(acc)
                ]
            else:
                choice = oai.chat.completions.create(**body).choices[0]
                text, stop = choice.message.content or "", str(choice.finish_reason)
                calls = [
                    (c.function.name, c.id, json.loads(c.function.arguments))
                    for c in choice.message.tool_calls or []
                    if c.type == "function"
                ]
        kinds = (["text"] if text else []) + ["tool_call"] * len(calls)
    else:
        oai = openai.OpenAI(
            base_url=f"{st.base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0, http_client=http
        )
        with oai:
            if stream:
                with oai.responses.stream(**body) as rs:
                    list(rs)
                    response = rs.get_final_response()
            else:
                response = oai.responses.create(**body)
        text, stop = response.output_text, str(response.status)
        calls = [
            (item.name, item.call_id, json.loads(item.arguments))
            for item in response.output
            if item.type == "function_call"
        ]
        kinds = [item.type for item in response.output]
    assert len(transport.bodies) == 1, "expected exactly one HTTP exchange"
    response_, received = transport.bodies[0]
    assert response_.status_code == 200, received[:500]
    if stream:
        if api == "responses":
            assert validate_responses_stream(received, body) == []
        else:
            assert validate_stream(PATHS[api], {**body, "stream": True}, received) == []
    return Result(text, calls, stop, kinds, transport.requests[0].content, received)


def without_keepalives(raw: bytes) -> bytes:
    return raw.replace(PING_EVENT, b"").replace(OPENAI_KEEPALIVE, b"")


def straight_to_mock(st: Stack, api: str, sent: bytes) -> bytes:
    """The mock's own answer to exactly these request bytes (no gateway between)."""
    resp = httpx.post(
        f"{mock_url(st)}{PATHS[api]}",
        content=sent,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text[:300]
    return resp.content


def pending(st: Stack) -> list[dict[str, Any]]:
    resp = admin_get(st, "/api/approvals")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["approvals"])


def approval(st: Stack, approval_id: str) -> dict[str, Any]:
    resp = admin_get(st, f"/api/approvals/{approval_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["approval"])


def wait_pending(
    st: Stack, needle: str, call: Future[Any] | None = None, timeout: float = 15
) -> dict[str, Any]:
    """The pending approval whose arguments name `needle`, once it is listed. Fails at
    once when `call` (the client's request) ended without being held."""
    found: list[dict[str, Any]] = []

    def listed() -> bool:
        if call is not None and call.done():
            raise AssertionError(f"the call ended without being held: {call.result()!r}")
        found[:] = [r for r in pending(st) if needle in r["arguments"]]
        return bool(found)

    wait_for(listed, f"a pending approval for {needle}", timeout)
    assert len(found) == 1, found
    return found[0]


def answer(
    st: Stack, approval_id: str, decision: str, reason: str | None = None, key: str = ADMIN_KEY
) -> httpx.Response:
    body: dict[str, Any] = {"decision": decision}
    if reason is not None:
        body["reason"] = reason
    return httpx.post(
        f"{st.admin_url}/api/approvals/{approval_id}",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def held_call(
    st: Stack,
    api: str,
    prompt: str,
    stream: bool,
    needle: str,
    decide: Callable[[dict[str, Any]], None],
) -> tuple[Result, dict[str, Any]]:
    """An SDK call in a thread; once its approval is pending, `decide(row)` (the test
    answers, or lets it time out); then the call's result and the row as listed."""
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(sdk_call, st, api, prompt, stream)
        row = wait_pending(st, needle, call)
        decide(row)
        return call.result(timeout=40), row


def approve(st: Stack, key: str = ADMIN_KEY) -> Callable[[dict[str, Any]], None]:
    def decide(row: dict[str, Any]) -> None:
        resp = answer(st, row["id"], "approve", key=key)
        assert resp.status_code == 200, resp.text

    return decide


def approval_record(st: Stack, row: dict[str, Any], policy: str) -> dict[str, Any]:
    """The decision record of the held call: its `target.approval`."""
    [record] = wait_decisions(st, request_id=row["request_id"], policy=policy)
    assert record["target"]["tool"] == row["tool"]
    return dict(record["target"]["approval"])


def assert_released_intact(st: Stack, api: str, result: Result) -> None:
    """What the client got is what the mock answers to the same request bytes: byte for
    byte, the stream's keepalives aside."""
    direct = straight_to_mock(st, api, result.sent)
    assert without_keepalives(result.received) == direct


def api_name(api: str) -> str:
    """The `api` a pending row names for each of this module's APIs."""
    return {"anthropic": "anthropic", "chat": "openai", "responses": "responses"}[api]


# -- approve, deny ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_an_approved_call_is_released_intact(stack: Stack, api: str, stream: bool) -> None:
    tok = token()
    result, row = held_call(
        stack, api, f"please use bash to run `echo {tok}`", stream, tok, approve(stack)
    )
    assert (row["tool"], row["api"], row["policy"]) == ("bash", api_name(api), "approve_bash")
    assert json.loads(row["arguments"]) == {"command": f"echo {tok}"}
    assert row["why"].startswith("rule: tools bash")
    [(name, call_id, arguments)] = result.calls
    assert (name, arguments) == ("bash", {"command": f"echo {tok}"})
    assert call_id.startswith("toolu_" if api == "anthropic" else "call_")
    assert result.stop == CALL_STOP[api]
    assert result.text == INTRO
    if api == "responses":
        assert result.kinds == ["message", "function_call"]
    assert_released_intact(stack, api, result)
    verdict = approval_record(stack, row, "approve_bash")
    assert verdict["status"] == "approved" and verdict["by"] == "admin"
    assert verdict["reason"] is None and verdict["waited_s"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_a_denied_call_becomes_text_naming_approver_and_reason(
    stack: Stack, api: str, stream: bool
) -> None:
    tok = token()

    def deny(row: dict[str, Any]) -> None:
        resp = answer(stack, row["id"], "deny", "  not on prod, please  ")
        assert resp.status_code == 200, resp.text
        ended = resp.json()["approval"]
        assert (ended["status"], ended["decided_by"]) == ("denied", "admin")
        assert ended["decision_reason"] == "not on prod, please"

    result, row = held_call(stack, api, f"please use bash to run `echo {tok}`", stream, tok, deny)
    assert result.calls == []
    assert result.text.startswith(INTRO)
    assert "Tool call 'bash' was denied by admin, not on prod, please." in result.text
    assert result.stop == TEXT_STOP[api]
    assert "function_call" not in result.kinds and "tool_use" not in result.kinds
    verdict = approval_record(stack, row, "approve_bash")
    assert verdict["status"] == "denied" and verdict["by"] == "admin"
    assert verdict["reason"] == "not on prod, please"
    assert approval(stack, row["id"])["status"] == "denied"
    assert row["id"] not in [r["id"] for r in pending(stack)]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_a_denied_call_beside_one_no_rule_holds(stack: Stack, api: str, stream: bool) -> None:
    tok = token()

    def deny(row: dict[str, Any]) -> None:
        assert answer(stack, row["id"], "deny").status_code == 200

    result, _ = held_call(
        stack, api, f"please use bash to run `echo {tok}` and read_file", stream, tok, deny
    )
    [(name, _, arguments)] = result.calls
    assert (name, arguments) == ("read_file", {"path": f"echo {tok}"})
    assert "Tool call 'bash' was denied by admin." in result.text
    assert result.stop == CALL_STOP[api]
    if api == "anthropic":
        # The block's text never follows a tool_use block.
        assert result.kinds == ["text", "text", "tool_use"]


# -- nobody answers ----------------------------------------------------------------------------


def nobody_answers(row: dict[str, Any]) -> None:
    assert row["expires_at"] - row["created_at"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("api", "stream"), [("anthropic", True), ("chat", False), ("responses", True)]
)
def test_an_unanswered_call_is_denied_at_its_timeout(stack: Stack, api: str, stream: bool) -> None:
    tok = token()
    started = time.monotonic()
    result, row = held_call(
        stack,
        api,
        f"please use delete_file on `/tmp/{tok}`",
        stream,
        tok,
        nobody_answers,
    )
    assert time.monotonic() - started >= 2.0
    assert result.calls == []
    assert "Tool call 'delete_file' was blocked: nobody approved it within 2 seconds." in (
        result.text
    )
    assert result.stop == TEXT_STOP[api]
    verdict = approval_record(stack, row, "deny_late")
    assert verdict["status"] == "timed_out" and verdict["by"] is None
    assert verdict["waited_s"] >= 1.99
    assert approval(stack, row["id"])["status"] == "timed_out"


@pytest.mark.parametrize(
    ("api", "stream"), [("anthropic", False), ("chat", True), ("responses", False)]
)
def test_an_unanswered_call_is_allowed_at_its_timeout_when_configured(
    stack: Stack, api: str, stream: bool
) -> None:
    # get_weather's argument is the mock's fixed "example city", so the row is found by
    # its tool (one get_weather call at a time in this module).
    def listed() -> list[dict[str, Any]]:
        return [r for r in pending(stack) if r["tool"] == "get_weather"]

    assert listed() == []
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(sdk_call, stack, api, "please use get_weather now", stream)
        wait_for(lambda: bool(listed()) or call.done(), "the get_weather call held")
        [row] = listed()
        result = call.result(timeout=40)
    [(name, _, arguments)] = result.calls
    assert (name, arguments) == ("get_weather", {"city": "example city"})
    assert result.stop == CALL_STOP[api]
    assert_released_intact(stack, api, result)
    verdict = approval_record(stack, row, "allow_late")
    assert verdict["status"] == "timed_out" and verdict["waited_s"] >= 1.99
    assert approval(stack, row["id"])["status"] == "timed_out"


# -- raw streams: keepalives, the text before the call, a client going away ------------------


@dataclass
class RawStream:
    """A raw httpx stream, and what it received so far."""

    api: str
    pieces: Iterator[bytes]  # one iterator: a generator left early would close the stream
    data: bytearray = field(default_factory=bytearray)

    @property
    def keepalives(self) -> int:
        return self.data.count(PING_EVENT if self.api == "anthropic" else OPENAI_KEEPALIVE)

    @property
    def text(self) -> str:
        raw = bytes(self.data)
        if self.api == "anthropic":
            return anthropic_text(raw)
        return openai_text(raw) if self.api == "chat" else responses_text(raw)

    @property
    def shows_a_call(self) -> bool:
        raw = bytes(self.data)
        return any(m in raw for m in (b'"tool_use"', b'"tool_calls"', b'"function_call"'))

    def read_until(self, done: Callable[[], bool], what: str, timeout: float = 15) -> None:
        """Read until `done()` holds (checked after every piece); fail at the deadline.
        Pieces keep coming while a call is held: the keepalives."""
        deadline = time.monotonic() + timeout
        for piece in self.pieces:
            self.data += piece
            if done():
                return
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
        raise AssertionError(f"the stream ended before {what}: {bytes(self.data)[-500:]!r}")

    def read_to_end(self) -> bytes:
        for piece in self.pieces:
            self.data += piece
        return bytes(self.data)


@contextmanager
def raw_stream(st: Stack, api: str, sent: bytes) -> Iterator[RawStream]:
    """A streamed request of these body bytes with plain httpx; leaving the block before
    the end closes the connection (the client goes away)."""
    with httpx.stream(
        "POST",
        f"{st.base_url}{PATHS[api]}",
        content=sent,
        headers={**KEY_HEADERS, "content-type": "application/json"},
        timeout=30,
    ) as resp:
        assert resp.status_code == 200
        yield RawStream(api, resp.iter_raw())


def held_stream_body(api: str, tok: str) -> tuple[dict[str, Any], bytes]:
    body = {**request_body(api, f"please use bash to run `echo {tok}`"), "stream": True}
    return body, json.dumps(body).encode()


@pytest.mark.parametrize("api", APIS)
def test_a_held_stream_gets_keepalives_and_the_text_before_the_call(stack: Stack, api: str) -> None:
    tok = token()
    body, sent = held_stream_body(api, tok)
    with raw_stream(stack, api, sent) as got:
        got.read_until(lambda: got.keepalives >= 2, "two keepalives")
        # Still held: the text before the call is here, the call is not.
        row = wait_pending(stack, tok)
        assert got.text == INTRO and not got.shows_a_call
        assert row["preceding_text"] == INTRO
        assert answer(stack, row["id"], "approve").status_code == 200
        raw = got.read_to_end()
    assert got.shows_a_call
    if api == "responses":
        assert validate_responses_stream(raw, body) == []
    else:
        assert validate_stream(PATHS[api], body, raw) == []
    # Keepalives aside, the bytes the mock writes for the same request bytes.
    assert without_keepalives(raw) == straight_to_mock(stack, api, sent)


@pytest.mark.parametrize("api", APIS)
def test_a_client_going_away_cancels_its_approval(stack: Stack, api: str) -> None:
    tok = token()
    _, sent = held_stream_body(api, tok)
    with raw_stream(stack, api, sent) as got:
        got.read_until(lambda: got.keepalives >= 1, "a keepalive")
        row = wait_pending(stack, tok)
    # The client is gone: the row ends as cancelled and leaves the list.
    wait_for(
        lambda: approval(stack, row["id"])["status"] == "cancelled",
        "the approval cancelled",
    )
    assert row["id"] not in [r["id"] for r in pending(stack)]
    late = answer(stack, row["id"], "approve")
    assert late.status_code == 409 and "cancelled" in late.text
    # Nothing broke: the next held call is asked about and released.
    tok = token()
    result, _ = held_call(
        stack, api, f"please use bash to run `echo {tok}`", True, tok, approve(stack)
    )
    assert [c[0] for c in result.calls] == ["bash"]


def test_a_client_going_away_from_a_json_call_cancels_it(stack: Stack) -> None:
    tok = token()
    body = json.dumps(request_body("responses", f"please use bash to run `echo {tok}`")).encode()
    head = (
        f"POST {PATHS['responses']} HTTP/1.1\r\nhost: gateway\r\n"
        f"x-api-key: {DEV_GATEWAY_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    address = (stack.settings.host, stack.settings.gateway_port)
    with socket.create_connection(address, timeout=10) as client:
        client.sendall(head.encode() + body)
        row = wait_pending(stack, tok)
    wait_for(
        lambda: approval(stack, row["id"])["status"] == "cancelled",
        "the approval cancelled",
    )
    assert row["id"] not in [r["id"] for r in pending(stack)]


# -- what is not held --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "prompt", "tool_name"),
    [
        ("anthropic", "please use read_file on `/tmp/{tok}`", "read_file"),
        ("chat", "please use bash to run `ls /tmp/{tok}`", "bash"),
        ("responses", "please use read_file on `/tmp/{tok}`", "read_file"),
    ],
)
def test_a_call_no_rule_matches_is_not_held(
    stack: Stack, api: str, prompt: str, tool_name: str
) -> None:
    tok = token()
    result = sdk_call(stack, api, prompt.format(tok=tok), stream=True)
    [(name, _, arguments)] = result.calls
    assert name == tool_name and tok in json.dumps(arguments)
    assert_released_intact(stack, api, result)
    # Allowed by every approval policy without asking anyone, and never listed.
    mine: list[dict[str, Any]] = []

    def recorded() -> bool:
        mine[:] = [r for r in decisions(stack, action="allow") if tok in json.dumps(r["target"])]
        return len(mine) == 4

    wait_for(recorded, "the call's allow decisions")
    assert sorted(r["policy"] for r in mine) == ["allow_late", "approve_bash", "bot", "deny_late"]
    assert [r for r in mine if "approval" in r["target"]] == []
    assert [r for r in pending(stack) if tok in r["arguments"]] == []


# -- approvers --------------------------------------------------------------------------------


def test_named_keys_name_the_approver_and_a_second_answer_conflicts(stack: Stack) -> None:
    tok = token()
    seen: dict[str, httpx.Response] = {}

    def decide(row: dict[str, Any]) -> None:
        # Malformed answers change nothing.
        assert answer(stack, row["id"], "maybe", key=ALICE_KEY).status_code == 400
        bad = httpx.post(
            f"{stack.admin_url}/api/approvals/{row['id']}",
            content=b"not json",
            headers={"authorization": f"Bearer {ALICE_KEY}"},
            timeout=10,
        )
        assert bad.status_code == 400
        assert answer(stack, row["id"], "approve", key="wrong-key").status_code == 401
        assert answer(stack, "no-such-approval", "approve", key=ALICE_KEY).status_code == 404
        assert approval(stack, row["id"])["status"] == "pending"
        seen["alice"] = answer(stack, row["id"], "approve", "looks fine", key=ALICE_KEY)
        seen["bob"] = answer(stack, row["id"], "deny", "too late", key=BOB_KEY)

    result, row = held_call(
        stack, "anthropic", f"please use bash to run `echo {tok}`", True, tok, decide
    )
    assert seen["alice"].status_code == 200
    assert seen["alice"].json()["approval"]["decided_by"] == "alice"
    assert seen["bob"].status_code == 409
    assert "already ended: approved by alice" in seen["bob"].json()["error"]["message"]
    assert [c[0] for c in result.calls] == ["bash"] and result.stop == "tool_use"
    verdict = approval_record(stack, row, "approve_bash")
    assert (verdict["status"], verdict["by"], verdict["reason"]) == (
        "approved",
        "alice",
        "looks fine",
    )
    ended = approval(stack, row["id"])
    assert (ended["status"], ended["decided_by"]) == ("approved", "alice")
    assert admin_get(stack, "/api/approvals", key=BOB_KEY).status_code == 200
    assert admin_get(stack, "/api/approvals", key="wrong-key").status_code == 401


def test_a_webhook_bot_is_told_and_answers(stack: Stack, bot: Bot) -> None:
    tok = token()
    result = sdk_call(stack, "chat", f"please use deploy to run `ship {tok}`", stream=True)
    [(name, _, arguments)] = result.calls
    assert (name, arguments) == ("deploy", {"command": f"ship {tok}"})
    assert result.stop == "tool_calls"
    assert_released_intact(stack, "chat", result)

    def mine() -> list[dict[str, Any]]:
        with bot.lock:
            return [e for e in bot.events if tok in e["approval"]["arguments"]]

    wait_for(lambda: len(mine()) == 2, "approval.pending and approval.closed at the bot")
    told, closed = mine()
    assert told["type"] == "approval.pending" and closed["type"] == "approval.closed"
    approval_id = told["approval"]["id"]
    assert told["approval"]["status"] == "pending" and told["approval"]["tool"] == "deploy"
    assert told["answer"]["method"] == "POST"
    assert told["answer"]["url"] == f"{stack.admin_url}/api/approvals/{approval_id}"
    assert BOT_KEY not in json.dumps(told) and ADMIN_KEY not in json.dumps(told)
    assert closed["approval"]["id"] == approval_id
    assert closed["approval"]["status"] == "approved"
    assert closed["approval"]["decided_by"] == "bot"
    assert closed["approval"]["decision_reason"] == "bot checked it"
    wait_for(lambda: 200 in bot.answers, "the bot's answer accepted")
    row = approval(stack, approval_id)
    assert (row["status"], row["decided_by"]) == ("approved", "bot")
    verdict = approval_record(stack, row, "bot")
    assert (verdict["status"], verdict["by"]) == ("approved", "bot")


def test_no_stream_violations_and_no_admin_key_in_the_logs(stack: Stack) -> None:
    assert_no_stream_violations(stack)
    assert stack.log_dir is not None
    for log in stack.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        for key in (ADMIN_KEY, ALICE_KEY, BOB_KEY, BOT_KEY):
            assert key not in text, f"an admin key in {log.name}"


# -- the judge asks when unsure -----------------------------------------------------------------


def test_the_judge_asks_a_person_about_an_uncertain_call(judge_stack: Stack) -> None:
    # The mock judge rates a reboot 0.90: in [0.5, 0.95), a person's to decide.
    result, row = held_call(
        judge_stack,
        "anthropic",
        "please use bash to run `sudo reboot`",
        True,
        "sudo reboot",
        approve(judge_stack),
    )
    assert row["policy"] == "tool_call_judge"
    assert row["why"].startswith("the judge was unsure (risk 0.90)")
    assert result.calls[0][0] == "bash" and result.calls[0][2] == {"command": "sudo reboot"}
    assert result.stop == "tool_use"
    assert_released_intact(judge_stack, "anthropic", result)
    [record] = wait_decisions(judge_stack, request_id=row["request_id"])
    assert record["probability"] == pytest.approx(0.9)
    assert record["target"]["approval"]["status"] == "approved"
    # Below the band: allowed without asking; above it: blocked without asking.
    fine = sdk_call(judge_stack, "chat", "please use bash to run `ls -la`", stream=False)
    assert [c[0] for c in fine.calls] == ["bash"]
    blocked = sdk_call(judge_stack, "chat", "please use bash to run `rm -rf /`", stream=False)
    assert blocked.calls == [] and "'bash' was blocked" in blocked.text
    assert pending(judge_stack) == []
    assert_no_stream_violations(judge_stack)


# -- several workers: the admin child answers, the holding worker releases ------------------------


def test_an_answer_through_the_admin_child_reaches_the_holding_worker(
    workers_stack: Stack,
) -> None:
    st = workers_stack
    assert st.admin_child
    workers = {str(p.pid) for p in st.workers()}
    toks = [token() for _ in range(4)]
    with ThreadPoolExecutor(len(toks)) as pool:
        calls = {
            tok: pool.submit(
                sdk_call, st, api, f"please use bash to run `echo {tok}`", api != "chat"
            )
            for tok, api in zip(toks, ["anthropic", "chat", "responses", "anthropic"], strict=True)
        }
        rows = {tok: wait_pending(st, tok, calls[tok]) for tok in toks}
        for row in rows.values():
            # Held by a worker; answered by the admin child, another process.
            pid = row["holder"].rsplit(":", 2)[1]
            assert pid in workers and pid != str(st.procs["admin"].pid)
            assert answer(st, row["id"], "approve").status_code == 200
        results = {tok: calls[tok].result(timeout=40) for tok in toks}
    for tok, result in results.items():
        [(name, _, arguments)] = result.calls
        assert (name, arguments) == ("bash", {"command": f"echo {tok}"})
    assert pending(st) == []
    assert_no_stream_violations(st)
