"""Envoy's own replies (a body over its buffer limit, an unreachable provider, a
provider with no cluster) rewritten into the error format of the request's API.

The mappers are generated from the dialect registry's path rules and each dialect's
`error_document`, so Envoy answers a path in exactly the format the ext_proc server
does. A rule matches the client's path also after a provider's `prefix_rewrite` moved
it (Envoy then keeps the original in x-envoy-original-path).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

from extproc.contract import (
    EXTPROC_ERROR_DETAILS,
    ORIGINAL_PATH_HEADER,
    RETRY_SOON_S,
    TOO_LARGE_DETAILS,
    UPSTREAM_FAILURE_FLAGS,
    too_large_message,
    with_status,
)
from extproc.dialects.base import Dialect
from extproc.dialects.registry import DEFAULT_DIALECT, PATH_RULES, PathRule

# Envoy substitutes these in a local reply's body format.
REPLY_BODY = "%LOCAL_REPLY_BODY%"
CODE_DETAILS = "%RESPONSE_CODE_DETAILS%"
# The response code details of a route's direct_response.
DIRECT_RESPONSE_DETAILS = "direct_response"


@dataclass(frozen=True)
class Case:
    """One kind of local reply: which replies it matches, and what the client reads."""

    filter: dict[str, Any]
    status: int
    message: str
    code: str | None = None  # the API's error code, where it has one
    # Replaces Envoy's status, with a retry-after (a failure worth retrying at once).
    retry_status: int | None = None


def _cel(expression: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        }
    }


def cases(max_request_bytes: int) -> list[Case]:
    return [
        # Envoy's own text is only "Payload Too Large": say which limit.
        Case(
            _cel(f"response.code_details == '{TOO_LARGE_DETAILS}'"),
            413,
            with_status(too_large_message(max_request_bytes), 413),
        ),
        # The catch-all route (`bootstrap.py`): ext_proc named a cluster this config lacks.
        Case(
            _cel(f"response.code_details == '{DIRECT_RESPONSE_DETAILS}' && response.code == 502"),
            502,
            REPLY_BODY,
        ),
        # The provider never answered: Envoy's text says why, its details how.
        Case(
            {"response_flag_filter": {"flags": list(UPSTREAM_FAILURE_FLAGS)}},
            503,
            REPLY_BODY,
            CODE_DETAILS,
        ),
        # The ext_proc worker went away under the request (killed, restarting): Envoy
        # answers 500 with no body. Another worker takes the retry.
        Case(
            _cel(f"response.code_details.startsWith('{EXTPROC_ERROR_DETAILS}')"),
            503,
            "a gateway worker was unavailable for this request; retry",
            retry_status=503,
        ),
    ]


def _starts_with(header: str, prefix: str) -> dict[str, Any]:
    return {"header_filter": {"header": {"name": header, "string_match": {"prefix": prefix}}}}


def _rule_filters(rule: PathRule) -> list[dict[str, Any]]:
    """Filters any of which matches the rule's requests."""
    paths = [_starts_with(":path", rule.prefix), _starts_with(ORIGINAL_PATH_HEADER, rule.prefix)]
    if rule.header is None:
        return paths
    present = {"header_filter": {"header": {"name": rule.header, "present_match": True}}}
    return [{"and_filter": {"filters": [_any_of(paths), present]}}]


def _any_of(filters: list[dict[str, Any]]) -> dict[str, Any]:
    return filters[0] if len(filters) == 1 else {"or_filter": {"filters": filters}}


def _body(dialect: Dialect, case: Case) -> dict[str, Any]:
    return {"json_format": dialect.error_document(case.status, case.message, code=case.code)}


def mappers(max_request_bytes: int) -> list[dict[str, Any]]:
    """The local-reply mappers, first match wins: for each case, one per run of
    consecutive path rules of one dialect, then the default dialect for any path."""
    out: list[dict[str, Any]] = []
    for case in cases(max_request_bytes):
        for dialect, rules in groupby(PATH_RULES, key=lambda rule: rule.dialect):
            paths = _any_of([f for rule in rules for f in _rule_filters(rule)])
            out.append(
                {
                    "filter": {"and_filter": {"filters": [case.filter, paths]}},
                    "body_format_override": _body(dialect, case),
                    **_retry(case),
                }
            )
        out.append(
            {
                "filter": case.filter,
                "body_format_override": _body(DEFAULT_DIALECT, case),
                **_retry(case),
            }
        )
    return out


def _retry(case: Case) -> dict[str, Any]:
    if case.retry_status is None:
        return {}
    return {
        "status_code": case.retry_status,
        "headers_to_add": [
            {
                "header": {"key": "retry-after", "value": str(RETRY_SOON_S)},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }
