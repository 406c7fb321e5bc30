from __future__ import annotations

import numpy as np
import pytest

from memlake.errors import ConfigError
from serving.embeddings import Embedder, SentenceTransformerEmbedder, resolve_model_folder

pytestmark = pytest.mark.integration


def test_vectors_are_unit_length_and_meaningful(embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    texts = [
        "Alice drinks green tea every morning.",
        "Every morning Alice has a cup of green tea.",
        "The GPU cluster failed.",
    ]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.3


def test_batching_and_order_do_not_change_the_vectors(embedder: SentenceTransformerEmbedder) -> None:
    texts = [
        f"memory number {i} about {'tea' if i % 2 else 'a much longer sentence about coffee and milk'}"
        for i in range(70)
    ]
    together = embedder.embed(texts)
    one_by_one = np.stack([embedder.embed([t])[0] for t in texts[:5]])
    assert np.allclose(together[:5], one_by_one, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_query_cache_returns_the_same_vector(embedder: SentenceTransformerEmbedder) -> None:
    first = embedder.embed_query("what does alice drink?")
    again = embedder.embed_query("what does alice drink?")
    assert again is first
    assert np.allclose(first, embedder.embed(["what does alice drink?"])[0], atol=1e-6)


def test_a_wrong_dimension_or_folder_is_a_config_error(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="embedding_dim"):
        SentenceTransformerEmbedder(dim=768).load()
    with pytest.raises(ConfigError, match="not a model folder"):
        resolve_model_folder("/nonexistent/model")


def test_concurrent_queries_get_the_vectors_they_would_get_alone(
    embedder: SentenceTransformerEmbedder,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    queries = [
        f"what did Ada say about {topic} (#{i})"
        for i, topic in enumerate(["tea", "bikes", "the tax form"] * 4)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(embedder.embed_query, queries))
    for query, vector in zip(queries, together, strict=True):
        assert np.allclose(vector, embedder.embed([query])[0], atol=1e-5)


_VARIED = [
    "",
    "tea",
    "what does Ada think of green tea?",
    "Inês cannot eat gluten — 日本語のテキスト 🙂",
    "Ada likes green tea on Monday. Also, Ben visited the Berlin office last week.",
    "word " * 600,  # past max_tokens: truncated the same way
]


def test_the_direct_bert_forward_matches_sentence_transformers(
    embedder: SentenceTransformerEmbedder,
) -> None:
    """The hand-written forward and tokenizer give sentence-transformers' vectors, to float noise."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(resolve_model_folder(embedder.name)), device="cpu")
    reference.max_seq_length = 256
    expected = reference.encode(_VARIED, normalize_embeddings=True, convert_to_numpy=True)
    assert embedder._fast is not None  # the path under test, not transformers' fallback
    alone = np.stack([embedder.embed([t])[0] for t in _VARIED])  # no padding, no mask
    together = embedder.embed(_VARIED)  # one padded batch, masked
    for got in (alone, together):
        assert np.min(np.sum(got * expected, axis=1)) >= 0.9999
        assert np.allclose(got, expected, atol=1e-5)


def test_the_direct_tokenizer_gives_the_wrapper_s_tokens(embedder: SentenceTransformerEmbedder) -> None:
    for text in _VARIED:
        wrapped = embedder._tokenizer(text, truncation=True, max_length=256)["input_ids"]
        assert embedder._rust_tokenizer.encode(text).ids == list(wrapped)


def test_other_architectures_keep_the_transformers_forward(embedder: SentenceTransformerEmbedder) -> None:
    from serving.embeddings import _BertForward

    assert _BertForward.supports(embedder._model)
    config = embedder._model.config
    for field, value in [("model_type", "roberta"), ("hidden_act", "gelu_new"), ("is_decoder", True)]:
        original = getattr(config, field)
        setattr(config, field, value)
        try:
            assert not _BertForward.supports(embedder._model)
        finally:
            setattr(config, field, original)
    # ...and that fallback gives the same vectors.
    assert np.allclose(embedder._encode_transformers(_VARIED), embedder.embed(_VARIED), atol=1e-5)


@pytest.fixture(scope="module")
def int8_queries() -> SentenceTransformerEmbedder:
    model = SentenceTransformerEmbedder(cache_size=0, query_precision="int8")
    model.load()
    return model


def test_int8_queries_stay_close_to_float32_and_documents_do_not_change(
    embedder: SentenceTransformerEmbedder, int8_queries: SentenceTransformerEmbedder
) -> None:
    assert int8_queries.query_precision == "int8"
    assert np.allclose(int8_queries.embed(_VARIED), embedder.embed(_VARIED), atol=1e-6)
    queries = np.stack([int8_queries.embed_query(t) for t in _VARIED])
    exact = embedder.embed(_VARIED)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(queries * exact, axis=1)
    assert cosines.min() >= 0.97, cosines
    assert not np.allclose(queries, exact, atol=1e-4)  # really the int8 arithmetic


def test_int8_queries_find_what_float32_queries_find(
    embedder: SentenceTransformerEmbedder, int8_queries: SentenceTransformerEmbedder
) -> None:
    documents = [
        "Ada drinks green tea every morning.",
        "Ben rides his bike to the Berlin office.",
        "The quarterly tax form is due in April.",
        "Carol adopted a rescue dog named Biscuit.",
        "The GPU cluster failed during the night run.",
    ]
    questions = ["what does Ada drink?", "how does Ben get to work?", "when is the tax form due?"]
    vectors = embedder.embed(documents)
    for question in questions:
        exact = vectors @ embedder.embed([question])[0]
        approximate = vectors @ int8_queries.embed_query(question)
        assert int(np.argmax(approximate)) == int(np.argmax(exact))


def test_an_int8_query_is_the_same_alone_or_among_concurrent_queries(
    int8_queries: SentenceTransformerEmbedder,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    queries = [f"what did Ada say about {topic} (#{i})" for i, topic in enumerate(["tea", "bikes"] * 6)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(int8_queries.embed_query, queries))
    for query, vector in zip(queries, together, strict=True):
        assert np.array_equal(vector, int8_queries._embed_queries([query])[0])


def test_int8_queries_need_the_bert_forward(embedder: SentenceTransformerEmbedder) -> None:
    from serving.embeddings import _BertForward

    original = _BertForward.supports
    _BertForward.supports = staticmethod(lambda model: False)  # type: ignore[method-assign]
    try:
        with pytest.raises(ConfigError, match="query_precision"):
            SentenceTransformerEmbedder(cache_size=0, query_precision="int8").load()
        SentenceTransformerEmbedder(cache_size=0).load()  # float32 falls back to transformers
    finally:
        _BertForward.supports = original  # type: ignore[method-assign]
