"""Which provider API a request speaks, decided by its path."""

from __future__ import annotations

from enum import StrEnum


class ApiKind(StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"


COUNT_TOKENS_PATH = "/v1/messages/count_tokens"

# Paths whose bodies the gateway understands and applies policies to.
API_PATHS: dict[str, ApiKind] = {
    "/v1/messages": ApiKind.ANTHROPIC,
    "/v1/chat/completions": ApiKind.OPENAI,
}


def api_kind_for_path(path: str) -> ApiKind | None:
    """The API of a policy path, ignoring any query string; None for other paths."""
    return API_PATHS.get(path.split("?", 1)[0].rstrip("/"))


def error_format_for_path(path: str) -> ApiKind:
    """The error format to answer in, also for paths the gateway does not serve.

    OpenAI-style clients call /v1/chat/completions, /v1/models, /v1/embeddings...;
    Anthropic clients call /v1/messages*. Anything else gets the Anthropic shape, which
    both SDKs at least surface as a readable message.
    """
    bare = path.split("?", 1)[0]
    if bare.startswith("/v1/messages"):
        return ApiKind.ANTHROPIC
    if bare.startswith(("/v1/chat", "/v1/completions", "/v1/embeddings", "/v1/models")):
        return ApiKind.OPENAI
    return ApiKind.ANTHROPIC


def forwarded_api(path: str, headers: dict[str, str]) -> ApiKind | None:
    """The API of a path forwarded with auth but without body policies, if any.

    Token counting belongs to Anthropic; the model list to whichever API the client
    speaks (Anthropic SDKs send `anthropic-version`)."""
    bare = path.split("?", 1)[0].rstrip("/")
    if bare == COUNT_TOKENS_PATH:
        return ApiKind.ANTHROPIC
    if bare == "/v1/models" or bare.startswith("/v1/models/"):
        return ApiKind.ANTHROPIC if "anthropic-version" in headers else ApiKind.OPENAI
    return None


PASSTHROUGH_METHODS = {COUNT_TOKENS_PATH: "POST", "/v1/models": "GET"}
