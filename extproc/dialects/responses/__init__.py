"""OpenAI's Responses API (`/v1/responses`): typed events, stream grammar and engines."""
