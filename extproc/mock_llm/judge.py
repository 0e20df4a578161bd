"""The mock judge: answers requests whose model starts with "judge" with a JSON verdict.

It finds the tool call in the last user message (the `<tool_name>` and `<arguments>`
tags `extproc.judge` writes; the whole message when they are missing) and scores it by
simple rules. Markers in the arguments trigger faults for tests:
`JUDGE_SLOW` (answer after 5 s), `JUDGE_500` (HTTP 500), `JUDGE_PROSE` (no JSON).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from .scenario import Plan, ScenarioInput, Usage, dumps_compact, estimate_tokens, split_words

SLOW_S = 5.0
PROSE = "I think this is probably fine."
BENIGN = "The tool call looks benign."

_NAME_RE = re.compile(r"<tool_name>(.*?)</tool_name>", re.DOTALL)
_ARGS_RE = re.compile(r"<arguments>\n?(.*?)\n?</arguments>", re.DOTALL)

# (rule, pattern, probability, why): the first match decides.
RULES: tuple[tuple[str, re.Pattern[str], float, str], ...] = tuple(
    (rule, re.compile(pattern, re.IGNORECASE), probability, why)
    for rule, pattern, probability, why in (
        ("rm -rf", r"\brm\s+(?:-\w*r\w*f|-\w*f\w*r|-r\s+-f|-f\s+-r)", 0.97,
         "recursive forced deletion can destroy data irreversibly"),
        ("mkfs", r"\bmkfs\b", 0.98, "formatting a filesystem erases everything on it"),
        ("dd if=", r"\bdd\s+(?:\S+\s+)*?if=", 0.95, "raw disk writes can wipe devices"),
        ("pipe to shell", r"\b(?:curl|wget)\b[^|;&\n]*\|\s*(?:sudo\s+)?(?:ba|z|da|k)?sh\b",
         0.93, "piping a download into a shell runs untrusted code"),
        ("chmod 777 /", r"\bchmod\s+(?:-R\s+)?0?777\s+/", 0.9,
         "making system paths world-writable breaks security"),
        ("write to /etc", r"(?:>>?|\btee\s+(?:-a\s+)?)\s*/etc/", 0.92,
         "writing to /etc changes system configuration"),
        ("DROP TABLE", r"\bdrop\s+(?:table|database)\b", 0.95, "dropping tables destroys data"),
        ("shutdown/reboot", r"\b(?:shutdown|reboot|poweroff)\b", 0.9,
         "shutting down or rebooting interrupts the system"),
    )
)  # fmt: skip


@dataclass(frozen=True)
class JudgeReply:
    plan: Plan | None  # None: answer HTTP 500
    delay_s: float = 0.0


def is_judge_model(model: Any) -> bool:
    return isinstance(model, str) and model.startswith("judge")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def tool_call_text(message: str) -> str:
    """The tool call in a judge prompt, as text to match rules against: the tool name and
    the argument strings (decoded, so JSON escapes like `<\\/` don't hide anything)."""
    name = _NAME_RE.search(message)
    args = _ARGS_RE.search(message)
    if args is None:
        return message
    raw = args.group(1)
    try:
        decoded = "\n".join(_strings(orjson.loads(raw)))
    except orjson.JSONDecodeError:
        decoded = raw
    return f"{name.group(1) if name else ''}\n{decoded}"


def score(text: str) -> tuple[float, str]:
    """(probability, explanation) for a tool call's text."""
    for rule, pattern, probability, why in RULES:
        if pattern.search(text):
            return probability, f"Matches rule '{rule}': {why}."
    spread = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 9
    return round(0.02 + spread / 100, 2), BENIGN


def review(inp: ScenarioInput, *, fenced: bool) -> JudgeReply:
    """The judge's answer to a request; `fenced` wraps the JSON in a ```json fence."""
    text = tool_call_text(inp.text)
    if "JUDGE_500" in text:
        return JudgeReply(plan=None)
    delay = SLOW_S if "JUDGE_SLOW" in text else 0.0
    if "JUDGE_PROSE" in text:
        answer = PROSE
    else:
        probability, explanation = score(text)
        answer = dumps_compact({"probability": probability, "explanation": explanation})
        if fenced:
            answer = f"```json\n{answer}\n```"
    plan = Plan(
        text_chunks=tuple(split_words(answer)),
        tool_calls=(),
        stop_reason="end_turn",
        usage=Usage(input_tokens=inp.input_tokens, output_tokens=estimate_tokens(answer)),
    )
    return JudgeReply(plan=plan, delay_s=delay)
