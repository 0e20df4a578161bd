"""JSON responses and the one error shape every admin route answers with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """A request the API refuses; the middleware turns it into the JSON error."""

    def __init__(
        self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = dict(headers or {})


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    # orjson: record rows carry floats and nested targets; it writes NaN as null
    # instead of the invalid JSON the stdlib would emit.
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response({"error": {"type": kind, "message": message}}, status, headers)
