"""Query parameters of the admin API, checked strictly: a misspelt or malformed
parameter is a 400 naming it, never a silently wider answer."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from extproc.admin.errors import invalid
from extproc.core.audit import Action
from extproc.observe.store.base import DecisionQuery

ACTIONS = tuple(a.value for a in Action)
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Long enough for any caller, policy or model name; a longer value is a mistake.
MAX_TEXT = 512
DEFAULT_WINDOW_S = 3600
DEFAULT_BUCKET_S = 60
# A chart has no use for more bars than this; the stores refuse a few more.
MAX_BUCKETS = 2000

_TEXT_FILTERS = ("caller", "policy", "action", "model", "request_id")
DECISION_PARAMS = frozenset({*_TEXT_FILTERS, "since", "until", "limit", "cursor"})
STATS_PARAMS = frozenset({"window", "bucket", "since", "until"})
STREAM_PARAMS = frozenset({"after"})

_INT = re.compile(r"[0-9]{1,18}")
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def single_values(items: Iterable[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    """The query as one value per name; unknown and repeated names are refused."""
    out: dict[str, str] = {}
    for name, value in items:
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise invalid(f"unknown query parameter {_show(name)}; known: {known}")
        if name in out:
            raise invalid(f"{name}: given more than once")
        out[name] = value
    return out


def _show(value: str) -> str:
    # Errors quote what was sent, cut short: enough to spot the typo.
    return repr(value if len(value) <= 64 else value[:64] + "...")


def parse_time(name: str, value: str) -> float:
    """Unix seconds, or an ISO 8601 time (a naive one is UTC)."""
    if _NUMBER.fullmatch(value):
        return float(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(
            f"{name}: expected unix seconds or an ISO 8601 time, got {_show(value)}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_int(name: str, value: str, low: int, high: int | None = None) -> int:
    if not _INT.fullmatch(value):
        raise invalid(f"{name}: expected a whole number, got {_show(value)}")
    number = int(value)
    if number < low or (high is not None and number > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise invalid(f"{name}: must be {bound}, got {number}")
    return number


def _text(name: str, value: str) -> str:
    if not value:
        # An empty filter would otherwise match everything: leave the parameter out.
        raise invalid(f"{name}: empty; leave the parameter out to match every {name}")
    if len(value) > MAX_TEXT:
        raise invalid(f"{name}: longer than {MAX_TEXT} characters")
    return value


def _time_range(params: Mapping[str, str]) -> tuple[float | None, float | None]:
    since = parse_time("since", params["since"]) if "since" in params else None
    until = parse_time("until", params["until"]) if "until" in params else None
    if since is not None and until is not None and until <= since:
        raise invalid("until: must be after since")
    return since, until


def decision_query(params: Mapping[str, str]) -> DecisionQuery:
    texts = {name: _text(name, params[name]) for name in _TEXT_FILTERS if name in params}
    action = texts.get("action")
    if action is not None and action not in ACTIONS:
        raise invalid(f"action: must be one of {', '.join(ACTIONS)}; got {_show(action)}")
    since, until = _time_range(params)
    limit = DEFAULT_LIMIT
    if "limit" in params:
        limit = parse_int("limit", params["limit"], 1, MAX_LIMIT)
    cursor = parse_int("cursor", params["cursor"], 1) if "cursor" in params else None
    return DecisionQuery(
        caller=texts.get("caller"),
        policy=texts.get("policy"),
        action=action,
        model=texts.get("model"),
        request_id=texts.get("request_id"),
        since=since,
        until=until,
        limit=limit,
        before_id=cursor,
    )


def stats_range(params: Mapping[str, str], now: float) -> tuple[float, float, int]:
    """(since, until, bucket_s): `window` seconds back from `until` (default now), or
    an explicit `since`."""
    if "window" in params and "since" in params:
        raise invalid("window: give window or since, not both")
    bucket = DEFAULT_BUCKET_S
    if "bucket" in params:
        bucket = parse_int("bucket", params["bucket"], 1)
    since, until = _time_range(params)
    if until is None:
        until = now
        if since is not None and since >= until:
            raise invalid("since: must be in the past")
    if since is None:
        window = DEFAULT_WINDOW_S
        if "window" in params:
            window = parse_int("window", params["window"], 1)
        since = until - window
    buckets = math.ceil(until / bucket) - math.floor(since / bucket)
    if buckets > MAX_BUCKETS:
        raise invalid(
            f"bucket: {buckets} buckets of {bucket} s in the range; at most {MAX_BUCKETS}"
        )
    return since, until, bucket


def stream_after(params: Mapping[str, str], last_event_id: str | None) -> int | None:
    """Where a live stream resumes: the browser's Last-Event-ID (the newer, on a
    reconnect), else `?after=`; None: from now."""
    if last_event_id is not None and last_event_id.strip():
        return parse_int("Last-Event-ID", last_event_id.strip(), 0)
    if "after" in params:
        return parse_int("after", params["after"], 0)
    return None
