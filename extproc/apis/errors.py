"""Error bodies and in-stream error events in each API's own format.

Official SDKs map these onto their exception classes (``anthropic.AuthenticationError``,
``openai.BadRequestError``...), so the shapes must match the providers exactly.
"""

from __future__ import annotations

import orjson

from extproc.apis.kind import ApiKind

# HTTP status -> Anthropic error type (https://docs.anthropic.com/en/api/errors).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "api_error",
    529: "overloaded_error",
}

# HTTP status -> (OpenAI error type, code).
_OPENAI_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_exceeded", None),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
    504: ("server_error", None),
}


def error_body(kind: ApiKind, status: int, message: str, param: str | None = None) -> bytes:
    """A complete non-streaming error response body."""
    if kind is ApiKind.ANTHROPIC:
        etype = _ANTHROPIC_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})
    otype, code = _OPENAI_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return orjson.dumps(
        {"error": {"message": message, "type": otype, "param": param, "code": code}}
    )


def stream_error(kind: ApiKind, message: str, error_type: str = "api_error") -> bytes:
    """An in-stream error that also ends the stream validly for its format.

    Anthropic's own API ends a failed stream with an ``error`` event and nothing after
    it, and its SDKs raise on that event. OpenAI-compatible streams carry an ``error``
    object in a ``data:`` line; ``[DONE]`` follows so clients stop reading.
    """
    if kind is ApiKind.ANTHROPIC:
        payload = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
        return b"event: error\ndata: " + payload + b"\n\n"
    otype = "server_error" if error_type in ("api_error", "overloaded_error") else error_type
    payload = orjson.dumps(
        {"error": {"message": message, "type": otype, "param": None, "code": None}}
    )
    return b"data: " + payload + b"\n\ndata: [DONE]\n\n"
