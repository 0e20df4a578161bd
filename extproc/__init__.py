"""LLM policy gateway: the Envoy ext_proc server and its policies."""
