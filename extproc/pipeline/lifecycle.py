"""The phases of one request's journey through ext_proc, and the moves between them.

All of a request's progress is one `Phase`; `MOVES` says which phase may follow which,
as h11's state tables do. A move the table does not allow means Envoy sent a message
its configuration should not produce (a hand-written bootstrap, say): it is logged and
taken, so the request still gets an answer.
"""

from __future__ import annotations

import logging
from enum import Enum

log = logging.getLogger("extproc.pipeline")


class Phase(Enum):
    REQUEST_HEADERS = "request_headers"  # nothing seen yet
    REQUEST_BODY = "request_body"  # headers answered; the buffered body comes next
    RESPONSE_HEADERS = "response_headers"  # the request went upstream
    RESPONSE_BODY = "response_body"  # the response body streams through a body handler
    DONE = "done"  # the client has the gateway's last word; later body bytes are dropped


MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.REQUEST_HEADERS: frozenset({Phase.REQUEST_BODY, Phase.RESPONSE_HEADERS, Phase.DONE}),
    Phase.REQUEST_BODY: frozenset({Phase.RESPONSE_HEADERS, Phase.DONE}),
    Phase.RESPONSE_HEADERS: frozenset({Phase.RESPONSE_BODY, Phase.DONE}),
    Phase.RESPONSE_BODY: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
}


class Lifecycle:
    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = Phase.REQUEST_HEADERS

    def move(self, to: Phase) -> None:
        if to is not self.phase and to not in MOVES[self.phase]:
            log.warning(
                "unexpected ext_proc message order: %s reached from %s", to.value, self.phase.value
            )
        self.phase = to

    def end(self) -> None:
        """The one way a request ends, whatever ended it."""
        self.move(Phase.DONE)
