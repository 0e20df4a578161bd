"""The embeddings dialect (extproc/dialects/embeddings/dialect.py): request policies
read and rewrite its input; the vectors are nobody's to rewrite."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.core.providers import ProviderApi
from extproc.core.request import ApiRequest
from extproc.dialects.registry import OPENAI_EMBEDDINGS, dialect_for
from extproc.policies.base import PolicyChain
from tests.helpers.engine import Redact

E = OPENAI_EMBEDDINGS


def test_identity_and_path() -> None:
    assert (E.name, E.path, E.provider_api) == ("embeddings", "/v1/embeddings", ProviderApi.OPENAI)
    assert dialect_for("/v1/embeddings", {"anthropic-version": "x"}) is E
    assert E.forwarded_path("/v1/embeddings") is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"input": "a"}, None),
        ({"input": ["a", "b"]}, None),
        ({"input": [[1, 2, 3]]}, None),
        ({}, "input"),
        ({"input": 3}, "input"),
    ],
)
def test_request_problem(body: dict[str, Any], problem: str | None) -> None:
    found = E.request_problem(body)
    assert (found[1] if found else None) == problem


def test_texts_and_rewrite() -> None:
    body = {"model": "m", "input": ["mail a@b.c", [1, 2], "plain"]}
    assert list(E.texts(body)) == ["mail a@b.c", "plain"]  # token arrays carry no text
    new = E.rewrite_texts(body, lambda s: s.replace("a@b.c", "[email]"))
    assert new is not None and new["input"] == ["mail [email]", [1, 2], "plain"]
    assert body["input"][0] == "mail a@b.c"  # never modified in place
    assert E.rewrite_texts(body, lambda s: s) is None
    single = E.rewrite_texts({"input": "x"}, str.upper)
    assert single == {"input": "X"}
    assert E.last_user_text(body) == "mail a@b.c\nplain"
    assert E.system_prompt(body) == "" and E.declared_tools(body) == []


def test_upstream_and_errors() -> None:
    assert E.wrong_provider("m", "openai", ProviderApi.OPENAI) is None
    assert "no embeddings endpoint" in str(
        E.wrong_provider("m", "anthropic", ProviderApi.ANTHROPIC)
    )
    assert E.credential_headers("k") == {"authorization": "Bearer k"}
    error = orjson.loads(E.error_body(400, "bad", "input"))["error"]
    assert error == {
        "message": "bad",
        "type": "invalid_request_error",
        "param": "input",
        "code": None,
    }


async def test_vectors_pass_whatever_the_chain() -> None:
    body = {"object": "list", "data": [{"embedding": [0.1, 0.2]}]}
    request = ApiRequest(E, E.path, "m", False, {"input": "x"})
    assert await E.process_message(body, PolicyChain([Redact()]), request) is body
    engine = E.stream_engine(PolicyChain([Redact()]), request)
    assert await engine.feed([]) == b"" and await engine.flush() == b""
