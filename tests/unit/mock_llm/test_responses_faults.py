"""The mock's `x-mock-*` faults and scripts on `/v1/responses`, seen on the wire and
through the official SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.helpers.responses_mock import (
    deltas,
    events,
    is_typed,
    raw_stream,
    serve_mock,
    stream_problems,
)

MODEL = "gpt-5"
BODY: dict[str, Any] = {"model": MODEL, "input": "Count to 4"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_mock() as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0)


@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_line_endings(base_url: str, client: openai.OpenAI, ending: str) -> None:
    sep = {"crlf": b"\r\n", "cr": b"\r"}[ending]
    hdr = {"x-mock-line-ending": ending, "x-mock-chunking": "random:7"}
    raw = raw_stream(base_url, BODY, hdr)
    assert raw.startswith(b"event: response.created" + sep + b"data: {")
    assert raw.endswith(b"}" + sep + sep)
    assert b"\n" not in raw.replace(b"\r\n", b"") if ending == "crlf" else b"\n" not in raw
    assert stream_problems(raw) == [] and "".join(deltas(raw)) == "1, 2, 3, 4"
    with client.responses.stream(**BODY, extra_headers=hdr) as stream:
        assert stream.get_final_response().output_text == "1, 2, 3, 4"


def test_random_chunking_is_byte_identical(base_url: str) -> None:
    body = {**BODY, "stream": True, "reasoning": {"summary": "auto"}}
    plain = raw_stream(base_url, body)
    pieces = []
    hdr = {"x-mock-chunking": "random:42", "x-mock-chunk-delay-ms": "1"}
    with httpx.stream("POST", base_url + "/v1/responses", json=body, headers=hdr) as resp:
        pieces = list(resp.iter_raw())
    assert b"".join(pieces) == plain
    assert len(pieces) > 10 and max(len(p) for p in pieces) <= 64  # flushed write by write


def test_truncate_after(base_url: str, client: openai.OpenAI) -> None:
    hdr = {"x-mock-truncate-after": "5"}
    raw = raw_stream(base_url, BODY, hdr)
    assert [p["sequence_number"] for _, p in events(raw)] == [0, 1, 2, 3, 4]
    assert raw.endswith(b"\n\n") and b"response.completed" not in raw
    assert len(list(client.responses.create(**BODY, stream=True, extra_headers=hdr))) == 5
    with (
        client.responses.stream(**BODY, extra_headers=hdr) as stream,
        pytest.raises(RuntimeError, match=r"Didn't receive a `response\.completed`"),
    ):
        stream.get_final_response()


def test_die_after(base_url: str, client: openai.OpenAI) -> None:
    hdr = {"x-mock-die-after": "3"}
    with pytest.raises(httpx.RemoteProtocolError):
        raw_stream(base_url, BODY, hdr)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for event in client.responses.create(**BODY, stream=True, extra_headers=hdr):
            seen.append(event.type)
    assert seen[:2] == ["response.created", "response.in_progress"]


def test_stall(base_url: str) -> None:
    started = time.monotonic()
    raw_stream(base_url, BODY, {"x-mock-stall-ms": "150"})
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize(
    "kind,status,error,code",
    [
        ("overloaded", 503, openai.InternalServerError, "server_overloaded"),
        ("429", 429, openai.RateLimitError, "rate_limit_exceeded"),
        ("500", 500, openai.InternalServerError, None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_http_errors_come_before_the_stream(
    client: openai.OpenAI,
    kind: str,
    status: int,
    error: type[openai.APIStatusError],
    code: str | None,
    stream: bool,
) -> None:
    with pytest.raises(error) as err:
        client.responses.create(**BODY, stream=stream, extra_headers={"x-mock-error": kind})
    assert isinstance(err.value, openai.APIStatusError)
    assert err.value.status_code == status and err.value.code == code
    assert err.value.response.headers["x-request-id"].startswith("req_")
    assert err.value.response.headers["content-type"] == "application/json"
    if kind == "429":
        assert err.value.response.headers["retry-after"] == "7"


def test_overloaded_midstream(base_url: str, client: openai.OpenAI) -> None:
    hdr = {"x-mock-error": "overloaded-midstream"}
    raw = raw_stream(base_url, BODY, hdr)
    assert stream_problems(raw) == []  # unfinished items are allowed before response.failed
    got = [p for _, p in events(raw)]
    assert [p["type"] for p in got[-3:]] == [
        "response.output_text.delta",
        "error",
        "response.failed",
    ]
    error = got[-2]
    assert error["error"] == {
        "message": "Overloaded",
        "type": "server_error",
        "param": None,
        "code": "server_error",
    }
    assert (error["code"], error["message"], error["param"]) == ("server_error", "Overloaded", None)
    failed = got[-1]["response"]
    assert failed["id"] == got[0]["response"]["id"] and failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "Overloaded"}
    seen = []
    with pytest.raises(openai.APIError, match="Overloaded") as err:  # the nested shape raises
        for event in client.responses.create(**BODY, stream=True, extra_headers=hdr):
            seen.append(event.type)
    assert seen[-1] == "response.output_text.delta" and err.value.code == "server_error"
    with (
        pytest.raises(openai.APIError, match="Overloaded"),
        client.responses.stream(**BODY, extra_headers=hdr) as s,
    ):
        s.get_final_response()


def test_overloaded_midstream_after_a_finished_item(base_url: str) -> None:
    body = {**BODY, "reasoning": {"effort": "low"}}  # the reasoning item has no deltas
    got = [
        p for _, p in events(raw_stream(base_url, body, {"x-mock-error": "overloaded-midstream"}))
    ]
    assert [i["type"] for i in got[-1]["response"]["output"]] == ["reasoning"]


def test_script_garbage(base_url: str, client: openai.OpenAI) -> None:
    raw = raw_stream(base_url, BODY, {"x-mock-script": "garbage"})
    got = events(raw)
    assert got[0][0] == got[0][1]["type"] == "response.created"
    assert got[-1][0] == got[-1][1]["type"] == "response.completed"
    assert [p["sequence_number"] for _, p in got] == [0, 1, 2]
    assert got[0][1]["response"]["id"] == got[-1][1]["response"]["id"]
    assert b"{not json at all" in raw and b"event: weird" in raw
    # The SDK parses every data line as JSON and gives up on the junk.
    with pytest.raises(json.JSONDecodeError):
        list(
            client.responses.create(**BODY, stream=True, extra_headers={"x-mock-script": "garbage"})
        )


def test_script_giant_event(base_url: str, client: openai.OpenAI) -> None:
    size = 300_000
    hdr = {"x-mock-script": f"giant-event:{size}"}
    raw = raw_stream(base_url, BODY, hdr)
    assert stream_problems(raw) == [] and [len(d) for d in deltas(raw)] == [size]
    with client.responses.stream(**BODY, extra_headers=hdr) as stream:
        assert all(is_typed(e) for e in stream)
        assert stream.get_final_response().output_text == "x" * size


def test_script_html_error_and_unknown(base_url: str, client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client.responses.create(**BODY, extra_headers={"x-mock-script": "html-error"})
    assert err.value.status_code == 502
    assert err.value.response.headers["content-type"].startswith("text/html")
    resp = httpx.post(base_url + "/v1/responses", json=BODY, headers={"x-mock-script": "nope"})
    assert resp.status_code == 400 and "x-mock-script" in resp.json()["error"]["message"]


def test_bad_fault_header(base_url: str) -> None:
    resp = httpx.post(base_url + "/v1/responses", json=BODY, headers={"x-mock-error": "nope"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
