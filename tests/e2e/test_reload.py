"""Hot reload end to end, through the real Envoy: the policy and keys files changed while
the gateway serves, by `Stack.reload()`, by `llm-gateway run` watching its files or
taking SIGHUP, by `llm-gateway reload`, and by the admin API.

What a reload must keep: no request fails; a request keeps the chain it started with
(a stream's text is all old or all new, never a mix); requests that start once the
workers have reloaded get the new chain; a bad file changes nothing."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import SecretStr

from extproc.config import DEV_GATEWAY_KEY
from extproc.keys import digest
from extproc.stack import Stack, free_port
from tests.helpers.admin import ADMIN_KEY, metric, scrape_url
from tests.helpers.gateway_run import GatewayRun
from tests.helpers.providers import MockProvider
from tests.helpers.reload import (
    A_MODEL,
    BAD_CHAIN,
    BAD_FIELD,
    anthropic_stream,
    ask,
    chain,
    expected,
    openai_stream,
    prompt,
    reload_ok,
    replace_file,
    roomy,
    until,
    wait_workers,
    worker_generations,
    write_unseen,
)
from tests.helpers.stack import running_stack
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

KEYS = {name: f"sk-gw-reload-{name}" for name in ("alice", "bob", "carol")}
SECRETS = (*KEYS.values(), ADMIN_KEY)


def _keys_file(*names: str) -> str:
    return "callers:\n" + "".join(
        f"  - {{name: {n}, key_sha256: '{digest(KEYS[n]).hex()}'}}\n" for n in names
    )


BASE_POLICY = chain("AAA")
BASE_KEYS = _keys_file("alice", "bob")
# The run child's file has room for write_unseen to write any of these in its place.
RUN_BASE = roomy(BASE_POLICY)


@dataclass
class Files:
    policy: Path
    keys: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    log_dir = tmp_path_factory.mktemp("reload")
    found = Files(log_dir / "policy.yaml", log_dir / "keys.yaml")
    found.policy.write_text(BASE_POLICY)
    found.keys.write_text(BASE_KEYS)
    return found


@pytest.fixture(scope="module")
def live(files: Files) -> Iterator[Stack]:
    """Two ext_proc workers, a keys file, and the admin server (its reloads are the
    subject of test_admin_reload_of_an_embedded_stack)."""
    with running_stack(
        files.policy.parent,
        extproc_workers=2,
        policy_config=str(files.policy),
        keys_file=str(files.keys),
        gateway_admin_port=free_port(),
        gateway_admin_key=SecretStr(ADMIN_KEY),
    ) as st:
        yield st


@pytest.fixture
def gw(live: Stack, files: Files) -> Stack:
    """The shared stack, back at the base files (reloaded if a test changed them)."""
    if files.policy.read_text() != BASE_POLICY or files.keys.read_text() != BASE_KEYS:
        files.policy.write_text(BASE_POLICY)
        files.keys.write_text(BASE_KEYS)
        reload_ok(live)
    assert ask(_claude(live)) == "AAA world"
    return live


def _claude(st: Stack, who: str = "alice") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=st.base_url, api_key=KEYS[who], max_retries=0)


def _openai(st: Stack, who: str = "alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{st.base_url}/v1", api_key=KEYS[who], max_retries=0)


# -- 1. reloads under load ---------------------------------------------------------------


@dataclass
class Done:
    api: str
    began: float
    ended: float
    text: str
    end: str | None


def _at_least(items: list[Done], count: int) -> bool:
    return len(items) >= count


def test_reloads_under_streaming_load_fail_nothing_and_never_mix_chains(
    gw: Stack, files: Files
) -> None:
    stop = threading.Event()
    done: list[Done] = []
    failures: list[str] = []
    text = prompt()

    def load(api: str) -> None:
        claude, oai = _claude(gw), _openai(gw)
        while not stop.is_set():
            began = time.monotonic()
            try:
                if api == "anthropic":
                    got, end = anthropic_stream(claude, text, delay_ms=4)
                else:
                    got, end = openai_stream(oai, text, delay_ms=4)
            except Exception as exc:  # every failure is counted, none may happen
                failures.append(f"{api}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            done.append(Done(api, began, time.monotonic(), got, end))

    apis = ["anthropic"] * 4 + ["openai"] * 2
    threads = [threading.Thread(target=load, args=(api,), daemon=True) for api in apis]
    for thread in threads:
        thread.start()
    # (word, when its file was written, when every worker served it)
    phases: list[tuple[str, float, float]] = [("AAA", 0.0, 0.0)]
    try:
        wait_for(lambda: len(done) >= len(apis), "requests before the first reload", 15)
        for word in ("BBB", "AAA", "BBB", "AAA", "BBB"):
            written = time.monotonic()
            replace_file(files.policy, chain(word))
            took = reload_ok(gw)
            assert took < 2.0
            phases.append((word, written, time.monotonic()))
            # Streams that began under the old chain are still open: let the load go on.
            wanted = len(done) + len(apis)
            wait_for(partial(_at_least, done, wanted), "requests after it", 15)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    spanning = [
        d
        for d in done
        if any(d.began < ready and d.ended > written for _, written, ready in phases[1:])
    ]
    print(
        f"\nreload under load: {len(done)} streams completed, {len(spanning)} of them open "
        f"during a reload, {len(failures)} failed"
    )
    assert failures == []
    assert spanning, "no stream was open across a reload"
    variants = {"AAA": expected("AAA"), "BBB": expected("BBB")}
    for d in done:
        assert d.text in variants.values(), f"{d.api} stream mixed or lost text: {d.text[:80]}"
        assert d.end in ("end_turn", "stop"), d.end
    seen_words = {w for w, v in variants.items() for d in done if d.text == v}
    assert seen_words == {"AAA", "BBB"}
    # A request that began once every worker had reloaded got that reload's chain.
    for (word, _, ready), (_, next_written, _) in zip(
        phases, [*phases[1:], ("", float("inf"), 0.0)], strict=True
    ):
        for d in done:
            if ready < d.began and d.ended < next_written:
                assert d.text == variants[word], f"{d.api} began after the reload to {word}"


# -- 2. keys -----------------------------------------------------------------------------


def test_a_revoked_key_is_refused_and_an_added_key_works(gw: Stack, files: Files) -> None:
    assert ask(_claude(gw, "bob")) == "AAA world"
    with pytest.raises(anthropic.AuthenticationError):
        ask(_claude(gw, "carol"))

    replace_file(files.keys, _keys_file("alice"))
    began = time.monotonic()
    result = gw.reload()
    assert result.ok, result.message

    def bob_refused() -> bool:
        try:
            ask(_claude(gw, "bob"))
        except anthropic.AuthenticationError:
            return True
        return False

    wait_workers(gw, result.generation)
    assert time.monotonic() - began < 2.0
    # Every worker (Envoy alternates between them) refuses bob now; alice still works.
    for _ in range(6):
        assert bob_refused()
        assert ask(_claude(gw, "alice")) == "AAA world"
    with pytest.raises(openai.AuthenticationError):
        openai_stream(_openai(gw, "bob"), "Repeat after me: Hello")

    replace_file(files.keys, _keys_file("alice", "carol"))
    reload_ok(gw)
    for _ in range(4):
        assert ask(_claude(gw, "carol")) == "AAA world"
        assert bob_refused()


# -- 3. a bad policy file ----------------------------------------------------------------


def test_a_bad_policy_file_changes_nothing(gw: Stack, files: Files) -> None:
    generation = gw.generation
    replace_file(files.policy, BAD_CHAIN)
    result = gw.reload()
    assert not result.ok
    assert str(files.policy) in result.message
    assert "policies[0] (string_replacement)" in result.message
    assert BAD_FIELD in result.message and "replacment" in result.message
    assert result.generation == generation == gw.generation
    assert worker_generations(gw) == [generation] * 2
    for _ in range(4):
        assert ask(_claude(gw)) == "AAA world"
    got, end = anthropic_stream(_claude(gw), prompt())
    assert (got, end) == (expected("AAA"), "end_turn")

    replace_file(files.policy, chain("BBB"))
    assert reload_ok(gw) < 2.0
    for _ in range(4):
        assert ask(_claude(gw)) == "BBB world"


# -- 4. a provider added while a stream is open --------------------------------------------


def test_a_provider_added_while_a_slow_stream_is_open(
    gw: Stack, files: Files, tmp_path: Path
) -> None:
    second = MockProvider("second", tmp_path)
    try:
        outcome: dict[str, Any] = {}
        opened = threading.Event()

        def slow() -> None:
            try:
                claude = _claude(gw)
                headers = {"x-mock-chunk-delay-ms": "15"}
                with claude.messages.stream(
                    model=A_MODEL,
                    max_tokens=4096,
                    messages=[{"role": "user", "content": prompt()}],
                    extra_headers=headers,
                ) as stream:
                    parts = []
                    for piece in stream.text_stream:
                        parts.append(piece)
                        opened.set()
                    outcome["text"] = "".join(parts)
                    outcome["final"] = stream.get_final_message()
            except Exception as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                opened.set()

        thread = threading.Thread(target=slow, daemon=True)
        thread.start()
        assert opened.wait(10)
        replace_file(
            files.policy,
            chain(
                "AAA",
                f"providers:\n  second: {{api: anthropic, base_url: '{second.url}'}}\n"
                "routes:\n  - {models: ['claude-*'], provider: second}\n",
            ),
        )
        reload_ok(gw)
        assert thread.is_alive(), "the stream ended before the reload: make it slower"
        thread.join(timeout=30)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["text"] == expected("AAA")
        assert outcome["final"].stop_reason == "end_turn"
        # The open stream stayed on the stack's own mock; the next request goes to second.
        assert second.requests() == []
        assert ask(_claude(gw)) == "AAA world"
        (record,) = second.requests()
        assert record["path"] == "/v1/messages"
        assert KEYS["alice"] not in str(record["headers"])
    finally:
        second.stop()


# -- 5. every worker -----------------------------------------------------------------------


def test_every_worker_serves_the_new_chain_after_a_reload(gw: Stack, files: Files) -> None:
    assert gw.settings.extproc_workers == 2
    replace_file(files.policy, chain("BBB"))
    result = gw.reload()
    assert result.ok, result.message
    assert until(lambda: ask(_claude(gw)) == "BBB world", "the new chain", 2.0) < 2.0
    wait_workers(gw, result.generation)
    texts = [ask(_claude(gw)) for _ in range(20)]
    assert texts == ["BBB world"] * 20


# -- the admin API of a stack embedded in another process ----------------------------------


def test_an_embedded_stack_is_not_reloaded_by_its_admin_api(gw: Stack, files: Files) -> None:
    """Only the program embedding a stack can reload it (it alone updates Envoy): the
    admin API says so, and signals nobody."""
    hangups: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: hangups.append(signum))
    try:
        replace_file(files.policy, chain("BBB"))
        resp = httpx.post(
            f"{gw.admin_url}/api/reload",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
        )
        assert resp.status_code == 503, resp.text
        assert "embedded" in resp.json()["error"]["message"]
        assert ask(_claude(gw)) == "AAA world"
        assert hangups == []
    finally:
        signal.signal(signal.SIGHUP, previous)


# -- 6, 7. `llm-gateway run`: its file watch, SIGHUP, `llm-gateway reload`, the admin API --


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayRun, Path]]:
    cwd = tmp_path_factory.mktemp("run")
    policy = cwd / "policy.yaml"
    policy.write_text(RUN_BASE)
    env = {
        **os.environ,
        "GATEWAY_PORT": str(free_port()),
        "ENVOY_ADMIN_PORT": str(free_port()),
        "EXTPROC_PORT": str(free_port()),
        "MOCK_LLM_PORT": str(free_port()),
        "GATEWAY_ADMIN_PORT": str(free_port()),
        "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "POLICY_CONFIG": str(policy),
        "AUDIT_DB": str(Path(tempfile.mkdtemp(prefix="gw-reload-")) / "audit.db"),
    }
    for name in ("GATEWAY_KEYS_FILE", "GATEWAY_API_KEYS", "EXTPROC_WORKERS"):
        env.pop(name, None)
    gateway = GatewayRun(env, cwd)
    try:
        yield gateway, policy
    finally:
        gateway.stop()
        for secret in SECRETS:
            assert secret not in "".join(gateway.out + gateway.err)
    assert gateway.proc.returncode == 0, gateway.tail()


def _run_client(gateway: GatewayRun) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{gateway.env['GATEWAY_PORT']}",
        api_key=DEV_GATEWAY_KEY,
        max_retries=0,
    )


def _serves(gateway: GatewayRun, word: str) -> bool:
    return ask(_run_client(gateway)) == f"{word} world"


def _at_base(gateway: GatewayRun, policy: Path) -> None:
    """The run child back at the base file, whichever test ran before."""
    if policy.read_text() != RUN_BASE or not _serves(gateway, "AAA"):
        replace_file(policy, RUN_BASE)
        wait_for(lambda: _serves(gateway, "AAA"), "the base chain again", 10)


def test_run_reloads_a_changed_file(run: tuple[GatewayRun, Path]) -> None:
    gateway, policy = run
    _at_base(gateway, policy)
    reloads = gateway.count("llm-gateway: reloaded")
    replace_file(policy, chain("BBB"))
    # Polled every 0.25 s, settled for 0.5 s, then reloaded.
    took = until(lambda: _serves(gateway, "BBB"), "the changed file to apply", 5.0)
    print(f"\nllm-gateway run: a changed file served after {took:.2f} s")
    gateway.wait_count("llm-gateway: reloaded", reloads + 1)
    assert gateway.count("configuration files changed: reloading") >= 1


def test_reload_command_checks_then_signals(run: tuple[GatewayRun, Path]) -> None:
    gateway, policy = run
    _at_base(gateway, policy)
    refused = gateway.count("llm-gateway: reload refused, nothing changed")
    replace_file(policy, roomy(BAD_CHAIN))
    # The watcher sees the bad file too, and keeps the running chain.
    gateway.wait_count("llm-gateway: reload refused, nothing changed", refused + 1)
    assert any(str(policy) in line for line in gateway.err if "reload refused" in line)
    done = gateway.cli("reload")
    assert done.returncode != 0
    assert str(policy) in done.stderr and BAD_FIELD in done.stderr
    assert "reload sent" not in done.stdout
    assert _serves(gateway, "AAA")

    # A good file the watcher cannot see: only the command's SIGHUP can apply it.
    write_unseen(policy, chain("BBB"))
    pid = int((gateway.cwd / ".llm-gateway" / "gateway.pid").read_text())
    assert pid == gateway.proc.pid
    done = gateway.cli("reload")
    assert done.returncode == 0, done.stderr
    assert f"reload sent to process {pid}" in done.stdout
    until(lambda: _serves(gateway, "BBB"), "the reload command to apply", 5.0)


def test_sighup_reloads_run(run: tuple[GatewayRun, Path]) -> None:
    gateway, policy = run
    _at_base(gateway, policy)
    reloads = gateway.count("llm-gateway: reloaded")
    write_unseen(policy, chain("BBB"))
    assert _serves(gateway, "AAA"), "the watcher saw a change it should not"
    gateway.proc.send_signal(signal.SIGHUP)
    until(lambda: _serves(gateway, "BBB"), "SIGHUP to apply", 5.0)
    gateway.wait_count("llm-gateway: reloaded", reloads + 1)


def _admin_reload(gateway: GatewayRun, key: str | None = ADMIN_KEY) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"http://127.0.0.1:{gateway.env['GATEWAY_ADMIN_PORT']}/api/reload",
        headers=headers,
        timeout=30,
    )


def _metrics(gateway: GatewayRun) -> Any:
    return scrape_url(f"http://127.0.0.1:{gateway.env['GATEWAY_ADMIN_PORT']}")


def test_admin_api_reloads_run(run: tuple[GatewayRun, Path]) -> None:
    gateway, policy = run
    _at_base(gateway, policy)
    write_unseen(policy, chain("BBB"))
    for key in (None, "adm-wrong-key"):
        assert _admin_reload(gateway, key).status_code == 401
    assert _serves(gateway, "AAA")

    ok_before = metric(_metrics(gateway), "gateway_config_reloads_total", result="ok")
    resp = _admin_reload(gateway)
    assert resp.status_code == 200, resp.text
    assert resp.json()["reloaded"] is True and resp.json()["message"]
    assert "generation" in resp.json()
    took = until(lambda: _serves(gateway, "BBB"), "the admin reload to apply", 2.0)
    print(f"\nadmin API: the new chain served after {took:.2f} s")
    wait_for(
        lambda: metric(_metrics(gateway), "gateway_config_reloads_total", result="ok") > ok_before,
        "the workers' ok reload in /metrics",
        5,
    )
    assert metric(_metrics(gateway), "gateway_config_generation") >= 2

    write_unseen(policy, BAD_CHAIN)
    resp = _admin_reload(gateway)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["reloaded"] is False
    assert str(policy) in body["message"] and BAD_FIELD in body["message"]
    assert _serves(gateway, "BBB")


def test_a_refused_admin_reload_shows_in_metrics(run: tuple[GatewayRun, Path]) -> None:
    gateway, policy = run
    _at_base(gateway, policy)
    write_unseen(policy, BAD_CHAIN)
    assert _admin_reload(gateway).status_code == 422
    wait_for(
        lambda: metric(_metrics(gateway), "gateway_config_reloads_total", result="failed") >= 1,
        "a failed reload in /metrics",
        3,
    )


# -- a reload that switches responses on for ext_proc --------------------------------------


def test_switching_responses_on_drains_old_connections(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The first response policy changes Envoy's listener. A connection opened before it
    gets one 503 (retry-after, connection: close) instead of a response that bypasses
    the new policy; the SDK's own retry then reaches the new listener."""
    log_dir = tmp_path_factory.mktemp("flip")
    policy = log_dir / "policy.yaml"
    policy.write_text("policies: [{type: noop}]\n")
    with running_stack(log_dir, policy_config=str(policy)) as st:
        assert not st.gateway.reads_responses
        body = {
            "model": A_MODEL,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "Repeat after me: Hello world"}],
        }
        headers = {"x-api-key": DEV_GATEWAY_KEY}
        with httpx.Client(base_url=st.base_url, headers=headers, timeout=30) as raw:
            sdk = anthropic.Anthropic(base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=2)
            # Both hold a kept-alive connection to the listener as it was.
            assert raw.post("/v1/messages", json=body).json()["content"][0]["text"] == "Hello world"
            assert ask(sdk) == "Hello world"
            replace_file(policy, chain("AAA"))
            result = st.reload()
            assert result.ok and st.gateway.reads_responses
            assert result.generation is not None
            wait_workers(st, result.generation)
            first = raw.post("/v1/messages", json=body)
            assert first.status_code == 503, first.text
            assert first.headers["retry-after"] == "1"
            assert first.headers["connection"] == "close"
            assert "configuration changed" in first.json()["error"]["message"]
            # The next request opens a connection to the new listener.
            assert raw.post("/v1/messages", json=body).json()["content"][0]["text"] == "AAA world"
            assert until(lambda: ask(sdk) == "AAA world", "the SDK on the new listener", 5) < 5
