"""What the soak's text streams ask for, what the mock answers, and how a received stream
is checked against it: events lost, duplicated, reordered or foreign.

A stream asks the mock to "Say:" a counting text ("1001, 1002, ...") cut to exactly
`events` deltas (the mock splits said text into pieces of 3, 5, 2, 4 characters:
`extproc.mock_llm.scenario.split_text`). Each stream counts from its own number, so an
event that strayed from another stream shows up as foreign text. The policy rewrites
the text (REPLACEMENTS) and may re-split the deltas, so text is compared as a whole,
and differences are counted in deltas of the mock's average size; the other events
(message_start ... message_stop, role chunk ... [DONE]) are compared one by one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from difflib import SequenceMatcher

import orjson

from extproc.mock_llm.scenario import split_text

ANTHROPIC_MODEL = "claude-sonnet-4-6"
OPENAI_MODEL = "gpt-4o"
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}

# (pattern, replacement, regex): the default chain's string_replacement rules.
REPLACEMENTS: tuple[tuple[str, str, bool], ...] = (
    ("13", "thirteen", False),
    ("99", "ninety-nine", False),
    (r"\b(\d+)00\b", r"\1-hundred", True),
)

HOLDBACK = 16

# The events around the text, in order: Anthropic by type, OpenAI by role/finish/[DONE].
SHAPES = {
    "anthropic": (
        "message_start",
        "ping",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ),
    "openai": ("role", "finish:stop", "[DONE]"),
}


def policy_yaml() -> str:
    """The string_replacement entry of REPLACEMENTS, as policy-file YAML."""
    rules = "\n".join(
        f"      - {{pattern: {orjson.dumps(p).decode()}, "
        f"replacement: {orjson.dumps(r).decode()}, regex: {str(rx).lower()}}}"
        for p, r, rx in REPLACEMENTS
    )
    # The longest match ("1234500" between word boundaries) is under 16 characters: a
    # window that small keeps text flowing, and a match it missed would show as a
    # difference.
    return f"  - type: string_replacement\n    holdback: {HOLDBACK}\n    replacements:\n{rules}\n"


def rewrite(text: str) -> str:
    """REPLACEMENTS applied as the policy documents it: all rules searched in the
    original text, matches taken left to right, the first listed winning a tie."""
    rules = [(re.compile(p if rx else re.escape(p)), r, rx) for p, r, rx in REPLACEMENTS]
    out: list[str] = []
    pos = 0
    while pos <= len(text):
        found = [
            (m.start(), i, m)
            for i, (compiled, _, _) in enumerate(rules)
            if (m := compiled.search(text, pos)) is not None
        ]
        if not found:
            break
        start, i, match = min(found, key=lambda f: (f[0], f[1]))
        _, replacement, regex = rules[i]
        out += [text[pos:start], match.expand(replacement) if regex else replacement]
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def counting_text(start: int, deltas: int) -> str:
    """ "start, start+1, ..." cut to exactly `deltas` of the mock's pieces."""
    words: list[str] = []
    n = start
    while sum(len(w) for w in words) < deltas * 5:
        words.append(str(n) if n == start else f", {n}")
        n += 1
    return "".join(split_text("".join(words))[:deltas])


def text_request(api: str, text: str, max_tokens: int = 65536) -> bytes:
    content = f"Say: {text}"
    if api == "anthropic":
        body = {"model": ANTHROPIC_MODEL, "max_tokens": max_tokens, "stream": True}
    else:
        body = {"model": OPENAI_MODEL, "max_tokens": max_tokens, "stream": True}
    body["messages"] = [{"role": "user", "content": content}]
    return orjson.dumps(body)


def headers(key: str, **extra: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-api-key": key,
        "anthropic-version": "2023-06-01",
        **extra,
    }


@dataclass(frozen=True)
class Event:
    name: str | None  # None: a text delta
    text: str
    raw: bytes


def events(api: str, body: bytes) -> list[Event]:
    """The SSE events of a body (the mock writes LF line endings)."""
    out: list[Event] = []
    for raw in body.split(b"\n\n"):
        data = next((line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")), None)
        if data is None:
            if raw.strip():
                out.append(Event("?", "", raw))
            continue
        if data == b"[DONE]":
            out.append(Event("[DONE]", "", raw))
            continue
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            out.append(Event("?", "", raw))
            continue
        out.append(_event(api, obj, raw))
    return out


def _event(api: str, obj: dict[str, object], raw: bytes) -> Event:
    if "error" in obj and (api == "openai" or obj.get("type") == "error"):
        return Event("error", "", raw)
    if api == "anthropic":
        delta = obj.get("delta")
        is_delta = obj.get("type") == "content_block_delta" and isinstance(delta, dict)
        if is_delta and isinstance(delta, dict) and delta.get("type") == "text_delta":
            return Event(None, str(delta.get("text", "")), raw)
        return Event(str(obj.get("type")), "", raw)
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices:
        return Event("usage" if obj.get("usage") else "?", "", raw)
    choice = choices[0]
    delta = choice.get("delta") or {}
    if "role" in delta:
        return Event("role", "", raw)
    if choice.get("finish_reason"):
        return Event(f"finish:{choice['finish_reason']}", "", raw)
    return Event(None, str(delta.get("content") or ""), raw)


def ends_in_format(api: str, body: bytes) -> bool:
    """Whether a stream ends with the API's error event and a valid terminator."""
    got = events(api, body)
    if api == "anthropic":
        return bool(got) and got[-1].name == "error" and got[-1].raw.startswith(b"event: error")
    return len(got) >= 2 and got[-2].name == "error" and got[-1].name == "[DONE]"


@dataclass
class Faults:
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    foreign: int = 0

    def __iadd__(self, other: Faults) -> Faults:
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.reordered += other.reordered
        self.foreign += other.foreign
        return self

    @property
    def total(self) -> int:
        return self.lost + self.duplicated + self.reordered + self.foreign


def sequence_faults(expected: str, received: str, unit: float = 1.0) -> Faults:
    """What differs between two sequences (strings), in units of `unit` characters:
    expected parts missing (lost), parts found elsewhere (reordered), expected parts seen
    again (duplicated), and parts never expected (foreign)."""
    if expected == received:
        return Faults()
    deleted: list[str] = []
    inserted: list[str] = []
    matcher = SequenceMatcher(None, expected, received, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            deleted.append(expected[i1:i2])
        if tag in ("insert", "replace"):
            inserted.append(received[j1:j2])

    def units(chars: int) -> int:
        return math.ceil(chars / unit) if chars else 0

    out = Faults()
    for piece in inserted:
        home = next((k for k, d in enumerate(deleted) if piece in d), None)
        if home is not None:
            out.reordered += units(len(piece))
            deleted[home] = deleted[home].replace(piece, "", 1)
        elif piece in expected:
            out.duplicated += units(len(piece))
        else:
            out.foreign += units(len(piece))
    out.lost = sum(units(len(d)) for d in deleted)
    return out


@dataclass
class Check:
    complete: bool  # 200, no error, the API's terminator last
    faults: Faults
    problem: str | None


def check_stream(api: str, status: int, body: bytes, text: str, deltas: int) -> Check:
    """A received stream against what the mock sent (`text`, in `deltas` pieces) with
    the policy's rewriting applied."""
    shape = SHAPES[api]
    if status != 200:
        whole = Faults(lost=deltas + len(shape))
        return Check(False, whole, f"status {status}: {body[:120]!r}")
    got = events(api, body)
    names = [e.name for e in got if e.name is not None]
    alphabet = {name: chr(0xE000 + i) for i, name in enumerate(dict.fromkeys([*shape, *names]))}
    faults = sequence_faults(
        "".join(alphabet[n] for n in shape), "".join(alphabet[n] for n in names)
    )
    want = rewrite(text)
    received = "".join(e.text for e in got if e.name is None)
    faults += sequence_faults(want, received, unit=len(want) / max(1, deltas))
    complete = bool(names) and names[-1] == shape[-1] and "error" not in names
    problem = None
    if faults.total:
        problem = f"{faults} (events {names})" if names != list(shape) else f"text: {faults}"
    elif not complete:
        problem = f"incomplete: events {names}"
    return Check(complete, faults, problem)
