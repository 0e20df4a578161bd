"""The small types every dialect uses (extproc/dialects/base.py)."""

from __future__ import annotations

from extproc.dialects.base import ForwardedPath, RoutedBy


def test_forwarded_path_by_body_model_matches_only_itself() -> None:
    count = ForwardedPath("/v1/messages/count_tokens", "POST", RoutedBy.BODY_MODEL)
    assert count.matches("/v1/messages/count_tokens")
    assert not count.matches("/v1/messages/count_tokens/x")
    assert not count.matches("/v1/messages")
    assert count.path_model("/v1/messages/count_tokens") == ""


def test_forwarded_path_by_path_model_matches_below_itself() -> None:
    models = ForwardedPath("/v1/models", "GET", RoutedBy.PATH_MODEL)
    assert models.matches("/v1/models") and models.matches("/v1/models/claude-x")
    assert not models.matches("/v1/modelsx") and not models.matches("/v1")
    assert models.path_model("/v1/models/claude-x") == "claude-x"
    assert models.path_model("/v1/models/org/model") == "org/model"
    assert models.path_model("/v1/models") == ""
