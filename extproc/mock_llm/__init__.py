"""An embedded mock LLM: one aiohttp server that speaks the Anthropic and OpenAI APIs."""

from .server import MockConfig, create_app

__all__ = ["MockConfig", "create_app"]
