"""A LiteLLM streaming output guardrail doing the work of our `string_replacement` row.

Loaded *by the LiteLLM proxy* (its own virtualenv, `benchmarks/.peers-venv`), never by
the gateway: `peers/litellm_proxy.py` copies this file beside the generated config.yaml,
whose `guardrails:` entry names `litellm_guardrail.BenchReplaceGuardrail`.

It overrides `CustomGuardrail.async_post_call_streaming_iterator_hook`, the hook LiteLLM
runs over the whole response iterator of a streamed answer, and replaces MATCH with
REPLACEMENT in every text delta:

* `/v1/chat/completions`: the items are LiteLLM's parsed `ModelResponseStream` chunks;
  `choices[].delta.content` is rewritten in place.
* `/v1/messages` (Anthropic provider, LiteLLM's native messages route): the items are
  the upstream's raw SSE bytes as read from the socket (a read may hold many events or
  end inside one). The hook frames them into events, parses the JSON of every
  `content_block_delta` text delta, and re-serializes only an event whose text changed
  (its other lines, SSE comments included, are kept); complete events go out as soon as
  they are framed.

Unlike the gateway's hold-back policy it does not find a match split across two deltas
(the benchmark's word never is). Every finished stream is counted (chunks, text deltas
inspected, replacements, per stream min / max) into the JSON file named by
`$BENCH_GUARDRAIL_STATS`, rewritten at most every 0.2 s: the harness reads it to prove
the hook ran on every chunk of every stream.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from litellm.integrations.custom_guardrail import CustomGuardrail

MATCH = "benchmark"
REPLACEMENT = "test run"
STATS_ENV = "BENCH_GUARDRAIL_STATS"
FLUSH_AFTER_S = 0.2

_SEP = b"\n\n"
_DATA = b"data: "
_DELTA_TYPE = b'"content_block_delta"'


class _Stats:
    """Counters over every finished stream, by kind (sse_bytes / chunk_objects)."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, Any]] = {}
        self.path = os.environ.get(STATS_ENV)
        self.flush_pending = False

    def record(self, kind: str, chunks: int, deltas: int, replaced: int) -> None:
        k = self.kinds.setdefault(kind, {"streams": 0, "chunks": 0, "text_deltas": 0})
        k["streams"] += 1
        k["chunks"] += chunks
        k["text_deltas"] += deltas
        k["replacements"] = k.get("replacements", 0) + replaced
        for name, value in (("chunks", chunks), ("text_deltas", deltas), ("replaced", replaced)):
            k[f"min_{name}_per_stream"] = min(k.get(f"min_{name}_per_stream", value), value)
            k[f"max_{name}_per_stream"] = max(k.get(f"max_{name}_per_stream", value), value)
        if self.path and not self.flush_pending:
            self.flush_pending = True
            asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        self.flush_pending = False
        if not self.path:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as handle:
            json.dump({"pid": os.getpid(), "kinds": self.kinds}, handle)
        os.replace(tmp, self.path)


STATS = _Stats()


class _SseRewriter:
    """Frames raw SSE bytes into events and rewrites the text deltas among them."""

    def __init__(self) -> None:
        self.pending = b""
        self.deltas = 0
        self.replaced = 0

    def _event(self, event: bytes) -> bytes:
        if _DELTA_TYPE not in event:
            return event
        lines = event.split(b"\n")
        for i, line in enumerate(lines):
            if not line.startswith(_DATA):
                continue
            obj = orjson.loads(line[len(_DATA) :])
            delta = obj.get("delta") or {}
            if delta.get("type") != "text_delta":
                return event
            self.deltas += 1
            text: str = delta["text"]
            new = text.replace(MATCH, REPLACEMENT)
            if new == text:
                return event
            self.replaced += text.count(MATCH)
            delta["text"] = new
            lines[i] = _DATA + orjson.dumps(obj)
            return b"\n".join(lines)
        return event

    def feed(self, data: bytes) -> bytes:
        buf = self.pending + data if self.pending else data
        end = buf.rfind(_SEP)
        if end < 0:
            self.pending = buf
            return b""
        self.pending = buf[end + len(_SEP) :]
        events = buf[:end].split(_SEP)
        return _SEP.join(self._event(e) for e in events) + _SEP

    def flush(self) -> bytes:
        tail, self.pending = self.pending, b""
        return self._event(tail) if tail.strip() else tail


class BenchReplaceGuardrail(CustomGuardrail):
    """Replaces MATCH with REPLACEMENT in every streamed text delta."""

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: AsyncIterator[Any], request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        sse = _SseRewriter()
        chunks = deltas = replaced = 0
        raw = False
        async for item in response:
            chunks += 1
            if isinstance(item, bytes | bytearray):
                raw = True
                out = sse.feed(bytes(item))
                if out:
                    yield out
                continue
            for choice in getattr(item, "choices", None) or ():
                delta: Any = getattr(choice, "delta", None)
                content = getattr(delta, "content", None)
                if not content or not isinstance(content, str):
                    continue
                deltas += 1
                if MATCH in content:
                    replaced += content.count(MATCH)
                    delta.content = content.replace(MATCH, REPLACEMENT)
            yield item
        if raw:
            tail = sse.flush()
            if tail:
                yield tail
            deltas, replaced = sse.deltas, sse.replaced
        STATS.record("sse_bytes" if raw else "chunk_objects", chunks, deltas, replaced)
