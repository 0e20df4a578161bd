"""The policy engine: runs a chain over a response and re-emits a valid one.

One place turns policy decisions into events, so every invariant of a stream (one
`message_start`, contiguous block indices, no text after `tool_use`, a `stop_reason`
that matches what was sent, a terminator) holds whatever the policies do.
"""
