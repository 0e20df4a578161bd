"""Human approval in the web view, end to end in a real headless Chromium: a tool call
the model streams through the real Envoy (official SDKs) waits while its card shows on
the open page (caller, tool, arguments, what the model wrote before it, why it waits,
the time it has left); a click on Approve releases the call exactly as the model sent
it, a click on Deny with a reason turns it into text naming the approver. A call
answered elsewhere leaves the page by itself, a late click shows the server's reason,
and a client that goes away takes its card with it.

With SAVE_SCREENSHOT=1 it also saves docs/approval.png (1280x800) for the README.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack, free_port
from tests.helpers.admin import ADMIN_KEY, admin_get, wait_decisions
from tests.helpers.browser import (
    chromium,
    new_page,
    open_admin,
    skip_without_chromium,
    wait_live,
)
from tests.helpers.policy_stack import (
    A_MODEL,
    A_TOOLS,
    KEY_HEADERS,
    O_MODEL,
    O_TOOLS,
    anthropic_client,
    assert_no_stream_violations,
    openai_client,
)
from tests.helpers.stack import running_stack
from tests.helpers.streams import validate_stream
from tests.helpers.wait import wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Route

pytestmark = [pytest.mark.e2e, skip_without_chromium()]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
policies:
  - type: tool_approval
    rules: [{tools: ["bash"]}]
    approval: {timeout_s: 60}
validate_streams: true
"""
# The dev key, under a caller's name (a keys file holds only its hash).
CALLER = "claude-code"
KEYS = f"""
callers:
  - name: {CALLER}
    key_sha256: {hashlib.sha256(DEV_GATEWAY_KEY.encode()).hexdigest()}
"""
# What the mock LLM writes before a call to a tool the prompt names, and the arguments
# it makes up for `bash` (its `command` is a snippet in backticks, else this).
PRECEDING = "I'll use the bash tool."
DEFAULT_COMMAND = "echo hello"
SDK_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("approval-web")
    (log_dir / "policy.yaml").write_text(CONFIG)
    (log_dir / "keys.yaml").write_text(KEYS)
    with running_stack(
        log_dir,
        policy_config=str(log_dir / "policy.yaml"),
        keys_file=str(log_dir / "keys.yaml"),
        gateway_admin_port=free_port(),
        gateway_admin_key=SecretStr(ADMIN_KEY),
    ) as st:
        yield st
        assert_no_stream_violations(st)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    """Where the SDKs wait for their answers while the test clicks."""
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="sdk") as executor:
        yield executor


# ---- the clients ----------------------------------------------------------------------


def stream_anthropic(st: Stack, prompt: str) -> Any:
    """A streamed /v1/messages through the gateway, as the Anthropic SDK builds it (the
    bytes also checked against the stream invariants)."""
    client, transport = anthropic_client(st)
    body: dict[str, Any] = {
        "model": A_MODEL,
        "max_tokens": 500,
        "tools": A_TOOLS,
        "messages": [{"role": "user", "content": prompt}],
    }
    with client.messages.stream(**body, timeout=SDK_TIMEOUT_S) as s:
        message = s.get_final_message()
    [(response, raw)] = transport.bodies
    assert response.status_code == 200
    assert validate_stream("/v1/messages", {**body, "stream": True}, raw) == []
    return message


def stream_openai(st: Stack, prompt: str) -> dict[str, Any]:
    """A streamed chat completion through the gateway with the OpenAI SDK: its text, tool
    calls and finish reason, put together from the chunks."""
    client, transport = openai_client(st)
    body: dict[str, Any] = {
        "model": O_MODEL,
        "tools": O_TOOLS,
        "messages": [{"role": "user", "content": prompt}],
    }
    text: list[str] = []
    calls: list[Any] = []
    finish: list[str] = []
    for chunk in client.chat.completions.create(**body, stream=True, timeout=SDK_TIMEOUT_S):
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            calls.extend(choice.delta.tool_calls or [])
            if choice.finish_reason is not None:
                finish.append(choice.finish_reason)
    [(response, raw)] = transport.bodies
    assert response.status_code == 200
    assert validate_stream("/v1/chat/completions", {**body, "stream": True}, raw) == []
    return {"text": "".join(text), "tool_calls": calls, "finish_reasons": finish}


def answer_on_api(st: Stack, approval_id: str, decision: str) -> httpx.Response:
    return httpx.post(
        f"{st.admin_url}/api/approvals/{approval_id}",
        json={"decision": decision},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )


def pending(st: Stack) -> list[dict[str, Any]]:
    resp = admin_get(st, "/api/approvals")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["approvals"])


# ---- the page -------------------------------------------------------------------------


def cards(page: Page) -> Locator:
    return page.get_by_test_id("approval-card")


def open_view(page: Page, st: Stack) -> None:
    """The web view, signed in, with nothing waiting yet."""
    from playwright.sync_api import expect

    open_admin(page, st.admin_url, ADMIN_KEY)
    wait_live(page)
    expect(page.get_by_test_id("approvals-empty")).to_have_text("No tool call is waiting")
    expect(cards(page)).to_have_count(0)


def the_card(page: Page) -> Locator:
    """The one card on the page, once it is there."""
    from playwright.sync_api import expect

    expect(cards(page)).to_have_count(1)
    card = cards(page).first
    expect(card).to_be_visible()
    return card


def result(future: Future[Any]) -> Any:
    return future.result(timeout=SDK_TIMEOUT_S)


def decision_for(st: Stack, request_id: str) -> dict[str, Any]:
    [found] = wait_decisions(st, policy="tool_approval", request_id=request_id)
    return found


# ---- the tests ------------------------------------------------------------------------


def test_approve_releases_the_streamed_tool_call(
    stack: Stack, browser: Browser, pool: ThreadPoolExecutor
) -> None:
    from playwright.sync_api import expect

    with new_page(browser) as (page, problems):
        open_view(page, stack)
        future = pool.submit(stream_anthropic, stack, "please run bash to list files")

        card = the_card(page)
        expect(card.get_by_test_id("approval-status")).to_have_text("waiting")
        [row] = pending(stack)
        assert card.get_attribute("data-approval-id") == row["id"]
        expect(card.get_by_test_id("approval-tool")).to_have_text("bash")
        expect(card.get_by_test_id("approval-caller")).to_have_text(CALLER)
        expect(card.get_by_test_id("approval-model")).to_have_text(A_MODEL)
        expect(card.get_by_test_id("approval-api")).to_have_text(row["api"])
        expect(card.get_by_test_id("approval-policy")).to_have_text("tool_approval")
        expect(card.get_by_test_id("approval-why")).to_have_text("rule: tools bash")
        expect(card.get_by_test_id("approval-preceding")).to_have_text(PRECEDING)
        # Pretty-printed: the arguments' JSON, two spaces of indent.
        expect(card.get_by_test_id("approval-arguments")).to_have_text(
            json.dumps({"command": DEFAULT_COMMAND}, indent=2)
        )
        # Counting down from the minute it was given.
        expect(card.get_by_test_id("approval-time-left")).to_have_text(
            re.compile(r"^(1:00|0:[0-5]\d) left$")
        )
        expect(page.get_by_test_id("approvals-count")).to_have_text("1")
        assert page.title().startswith("(1) ")
        assert not future.done()  # the call waits for the click

        page.get_by_role("button", name="Approve").click()
        expect(cards(page)).to_have_count(0)
        expect(page.get_by_test_id("approvals-empty")).to_be_visible()
        expect(page.get_by_test_id("approvals-note")).to_have_text(
            f"Approved bash for {CALLER} as admin."
        )

        message = result(future)
        assert message.stop_reason == "tool_use"
        assert [b.type for b in message.content] == ["text", "tool_use"]
        assert message.content[0].text == PRECEDING
        tool_use = message.content[1]
        assert tool_use.name == "bash"
        assert tool_use.input == {"command": DEFAULT_COMMAND}

        # Recorded as allowed, in the name of the admin key that clicked.
        found = decision_for(stack, row["request_id"])
        assert found["action"] == "allow"
        approval = found["target"]["approval"]
        assert approval["status"] == "approved" and approval["by"] == "admin"
        assert page.title().startswith("Policy gateway")
        problems.assert_none()


def test_deny_with_a_reason_turns_the_call_into_text(
    stack: Stack, browser: Browser, pool: ThreadPoolExecutor
) -> None:
    from playwright.sync_api import expect

    # The command is untrusted text on the page: shown, never run as markup.
    hostile = '<img src=x onerror="window.__pwned=1">'
    reason = "not on a Friday"
    with new_page(browser) as (page, problems):
        open_view(page, stack)
        future = pool.submit(stream_openai, stack, f"please run bash: `{hostile}`")

        card = the_card(page)
        expect(card.get_by_test_id("approval-tool")).to_have_text("bash")
        expect(card.get_by_test_id("approval-model")).to_have_text(O_MODEL)
        expect(card.get_by_test_id("approval-preceding")).to_have_text(PRECEDING)
        expect(card.get_by_test_id("approval-arguments")).to_have_text(
            json.dumps({"command": hostile}, indent=2)
        )
        assert page.locator("img").count() == 0
        assert page.evaluate("window.__pwned") is None

        card.get_by_test_id("approval-reason").fill(reason)
        card.get_by_role("button", name="Deny").click()
        expect(cards(page)).to_have_count(0)
        expect(page.get_by_test_id("approvals-empty")).to_be_visible()

        got = result(future)
        assert got["tool_calls"] == []
        assert got["finish_reasons"] == ["stop"]
        assert got["text"].startswith(PRECEDING)
        assert "Tool call 'bash' was denied by admin, not on a Friday." in got["text"]
        assert page.evaluate("window.__pwned") is None

        [found] = wait_decisions(stack, action="block_tool_call")
        approval = found["target"]["approval"]
        assert approval == {**approval, "status": "denied", "by": "admin", "reason": reason}
        # The decisions table below the panel shows it live.
        blocked = page.locator('#decisions tbody tr[data-action="block_tool_call"]')
        expect(blocked).to_have_count(1)
        problems.assert_none()


def test_a_call_answered_elsewhere_leaves_the_page(
    stack: Stack, browser: Browser, pool: ThreadPoolExecutor
) -> None:
    from playwright.sync_api import expect

    with new_page(browser) as (page, problems):
        open_view(page, stack)

        # Answered on the API (a bot, another approver): the card goes by itself.
        future = pool.submit(stream_anthropic, stack, "please run bash")
        card = the_card(page)
        approval_id = card.get_attribute("data-approval-id")
        assert approval_id is not None
        assert answer_on_api(stack, approval_id, "approve").status_code == 200
        expect(cards(page)).to_have_count(0)
        assert result(future).stop_reason == "tool_use"

        # Answered while this page still shows the call (its listing held back): the late
        # click gets the server's reason on the card, and nothing is decided twice.
        future = pool.submit(stream_anthropic, stack, "please run bash again")
        card = the_card(page)
        approval_id = card.get_attribute("data-approval-id")
        assert approval_id is not None
        listing = admin_get(stack, "/api/approvals").text
        assert approval_id in listing

        def held(route: Route) -> None:
            if route.request.method != "GET":
                route.continue_()
                return
            route.fulfill(
                status=200, content_type="application/json", body=listing, headers={"x-held": "1"}
            )

        # Held from the first listing after this one (a listing already on its way
        # arrives before the next is asked for: the page polls one at a time).
        with page.expect_response(lambda r: r.headers.get("x-held") == "1"):
            page.route("**/api/approvals", held)
        assert answer_on_api(stack, approval_id, "approve").status_code == 200
        assert result(future).stop_reason == "tool_use"
        card.get_by_role("button", name="Deny").click()
        message = card.get_by_test_id("approval-message")
        expect(message).to_have_text("this approval has already ended: approved by admin")
        expect(card).to_have_attribute("data-state", "conflict")
        expect(card.get_by_test_id("approval-status")).to_have_text("ended")
        expect(card.get_by_role("button", name="Approve")).to_be_disabled()
        expect(card.get_by_role("button", name="Deny")).to_be_disabled()
        page.unroute("**/api/approvals")
        card.get_by_role("button", name="Dismiss").click()
        expect(cards(page)).to_have_count(0)
        expect(page.get_by_test_id("approvals-empty")).to_be_visible()
        row = admin_get(stack, f"/api/approvals/{approval_id}").json()["approval"]
        assert row["status"] == "approved" and row["decided_by"] == "admin"
        problems.assert_none(allow_console=("409",))


def test_a_client_that_goes_away_takes_its_card(stack: Stack, browser: Browser) -> None:
    from playwright.sync_api import expect

    body = {
        "model": A_MODEL,
        "max_tokens": 300,
        "stream": True,
        "tools": A_TOOLS,
        "messages": [{"role": "user", "content": "please run bash, then leave"}],
    }
    with new_page(browser) as (page, problems):
        open_view(page, stack)
        with (
            httpx.Client(base_url=stack.base_url, timeout=30) as client,
            client.stream("POST", "/v1/messages", json=body, headers=KEY_HEADERS) as resp,
        ):
            assert resp.status_code == 200
            card = the_card(page)
            approval_id = card.get_attribute("data-approval-id")
        # The connection is closed: the call is cancelled, and its card leaves.
        expect(cards(page)).to_have_count(0)

        def cancelled() -> bool:
            row = admin_get(stack, f"/api/approvals/{approval_id}").json()["approval"]
            return bool(row["status"] == "cancelled")

        wait_for(cancelled, "the approval to end as cancelled")
        problems.assert_none()


@pytest.mark.skipif(os.environ.get("SAVE_SCREENSHOT") != "1", reason="set SAVE_SCREENSHOT=1")
def test_save_screenshot(stack: Stack, browser: Browser, pool: ThreadPoolExecutor) -> None:
    """docs/approval.png: a call waiting above the decisions the tests before made."""
    from playwright.sync_api import expect

    with new_page(browser) as (page, problems):
        open_view(page, stack)
        expect(page.locator("#decisions tbody tr").first).to_be_visible()
        prompt = "please run bash: `git push --force origin main`"
        future = pool.submit(stream_anthropic, stack, prompt)
        card = the_card(page)
        expect(card.get_by_test_id("approval-arguments")).to_contain_text("git push --force")
        expect(page.locator("#chart-decisions svg rect").first).to_be_attached()
        out = ROOT / "docs" / "approval.png"
        out.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(out), full_page=False)
        page.get_by_role("button", name="Approve").click()
        expect(cards(page)).to_have_count(0)
        assert result(future).stop_reason == "tool_use"
        problems.assert_none()
