"""Peers in the same run: the gateway next to other LLM proxies (`make bench-peers`)."""
