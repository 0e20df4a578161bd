"""OpenAI's embeddings endpoint (`POST /v1/embeddings`): request policies check and
rewrite its `input` texts (a secret redacted before it is embedded); the answer is
vectors, which no response policy reads, so it is forwarded as it comes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from extproc.core.chain import ResponsePolicies
from extproc.core.providers import ProviderApi
from extproc.core.request import ApiRequest, DeclaredTool, TextFn
from extproc.core.usage import Usage
from extproc.dialects.base import Dialect
from extproc.dialects.openai.errors import OpenAIWire
from extproc.dialects.openai.usage import prompt_usage
from extproc.dialects.request_text import rewrite_list, rewrite_str
from extproc.engine.stream import ForwardEngine
from extproc.events import StreamEvent
from extproc.sse import Frame


class _NoStream:
    """Embeddings never stream: nothing to check."""

    def feed(self, frame: Frame) -> None:
        pass

    def finish(self) -> list[str]:
        return []


class OpenAIEmbeddingsDialect(OpenAIWire, Dialect):
    name = "embeddings"
    operation = "embeddings"
    provider_api = ProviderApi.OPENAI
    path = "/v1/embeddings"
    path_prefixes = ("/v1/embeddings",)
    max_tokens_fields = ()

    # -- requests -------------------------------------------------------------------

    def request_problem(self, body: dict[str, Any]) -> tuple[str, str] | None:
        value = body.get("input")
        if not isinstance(value, str | list):
            return "input: a string or an array of strings or tokens is required", "input"
        return None

    def texts(self, body: dict[str, Any]) -> Iterator[str]:
        value = body.get("input")
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            # Token arrays (lists of ints) carry no text a policy can read.
            yield from (v for v in value if isinstance(v, str))

    def rewrite_texts(self, body: dict[str, Any], fn: TextFn) -> dict[str, Any] | None:
        value = body.get("input")
        if isinstance(value, str):
            new: Any = rewrite_str(value, fn)
        elif isinstance(value, list):
            new = rewrite_list(value, lambda v: rewrite_str(v, fn) if isinstance(v, str) else v)
        else:
            return None
        return None if new is value else {**body, "input": new}

    def system_prompt(self, body: dict[str, Any]) -> str:
        return ""

    def last_user_text(self, body: dict[str, Any]) -> str:
        return "\n".join(self.texts(body))

    def declared_tools(self, body: dict[str, Any]) -> list[DeclaredTool]:
        return []

    # -- upstream ---------------------------------------------------------------------

    def wrong_provider(self, model: str, provider: str, api: ProviderApi) -> str | None:
        if api is ProviderApi.OPENAI:
            return None
        return (
            f"model {model[:200]!r} is served by provider {provider!r}, which has no "
            "embeddings endpoint"
        )

    # -- errors -------------------------------------------------------------------------

    def stream_error(self, message: str, error_type: str = "api_error") -> bytes:
        return b""  # never a stream

    # -- responses ----------------------------------------------------------------------

    def ends_stream(self, frame: Frame) -> bool:
        return False

    def event(self, payload: dict[str, Any]) -> StreamEvent:
        raise TypeError("embeddings never stream")

    def stream_engine(self, chain: ResponsePolicies, request: ApiRequest) -> ForwardEngine:
        return ForwardEngine()

    async def process_message(self, body: Any, chain: ResponsePolicies, request: ApiRequest) -> Any:
        return body  # vectors: nothing a policy reads

    def validator(self, request: ApiRequest) -> _NoStream:
        return _NoStream()

    # -- as a client --------------------------------------------------------------------

    simple_path = "/embeddings"

    def simple_request(self, model: str, system: str, user: str) -> dict[str, Any]:
        return {"model": model, "input": user}

    def reply_text(self, document: Any) -> str:
        raise TypeError("an embedding has no text")

    def usage(self, document: Any) -> Usage | None:
        return prompt_usage(document)
