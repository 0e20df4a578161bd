"""Gateway key check. Keys are compared in constant time and never logged."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from pydantic import SecretStr

# Headers a client may carry its gateway key in; both are removed before the request
# goes upstream, so the gateway key never reaches a provider.
KEY_HEADERS = ("authorization", "x-api-key")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key the client sent: `x-api-key`, or the token of `Authorization: Bearer`."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class GatewayKeys:
    def __init__(self, keys: Iterable[SecretStr]) -> None:
        # Digests of equal length make compare_digest's time independent of key length.
        self._digests = [hashlib.sha256(k.get_secret_value().encode()).digest() for k in keys]

    def is_valid(self, key: str | None) -> bool:
        if not key:
            return False
        digest = hashlib.sha256(key.encode()).digest()
        ok = False
        for known in self._digests:
            # No early exit: every key is compared whatever matched.
            ok |= hmac.compare_digest(digest, known)
        return ok
