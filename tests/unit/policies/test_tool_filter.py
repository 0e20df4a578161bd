"""tool_filter (extproc/policies/tool_filter.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from extproc.core.decisions import BlockToolCall, Deny, ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES
from extproc.pipeline import Continue, Immediate
from extproc.policies.base import PolicyChain
from extproc.policies.tool_filter import ToolFilterConfig, ToolFilterPolicy
from tests.helpers.dialects import anthropic_body, api_request, openai_body
from tests.helpers.pipeline import request_headers
from tests.helpers.runtime import make_pipeline


def call(name: str, **arguments: Any) -> ToolCall:
    raw = json.dumps(arguments) if arguments else ""
    return ToolCall(id="c1", name=name, arguments=arguments, raw_arguments=raw, index=0)


async def decide(policy: ToolFilterPolicy, tool_call: ToolCall) -> str | None:
    verdict = await policy.on_tool_call(tool_call, api_request(anthropic_body()))
    assert verdict is None or isinstance(verdict, BlockToolCall)
    return None if verdict is None else verdict.message


async def test_tool_filter_allow_and_deny() -> None:
    policy = ToolFilterPolicy(ToolFilterConfig(allow=["read_*", "bash"], deny=["read_secrets"]))
    assert ToolFilterPolicy.gates_tool_calls
    assert await decide(policy, call("read_file")) is None
    assert await decide(policy, call("bash", command="ls")) is None
    assert await decide(policy, call("write_file")) == (
        "Tool call 'write_file' was blocked by the gateway: not on the allow list."
    )
    assert await decide(policy, call("read_secrets")) == (
        "Tool call 'read_secrets' was blocked by the gateway: on the deny list."
    )
    open_policy = ToolFilterPolicy(ToolFilterConfig(deny=["*delete*"]))
    assert await decide(open_policy, call("anything")) is None
    assert await decide(open_policy, call("Delete")) is None  # globs are case-sensitive
    assert await decide(open_policy, call("x_delete_y")) is not None


async def test_tool_filter_argument_rules() -> None:
    config = ToolFilterConfig.model_validate(
        {
            "argument_rules": [
                {"tool": "bash", "argument": "command", "pattern": r"rm\s+-rf\s+/"},
                {
                    "tool": "http_*",
                    "argument": "url",
                    "pattern": r"^http://",
                    "message": "plain http",
                },
                {"tool": "*", "argument": "options", "pattern": '"force":\\s*true'},
                {"tool": "db", "pattern": "DROP TABLE"},
            ],
            "block_message": "[{tool}] {reason}",
        }
    )
    policy = ToolFilterPolicy(config)
    assert await decide(policy, call("bash", command="rm  -rf /tmp")) == (
        "[bash] argument 'command' matches a forbidden pattern"
    )
    assert await decide(policy, call("bash", command="rm -rf ./build")) is None
    assert await decide(policy, call("bash")) is None  # no such argument
    assert await decide(policy, call("sh", command="rm -rf /")) is None  # other tool
    assert await decide(policy, call("http_get", url="http://x")) == "[http_get] plain http"
    assert await decide(policy, call("http_get", url="https://x")) is None
    assert await decide(policy, call("x", options={"force": True})) is not None  # JSON text
    assert await decide(policy, call("x", options={"force": False})) is None
    assert await decide(policy, call("db", sql="DROP TABLE users")) == (
        "[db] its arguments match a forbidden pattern"
    )


async def test_whole_arguments_rule_without_raw_text_uses_the_parsed_arguments() -> None:
    rule = {"tool": "db", "pattern": '"sql":"DROP'}
    policy = ToolFilterPolicy(ToolFilterConfig.model_validate({"argument_rules": [rule]}))
    parsed_only = ToolCall("c", "db", {"sql": "DROP TABLE x"}, "", 0)
    assert policy.reason(parsed_only) == "its arguments match a forbidden pattern"
    assert policy.reason(ToolCall("c", "db", {"sql": "SELECT 1"}, "", 0)) is None


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"argument_rules": [{"tool": "bash", "pattern": "rm ("}]}, "'rm ('"),
        ({"argument_rules": [{"tool": "bash"}]}, "pattern"),
        ({"block_message": "{name} blocked"}, "{tool}"),
        ({"allow": "bash"}, "allow"),
    ],
)
def test_tool_filter_config_errors(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        ToolFilterConfig(**config)


async def test_tool_filter_rule_message_ending_in_period_reads_once() -> None:
    rule = {"tool": "bash", "argument": "command", "pattern": r"rm\s+-rf", "message": "No root."}
    policy = ToolFilterPolicy(ToolFilterConfig.model_validate({"argument_rules": [rule]}))
    call = ToolCall("c", "bash", {"command": "rm -rf /"}, '{"command": "rm -rf /"}', 0)
    verdict = await policy.on_tool_call(call, None)  # type: ignore[arg-type]
    assert isinstance(verdict, BlockToolCall)
    assert verdict.message == "Tool call 'bash' was blocked by the gateway: No root."


# -- tools that run at the provider: governed on the request ---------------------------------

MCP_URL = "https://evil.example.com/mcp?token=tok_very_secret"


def anthropic_request(tools: list[Any], mcp_servers: list[Any] | None = None) -> ApiRequest:
    body: dict[str, Any] = {**anthropic_body(), "tools": tools}
    if mcp_servers is not None:
        body["mcp_servers"] = mcp_servers
    return api_request(body, ANTHROPIC)


def responses_request(tools: list[Any]) -> ApiRequest:
    return api_request({"model": "gpt-5", "input": "hi", "tools": tools}, OPENAI_RESPONSES)


def chat_request(**extra: Any) -> ApiRequest:
    return api_request({**openai_body(), **extra}, OPENAI_CHAT)


async def verdict(config: dict[str, Any], request: ApiRequest) -> Deny | None:
    policy = ToolFilterPolicy(ToolFilterConfig.model_validate(config))
    found = await policy.on_request(request)
    assert found is None or found.status == 403
    return found


ANTHROPIC_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
ANTHROPIC_CODE = {"type": "code_execution_20250825", "name": "code_execution"}


@pytest.mark.parametrize(
    ("request_of", "tool"),
    [
        (lambda: anthropic_request([ANTHROPIC_SEARCH]), "web_search_20250305"),
        (lambda: responses_request([{"type": "web_search"}]), "web_search"),
        (lambda: responses_request([{"type": "web_search_preview"}]), "web_search_preview"),
        (lambda: chat_request(web_search_options={}), "web_search"),
    ],
    ids=["anthropic", "responses", "responses preview", "chat"],
)
async def test_server_tools_denied_by_glob_on_every_api(
    request_of: Callable[[], ApiRequest], tool: str
) -> None:
    denied = await verdict({"server_tools": {"deny": ["web_search*"]}}, request_of())
    assert denied == Deny(403, f"server tool '{tool}' is not allowed here: on the deny list")
    allow_list = await verdict({"server_tools": {"allow": ["code_*"]}}, request_of())
    assert allow_list == Deny(
        403, f"server tool '{tool}' is not allowed here: not on the allow list"
    )
    assert await verdict({"server_tools": {"allow": ["web_search*"]}}, request_of()) is None
    assert await verdict({"server_tools": {"deny": ["code_*"]}}, request_of()) is None
    # Deny wins over allow; globs are case-sensitive.
    both = {"server_tools": {"allow": ["*"], "deny": [tool]}}
    assert await verdict(both, request_of()) is not None
    assert await verdict({"server_tools": {"deny": ["WEB_SEARCH*"]}}, request_of()) is None


async def test_the_first_refused_server_tool_is_named() -> None:
    request = anthropic_request([ANTHROPIC_CODE, ANTHROPIC_SEARCH])
    found = await verdict({"server_tools": {"allow": ["web_search_*"]}}, request)
    assert found is not None and "'code_execution_20250825'" in found.message
    responses = responses_request(
        [{"type": "function", "name": "f"}, {"type": "file_search"}, {"type": "code_interpreter"}]
    )
    found = await verdict({"server_tools": {"deny": ["code_*", "file_*"]}}, responses)
    assert found is not None and "'file_search'" in found.message


async def test_unknown_typed_anthropic_tools_count_as_server_tools() -> None:
    request = anthropic_request([{"type": "teleport_20300101", "name": "teleport"}])
    found = await verdict({"server_tools": {"allow": ["web_search_*"]}}, request)
    assert found == Deny(
        403, "server tool 'teleport_20300101' is not allowed here: not on the allow list"
    )


@pytest.mark.parametrize(
    "request_of",
    [
        lambda: anthropic_request([], [{"type": "url", "url": MCP_URL, "name": "evil"}]),
        lambda: responses_request(
            [
                {
                    "type": "mcp",
                    "server_label": "evil",
                    "server_url": MCP_URL,
                    "require_approval": "never",
                }
            ]
        ),
    ],
    ids=["anthropic", "responses"],
)
async def test_mcp_servers_by_url_and_by_name(request_of: Callable[[], ApiRequest]) -> None:
    by_url = await verdict({"mcp_servers": {"deny": ["https://evil.example.com/*"]}}, request_of())
    by_name = await verdict({"mcp_servers": {"deny": ["ev?l"]}}, request_of())
    allow_list = await verdict(
        {"mcp_servers": {"allow": ["https://mcp.internal.example/*"]}}, request_of()
    )
    for found in (by_url, by_name, allow_list):
        assert found is not None
        # Named by its name; the URL (it may carry a token) is never repeated.
        assert found.message.startswith("MCP server 'evil' is not allowed here: ")
        assert "evil.example.com" not in found.message and "tok_very_secret" not in found.message
    assert allow_list is not None and allow_list.message.endswith("not on the allow list")
    allowed = {"mcp_servers": {"allow": ["https://evil.example.com/mcp*"]}}
    assert await verdict(allowed, request_of()) is None
    # A server with a URL is allowed by its URL only: its name is the caller's to choose.
    assert await verdict({"mcp_servers": {"allow": ["evil"]}}, request_of()) is not None
    # Server tool rules do not govern MCP servers, nor the reverse.
    assert await verdict({"server_tools": {"deny": ["*"]}}, request_of()) is None


async def test_an_mcp_server_without_url_is_matched_by_name() -> None:
    request = responses_request([{"type": "mcp", "server_label": "stripe", "connector_id": "c"}])
    assert await verdict({"mcp_servers": {"deny": ["https://*"]}}, request) is None
    assert await verdict({"mcp_servers": {"allow": ["https://*"]}}, request) == Deny(
        403, "MCP server 'stripe' is not allowed here: not on the allow list"
    )


@pytest.mark.parametrize(
    "request_of",
    [
        lambda: anthropic_request(
            [
                {"name": "web_search", "input_schema": {}},
                {"type": "custom", "name": "code_run", "input_schema": {}},
                {"type": "bash_20250124", "name": "bash"},
                {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
            ]
        ),
        lambda: responses_request(
            [
                {"type": "function", "name": "web_search"},
                {"type": "custom", "name": "apply_patch"},
                {"type": "local_shell"},
                {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "x"}]},
            ]
        ),
        lambda: chat_request(tools=[{"type": "function", "function": {"name": "web_search"}}]),
    ],
    ids=["anthropic", "responses", "chat"],
)
async def test_client_tools_are_not_governed_on_the_request(
    request_of: Callable[[], ApiRequest],
) -> None:
    # A client's own function named like a server tool is still the client's.
    everything = {"server_tools": {"deny": ["*"]}, "mcp_servers": {"deny": ["*"]}}
    assert await verdict(everything, request_of()) is None
    assert (
        await verdict({"server_tools": {"allow": []}, "mcp_servers": {"allow": []}}, request_of())
        is None
    )


async def test_without_request_rules_the_request_is_not_looked_at() -> None:
    request = anthropic_request([ANTHROPIC_SEARCH], [{"url": MCP_URL, "name": "evil"}])
    assert await verdict({"deny": ["*"]}, request) is None
    assert await verdict({"allow": ["nothing"]}, request) is None


@pytest.mark.parametrize(
    ("dialect", "body", "error"),
    [
        (
            ANTHROPIC,
            {"model": "claude-x", "max_tokens": 5, "messages": [], "tools": [ANTHROPIC_SEARCH]},
            {"type": "permission_error"},
        ),
        (
            OPENAI_RESPONSES,
            {"model": "gpt-x", "input": "hi", "tools": [{"type": "web_search"}]},
            {"type": "permission_error", "param": None, "code": None},
        ),
        (
            OPENAI_CHAT,
            {"model": "gpt-x", "messages": [], "web_search_options": {}},
            {"type": "permission_error", "param": None, "code": None},
        ),
    ],
    ids=["anthropic", "responses", "chat"],
)
async def test_the_refusal_is_a_403_in_the_apis_format(
    dialect: Dialect, body: dict[str, Any], error: dict[str, Any]
) -> None:
    policy = ToolFilterPolicy(
        ToolFilterConfig.model_validate({"server_tools": {"deny": ["web_*"]}})
    )
    p = make_pipeline(PolicyChain([policy]))
    assert isinstance(p.on_request_headers(request_headers(dialect.path), False), Continue)
    out = await p.on_request_body(orjson.dumps(body))
    assert isinstance(out, Immediate) and out.status == 403
    found = orjson.loads(out.body)["error"]
    assert found.pop("message").startswith("server tool 'web_search")
    assert found == error


def test_request_rule_config_errors() -> None:
    with pytest.raises(ValidationError, match="denyy"):
        ToolFilterConfig.model_validate({"server_tools": {"denyy": ["x"]}})
    with pytest.raises(ValidationError, match="mcp_servers"):
        ToolFilterConfig.model_validate({"mcp_servers": ["https://x"]})


async def test_a_connector_is_known_by_its_id_not_its_label() -> None:
    gmail = {
        "type": "mcp",
        "server_label": "https://mcp.internal.example/x",
        "connector_id": "connector_gmail",
    }
    internal_only = {"mcp_servers": {"allow": ["https://mcp.internal.example/*"]}}
    assert await verdict(internal_only, responses_request([gmail])) is not None
    assert (
        await verdict({"mcp_servers": {"allow": ["connector_gmail"]}}, responses_request([gmail]))
        is None
    )
    assert (
        await verdict({"mcp_servers": {"deny": ["connector_*"]}}, responses_request([gmail]))
        is not None
    )


async def test_mcp_urls_match_whatever_the_case_of_scheme_and_host() -> None:
    shouting = {"type": "mcp", "server_label": "x", "server_url": "HTTPS://EVIL.example.com/mcp"}
    deny = {"mcp_servers": {"deny": ["https://evil.example.com/*"]}}
    assert await verdict(deny, responses_request([shouting])) is not None


@pytest.mark.parametrize("kind", ["additional_tools", "tool_search_output"])
async def test_tools_carried_by_input_items_are_governed(kind: str) -> None:
    item = {
        "type": kind,
        "call_id": "c",
        "tools": [{"type": "mcp", "server_label": "x", "server_url": "https://evil.example/mcp"}],
    }
    request = api_request({"model": "gpt-5", "input": [item]}, OPENAI_RESPONSES)
    assert await verdict({"mcp_servers": {"allow": ["https://ok.example/*"]}}, request) is not None
    search = {**item, "tools": [{"type": "web_search"}]}
    request = api_request({"model": "gpt-5", "input": [search]}, OPENAI_RESPONSES)
    assert await verdict({"server_tools": {"deny": ["web_search*"]}}, request) is not None


async def test_a_stored_prompts_hidden_tools_are_refused_under_tool_rules() -> None:
    request = api_request({"model": "gpt-5", "prompt": {"id": "pmpt_1"}}, OPENAI_RESPONSES)
    found = await verdict({"server_tools": {"deny": ["web_search*"]}}, request)
    assert found is not None and "stored prompt" in found.message
    # Without tool rules, a stored prompt is the provider's business.
    assert await verdict({"deny": ["bash"]}, request) is None
