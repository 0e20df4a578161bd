"""The paced-stream benchmark's tools: the C upstream and client (built here when
missing or stale), the stream they carry and what the client checks it against."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks import scenarios
from benchmarks.checks import REWRITING
from benchmarks.client import build_request
from benchmarks.procs import Group
from extproc.processes import tcp_ready
from extproc.stack import free_port

NATIVE = Path(__file__).resolve().parent / "native"
BUILD = NATIVE / "build"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-std=gnu11")
SOURCES = {
    "paced_upstream": ("paced_upstream.c", "common.c"),
    "paced_client": ("paced_client.c", "stream.c", "common.c"),
}


def build_tools() -> dict[str, Path]:
    """The upstream and the client, compiled (gcc, or $CC) when missing or older than
    a source; `make bench-tools` builds the same files."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or "cc"
    headers = list(NATIVE.glob("*.h"))
    out: dict[str, Path] = {}
    for name, sources in SOURCES.items():
        binary = BUILD / name
        paths = [NATIVE / s for s in sources]
        newest = max(p.stat().st_mtime for p in [*paths, *headers])
        if not binary.exists() or binary.stat().st_mtime < newest:
            BUILD.mkdir(exist_ok=True)
            argv = [compiler, *CFLAGS, "-o", str(binary), *map(str, paths)]
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        out[name] = binary
    return out


def fnv1a(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def _escaped(text: str) -> bytes:
    """Text as it stands inside a JSON string on the wire (what the client hashes)."""
    return orjson.dumps(text)[1:-1]


@dataclass(frozen=True)
class PacedStream:
    """One paced stream: the Anthropic events and their pace."""

    api: scenarios.Api
    interval_ms: float

    @classmethod
    def make(cls, chunks: int, interval_ms: float) -> PacedStream:
        return cls(scenarios.anthropic(chunks), interval_ms)

    @property
    def events(self) -> int:
        return self.api.events

    @property
    def duration_s(self) -> float:
        """From the first event to the last."""
        return (self.events - 1) * self.interval_ms / 1000

    @property
    def interval_us(self) -> int:
        return round(self.interval_ms * 1000)

    def text_offsets(self, config: str) -> list[int]:
        """Bytes of text a client has once upstream event i arrived, through `config`."""
        out: list[int] = []
        text = ""
        for event in self.api.stream_events:
            data = event.split(b"\ndata: ", 1)[1]
            obj = orjson.loads(data)
            delta = obj.get("delta") or {}
            if obj.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                text += delta["text"]
            out.append(len(_escaped(scenarios.expected_text(text, config))))
        return out

    def client_files(self, directory: Path, url: str, config: str) -> dict[str, str]:
        """Files and options the client needs for `config`."""
        directory.mkdir(parents=True, exist_ok=True)
        api = self.api
        request = directory / "request.http"
        request.write_bytes(build_request(url, api.path, api.headers(), api.request))
        terminator = directory / "terminator"
        terminator.write_bytes(api.terminator)
        offsets = directory / "offsets"
        offsets.write_text("\n".join(map(str, self.text_offsets(config))) + "\n")
        low = api.events // 10 if config in REWRITING else api.events
        text_hash = fnv1a(_escaped(scenarios.expected_text(api.text, config)))
        return {
            "--request": str(request),
            "--terminator": str(terminator),
            "--offsets": str(offsets),
            "--events": f"{low}:{api.events}",
            "--text-hash": f"{text_hash:016x}",
            "--interval-us": str(self.interval_us),
        }


@dataclass
class PacedUpstream:
    """The C upstream, for the whole paced run."""

    run_dir: Path
    binary: Path
    stream: PacedStream
    port: int = 0
    group: Group | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.group is not None
        return self.group.pid("paced-upstream")

    def start(self) -> None:
        self.port = free_port()
        log_dir = self.run_dir / "paced-upstream"
        log_dir.mkdir(parents=True, exist_ok=True)
        events = log_dir / "anthropic.sse"
        events.write_bytes(self.stream.api.stream_body)
        argv = [str(self.binary), "--port", str(self.port)]
        argv += ["--interval-us", str(self.stream.interval_us)]
        argv += ["--route", f"{self.stream.api.path}={events}"]
        self.group = group = Group(log_dir)
        try:
            group.spawn("paced-upstream", argv)
            group.wait(lambda: tcp_ready("127.0.0.1", self.port), "paced upstream")
        except BaseException:
            group.stop()
            raise

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Streams and events so far, and how late its writes were (since the last reset)."""
        url = f"{self.url}/stats" + ("?reset" if reset else "")
        with urllib.request.urlopen(url, timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()
            self.group = None
