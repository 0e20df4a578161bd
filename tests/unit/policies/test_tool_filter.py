"""tool_filter (extproc/policies/tool_filter.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from extproc.core.decisions import BlockToolCall, ToolCall
from extproc.policies.tool_filter import ToolFilterConfig, ToolFilterPolicy
from tests.helpers.dialects import anthropic_body, api_request


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
