"""OpenAI Responses API (`/v1/responses`): `dialect.py` is its Dialect."""
