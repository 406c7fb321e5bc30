from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.benchmarks.chat_stub import Stub, serve_stub


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    """A local OpenAI-compatible stub endpoint: its state and its base URL."""
    with serve_stub() as served:
        yield served
