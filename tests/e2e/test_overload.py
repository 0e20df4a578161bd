"""Overload protection end to end: a worker serving EXTPROC_MAX_STREAMS requests answers
the next one at once with its API's "overloaded, retry" (Anthropic 529
overloaded_error, OpenAI 503), with retry-after, while the streams it holds go on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack
from tests.helpers.stack import running_stack
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

MAX_STREAMS = 2
MODEL = "claude-sonnet-4-6"
LONG = "Count to 60"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Every response through ext_proc, so an open stream holds its worker's place.
    with running_stack(
        tmp_path_factory.mktemp("overload"),
        response_processing="always",
        extproc_max_streams=MAX_STREAMS,
    ) as st:
        yield st


def _claude(st: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=st.base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)


class SlowStream(threading.Thread):
    """A streamed call that holds its place until `release` is set."""

    def __init__(self, st: Stack) -> None:
        super().__init__(daemon=True)
        self.st = st
        self.started = threading.Event()
        self.release = threading.Event()
        self.text = ""
        self.stop_reason: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with _claude(self.st).messages.stream(
                model=MODEL,
                max_tokens=1024,
                messages=[{"role": "user", "content": LONG}],
                extra_headers={"x-mock-chunk-delay-ms": "20"},
            ) as stream:
                for piece in stream.text_stream:
                    self.text += piece
                    self.started.set()
                    self.release.wait(30)
                self.stop_reason = stream.get_final_message().stop_reason
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.started.set()


def test_a_full_worker_answers_overloaded_in_format(small: Stack) -> None:
    holders = [SlowStream(small) for _ in range(MAX_STREAMS)]
    for holder in holders:
        holder.start()
    try:
        wait_for(lambda: all(h.started.is_set() for h in holders), "the streams to start", 15)
        with pytest.raises(anthropic.OverloadedError) as refused:
            _claude(small).messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            )
        assert refused.value.status_code == 529
        assert refused.value.response.headers["retry-after"] == "1"
        body: Any = refused.value.response.json()
        assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
        assert "overloaded" in body["error"]["message"]
        oai = openai.OpenAI(base_url=f"{small.base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0)
        with pytest.raises(openai.InternalServerError) as refused_chat:
            oai.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        assert refused_chat.value.status_code == 503
        assert refused_chat.value.response.headers["retry-after"] == "1"
    finally:
        for holder in holders:
            holder.release.set()
        for holder in holders:
            holder.join(30)
    # The streams held meanwhile went on to their end, whole.
    for holder in holders:
        assert holder.error is None, holder.error
        assert holder.stop_reason == "end_turn"
        assert holder.text.split(", ")[-1].rstrip(".") == "60"
    # With the places free again, requests pass; an SDK that retries gets through too.
    reply = _claude(small).messages.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Count to 3"}]
    )
    assert reply.stop_reason == "end_turn"
