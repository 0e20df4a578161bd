"""The small types every dialect uses (extproc/dialects/base.py)."""

from __future__ import annotations

from extproc.dialects.base import ForwardedPath, RoutedBy


def test_forwarded_path_by_body_model_matches_only_itself() -> None:
    count = ForwardedPath("/v1/messages/count_tokens", ("POST",), RoutedBy.BODY_MODEL)
    assert count.matches("/v1/messages/count_tokens")
    assert not count.matches("/v1/messages/count_tokens/x")
    assert not count.matches("/v1/messages")
    assert count.path_model("/v1/messages/count_tokens") == ""


def test_forwarded_path_by_path_model_matches_below_itself() -> None:
    models = ForwardedPath("/v1/models", ("GET",), RoutedBy.PATH_MODEL)
    assert models.matches("/v1/models") and models.matches("/v1/models/claude-x")
    assert not models.matches("/v1/modelsx") and not models.matches("/v1")
    assert models.path_model("/v1/models/claude-x") == "claude-x"
    assert models.path_model("/v1/models/org/model") == "org/model"
    assert models.path_model("/v1/models") == ""


def test_forwarded_path_templates_match_one_segment_per_id() -> None:
    cancel = ForwardedPath("/v1/responses/{id}/cancel", ("POST",), RoutedBy.API_DEFAULT)
    assert cancel.matches("/v1/responses/resp_1/cancel")
    assert not cancel.matches("/v1/responses/resp_1")
    assert not cancel.matches("/v1/responses/a/b/cancel")
    assert not cancel.matches("/v1/responses//cancel")
    assert cancel.path_model("/v1/responses/resp_1/cancel") == ""
    stored = ForwardedPath("/v1/responses/{id}", ("GET", "DELETE"), RoutedBy.API_DEFAULT)
    assert stored.matches("/v1/responses/resp_1") and not stored.matches("/v1/responses")
    # Regex characters in a template are literal.
    dotted = ForwardedPath("/v1/a.b", ("GET",), RoutedBy.API_DEFAULT)
    assert dotted.matches("/v1/a.b") and not dotted.matches("/v1/aXb")
