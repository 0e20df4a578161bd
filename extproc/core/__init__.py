"""Core types every layer shares: the request, tool calls, decisions, text rewriting.

Nothing here imports anything above it (no dialect, engine, policy, pipeline or gRPC
code), so every other package may depend on it.
"""
