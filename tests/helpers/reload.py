"""Hot reload in the end-to-end tests: policy files written the ways operators write
them, streams whose text says which chain served them, the workers' own word that they
reloaded, and `llm-gateway run` as a child whose output is read as it comes."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import openai

from extproc.stack import Stack
from tests.helpers.wait import wait_for

A_MODEL = "claude-sonnet-4-6"
O_MODEL = "gpt-4o-mini"
# The mock repeats what follows "Repeat after me:" in pieces of 2 to 5 characters, one
# event each, so "Hello" is often split across events and the chain must reassemble it.
WORDS = 30


def chain(word: str, extra: str = "") -> str:
    """A policy file whose one policy turns every "Hello" into `word`."""
    return (
        "policies:\n"
        "  - type: string_replacement\n"
        f"    replacements: [{{pattern: Hello, replacement: {word}}}]\n"
        f"{extra}"
    )


# A misspelt field: the file, entry and field must be named, and nothing changes.
BAD_CHAIN = (
    "policies:\n"
    "  - type: string_replacement\n"
    "    replacements: [{pattern: Hello, replacment: CCC}]\n"
)
BAD_FIELD = "replacements[0]"


def roomy(text: str, size: int = 512) -> str:
    """`text` padded with a comment to `size` bytes: room for `write_unseen` to write a
    longer file in its place later."""
    padding = size - len(text.encode()) - 2
    assert padding >= 0
    return text + "#" + "x" * padding + "\n"


def prompt(words: int = WORDS) -> str:
    return "Repeat after me: " + " ".join(["Hello world"] * words)


def expected(word: str, words: int = WORDS) -> str:
    return " ".join([f"{word} world"] * words)


def replace_file(path: Path, text: str) -> None:
    """Write a temporary file beside `path` and rename it over it, as editors and
    ConfigMap updates do: readers see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_unseen(path: Path, text: str) -> None:
    """Change `path` so that no file watcher notices: the same inode, size (padded with
    a YAML comment) and modification time. Only an explicit reload (SIGHUP, `llm-gateway
    reload`, the admin API) can then apply it."""
    before = path.stat()
    with open(path, "r+") as handle:
        handle.write(roomy(text, before.st_size))
        handle.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


def anthropic_stream(
    client: anthropic.Anthropic, text: str, delay_ms: int = 0, model: str = A_MODEL
) -> tuple[str, str | None]:
    """A streamed Messages call: its text and the final message's stop reason."""
    headers = {"x-mock-chunk-delay-ms": str(delay_ms)}
    with client.messages.stream(
        model=model,
        max_tokens=4096,
        messages=[{"role": "user", "content": text}],
        extra_headers=headers,
    ) as stream:
        got = "".join(stream.text_stream)
        final = stream.get_final_message()
    return got, final.stop_reason


def openai_stream(
    client: openai.OpenAI, text: str, delay_ms: int = 0, model: str = O_MODEL
) -> tuple[str, str | None]:
    """A streamed chat completion: its text and its finish reason."""
    parts: list[str] = []
    finish = None
    for chunk in client.chat.completions.create(
        model=model,
        stream=True,
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-mock-chunk-delay-ms": str(delay_ms)},
    ):
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    return "".join(parts), finish


def ask(client: anthropic.Anthropic, text: str = "Repeat after me: Hello world") -> str:
    """One short, non-streamed Messages call's text."""
    reply = client.messages.create(
        model=A_MODEL, max_tokens=100, messages=[{"role": "user", "content": text}]
    )
    block = reply.content[0]
    assert block.type == "text"
    return block.text


_RELOADED = re.compile(r"reloaded: configuration (\d+) serves new requests")


def worker_generations(st: Stack) -> list[int]:
    """The configuration each ext_proc worker last said it serves (1: the first)."""
    assert st.log_dir is not None
    out = []
    for i in range(st.settings.extproc_workers):
        name = "extproc" if i == 0 else f"extproc-{i}"
        text = (st.log_dir / f"{name}.log").read_text(errors="replace")
        out.append(max((int(n) for n in _RELOADED.findall(text)), default=1))
    return out


def wait_workers(st: Stack, generation: int, timeout: float = 2.0) -> float:
    """Seconds until every worker serves `generation`; fails past `timeout`."""
    began = time.monotonic()
    wait_for(
        lambda: all(g >= generation for g in worker_generations(st)),
        f"every worker at configuration {generation}",
        timeout,
    )
    return time.monotonic() - began


def reload_ok(st: Stack) -> float:
    """Reload `st` and wait until every worker took it; returns how long that took."""
    result = st.reload()
    assert result.ok, result.message
    return wait_workers(st, result.generation)


def until(check: Callable[[], bool], what: str, timeout: float) -> float:
    """Seconds until `check` holds; fails past `timeout`."""
    began = time.monotonic()
    wait_for(check, what, timeout)
    return time.monotonic() - began
