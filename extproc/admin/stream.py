"""The live stream of decisions: one poller per app reads new rows from the store and
fans them out to every connected viewer as server-sent events.

One poller, not one per viewer, so ten open browser tabs cost the database one query
per interval. Each viewer has a bounded queue; a viewer that cannot keep up is
disconnected (its browser resumes from its Last-Event-ID) rather than slowing the
others or growing memory without end. While nobody watches, nothing is polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from extproc.admin.errors import ApiError
from extproc.core.storage import StoreError
from extproc.observe.store.base import AuditStore

log = logging.getLogger("extproc.admin")

# Rows per store read: both for the poller and for a resuming viewer's catch-up.
BATCH = 500
# Rows a viewer may have waiting; past this it is too slow and is disconnected.
QUEUE_LIMIT = 2000
MAX_SUBSCRIBERS = 100
KEEPALIVE = b": keep-alive\n\n"

Event = tuple[int, bytes]  # (decision id, its encoded SSE frame)


def encode(row: dict[str, Any]) -> Event:
    decision_id = int(row["id"])
    frame = b"id: %d\nevent: decision\ndata: %s\n\n" % (decision_id, orjson.dumps(row))
    return decision_id, frame


class Subscription:
    """One viewer's queue of encoded events."""

    __slots__ = ("_events", "_limit", "_ready", "closed", "reason")

    def __init__(self, limit: int) -> None:
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._limit = limit
        self.closed = False
        self.reason = ""

    def offer(self, events: list[Event]) -> bool:
        """Queue events; False (and closed) when the viewer is too far behind."""
        if self.closed:
            return False
        if len(self._events) + len(events) > self._limit:
            self.close("too slow")
            return False
        self._events.extend(events)
        self._ready.set()
        return True

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed, self.reason = True, reason
            self._events.clear()
            self._ready.set()

    async def next(self, wait_s: float) -> list[Event] | None:
        """What arrived ([] when `wait_s` passed first); None once closed."""
        if not self._events and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait_s)
        self._ready.clear()
        if self.closed:
            return None
        events = list(self._events)
        self._events.clear()
        return events


class DecisionFeed:
    def __init__(
        self, store: AuditStore, poll_interval_s: float, queue_limit: int = QUEUE_LIMIT
    ) -> None:
        self._store = store
        self._interval = poll_interval_s
        self._queue_limit = queue_limit
        self._subscribers: set[Subscription] = set()
        # The id of the last row published; while nobody watches it is not kept up.
        self._position = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def position(self) -> int:
        return self._position

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self, last_id: int) -> tuple[Subscription, int] | None:
        """Join the feed; (subscription, position) where every row above `position`
        will arrive on the subscription. None when the feed is full or stopped.
        `last_id` is the store's newest id, read by the caller just before.

        Not a coroutine on purpose: nothing may run between reading the position and
        joining, or rows published in between would reach neither the catch-up nor
        the queue."""
        if self._stopped or len(self._subscribers) >= MAX_SUBSCRIBERS:
            return None
        if not self._subscribers:
            # Idle until now, so the position is stale: jump to the store's newest row
            # instead of reading everything written while nobody watched.
            self._position = last_id
        sub = Subscription(self._queue_limit)
        self._subscribers.add(sub)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="admin-decision-feed")
        return sub, self._position

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    async def stop(self) -> None:
        self._stopped = True
        for sub in list(self._subscribers):
            sub.close("shutting down")
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failing = False
        while True:
            if not self._subscribers:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                rows = await asyncio.to_thread(self._store.decisions_after, self._position, BATCH)
            except Exception as exc:
                # The database may come back (a locked file, a restarted server): keep
                # polling, and say so once per outage rather than every interval.
                if not failing:
                    log.warning("live decision feed: the audit store failed: %s", exc)
                failing = True
                await asyncio.sleep(self._interval)
                continue
            if failing:
                log.info("live decision feed: the audit store answers again")
                failing = False
            self._publish(rows)
            if len(rows) < BATCH:
                await asyncio.sleep(self._interval)

    def _publish(self, rows: list[dict[str, Any]]) -> None:
        # A read begun before an idle jump may return rows the position has passed.
        events = [encode(r) for r in rows if int(r["id"]) > self._position]
        if not events:
            return
        self._position = events[-1][0]
        for sub in list(self._subscribers):
            if not sub.offer(events):
                self._subscribers.discard(sub)
                log.info("live decision feed: a viewer fell behind and was disconnected")


async def stream_response(
    request: web.Request,
    store: AuditStore,
    feed: DecisionFeed,
    after: int | None,
    keepalive_s: float,
) -> web.StreamResponse:
    """Serve one viewer: the rows after `after` (None: after now), then live ones."""
    newest = await asyncio.to_thread(store.last_decision_id)
    joined = feed.subscribe(newest)
    if joined is None:
        raise ApiError(503, "unavailable", "too many live streams open; try again later")
    sub, position = joined
    sent = newest if after is None else after
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            # Proxies in front of the admin port must not hold events back.
            "X-Accel-Buffering": "no",
            # Where this stream starts: a client that drops before any event arrives
            # resumes from here (as Last-Event-ID) without a gap.
            "X-Stream-After": str(sent),
        }
    )
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n: connected\n\n")
        # Catch up from the store on what the feed will not deliver: rows up to the
        # position the feed had when this viewer joined.
        while sent < position:
            rows = await asyncio.to_thread(store.decisions_after, sent, BATCH)
            if not rows:
                break
            events = [encode(r) for r in rows]
            await response.write(b"".join(frame for _, frame in events))
            sent = events[-1][0]
        while True:
            batch = await sub.next(keepalive_s)
            if batch is None:
                break
            if not batch:
                await response.write(KEEPALIVE)
                continue
            fresh = [frame for decision_id, frame in batch if decision_id > sent]
            if fresh:
                await response.write(b"".join(fresh))
                sent = batch[-1][0]
    except ConnectionError:
        pass  # the viewer went away
    except StoreError as exc:
        log.warning("live decision stream: the audit store failed: %s", exc)
    except Exception:
        # The response has begun: nothing left to tell the viewer but the end.
        log.exception("live decision stream failed")
    finally:
        feed.unsubscribe(sub)
    return response
