"""What the mock model says: pure, deterministic logic with no HTTP and no wire format.

The API-specific modules turn a request into a :class:`ScenarioInput`, :func:`plan_response`
decides the answer (a :class:`Plan`), and the same modules render the plan on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

StopReason = Literal["end_turn", "tool_use", "max_tokens"]
ToolChoice = Literal["auto", "none", "any"]

UNICODE_REPLY = "héllo wörld — 你好 🌍 ✓"
MAX_COUNT = 100

_COUNT_RE = re.compile(r"\bcount\s+to\s+(\d+)", re.IGNORECASE)
_SAY_RE = re.compile(r"^\s*(?:repeat after me|say):", re.IGNORECASE)
_UNICODE_RE = re.compile(r"unicode|emoji", re.IGNORECASE)
_USE_A_TOOL_RE = re.compile(r"\buse\s+(?:a|the)\s+tool\b", re.IGNORECASE)
_FENCE_RE = re.compile(r"```[\w-]*\n?(.*?)```", re.DOTALL)
_TICK_RE = re.compile(r"`([^`\n]+)`")
_WORD_PIECE_RE = re.compile(r"\s*\S+\s*$|\s*\S+")

# String properties that take the snippet in backticks, and their defaults without one.
_SNIPPET_DEFAULTS = {
    "command": "echo hello",
    "cmd": "echo hello",
    "query": "mock search query",
    "path": "/tmp/mock.txt",
    "url": "https://example.com/",
}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class ScenarioInput:
    """An API-neutral view of a request: only what decides the answer."""

    text: str  # text of the last user message
    seed: str  # hex digest of the request; ids are derived from it
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    forced_tool: str | None = None
    parallel_tool_calls: bool = True
    tool_result: str | None = None  # set when the last turn carries a tool result
    thinking: bool = False
    max_tokens: int | None = None
    input_tokens: int = 1
    tool_id_prefix: str = "toolu_01"


@dataclass(frozen=True)
class ToolCall:
    name: str
    id: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Plan:
    text_chunks: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    stop_reason: StopReason
    usage: Usage
    thinking_chunks: tuple[str, ...] | None = None
    signature: str = ""

    @property
    def text(self) -> str:
        return "".join(self.text_chunks)

    @property
    def thinking(self) -> str | None:
        return None if self.thinking_chunks is None else "".join(self.thinking_chunks)


def estimate_tokens(text: str) -> int:
    """A crude, stable token estimate (about four characters a token)."""
    return (len(text) + 3) // 4


def split_text(text: str, sizes: tuple[int, ...] = (3, 5, 2, 4)) -> list[str]:
    """Split into pieces of a few characters, cycling through ``sizes``."""
    pieces: list[str] = []
    pos = 0
    while pos < len(text):
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(text[pos : pos + size])
        pos += size
    return pieces


def split_words(text: str) -> list[str]:
    """Split into word-like pieces, each carrying its leading whitespace."""
    return _WORD_PIECE_RE.findall(text) or ([text] if text else [])


def dumps_compact(value: Any) -> str:
    return orjson.dumps(value).decode()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _reply_chunks(text: str) -> list[str]:
    say = _SAY_RE.match(text)
    if say:
        rest = text[say.end() :]
        return split_text(rest[1:] if rest.startswith(" ") else rest)
    count = _COUNT_RE.search(text)
    if count:
        n = max(1, min(MAX_COUNT, int(count.group(1))))
        return ["1"] + [f", {i}" for i in range(2, n + 1)]
    if _UNICODE_RE.search(text):
        return split_words(UNICODE_REPLY)
    words = text.split()
    if not words:
        return split_words("Hello! This is a mock response.")
    quote = " ".join(words[:6]) + ("..." if len(words) > 6 else "")
    return split_words(f'This is a mock response to "{quote}".')


def _snippet(text: str) -> str | None:
    found = _FENCE_RE.search(text) or _TICK_RE.search(text)
    return found.group(1).strip() if found else None


def _schema_type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def _value(name: str, schema: dict[str, Any], snippet: str | None) -> Any:
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = _schema_type(schema)
    if kind in (None, "string"):
        if name.lower() in _SNIPPET_DEFAULTS:
            return snippet if snippet is not None else _SNIPPET_DEFAULTS[name.lower()]
        return f"example {name}"
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return build_arguments(schema, snippet)
    return None


def build_arguments(schema: dict[str, Any], snippet: str | None) -> dict[str, Any]:
    """Arguments for a tool call, built from its JSON schema."""
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    out: dict[str, Any] = {}
    for name, prop in props.items():
        out[str(name)] = _value(str(name), prop if isinstance(prop, dict) else {}, snippet)
    for name in required if isinstance(required, list) else []:
        if isinstance(name, str) and name not in out:
            out[name] = _value(name, {}, snippet)
    return out


def _mentioned_tools(inp: ScenarioInput) -> list[ToolSpec]:
    prose = _TICK_RE.sub(" ", _FENCE_RE.sub(" ", inp.text))  # names inside code don't count
    found: list[tuple[int, int, ToolSpec]] = []
    for order, tool in enumerate(inp.tools):
        pattern = rf"(?<![\w-]){re.escape(tool.name)}(?![\w-])"
        match = re.search(pattern, prose, re.IGNORECASE)
        if match:
            found.append((match.start(), order, tool))
    return [tool for _, _, tool in sorted(found, key=lambda item: (item[0], item[1]))]


def _chosen_tools(inp: ScenarioInput) -> list[ToolSpec]:
    if not inp.tools or inp.tool_choice == "none" or inp.tool_result is not None:
        return []
    if inp.forced_tool is not None:
        return [t for t in inp.tools if t.name == inp.forced_tool][:1]
    chosen = _mentioned_tools(inp)
    if not chosen and (_USE_A_TOOL_RE.search(inp.text) or inp.tool_choice == "any"):
        chosen = [inp.tools[0]]
    return chosen if inp.parallel_tool_calls else chosen[:1]


def _tool_intro(tools: list[ToolSpec]) -> str:
    names = [t.name for t in tools]
    if len(names) == 1:
        return f"I'll use the {names[0]} tool."
    return f"I'll use the {', '.join(names[:-1])} and {names[-1]} tools."


def _truncate(chunks: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    used = 0
    for chunk in chunks:
        if used + len(chunk) > max_chars:
            if max_chars > used:
                out.append(chunk[: max_chars - used])
            break
        out.append(chunk)
        used += len(chunk)
    return out


def _thinking(inp: ScenarioInput) -> tuple[tuple[str, ...], str]:
    words = inp.text.split()
    topic = " ".join(words[:8]) if words else "an empty message"
    text = f'The user wrote: "{topic}". I should answer briefly and directly.'
    raw = b"".join(bytes.fromhex(_digest(inp.seed, "signature", str(i))) for i in range(3))
    signature = base64.b64encode(raw).decode()
    return tuple(split_words(text)), signature


def plan_response(inp: ScenarioInput) -> Plan:
    """Decide the whole answer for one request."""
    tools = _chosen_tools(inp)
    forced = inp.forced_tool is not None or inp.tool_choice == "any"
    if inp.tool_result is not None:
        result = " ".join(inp.tool_result.split())
        chunks = split_words(f"The tool returned: {result[:80] or '(empty)'}")
    elif tools:
        chunks = [] if forced else split_words(_tool_intro(tools))
    else:
        chunks = _reply_chunks(inp.text)

    snippet = _snippet(inp.text)
    calls = [
        ToolCall(
            name=tool.name,
            id=inp.tool_id_prefix + _digest(inp.seed, "tool", str(i), tool.name)[:24],
            input=build_arguments(tool.schema, snippet),
        )
        for i, tool in enumerate(tools)
    ]
    stop: StopReason = "tool_use" if calls else "end_turn"
    if inp.max_tokens is not None and estimate_tokens("".join(chunks)) > inp.max_tokens:
        chunks = _truncate(chunks, max(0, inp.max_tokens) * 4)
        calls = []
        stop = "max_tokens"

    thinking_chunks: tuple[str, ...] | None = None
    signature = ""
    if inp.thinking:
        thinking_chunks, signature = _thinking(inp)

    output = estimate_tokens("".join(chunks)) + estimate_tokens("".join(thinking_chunks or ()))
    output += sum(estimate_tokens(dumps_compact(c.input)) + 10 for c in calls)
    return Plan(
        text_chunks=tuple(chunks),
        tool_calls=tuple(calls),
        stop_reason=stop,
        usage=Usage(input_tokens=max(1, inp.input_tokens), output_tokens=max(1, output)),
        thinking_chunks=thinking_chunks,
        signature=signature,
    )
