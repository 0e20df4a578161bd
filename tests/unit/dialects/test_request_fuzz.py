"""Property tests of how the three APIs read a request body (`Dialect.request_problem`,
`texts`, `rewrite_texts`, `system_prompt`, `last_user_text`, `declared_tools`): on any
JSON object, whatever the shape of its messages, input items, parts and tools, nothing
raises, each answers in its type, and a rewrite changes exactly the texts `texts()`
reads (what a redacting policy sees is what it redacts), without touching the body."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from extproc.core.request import DeclaredTool, ToolKind
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES
from tests.helpers.dialects import JSON, KEY
from tests.helpers.fuzz import FUZZ

DIALECTS = (ANTHROPIC, OPENAI_CHAT, OPENAI_RESPONSES)

# The names the three APIs give their fields, parts, items and tools: arbitrary JSON
# made of these reaches the code paths a request's texts and tools take.
FIELDS = [
    *("messages", "system", "content", "type", "text", "role", "tools", "input"),
    *("instructions", "prompt", "variables", "output", "function", "name", "mcp_servers"),
    *("url", "server_url", "connector_id", "server_label", "web_search_options", "refusal"),
    *("reason", "stdout", "stderr", "model", "tool_use_id", "arguments", "id", "call_id"),
]
TYPES = [
    *("text", "tool_result", "tool_use", "image", "thinking", "input_text", "output_text"),
    *("refusal", "message", "function", "custom", "namespace", "mcp", "web_search"),
    *("function_call_output", "custom_tool_call_output", "local_shell_call_output"),
    *("apply_patch_call_output", "mcp_approval_response", "shell_call_output"),
    *("additional_tools", "tool_search_output", "bash_20250124", "text_editor_20250728"),
    *("computer_20250124", "local_shell", "shell", "apply_patch", "computer_use_preview"),
]
ROLES = ["user", "assistant", "system", "developer", "tool"]

TEXT = st.text(max_size=8)
TYPE = st.sampled_from(TYPES)
ROLE = st.sampled_from(ROLES)
# Arbitrary JSON whose keys and strings are often the APIs' own names.
SHAPED = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | TYPE
    | ROLE,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | KEY, inner)
    ),
    max_leaves=30,
)
ANY_BODY = st.dictionaries(st.sampled_from(FIELDS) | KEY, SHAPED, max_size=6)

# Request bodies of roughly the APIs' shapes: the fields that hold texts and tools are
# always there, sometimes with a value of another type (`JUNK`); the shapes no API has
# are `ANY_BODY`'s.
# (Mapped, JUNK is one strategy: `x | JUNK` is x half the time, not one time in six.)
JUNK = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.lists(TEXT, max_size=2)
    | st.dictionaries(st.sampled_from(FIELDS), TEXT | TYPE, max_size=2)
).map(copy.deepcopy)
STR = st.sampled_from(["hi", " ", "AKIA key", "line\nbreak"]) | TEXT
INNER_PART = st.fixed_dictionaries({"type": TYPE, "text": STR | JUNK})
PART = st.fixed_dictionaries(
    {"type": TYPE | JUNK, "text": STR | JUNK},
    optional={
        "refusal": STR | JUNK,
        "content": STR | st.lists(INNER_PART | JUNK, max_size=3) | JUNK,
    },
)
CONTENT = STR | st.lists(PART | JUNK, max_size=4) | JUNK
RUN = st.fixed_dictionaries({"stdout": STR | JUNK}, optional={"stderr": STR | JUNK})
TOOL = st.fixed_dictionaries(
    {"type": TYPE | JSON, "name": STR | JUNK},
    optional={
        "function": st.fixed_dictionaries({"name": STR | JUNK}) | JUNK,
        "tools": st.lists(st.fixed_dictionaries({"name": STR | JUNK}) | JUNK, max_size=2),
        "server_url": STR | JUNK,
        "connector_id": STR | JUNK,
        "server_label": STR | JUNK,
    },
)
TOOLS = st.lists(TOOL | JUNK, max_size=4) | JUNK
MESSAGE = st.fixed_dictionaries(
    {"role": ROLE | JUNK, "content": CONTENT},
    optional={
        "type": TYPE | JUNK,
        "output": CONTENT | st.lists(RUN | JUNK, max_size=2),
        "reason": CONTENT,
        "tools": TOOLS,
    },
)
MESSAGES = st.lists(MESSAGE | JUNK, min_size=1, max_size=5) | JUNK
STRUCTURED_BODY = st.fixed_dictionaries(
    {"model": TEXT, "messages": MESSAGES, "input": STR | MESSAGES, "tools": TOOLS},
    optional={
        "system": CONTENT,
        "instructions": STR | MESSAGES,
        "mcp_servers": st.lists(st.fixed_dictionaries({"name": STR | JUNK, "url": STR | JUNK}))
        | JUNK,
        "prompt": st.fixed_dictionaries(
            {"variables": st.dictionaries(KEY, STR | PART | JUNK, max_size=3) | JUNK},
            optional={"id": TEXT},
        )
        | JUNK,
        "web_search_options": JSON,
    },
)
BODIES = ANY_BODY | STRUCTURED_BODY


def mark(text: str) -> str:
    return f"<{text}>"


def check_reading(dialect: Dialect, body: dict[str, Any]) -> None:
    problem = dialect.request_problem(body)
    assert problem is None or (
        isinstance(problem, tuple) and [type(p) for p in problem] == [str, str]
    )
    assert all(isinstance(t, str) for t in dialect.texts(body))
    assert isinstance(dialect.system_prompt(body), str)
    assert isinstance(dialect.last_user_text(body), str)
    assert all(
        isinstance(t, DeclaredTool)
        and isinstance(t.kind, ToolKind)
        and isinstance(t.name, str)
        and (t.server_url is None or isinstance(t.server_url, str))
        for t in dialect.declared_tools(body)
    )


def check_rewriting(dialect: Dialect, body: dict[str, Any]) -> None:
    assert dialect.rewrite_texts(body, lambda text: text) is None
    seen: list[str] = []

    def fn(text: str) -> str:
        seen.append(text)
        return mark(text)

    rewritten = dialect.rewrite_texts(body, fn)
    texts = list(dialect.texts(body))
    assert seen == texts  # every text read is offered to the rewrite, once
    if not texts:
        assert rewritten is None
        return
    assert rewritten is not None
    assert list(dialect.texts(rewritten)) == [mark(t) for t in texts]
    orjson.dumps(rewritten)  # still a JSON body, ready to be sent


# Each body goes to the three dialects: generating it costs more than reading it.
@settings(FUZZ, max_examples=300)
@given(body=BODIES)
def test_reading_any_body_never_raises_and_answers_in_type(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    for dialect in DIALECTS:
        check_reading(dialect, body)
        assert body == before, dialect  # reading changes nothing


@settings(FUZZ, max_examples=300)
@given(body=BODIES)
def test_a_rewrite_changes_exactly_the_texts_that_are_read(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    for dialect in DIALECTS:
        check_rewriting(dialect, body)
        assert body == before, dialect  # the body itself is never modified


@settings(FUZZ, max_examples=50)
@example(body={"model": "gpt-x", "input": "hi", "tools": [{"type": []}]})
@example(body={"model": "gpt-x", "input": "hi", "tools": [{"type": {}}]})
@given(body=STRUCTURED_BODY)
def test_responses_request_problem_with_an_unhashable_tool_type(body: dict[str, Any]) -> None:
    problem = OPENAI_RESPONSES.request_problem(body)
    assert problem is None or isinstance(problem[0], str)
