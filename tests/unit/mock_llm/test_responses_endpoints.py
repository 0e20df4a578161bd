"""The rest of the mock's OpenAI surface around Responses, and embeddings, through the
official SDK (strict validation wherever the real API's shape allows it)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.helpers.responses_mock import events, serve_mock, stream_problems, summary

RID = "resp_0123456789abcdef"
STORED_TEXT = "Hello! This is a mock response."


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_mock() as url:
        yield url


@pytest.fixture(scope="module")
def strict(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url + "/v1", api_key="x", max_retries=0, _strict_response_validation=True
    )


@pytest.fixture(scope="module")
def lax(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0)


def test_retrieve_is_stable_and_streams(base_url: str, strict: openai.OpenAI) -> None:
    got = strict.responses.retrieve(RID)
    assert got.id == RID and got.status == "completed" and got.output_text == STORED_TEXT
    assert got.output[0].id.startswith("msg_")  # type: ignore[union-attr]
    assert strict.responses.retrieve(RID) == got
    assert strict.responses.retrieve("resp_other").output[0].id != got.output[0].id  # type: ignore[union-attr]
    with strict.responses.stream(response_id=RID) as stream:
        replayed = stream.get_final_response()
    assert replayed.output_text == STORED_TEXT and summary(replayed.output) == summary(got.output)
    assert replayed.output[0].id == got.output[0].id  # type: ignore[union-attr]
    raw = httpx.get(f"{base_url}/v1/responses/{RID}", params={"stream": "true"}).content
    assert stream_problems(raw) == []
    later = httpx.get(
        f"{base_url}/v1/responses/{RID}", params={"stream": "true", "starting_after": "3"}
    )
    assert events(later.content)[0][1]["sequence_number"] == 4


def test_cancel_delete_and_input_items(base_url: str, strict: openai.OpenAI) -> None:
    cancelled = strict.responses.cancel(RID)
    assert cancelled.id == RID and cancelled.status == "cancelled" and cancelled.output == []
    strict.responses.delete(RID)  # the SDK ignores the body: raw, it is
    resp = httpx.delete(f"{base_url}/v1/responses/{RID}")
    assert resp.json() == {"id": RID, "object": "response", "deleted": True}
    page = strict.responses.input_items.list(RID)
    assert page.data == [] and page.has_more is False
    raw = httpx.get(f"{base_url}/responses/{RID}/input_items").json()
    assert raw == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


@pytest.mark.parametrize("call", ["retrieve", "cancel", "delete"])
def test_unknown_response_id_is_404(strict: openai.OpenAI, call: str) -> None:
    with pytest.raises(openai.NotFoundError, match="Response with id 'chatcmpl-1' not found"):
        getattr(strict.responses, call)("chatcmpl-1")


def test_input_tokens(base_url: str, strict: openai.OpenAI) -> None:
    counted = strict.responses.input_tokens.count(
        model="gpt-5", input="Count to 3", instructions="be terse"
    )
    assert counted.object == "response.input_tokens" and counted.input_tokens == 5
    resp = httpx.post(f"{base_url}/v1/responses/input_tokens", content=b"{nope")
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_compact(base_url: str, lax: openai.OpenAI) -> None:
    # Lax only: the real endpoint keeps the user messages, which the SDK types as
    # assistant output, so strict validation would reject the real API's answer too.
    input_ = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
    ]
    done = lax.responses.compact(model="gpt-5", input=input_)  # type: ignore[arg-type]
    assert done.object == "response.compaction" and done.id.startswith("resp_")
    assert [(i.type, getattr(i, "role", None)) for i in done.output] == [
        ("message", "user"),
        ("message", "user"),
        ("compaction", None),
    ]
    assert done.output[-1].encrypted_content.startswith("gAAAAA")  # type: ignore[union-attr]
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    resp = httpx.post(f"{base_url}/v1/responses/compact", json={"input": "x"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"


def test_embeddings(base_url: str, strict: openai.OpenAI, lax: openai.OpenAI) -> None:
    # Strict validation needs encoding_format: the SDK asks for base64 by default and
    # only decodes it after validating, which strict mode does against a float list.
    floats = strict.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    assert [d.index for d in floats.data] == [0, 1] and floats.model == "text-embedding-3-small"
    assert all(len(d.embedding) == 8 and all(-1 <= x < 1 for x in d.embedding) for d in floats.data)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.total_tokens == floats.usage.prompt_tokens > 0
    decoded = lax.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert [d.embedding for d in decoded.data] == [d.embedding for d in floats.data]
    one = lax.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=3)
    assert len(one.data) == 1 and len(one.data[0].embedding) == 3
    tokens = lax.embeddings.create(model="m", input=[1, 2, 3], encoding_format="float")
    assert len(tokens.data) == 1 and tokens.usage.prompt_tokens == 3
    for body in ({"input": "x"}, {"model": "m"}, {"model": "m", "input": ""}):
        resp = httpx.post(f"{base_url}/embeddings", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_every_request_is_recorded(base_url: str, strict: openai.OpenAI) -> None:
    httpx.delete(f"{base_url}/_mock/requests")
    strict.responses.create(model="gpt-5", input="hi", extra_headers={"X-Trace": "1"})
    strict.responses.retrieve(RID)
    strict.embeddings.create(model="m", input="hi", encoding_format="float")
    records = httpx.get(f"{base_url}/_mock/requests").json()
    assert [(r["method"], r["path"]) for r in records] == [
        ("POST", "/v1/responses"),
        ("GET", f"/v1/responses/{RID}"),
        ("POST", "/v1/embeddings"),
    ]
    assert records[0]["body"] == {"model": "gpt-5", "input": "hi"}
    assert records[0]["headers"]["x-trace"] == "1"
    httpx.delete(f"{base_url}/_mock/requests")
