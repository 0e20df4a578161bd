"""OpenAI embeddings (`/v1/embeddings`): `dialect.py` is its Dialect."""
