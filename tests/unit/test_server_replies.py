"""`server._body_replies`: the streamed_response replies, filled in place, are the very
messages (and bytes) the nested constructors give, for every size and end."""

from __future__ import annotations

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.contract import MAX_REPLY_CHUNK
from extproc.pipeline import BodyOut
from extproc.server import _body_replies


def _expected(body: bytes, end_of_stream: bool) -> bytes:
    return ep.ProcessingResponse(
        response_body=ep.BodyResponse(
            response=ep.CommonResponse(
                body_mutation=ep.BodyMutation(
                    streamed_response=ep.StreamedBodyResponse(
                        body=body, end_of_stream=end_of_stream
                    )
                )
            )
        )
    ).SerializeToString()


@pytest.mark.parametrize(
    "size",
    [0, 1, 200, MAX_REPLY_CHUNK - 1, MAX_REPLY_CHUNK, MAX_REPLY_CHUNK + 1, 3 * MAX_REPLY_CHUNK + 7],
)
@pytest.mark.parametrize("end_of_stream", [False, True])
def test_replies_are_the_constructed_messages(size: int, end_of_stream: bool) -> None:
    data = bytes(i % 251 for i in range(size))
    replies = list(_body_replies(BodyOut(data, end_of_stream)))
    if size == 0 and not end_of_stream:
        assert replies == []  # nothing to send
        return
    pieces = [data[i : i + MAX_REPLY_CHUNK] for i in range(0, size, MAX_REPLY_CHUNK)] or [b""]
    assert [r.SerializeToString() for r in replies] == [
        _expected(piece, end_of_stream and n == len(pieces) - 1) for n, piece in enumerate(pieces)
    ]
    # Each under Envoy's 64 KiB, only the last one ending the stream, and present (an
    # empty last reply still carries its streamed_response).
    for n, reply in enumerate(replies):
        streamed = reply.response_body.response.body_mutation
        assert streamed.HasField("streamed_response")
        assert len(streamed.streamed_response.body) <= MAX_REPLY_CHUNK
        assert streamed.streamed_response.end_of_stream is (end_of_stream and n == len(replies) - 1)
