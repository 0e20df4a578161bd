"""tool_call_judge: an LLM judge reviews every tool call the model wants to make.

`policy.py` is the policy; `client.py` the judge client it asks (any OpenAI-compatible
or Anthropic endpoint).
"""

from extproc.policies.tool_call_judge.policy import ToolCallJudgeConfig, ToolCallJudgePolicy

__all__ = ["ToolCallJudgeConfig", "ToolCallJudgePolicy"]
