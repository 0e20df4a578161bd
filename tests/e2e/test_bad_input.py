"""Bad input gets a clear error in the API's own format, and nothing else breaks."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from extproc.config import DEV_GATEWAY_KEY
from tests.helpers.stack import MAX_REQUEST_BYTES, MAX_SSE_FRAME_BYTES
from tests.helpers.streams import frames
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

KEY = {"x-api-key": DEV_GATEWAY_KEY}
JSON = {"content-type": "application/json"}
A_BODY = {
    "model": "claude-sonnet-5-5",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "Count to 3"}],
}
O_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Count to 3"}]}


def assert_anthropic_error(resp: httpx.Response, status: int, etype: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == etype
    assert body["error"]["message"]
    return str(body["error"]["message"])


def assert_openai_error(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return str(body["error"]["message"])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "nope"},
        {"authorization": "Bearer nope"},
        {"authorization": f"Basic {DEV_GATEWAY_KEY}"},
    ],
)
def test_missing_or_wrong_key_401(http: httpx.Client, headers: dict) -> None:
    resp = http.post("/v1/messages", json=A_BODY, headers=headers)
    assert_anthropic_error(resp, 401, "authentication_error")
    resp = http.post("/v1/chat/completions", json=O_BODY, headers=headers)
    assert_openai_error(resp, 401)


def test_bearer_key_accepted(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/messages", json=A_BODY, headers={"authorization": f"Bearer {DEV_GATEWAY_KEY}"}
    )
    assert resp.status_code == 200


def test_malformed_json_400(http: httpx.Client) -> None:
    resp = http.post("/v1/messages", content=b'{"model": "x", ', headers={**KEY, **JSON})
    assert "not valid JSON" in assert_anthropic_error(resp, 400, "invalid_request_error")
    resp = http.post("/v1/chat/completions", content=b"[1, 2", headers={**KEY, **JSON})
    assert "not valid JSON" in assert_openai_error(resp, 400)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"model": "claude-sonnet-5-5", "max_tokens": 5}, "messages"),
        ({"messages": []}, "model"),
        ([1, 2], "object"),
    ],
)
def test_wrong_shape_400(http: httpx.Client, body: object, field: str) -> None:
    resp = http.post("/v1/messages", content=json.dumps(body), headers={**KEY, **JSON})
    assert field in assert_anthropic_error(resp, 400, "invalid_request_error")


def test_non_json_content_type_415(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/messages",
        content=b"model=x",
        headers={**KEY, "content-type": "application/x-www-form-urlencoded"},
    )
    assert_anthropic_error(resp, 415, "invalid_request_error")
    resp = http.post(
        "/v1/chat/completions", content=b"hi", headers={**KEY, "content-type": "text/plain"}
    )
    assert_openai_error(resp, 415)


def test_unknown_path_404_and_wrong_method_405(http: httpx.Client) -> None:
    assert_anthropic_error(http.post("/v1/nope", json={}, headers=KEY), 404, "not_found_error")
    assert_openai_error(http.get("/v1/chat/completions", headers=KEY), 405)


def test_ten_mib_request_passes(http: httpx.Client) -> None:
    filler = "x" * (10 * 1024 * 1024)
    body = {
        **A_BODY,
        "messages": [
            {"role": "user", "content": "Count to 3"},
            {"role": "assistant", "content": filler},
            {"role": "user", "content": "Count to 3"},
        ],
    }
    resp = http.post("/v1/messages", json=body, headers=KEY)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["content"][0]["text"] == "1, 2, 3"


def test_body_over_limit_413(http: httpx.Client) -> None:
    big = b'{"pad": "' + b"x" * (MAX_REQUEST_BYTES + 10) + b'"}'
    resp = http.post("/v1/messages", content=big, headers={**KEY, **JSON})
    assert "exceeds" in assert_anthropic_error(resp, 413, "request_too_large")


def test_chunked_body_over_limit_413(http: httpx.Client) -> None:
    """Without content-length Envoy's buffer limit answers; still in the API's format."""
    piece = b"x" * (1024 * 1024)

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"pad": "'
        for _ in range(MAX_REQUEST_BYTES // len(piece) + 2):
            yield piece
        yield b'"}'

    resp = http.post("/v1/chat/completions", content=chunks(), headers={**KEY, **JSON})
    assert resp.status_code == 413
    assert_openai_error(resp, 413)


def test_upstream_error_status_passes_unchanged(http: httpx.Client, mock_url: str) -> None:
    headers = {**KEY, "x-mock-error": "500"}
    via = http.post("/v1/chat/completions", json=O_BODY, headers=headers)
    direct = http.post(f"{mock_url}/v1/chat/completions", json=O_BODY, headers=headers)
    assert via.status_code == direct.status_code == 500
    assert via.content == direct.content


def _stream(http: httpx.Client, path: str, body: dict, headers: dict) -> bytes:
    with http.stream("POST", path, json={**body, "stream": True}, headers={**KEY, **headers}) as r:
        assert r.status_code == 200
        return r.read()


def test_upstream_ends_early_gets_error_event(http: httpx.Client) -> None:
    out = _stream(http, "/v1/messages", A_BODY, {"x-mock-truncate-after": "4"})
    got = frames(out)
    assert [f.event for f in got].count("message_start") == 1
    assert out.endswith(b"\n\n") and got[-1].terminated
    last = got[-1]
    assert last.raw.startswith(b"event: error\ndata: ") and last.event == "error"
    assert json.loads(last.data or "")["error"]["type"] == "api_error"

    out = _stream(http, "/v1/chat/completions", O_BODY, {"x-mock-truncate-after": "2"})
    got = frames(out)
    assert got[-1].data == "[DONE]" and got[-1].terminated
    assert json.loads(got[-2].data or "")["error"]["message"]


def test_upstream_dies_mid_stream_no_hang(http: httpx.Client) -> None:
    """A reset upstream resets the client too: an error, promptly, never a hang."""
    started = time.monotonic()
    headers = {**KEY, "x-mock-die-after": "4", "x-mock-chunk-delay-ms": "20"}
    try:
        with http.stream(
            "POST", "/v1/messages", json={**A_BODY, "stream": True}, headers=headers
        ) as resp:
            resp.read()
    except httpx.HTTPError:
        pass  # headers had gone out; the connection was reset mid-body
    else:
        # Envoy saw the reset before the client got anything: an in-format 502.
        assert_anthropic_error(resp, 502, "api_error")
    assert time.monotonic() - started < 10


def test_client_disconnect_releases_request(base_url: str, log_dir: Path) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    marker = f"disconnect-{time.time_ns()}"
    body = json.dumps({**A_BODY, "stream": True})
    request = (
        f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {DEV_GATEWAY_KEY}\r\n"
        f"x-request-id: {marker}\r\n"
        f"content-type: application/json\r\nx-mock-chunk-delay-ms: 200\r\n"
        f"x-mock-chunking: random:1\r\ncontent-length: {len(body)}\r\n\r\n{body}"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        assert b"200 OK" in sock.recv(4096)
    log = log_dir / "extproc.log"
    # Envoy ends the ext_proc stream (cancel or half-close) and the server drops the request.
    wait_for(
        lambda: any(
            marker in line and ('"outcome":"cancelled"' in line or '"outcome":"incomplete"' in line)
            for line in log.read_text().splitlines()
        ),
        "ext_proc to release the abandoned request",
    )


@pytest.mark.parametrize("path,body", [("/v1/messages", A_BODY), ("/v1/chat/completions", O_BODY)])
def test_garbage_sse_passes_through_unchanged(
    http: httpx.Client, mock_url: str, path: str, body: dict
) -> None:
    headers = {**KEY, "x-mock-script": "garbage"}
    direct = http.post(f"{mock_url}{path}", json={**body, "stream": True}, headers=headers)
    via = _stream(http, path, body, {"x-mock-script": "garbage"})
    assert via == direct.content
    assert b"{not json at all" in via


@pytest.mark.parametrize("path,body", [("/v1/messages", A_BODY), ("/v1/chat/completions", O_BODY)])
@pytest.mark.parametrize("chunking", [{}, {"x-mock-chunking": "random:3"}])
def test_event_over_frame_limit_fails_in_format(
    http: httpx.Client, path: str, body: dict, chunking: dict
) -> None:
    size = MAX_SSE_FRAME_BYTES + 1000
    out = _stream(http, path, body, {"x-mock-script": f"giant-event:{size}", **chunking})
    assert len(out) < 4096  # the oversized event is not forwarded
    assert b"larger than" in out
    got = frames(out)
    if path == "/v1/messages":
        assert out.startswith(b"event: error\ndata: ") and got[0].event == "error"
        assert "larger than" in json.loads(got[0].data or "")["error"]["message"]
    else:
        assert out.endswith(b"data: [DONE]\n\n") and got[-1].data == "[DONE]"
        assert "larger than" in json.loads(got[-2].data or "")["error"]["message"]


def test_large_event_under_limit_passes(http: httpx.Client) -> None:
    size = MAX_SSE_FRAME_BYTES - 1000
    out = _stream(http, "/v1/messages", A_BODY, {"x-mock-script": f"giant-event:{size}"})
    assert out.count(b"x" * 1000) >= (size // 1000) - 1
    assert out.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert max(len(f.raw) for f in frames(out)) >= size  # the large event arrived whole


def test_html_error_page_becomes_in_format_error(http: httpx.Client) -> None:
    resp = http.post("/v1/messages", json=A_BODY, headers={**KEY, "x-mock-script": "html-error"})
    assert "502 Bad Gateway" in assert_anthropic_error(resp, 502, "api_error")
