"""The default for a noop chain: response bodies never enter ext_proc (Envoy streams them
straight through), a small request body neither (Envoy reads its model for ext_proc),
and a policy chain that needs bodies refuses to run without them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.contract import FACTS_MAX_BODY_BYTES
from extproc.keys import digest
from extproc.stack import Stack
from tests.helpers.stack import MAX_REQUEST_BYTES, envoy_stats, running_stack
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

BODY = {
    "model": "claude-sonnet-5-5",
    "max_tokens": 50,
    "stream": True,
    "messages": [{"role": "user", "content": "Count to 5"}],
}
KEY = {"x-api-key": DEV_GATEWAY_KEY}


RESTRICTED_KEY = "sk-gw-test-claude-only"


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("fast")
    (log_dir / "keys.yaml").write_text(
        "callers:\n"
        f"  - {{name: dev, key_sha256: '{digest(DEV_GATEWAY_KEY).hex()}'}}\n"
        f"  - {{name: claude-only, key_sha256: '{digest(RESTRICTED_KEY).hex()}', "
        "allowed_models: ['claude-*']}\n"
    )
    with running_stack(log_dir, keys_file=str(log_dir / "keys.yaml")) as st:
        yield st


def messages_sent(st: Stack, send: Callable[[], object]) -> int:
    """gRPC messages Envoy sent ext_proc while `send` ran."""
    admin = f"http://127.0.0.1:{st.settings.admin_port}"
    before = envoy_stats(admin, "ext_proc.stream_msgs_sent")
    send()
    after = envoy_stats(admin, "ext_proc.stream_msgs_sent")
    return sum(after.values()) - sum(before.values())


@pytest.fixture(scope="module")
def mismatched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("mismatch")
    config = log_dir / "policy.yaml"
    config.write_text("policies: [{type: all_caps}]\n")
    # Envoy rendered without response bodies, ext_proc configured with a text policy.
    with running_stack(log_dir, response_body=False, policy_config=str(config)) as st:
        yield st


def test_noop_bodies_skip_ext_proc_and_stay_identical(fast: Stack) -> None:
    admin = f"http://127.0.0.1:{fast.settings.admin_port}"
    headers = {**KEY, "x-mock-chunking": "random:8", "x-mock-chunk-delay-ms": "1"}
    before = envoy_stats(admin, "ext_proc.stream_msgs_sent")
    via = httpx.post(f"{fast.base_url}/v1/messages", json=BODY, headers=headers).content
    direct = httpx.post(
        f"http://127.0.0.1:{fast.settings.mock_port}/v1/messages", json=BODY, headers=headers
    ).content
    after = envoy_stats(admin, "ext_proc.stream_msgs_sent")
    assert via == direct
    sent = sum(after.values()) - sum(before.values())
    # The request headers with the model Envoy read; the body and the response bypass
    # ext_proc.
    assert sent == 1


def test_sdk_works_on_the_fast_path(fast: Stack) -> None:
    client = anthropic.Anthropic(base_url=fast.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)

    def stream() -> None:
        with client.messages.stream(**{k: v for k, v in BODY.items() if k != "stream"}) as s:
            assert s.get_final_message().content[0].text == "1, 2, 3, 4, 5"  # type: ignore[union-attr]

    assert messages_sent(fast, stream) == 1


def test_openai_sdks_on_the_fast_path(fast: Stack) -> None:
    client = openai.OpenAI(base_url=f"{fast.base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0)
    said: list[str] = []

    def chat() -> None:
        chunks = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Count to 3"}], stream=True
        )
        said.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

    def responses() -> None:
        said.append(client.responses.create(model="gpt-4o", input="Count to 3").output_text)

    assert messages_sent(fast, chat) == 1
    assert messages_sent(fast, responses) == 1
    assert said == ["1, 2, 3", "1, 2, 3"]


@pytest.mark.parametrize(
    "ctype", ["application/json; charset=utf-8", "Application/JSON", "application/json"]
)
def test_json_however_spelled_takes_one_message(fast: Stack, ctype: str) -> None:
    def send() -> None:
        resp = httpx.post(
            f"{fast.base_url}/v1/messages",
            content=httpx.Request("POST", "/", json={**BODY, "stream": False}).content,
            headers={**KEY, "content-type": ctype},
        )
        assert resp.json()["content"][0]["text"] == "1, 2, 3, 4, 5"

    assert messages_sent(fast, send) == 1


def test_bodies_envoy_does_not_read_come_to_ext_proc(fast: Stack) -> None:
    """Over FACTS_MAX_BODY_BYTES, or chunked (no length): the body is asked for, and
    the request is answered as any other."""
    client = anthropic.Anthropic(base_url=fast.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)
    pad = "x" * FACTS_MAX_BODY_BYTES
    long = {**BODY, "stream": False, "system": pad}

    def large() -> None:
        msg = client.messages.create(**long)  # type: ignore[call-overload]
        assert msg.content[0].text == "1, 2, 3, 4, 5"

    def chunked() -> None:
        body = httpx.Request("POST", "/", json={**BODY, "stream": False}).content
        resp = httpx.post(
            f"{fast.base_url}/v1/messages",
            content=iter([body[:10], body[10:]]),
            headers={**KEY, "content-type": "application/json"},
        )
        assert resp.json()["content"][0]["text"] == "1, 2, 3, 4, 5"

    assert messages_sent(fast, large) == 2
    assert messages_sent(fast, chunked) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"messages": []}', "model: a model name is required"),
        (b'{"model": 7, "messages": []}', "model: a model name is required"),
    ],
)
def test_bodies_envoy_cannot_route_get_the_gateways_own_400(
    fast: Stack, body: bytes, message: str
) -> None:
    resp = httpx.post(
        f"{fast.base_url}/v1/messages",
        content=body,
        headers={**KEY, "content-type": "application/json"},
    )
    assert resp.status_code == 400
    error = resp.json()
    assert error["type"] == "error" and error["error"]["message"].startswith(message)


def test_a_model_the_caller_may_not_use_is_refused_from_the_facts(fast: Stack) -> None:
    client = anthropic.Anthropic(base_url=fast.base_url, api_key=RESTRICTED_KEY, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError, match="may not use model 'gpt-4o'"):
        client.messages.create(**{**BODY, "stream": False, "model": "gpt-4o"})  # type: ignore[call-overload]
    # A second `model` key: Envoy reads the last one, as the gateway's own parser and
    # the providers' do, so the one refused is the one that would have gone upstream.
    doubled = b'{"model": "claude-sonnet-5-5", "model": "gpt-4o", "max_tokens": 5, "messages": []}'
    resp = httpx.post(
        f"{fast.base_url}/v1/messages",
        content=doubled,
        headers={"x-api-key": RESTRICTED_KEY, "content-type": "application/json"},
    )
    assert resp.status_code == 403
    assert client.messages.create(**{**BODY, "stream": False}).content  # type: ignore[call-overload]


def test_envoy_413_in_format_without_ext_proc_response(fast: Stack) -> None:
    """Envoy's own 413 (chunked body over its buffer limit) is JSON via local_reply_config."""

    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(MAX_REQUEST_BYTES // (1 << 20) + 2):
            yield b"x" * (1 << 20)
        yield b'"}'

    resp = httpx.post(
        f"{fast.base_url}/v1/chat/completions",
        content=chunks(),
        headers={**KEY, "content-type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"
    resp = httpx.post(
        f"{fast.base_url}/v1/messages",
        content=chunks(),
        headers={**KEY, "content-type": "application/json"},
    )
    assert resp.json()["error"]["type"] == "request_too_large"


def test_provider_error_page_passes_untouched(fast: Stack) -> None:
    """With no response policy, even a provider's HTML error page is passed as it is."""
    resp = httpx.post(
        f"{fast.base_url}/v1/messages", json=BODY, headers={**KEY, "x-mock-script": "html-error"}
    )
    assert resp.status_code == 502 and b"502 Bad Gateway" in resp.content


def test_policies_refuse_to_run_without_bodies(mismatched: Stack) -> None:
    client = anthropic.Anthropic(
        base_url=mismatched.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0
    )
    with pytest.raises(anthropic.InternalServerError, match="render the Envoy config again") as err:
        client.messages.create(**{k: v for k, v in BODY.items() if k != "stream"})
    # 503 with retry-after: a connection opened before a reload retries onto the new one.
    assert err.value.status_code == 503
    assert err.value.response.headers["retry-after"] == "1"


def test_requests_spread_over_extproc_workers(tmp_path_factory: pytest.TempPathFactory) -> None:
    log_dir = tmp_path_factory.mktemp("workers")
    with running_stack(log_dir, extproc_workers=2) as st:
        client = anthropic.Anthropic(base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)
        for _ in range(12):
            msg = client.messages.create(**{k: v for k, v in BODY.items() if k != "stream"})
            assert msg.content[0].text == "1, 2, 3, 4, 5"  # type: ignore[union-attr]

        def served() -> list[int]:
            return [
                (log_dir / name).read_text().count('"outcome":"ok"')
                for name in ("extproc.log", "extproc-1.log")
            ]

        # Each process logs a request when Envoy closes its stream, just after the answer.
        wait_for(lambda: sum(served()) == 12, "both workers to log their requests")
        assert min(served()) > 0  # Envoy balanced the two processes
