"""What Envoy read of a request's body before ext_proc saw the request (its request
facts filter, `envoy_config/bootstrap.py`): enough to route a request nothing else
needs the body of, without the body crossing gRPC."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from extproc.contract import MODEL_FACT, STREAM_FACT, UNREADABLE_FACT


@dataclass(frozen=True, slots=True)
class RequestFacts:
    model: str
    stream: bool


def facts_from(metadata: Mapping[str, object] | None) -> RequestFacts | None:
    """The facts when Envoy read them and they are what the gateway routes by; None
    for anything else (no metadata, a body Envoy could not read, a model that is no
    name, a `stream` that is no boolean): the body is then read by ext_proc, which says
    in the API's format what is wrong with it."""
    if not metadata or metadata.get(UNREADABLE_FACT):
        return None
    model = metadata.get(MODEL_FACT)
    stream = metadata.get(STREAM_FACT, False)
    if not isinstance(model, str) or not model or not isinstance(stream, bool):
        return None
    return RequestFacts(model, stream)
