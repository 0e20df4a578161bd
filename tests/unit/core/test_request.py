"""The parsed request a response belongs to (extproc/core/request.py), through each
dialect."""

from __future__ import annotations

import copy

import pytest

from extproc.core.request import ApiRequest
from extproc.dialects.base import Dialect
from extproc.dialects.registry import ANTHROPIC, OPENAI_CHAT
from tests.helpers.dialects import anthropic_body, api_request, openai_body


def body_of(dialect: Dialect) -> dict[str, object]:
    return anthropic_body() if dialect is ANTHROPIC else openai_body()


def test_fields_and_api_name() -> None:
    request = ApiRequest(
        dialect=OPENAI_CHAT, path="/v1/chat/completions", model="gpt-4o", stream=True, body={}
    )
    assert request.api == "openai" and api_request({}).api == "anthropic"
    assert request.state == {} and not request.body_changed
    request.state["seen"] = 1  # scratch space of its own
    assert ApiRequest(OPENAI_CHAT, "/p", "m", False, {}).state == {}


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT], ids=lambda d: d.name)
def test_texts_through_the_dialect(dialect: Dialect) -> None:
    body = body_of(dialect)
    request = api_request(body, dialect)
    assert list(request.texts()) == list(dialect.texts(body))
    assert list(request.texts())  # both bodies have texts


@pytest.mark.parametrize("dialect", [ANTHROPIC, OPENAI_CHAT], ids=lambda d: d.name)
def test_rewrite_texts_replaces_the_body_only_when_something_changed(dialect: Dialect) -> None:
    body = body_of(dialect)
    original = copy.deepcopy(body)
    request = api_request(body, dialect)
    assert request.rewrite_texts(lambda s: s) is False
    assert request.body is body and not request.body_changed
    assert request.rewrite_texts(str.upper) is True
    assert request.body_changed and request.body is not body
    assert list(request.texts()) == [t.upper() for t in dialect.texts(original)]
    assert body == original  # the old body is left as it was


def test_replace_body() -> None:
    request = api_request(anthropic_body())
    new = {"model": "other", "messages": []}
    request.replace_body(new)
    assert request.body is new and request.body_changed
    assert request.model == "claude-sonnet-4-5"  # the routed model stays what it was
    assert list(request.texts()) == []
