"""Callers and their gateway keys.

The keys file (GATEWAY_KEYS_FILE) lists callers by name with the SHA-256 of their key, so
the file holds no secret:

    callers:
      - name: ci-bot
        key_sha256: 0b5c...            # `llm-gateway new-key` prints a key and its hash
        chain: strict                  # a chain of the policy file; default: its `policies`
        allowed_models: ["claude-*"]   # optional globs
        limits: {tokens: {per_day: 1000000}}   # optional, over the policy file's
      - name: claude-code
        key_sha256: 7d1e...
        brings_own_key: true           # gateway key in x-gateway-key; the client's own
                                       # x-api-key / Authorization goes to the provider
                                       # (`passthrough: true`, its former name, still works)

Keys from GATEWAY_API_KEYS keep working for the simple case (default chain, any model).
Presented keys are hashed and compared in constant time; only caller names are logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from extproc.limits.config import LimitSet
from extproc.policies.base import DEFAULT_CHAIN
from extproc.policies.matching import matches_any

# Headers a client may carry its gateway key in. A caller that brings its own provider
# key sends the gateway key in x-gateway-key, and the other two carry its credential.
GATEWAY_KEY_HEADER = "x-gateway-key"
KEY_HEADERS = ("authorization", "x-api-key")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class KeysError(ValueError):
    """The keys file is unusable; one line per problem, naming the entry and the field."""


class CallerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    key_sha256: str
    chain: str = DEFAULT_CHAIN
    allowed_models: list[str] | None = None
    brings_own_key: bool = Field(
        default=False, validation_alias=AliasChoices("brings_own_key", "passthrough")
    )
    # Over the policy file's limits for this caller's chain (README, "Limits and budgets").
    limits: LimitSet | None = None

    @field_validator("key_sha256", mode="before")
    @classmethod
    def _hex(cls, value: object) -> str:
        if not isinstance(value, str):
            # YAML turns an all-digit hash into a number and drops its leading zeros.
            raise ValueError("must be a quoted string of 64 hex characters")
        value = value.strip().lower()
        if not _HEX64.fullmatch(value):
            raise ValueError("must be the 64 hex characters of a SHA-256 (llm-gateway new-key)")
        return value


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    callers: list[CallerConfig] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    digest: bytes
    chain: str = DEFAULT_CHAIN
    allowed_models: tuple[str, ...] | None = None
    # Sends the gateway key as x-gateway-key and its own provider credential, which the
    # gateway forwards instead of injecting its own key.
    brings_own_key: bool = False
    # Its own limits, laid over its chain's (None: those alone).
    limits: LimitSet | None = None

    def allows(self, model: str) -> bool:
        return self.allowed_models is None or matches_any(model, self.allowed_models)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> tuple[str, str]:
    """A fresh random gateway key and the SHA-256 hex the keys file stores."""
    key = "sk-gw-" + secrets.token_urlsafe(32)
    return key, digest(key).hex()


class KeyRegistry:
    def __init__(self, callers: Iterable[Caller]) -> None:
        self.callers = tuple(callers)

    @classmethod
    def build(cls, env_keys: Iterable[SecretStr], path: str | None) -> KeyRegistry:
        callers = [
            Caller(name=f"GATEWAY_API_KEYS[{i}]", digest=digest(k.get_secret_value()))
            for i, k in enumerate(env_keys)
        ]
        if path:
            callers += load_keys(path)
        return cls(callers)

    def chains(self) -> set[str]:
        return {c.chain for c in self.callers}

    def lookup(self, key: str | None) -> Caller | None:
        """The caller holding this key; every entry is compared, whatever matches."""
        if not key:
            return None
        presented = digest(key)
        found: Caller | None = None
        for caller in self.callers:
            if hmac.compare_digest(presented, caller.digest) and found is None:
                found = caller
        return found

    def authenticate(self, headers: Mapping[str, str]) -> Caller | str:
        """The caller a request's headers name, or why there is none (a 401)."""
        gateway_key = headers.get(GATEWAY_KEY_HEADER, "").strip()
        caller = self.lookup(gateway_key or presented_key(headers))
        if caller is None:
            return "invalid or missing gateway key (send it as x-api-key or Authorization: Bearer)"
        if caller.brings_own_key and not gateway_key:
            return (
                f"this key brings its own provider key: send it as {GATEWAY_KEY_HEADER}, and "
                "your own provider key as x-api-key or Authorization"
            )
        return caller


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The gateway key the client sent: x-api-key, or the token of Authorization: Bearer."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def load_keys(path: str | Path) -> list[Caller]:
    name = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise KeysError(f"{name}: file not found") from None
    except yaml.YAMLError as exc:
        raise KeysError(f"{name}: invalid YAML: {exc}") from None
    try:
        parsed = KeysFile.model_validate(doc or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err["loc"]
            where = ".".join(str(p) for p in loc[2:]) or "entry"
            entry = f"callers[{loc[1]}]" if len(loc) > 1 and loc[0] == "callers" else "file"
            if entry.startswith("callers[") and isinstance(doc, dict):
                raw = (doc.get("callers") or [None] * (int(loc[1]) + 1))[int(loc[1])]
                if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                    entry += f" ({raw['name']})"
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {entry}: {where}: {message}")
        raise KeysError("\n".join(lines)) from None
    names = [c.name for c in parsed.callers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise KeysError(f"{name}: caller names must be unique: {', '.join(duplicates)}")
    return [
        Caller(
            name=c.name,
            digest=bytes.fromhex(c.key_sha256),
            chain=c.chain,
            allowed_models=tuple(c.allowed_models) if c.allowed_models is not None else None,
            brings_own_key=c.brings_own_key,
            limits=c.limits,
        )
        for c in parsed.callers
    ]
