"""One real stack per test session: mock LLM + ext_proc server + the real Envoy.

Only fixtures live here; the code that starts stacks is in tests/helpers/stack.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from extproc.config import DEV_GATEWAY_KEY
from extproc.stack import Stack
from tests.helpers.stack import running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Every response through ext_proc, so the core's body handling is what is tested;
    # test_fast_path.py covers the default, where noop keeps bodies out of ext_proc.
    with running_stack(tmp_path_factory.mktemp("stack"), response_processing="always") as st:
        yield st


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    return stack.base_url


@pytest.fixture(scope="session")
def mock_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.mock_port}"


@pytest.fixture(scope="session")
def admin_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.settings.admin_port}"


@pytest.fixture(scope="session")
def log_dir(stack: Stack) -> Path:
    assert stack.log_dir is not None
    return stack.log_dir


@pytest.fixture(scope="session")
def anthropic_client(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=DEV_GATEWAY_KEY, max_retries=0)


@pytest.fixture(scope="session")
def openai_client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=DEV_GATEWAY_KEY, max_retries=0)


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client
