"""ext_proc workers on Unix sockets (EXTPROC_UDS_DIR): Envoy reaches them through its
`pipe` addresses, health checks included, and every API streams as over TCP."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack
from tests.helpers.stack import running_stack
from tests.helpers.streams import validate_stream

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def uds_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    # A short directory: a socket path has a limit of 107 bytes.
    sockets = Path(tempfile.mkdtemp(prefix="gw-", dir="/tmp"))
    try:
        with running_stack(
            tmp_path_factory.mktemp("uds"),
            extproc_uds_dir=str(sockets),
            extproc_workers=2,
            response_processing="always",
            validate_streams=True,
        ) as st:
            yield st, sockets
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def test_workers_listen_on_sockets_envoy_checks_them(uds_stack: tuple[Stack, Path]) -> None:
    st, sockets = uds_stack
    port = st.settings.extproc_port
    assert sorted(p.name for p in sockets.glob("*.sock")) == [
        f"extproc-{port}.sock",
        f"extproc-{port + 1}.sock",
    ]
    clusters = httpx.get(f"http://127.0.0.1:{st.settings.admin_port}/clusters", timeout=5).text
    for path in sockets.glob("*.sock"):
        # Envoy's health checks reached each worker through its socket.
        assert f"extproc::{path}::health_flags::healthy" in clusters


def test_every_api_streams_through_the_sockets(uds_stack: tuple[Stack, Path]) -> None:
    st, _ = uds_stack
    client = anthropic.Anthropic(base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=[{"role": "user", "content": "Count to 5"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.stop_reason == "end_turn"
    oai = openai.OpenAI(base_url=f"{st.base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0)
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Count to 5"}]
        )
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    raw = httpx.post(
        f"{st.base_url}/v1/responses",
        json={"model": "gpt-4o-mini", "input": "Count to 5", "stream": True},
        headers={"authorization": f"Bearer {DEV_GATEWAY_KEY}"},
        timeout=30,
    )
    assert raw.status_code == 200
    assert validate_stream("/v1/responses", {"stream": True}, raw.content) == []
