"""Tool calls, requests and the mock judge's records, for the tool_call_judge tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from extproc.core.decisions import ToolCall
from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.mock_llm.server import RECORDS_KEY
from extproc.policies.tool_call_judge import ToolCallJudgePolicy

# A judge key: it must reach the judge and never a log, an error or a block message.
JUDGE_KEY = "sk-judge-secret-0123456789"
JUDGE_MODEL = "judge-1"

# Builds a policy against the mock judge; `judge_*` keywords go to its JudgeConfig.
PolicyFactory = Callable[..., ToolCallJudgePolicy]


def judge_records(app: web.Application) -> list[dict[str, Any]]:
    """The requests the mock received for the judge model, oldest first."""
    return [r for r in app[RECORDS_KEY] if str((r["body"] or {}).get("model", "")) == JUDGE_MODEL]


def bash(command: str, index: int = 0) -> ToolCall:
    args = {"command": command}
    return ToolCall(f"call_{index}", "bash", args, f'{{"command": "{command}"}}', index)


def judged_request(dialect: Dialect = OPENAI_CHAT) -> ApiRequest:
    """A coding agent's request (a system prompt and one user message) in this dialect."""
    if dialect is ANTHROPIC:
        body: dict[str, Any] = {
            "model": "claude-sonnet-4-6",
            "system": [{"type": "text", "text": "You are a coding agent."}],
            "messages": [{"role": "user", "content": "Clean up the build directory"}],
        }
        return ApiRequest(ANTHROPIC, "/v1/messages", "claude-sonnet-4-6", False, body)
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": [{"type": "text", "text": "Clean up the build dir"}]},
        ],
    }
    return ApiRequest(OPENAI_CHAT, "/v1/chat/completions", "gpt-4o", False, body)
