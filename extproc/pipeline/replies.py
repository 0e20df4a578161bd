"""What the pipeline answers each ext_proc message with, free of gRPC types: the server
(`extproc/server.py`) turns these into Envoy's protobuf replies."""

from __future__ import annotations

from dataclasses import dataclass, field

JSON_HEADERS = {"content-type": "application/json"}


@dataclass(slots=True)
class Continue:
    """Let the message through, with these changes."""

    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    body: bytes | None = None
    clear_route_cache: bool = False
    # Tell Envoy to keep the request body to itself: the request was routed from what
    # Envoy read of it, and nothing else reads it (an Envoy that does not take the
    # override sends it anyway, and it passes).
    skip_body: bool = False


@dataclass(slots=True)
class Immediate:
    """Answer the client directly (Envoy's ImmediateResponse); nothing goes upstream, or
    nothing more of the upstream's response reaches the client."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))


@dataclass(slots=True)
class BodyOut:
    """Bytes for the client, and whether they end its response."""

    data: bytes
    end_of_stream: bool
