"""OpenAI chat completions (`/v1/chat/completions`): `dialect.py` is its Dialect."""
