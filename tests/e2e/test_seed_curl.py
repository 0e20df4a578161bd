"""The two curl commands of the bug report (../shared/seed/), copied exactly.

Only the port may differ. The first one is the reproduction of the original bug
(`message_start` repeated forever, no `content_block_delta`); the second is the
OpenAI-compatible workaround it mentions.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from extproc.stack import Stack
from tests.helpers.streams import anthropic_text, frames, openai_text, payloads

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed"),
]

SEED_STREAMING = """curl -sf http://localhost:8000/v1/messages \\
-H 'Content-Type: application/json' \\
-H 'Authorization: Bearer sk-luthien-dev-key' \\
-H 'anthropic-version: 2023-06-01' \\
-d '{
"model": "claude-sonnet-4-5",
"messages": [{"role": "user", "content": "Count to 3"}],
"max_tokens": 50,
"stream": true
}' | head -10"""

SEED_OPENAI = """curl http://localhost:8000/v1/chat/completions \\
-H 'Content-Type: application/json' \\
-H 'Authorization: Bearer sk-luthien-dev-key' \\
-d '{
"model": "claude-sonnet-4-5",
"messages": [{"role": "user", "content": "Count to 3"}],
"stream": true,
"max_tokens": 50
}'"""


def _run(command: str, stack: Stack) -> str:
    command = command.replace("localhost:8000", f"localhost:{stack.settings.gateway_port}")
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, timeout=30, check=False
    )
    # `head` may close the pipe early; anything else failing is a real failure.
    assert done.returncode in (0, 141, 23), done.stderr.decode()
    return done.stdout.decode()


def _events(text: str) -> list[str]:
    return [frame.event for frame in frames(text.encode()) if frame.event is not None]


def test_seed_streaming_command_head(stack: Stack) -> None:
    out = _run(SEED_STREAMING, stack)
    names = _events(out)
    assert names.count("message_start") == 1 and names[0] == "message_start"
    assert "content_block_delta" in names


def test_seed_streaming_command_full_sequence(stack: Stack) -> None:
    out = _run(SEED_STREAMING.removesuffix(" | head -10"), stack)
    names = _events(out)
    assert names.count("message_start") == 1
    body = [n for n in names if n != "ping"]
    assert body[:2] == ["message_start", "content_block_start"]
    assert body[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [n for n in body[2:-3]]
    assert deltas and set(deltas) == {"content_block_delta"}
    assert anthropic_text(out.encode()) == "1, 2, 3"


def test_seed_openai_workaround_command(stack: Stack) -> None:
    out = _run(SEED_OPENAI, stack)
    datas = [frame.data for frame in frames(out.encode()) if frame.data is not None]
    assert datas[-1] == "[DONE]"
    chunks = payloads(out.encode())
    assert len(chunks) == len(datas) - 1  # every event but [DONE] is a JSON chunk
    assert openai_text(out.encode()) == "1, 2, 3"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
