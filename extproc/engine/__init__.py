"""The machinery every API's policy engine shares: hold-back text rewriting
(`text.py`), the tool-call gate (`tools.py`), the stream-engine shape (`stream.py`) and
the non-streaming helpers (`whole.py`).

Each dialect's engines (`extproc/dialects/<api>/stream_engine.py`, `message_engine.py`)
build on these, and are the one place that turns policy decisions into that API's
events, so every invariant of a stream (one `message_start`, contiguous block indices,
no text after `tool_use`, a `stop_reason` that matches what was sent, a terminator)
holds whatever the policies do.
"""
