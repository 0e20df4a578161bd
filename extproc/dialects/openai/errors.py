"""What every OpenAI API (chat completions, Responses, embeddings) shares on the wire:
the error object `{"error": {"message", "type", "param", "code"}}`, which the `openai`
SDK maps onto its exception classes by HTTP status, and the key as a bearer token."""

from __future__ import annotations

from typing import Any

# HTTP status -> (OpenAI error type, code).
_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    # OpenAI's own 429 carries the code too, which clients tell apart from
    # insufficient_quota by.
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
    504: ("server_error", None),
}


def error_object(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The inner error object for an HTTP status; `code` overrides the status's own."""
    otype, own_code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"message": message, "type": otype, "param": param, "code": code or own_code}


def stream_error_type(error_type: str) -> str:
    """OpenAI's type for an in-stream error named in Anthropic's terms (`api_error`)."""
    return "server_error" if error_type in ("api_error", "overloaded_error") else error_type


class OpenAIWire:
    """The shared part of the OpenAI dialects (mixed in before `Dialect`)."""

    def credential_headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def error_document(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        return {"error": error_object(status, message, param, code)}
