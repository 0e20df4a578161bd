"""Run-time stream validation (`validate_streams`): what the client received, checked by
the dialect's validator, every violation logged with the request's path and model."""

from __future__ import annotations

import logging

import pytest

from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from extproc.stream_check import OutputValidator
from tests.helpers.pipeline import split, stream_of

# Each stream with one thing wrong: no terminator.
BROKEN = {
    ANTHROPIC: stream_of(ANTHROPIC).replace(
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n', b""
    ),
    OPENAI_CHAT: stream_of(OPENAI_CHAT).replace(b"data: [DONE]\r\n\r\n", b""),
}


def validator(dialect: Dialect) -> OutputValidator:
    request = ApiRequest(
        dialect=dialect, path=dialect.path, model="model-7", stream=True, body={"messages": []}
    )
    return OutputValidator(dialect.validator(request), request)


def feed(check: OutputValidator, data: bytes) -> None:
    chunks = split(data, [7, 100, 101, 250])
    for i, chunk in enumerate(chunks):
        check.feed(chunk, i == len(chunks) - 1)


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
def test_a_valid_stream_has_no_violations(
    dialect: Dialect, caplog: pytest.LogCaptureFixture
) -> None:
    check = validator(dialect)
    feed(check, stream_of(dialect))
    assert (check.count, check.violations) == (0, [])
    assert "stream violation" not in caplog.text


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT])
def test_each_violation_is_logged_with_path_and_model_and_counted(
    dialect: Dialect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="extproc.validate")
    check = validator(dialect)
    check.feed(BROKEN[dialect], False)
    assert check.count == 0 and check.violations == []  # judged at the end only
    check.feed(b"", True)
    assert check.count == len(check.violations) >= 1
    logged = [r.getMessage() for r in caplog.records if r.name == "extproc.validate"]
    assert logged == [
        f"stream violation {dialect.path} model=model-7: {v}" for v in check.violations
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "extproc.validate")


def test_several_violations_are_each_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="extproc.validate")
    check = validator(ANTHROPIC)
    stray = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":5,'
        b'"delta":{"type":"text_delta","text":"x"}}\n\n'
    )
    feed(check, stray + BROKEN[ANTHROPIC])
    assert check.count >= 2
    assert len([r for r in caplog.records if r.name == "extproc.validate"]) == check.count
