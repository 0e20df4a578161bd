"""Envoy's own replies in the error format of the request's API, generated from the
dialect registry's path rules: Envoy answers each path as the ext_proc server does."""

from __future__ import annotations

from itertools import groupby
from typing import Any

import pytest

from extproc.contract import NO_CLUSTER_MESSAGE
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, DEFAULT_DIALECT, OPENAI_CHAT, PATH_RULES
from extproc.envoy_config.local_replies import CODE_DETAILS, REPLY_BODY, Case, cases, mappers

LIMIT = 12345
CASES = cases(LIMIT)


def matches(f: dict[str, Any], headers: dict[str, str], case: Case) -> bool:
    """Whether Envoy's access-log filter `f` matches a local reply of `case` to a request
    with these headers (`:path` among them)."""
    if f == case.filter:
        return True
    if "and_filter" in f:
        return all(matches(x, headers, case) for x in f["and_filter"]["filters"])
    if "or_filter" in f:
        return any(matches(x, headers, case) for x in f["or_filter"]["filters"])
    if "header_filter" in f:
        header = f["header_filter"]["header"]
        value = headers.get(header["name"])
        if header.get("present_match"):
            return value is not None
        return value is not None and value.startswith(header["string_match"]["prefix"])
    if any(c.filter == f for c in CASES):
        return False  # another case's
    raise AssertionError(f"a filter this test does not know: {f}")


def reply_body(headers: dict[str, str], case: Case) -> dict[str, Any]:
    """The body of the first mapper that matches, as Envoy picks it."""
    for mapper in mappers(LIMIT):
        if matches(mapper["filter"], headers, case):
            body: dict[str, Any] = mapper["body_format_override"]["json_format"]
            return body
    raise AssertionError(f"no mapper for {headers}")


def test_cases() -> None:
    too_large, no_cluster, unreachable, worker_gone = CASES
    assert (too_large.status, too_large.message, too_large.code) == (
        413,
        f"request body exceeds the gateway limit of {LIMIT} bytes (HTTP 413)",
        None,
    )
    assert (no_cluster.status, no_cluster.message) == (502, REPLY_BODY)
    assert "direct_response" in str(no_cluster.filter) and "502" in str(no_cluster.filter)
    assert (unreachable.status, unreachable.message, unreachable.code) == (
        503,
        REPLY_BODY,
        CODE_DETAILS,
    )
    flags = unreachable.filter["response_flag_filter"]["flags"]
    assert {"UF", "UH", "URX", "NR"} <= set(flags)
    # A worker gone under the request: a retryable 503 in format, not Envoy's empty 500.
    assert "ext_proc_error" in str(worker_gone.filter)
    assert (worker_gone.status, worker_gone.retry_status) == (503, 503)


def test_a_retryable_case_overrides_the_status_and_says_when() -> None:
    out = mappers(LIMIT)
    retried = [m for m in out if "status_code" in m]
    assert retried and all(m["status_code"] == 503 for m in retried)
    for mapper in retried:
        (header,) = mapper["headers_to_add"]
        assert header["header"] == {"key": "retry-after", "value": "1"}


def test_mappers_for_every_path_rule_group_and_every_case() -> None:
    runs = [dialect for dialect, _ in groupby(PATH_RULES, key=lambda rule: rule.dialect)]
    out = mappers(LIMIT)
    assert len(out) == len(CASES) * (len(runs) + 1)
    per_case = len(runs) + 1
    for i, case in enumerate(CASES):
        group = out[i * per_case : (i + 1) * per_case]
        for mapper, dialect in zip(group, [*runs, DEFAULT_DIALECT], strict=True):
            expected = dialect.error_document(case.status, case.message, code=case.code)
            assert mapper["body_format_override"] == {"json_format": expected}
        # Each rule's mapper needs the case; the last one is the case alone.
        assert all(m["filter"]["and_filter"]["filters"][0] == case.filter for m in group[:-1])
        assert group[-1]["filter"] == case.filter


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c.status))
@pytest.mark.parametrize(
    ("headers", "dialect"),
    [
        ({":path": "/v1/messages"}, ANTHROPIC),
        ({":path": "/v1/messages/count_tokens"}, ANTHROPIC),
        ({":path": "/v1/chat/completions"}, OPENAI_CHAT),
        ({":path": "/v1/embeddings"}, OPENAI_CHAT),
        ({":path": "/v1/models"}, OPENAI_CHAT),
        ({":path": "/v1/models/gpt-4o"}, OPENAI_CHAT),
        ({":path": "/v1/models", "anthropic-version": "2023-06-01"}, ANTHROPIC),
        ({":path": "/v2/other"}, DEFAULT_DIALECT),
        # After a provider's prefix_rewrite, the client's path is in x-envoy-original-path.
        (
            {
                ":path": "/openai/v1/chat/completions",
                "x-envoy-original-path": "/v1/chat/completions",
            },
            OPENAI_CHAT,
        ),
        ({":path": "/x/v1/messages", "x-envoy-original-path": "/v1/messages"}, ANTHROPIC),
    ],
)
def test_each_path_gets_its_dialects_error_document(
    headers: dict[str, str], dialect: Dialect, case: Case
) -> None:
    expected = dialect.error_document(case.status, case.message, code=case.code)
    assert reply_body(headers, case) == expected


def test_openai_replies_carry_envoys_details_as_the_code() -> None:
    unreachable = CASES[2]
    body = reply_body({":path": "/v1/chat/completions"}, unreachable)
    assert body["error"]["code"] == CODE_DETAILS and body["error"]["message"] == REPLY_BODY
    assert body["error"]["type"] == "server_error"
    body = reply_body({":path": "/v1/messages"}, unreachable)
    assert body == {"type": "error", "error": {"type": "api_error", "message": REPLY_BODY}}


def test_the_no_cluster_reply_is_in_the_paths_format() -> None:
    """Deliberate change: the catch-all 502 was Anthropic's format for every path."""
    no_cluster = CASES[1]
    assert reply_body({":path": "/v1/chat/completions"}, no_cluster) == {
        "error": {"message": REPLY_BODY, "type": "server_error", "param": None, "code": None}
    }
    assert NO_CLUSTER_MESSAGE.startswith("gateway misconfigured")


def test_a_path_rule_with_a_header_produces_the_header_match() -> None:
    (rule,) = [r for r in PATH_RULES if r.header is not None]
    assert (rule.prefix, rule.dialect, rule.header) == (
        "/v1/models",
        ANTHROPIC,
        "anthropic-version",
    )
    present = {"header_filter": {"header": {"name": "anthropic-version", "present_match": True}}}
    paths = {
        "or_filter": {
            "filters": [
                {
                    "header_filter": {
                        "header": {"name": name, "string_match": {"prefix": "/v1/models"}}
                    }
                }
                for name in (":path", "x-envoy-original-path")
            ]
        }
    }
    for case in CASES:
        (mapper,) = [
            m
            for m in mappers(LIMIT)
            if m["filter"].get("and_filter", {}).get("filters", [None])[0] == case.filter
            and m["body_format_override"]["json_format"]
            == ANTHROPIC.error_document(case.status, case.message, code=case.code)
        ]
        rules = mapper["filter"]["and_filter"]["filters"][1]["or_filter"]["filters"]
        assert {"and_filter": {"filters": [paths, present]}} in rules
