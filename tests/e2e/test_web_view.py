"""The admin web view in a real headless Chromium, end to end through the whole gateway:
a request through the real Envoy gets a tool call blocked by the judge, and its row
appears live on the open page; a click shows the judge's reasons, the arguments and the
request's summary; a rejected request shows up the same way; a wrong key shows only
the key form. (tests/unit/admin/test_web_view.py covers the view in detail against the
admin app alone.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anthropic
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack
from tests.helpers.admin import ADMIN_KEY, observed_stack, request_detail, wait_decisions
from tests.helpers.browser import (
    chromium,
    decision_rows,
    detail,
    key_form,
    new_page,
    open_admin,
    skip_without_chromium,
    wait_live,
)
from tests.helpers.policy_stack import A_TOOLS, MOCK_JUDGE

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = [pytest.mark.e2e, skip_without_chromium()]

CONFIG = (
    """
policies:
  - type: request_guard
    deny_patterns: ["forbidden-topic"]
  - type: tool_call_judge
    threshold: 0.6
    judge: """
    + MOCK_JUDGE
    + """
validate_streams: true
"""
)
MODEL = "claude-sonnet-4-6"
# What the mock judge says about `rm -rf /` (extproc/mock_llm/judge.py).
EXPLANATION = "Matches rule 'rm -rf': recursive forced deletion can destroy data irreversibly."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from observed_stack(tmp_path_factory, "web-view", CONFIG)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def ask(st: Stack, prompt: str, stream: bool) -> Any:
    client = anthropic.Anthropic(base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 300,
        "tools": A_TOOLS,
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        with client.messages.stream(**body) as s:
            return s.get_final_message()
    return client.messages.create(**body)


def rows_for(page: Page, action: str) -> Locator:
    return page.locator(f'#decisions tbody tr[data-action="{action}"]')


def test_a_blocked_tool_call_appears_live_and_opens_its_request(
    stack: Stack, browser: Browser
) -> None:
    from playwright.sync_api import expect

    with new_page(browser) as (page, problems):
        open_admin(page, stack.admin_url, ADMIN_KEY)
        wait_live(page)
        # History loaded, and there is none yet: a fresh gateway.
        expect(page.get_by_test_id("empty")).to_be_visible()
        expect(decision_rows(page)).to_have_count(0)
        page.evaluate("window.__sameDocument = true")

        # A tool call the judge blocks, through the real Envoy, with the official SDK.
        message = ask(stack, "Please use bash to run `rm -rf /`", stream=True)
        assert not [b for b in message.content if b.type == "tool_use"]

        blocked = rows_for(page, "block_tool_call")
        expect(blocked).to_have_count(1)
        row = blocked.first
        for text in ("bash", "block_tool_call", "tool_call_judge", "0.97", "enforce", MODEL):
            expect(row).to_contain_text(text)
        expect(decision_rows(page)).to_have_count(1)
        expect(page.get_by_test_id("empty")).to_be_hidden()
        assert page.evaluate("window.__sameDocument") is True  # live, not a reload

        # Opened at once: the request's summary may be written a moment after the
        # decision (when the response ends), and the detail asks again until it is.
        row.click()
        [found] = wait_decisions(stack, action="block_tool_call")
        assert row.get_attribute("data-decision-id") == str(found["id"])
        request_id = found["request_id"]
        assert row.get_attribute("data-request-id") == request_id
        summary = request_detail(stack, request_id)["request"]
        panel = detail(page)
        expect(panel).to_be_visible()
        expect(page.locator("#detail-title")).to_have_text(request_id)
        expect(panel.get_by_test_id("decision-explanation")).to_have_text(EXPLANATION)
        expect(panel.get_by_test_id("decision-arguments")).to_contain_text('"command": "rm -rf /"')
        expect(panel).to_contain_text("judge probability 0.97")
        expect(panel.get_by_test_id("decision-message")).to_contain_text("'bash' was blocked")
        shown = panel.get_by_test_id("detail-summary")
        assert summary["status"] == 200 and summary["input_tokens"] > 0
        for text in (
            "200 ok",
            "POST /v1/messages",
            f"{summary['input_tokens']:,} in",
            f"{summary['output_tokens']:,} out",
            "tool_call_judge",
        ):
            expect(shown).to_contain_text(text, timeout=10_000)
        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()

        # A request the gateway rejects shows up on the same page, above the first.
        with pytest.raises(anthropic.APIStatusError) as err:
            ask(stack, "tell me about the forbidden-topic", stream=False)
        rejected = rows_for(page, "reject_request")
        expect(rejected).to_have_count(1)
        for text in ("reject_request", "request_guard", f"HTTP {err.value.status_code}"):
            expect(rejected.first).to_contain_text(text)
        expect(decision_rows(page)).to_have_count(2)
        assert decision_rows(page).first.get_attribute("data-action") == "reject_request"
        assert page.evaluate("window.__sameDocument") is True
        problems.assert_none()


def test_a_wrong_key_shows_the_key_form_and_no_data(stack: Stack, browser: Browser) -> None:
    from playwright.sync_api import expect

    with new_page(browser) as (page, problems):
        open_admin(page, stack.admin_url, "not-the-admin-key")
        expect(key_form(page)).to_be_visible()
        expect(page.locator("#key-message")).to_contain_text("wrong admin key")
        expect(page.locator("#main")).to_be_hidden()
        expect(page.locator("#live-status")).to_have_attribute("data-state", "off")
        expect(decision_rows(page)).to_have_count(0)
        expect(page.locator("#tile-requests")).to_have_text("\u2013")
        assert "key=" not in page.url
        assert page.evaluate("sessionStorage.getItem('gateway-admin-key')") is None
        # The browser reports the refused calls as failed loads; nothing else went wrong.
        problems.assert_none(allow_console=("401",))
