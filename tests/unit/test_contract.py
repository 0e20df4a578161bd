"""The texts and numbers the ext_proc server and the Envoy bootstrap share."""

from __future__ import annotations

import pytest

from extproc.contract import message_timeout_s, too_large_message, with_status


def test_too_large_message_names_the_limit() -> None:
    assert too_large_message(1024) == "request body exceeds the gateway limit of 1024 bytes"


@pytest.mark.parametrize(
    ("status", "text"),
    [(502, "boom (HTTP 502)"), ("%RESPONSE_CODE%", "boom (HTTP %RESPONSE_CODE%)")],
)
def test_with_status(status: int | str, text: str) -> None:
    assert with_status("boom", status) == text


@pytest.mark.parametrize(
    ("policy_timeout_s", "seconds"), [(60.0, 60), (2.7, 2), (1.0, 1), (0.5, 1), (0.001, 1)]
)
def test_message_timeout_is_whole_seconds_at_least_one(
    policy_timeout_s: float, seconds: int
) -> None:
    assert message_timeout_s(policy_timeout_s) == seconds
