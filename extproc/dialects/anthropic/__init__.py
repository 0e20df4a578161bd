"""The Anthropic Messages API (`/v1/messages`): `dialect.py` is its Dialect."""
