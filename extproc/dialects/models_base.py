"""What every dialect's typed models share: lenient about unknown things, strict about
known ones. Unknown fields are kept and survive a round trip; a known type validates in
strict mode (no `"1"` -> `1` coercion, which would silently rewrite a payload); an
unknown `type` dispatches to a dialect's generic model (`OTHER`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Discriminator

OTHER = "__other__"


class LenientModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    def model_post_init(self, context: Any, /) -> None:
        # A `type` filled in from its default (programmatic construction) must still be
        # serialized under exclude_unset; a parsed payload always has it set anyway.
        if "type" in type(self).model_fields and field_of(self, "type") is not None:
            self.__pydantic_fields_set__.add("type")


def field_of(value: Any, name: str) -> Any:
    """A field of a payload, or of a model built from one (declared or extra); None
    when it has none."""
    if isinstance(value, dict):
        return value.get(name)
    if not isinstance(value, BaseModel):
        return None
    if name in value.__dict__:
        return value.__dict__[name]
    return (value.__pydantic_extra__ or {}).get(name)


def type_of(value: Any) -> Any:
    return field_of(value, "type")


def discriminator(known: frozenset[str]) -> Discriminator:
    """Dispatch on `type`; anything else (unknown, absent, not a str) is `OTHER`."""

    def tag(value: Any) -> str:
        kind = type_of(value)
        return kind if isinstance(kind, str) and kind in known else OTHER

    return Discriminator(tag)
