"""Serving's adapter registry: each cube's champion adapter, several in one process.

The registry wraps the shared base model in one peft model and loads each
cube's champion adapter into it under its own name; a request switches to
its cube's adapter (or to none) inside `use(cube_id)`, which also says which
adapter answered. Outside `use`, the LoRA layers are disabled, so the base
model behaves as the plain base model for everyone else.

Champions are looked up in the MLflow registry at most every
`registry_refresh_s` seconds per cube; when the alias has moved, the new
version is loaded and the old one dropped. An adapter made for another base
model (fingerprint tag) or whose files do not match their recorded sha256 is
never used: the request falls back to the base model and says why.

peft switches adapters by mutating the model, so requests run one at a time
(a lock); that is how a single model instance generates anyway.
"""

from __future__ import annotations

__all__ = ["AdapterUse", "AdapterRegistry"]

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from memlake.errors import ArtifactError
from training.artifacts import artifact_sha256
from training.base_model import BaseLLM
from training.tracking import ChampionRef, MlflowTracker


@dataclass(frozen=True, slots=True)
class AdapterUse:
    """Which adapter answered a request (None: the base model alone), and why not if none."""

    cube_id: str | None
    model_uri: str | None = None  # models:/<name>/<version>
    version: str | None = None
    run_id: str | None = None
    reason: str | None = None

    @property
    def used(self) -> bool:
        return self.model_uri is not None


@dataclass(frozen=True, slots=True)
class _Loaded:
    champion: ChampionRef
    adapter_name: str


class AdapterRegistry:
    """Champion adapters per cube on one base model. The constructor does no I/O."""

    def __init__(
        self,
        base: BaseLLM,
        tracker: MlflowTracker,
        *,
        refresh_s: float | None = None,
        max_loaded: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base
        self._tracker = tracker
        self._refresh_s = tracker.settings.registry_refresh_s if refresh_s is None else refresh_s
        self._max_loaded = max_loaded or tracker.settings.max_loaded_adapters
        self._clock = clock
        self._lock = threading.RLock()
        self._peft: Any = None
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # cube -> adapter, LRU order
        self._checked: dict[str, tuple[float, ChampionRef | None]] = {}
        self._refused: dict[str, str] = {}  # model uri -> why it is not used

    @property
    def model(self) -> Any:
        """What to generate with inside `use`: the peft model once an adapter is loaded, else the base."""
        return self._peft if self._peft is not None else self._base.model

    def loaded(self) -> dict[str, str]:
        """Cube -> model URI of every adapter in memory."""
        with self._lock:
            return {cube: entry.champion.uri for cube, entry in self._loaded.items()}

    def _champion(self, cube_id: str) -> ChampionRef | None:
        now = self._clock()
        seen = self._checked.get(cube_id)
        if seen is not None and now - seen[0] < self._refresh_s:
            return seen[1]
        champion = self._tracker.champion(cube_id)
        self._checked[cube_id] = (now, champion)
        return champion

    def _refusal(self, champion: ChampionRef) -> str | None:
        wanted = champion.tags.get("memlake.base_model_fingerprint")
        if wanted is not None and wanted != self._base.fingerprint_id:
            return f"{champion.uri} was trained on base model {wanted}, loaded is {self._base.fingerprint_id}"
        return None

    def _load(self, cube_id: str, champion: ChampionRef) -> _Loaded:
        from peft import PeftModel

        folder = self._tracker.download(champion.source)
        expected = champion.tags.get("memlake.sha256")
        if expected is not None and artifact_sha256(folder) != expected:
            raise ArtifactError(
                champion.source, "adapter files do not match the sha256 recorded at registration"
            )
        name = re.sub(r"[^A-Za-z0-9_]", "_", f"{champion.name}_v{champion.version}")
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._base.model, str(folder), adapter_name=name)
        else:
            self._peft.load_adapter(str(folder), adapter_name=name)
        self._peft.eval()
        self._peft.base_model.disable_adapter_layers()
        entry = _Loaded(champion, name)
        old = self._loaded.pop(cube_id, None)
        self._loaded[cube_id] = entry
        if old is not None:
            self._drop(old)
        while len(self._loaded) > self._max_loaded:
            _, evicted = self._loaded.popitem(last=False)
            self._drop(evicted)
        return entry

    def _drop(self, entry: _Loaded) -> None:
        if self._peft is None or entry.adapter_name not in self._peft.peft_config:
            return
        others = [name for name in self._peft.peft_config if name != entry.adapter_name]
        if not others:
            # peft cannot delete its last adapter: give the base model back whole instead.
            self._peft.unload()
            self._peft = None
            self._base.model.eval()
            return
        self._peft.set_adapter(others[0])
        self._peft.delete_adapter(entry.adapter_name)
        self._peft.base_model.disable_adapter_layers()

    def resolve(self, cube_id: str) -> AdapterUse:
        """Make sure the cube's current champion is loaded; says what a request would use."""
        with self._lock:
            champion = self._champion(cube_id)
            current = self._loaded.get(cube_id)
            if champion is None:
                if current is not None:  # the alias was removed: stop serving that adapter
                    del self._loaded[cube_id]
                    self._drop(current)
                return AdapterUse(cube_id, reason="no champion adapter")
            refusal = self._refused.get(champion.uri) or self._refusal(champion)
            if refusal is not None:
                self._refused[champion.uri] = refusal
                return AdapterUse(cube_id, reason=refusal)
            if current is None or current.champion.version != champion.version:
                try:
                    current = self._load(cube_id, champion)
                except ArtifactError as e:
                    self._refused[champion.uri] = str(e)
                    return AdapterUse(cube_id, reason=str(e))
            self._loaded.move_to_end(cube_id)
            return AdapterUse(cube_id, champion.uri, champion.version, champion.run_id)

    @contextmanager
    def use(self, cube_id: str | None) -> Iterator[AdapterUse]:
        """Run a request with the cube's champion adapter active (or none); yields what was used."""
        with self._lock:
            info = self.resolve(cube_id) if cube_id is not None else AdapterUse(None, reason="no cube")
            if not info.used or self._peft is None:
                yield info
                return
            entry = self._loaded[info.cube_id or ""]
            self._peft.set_adapter(entry.adapter_name)
            self._peft.base_model.enable_adapter_layers()
            try:
                yield info
            finally:
                self._peft.base_model.disable_adapter_layers()

    def close(self) -> None:
        """Remove every adapter: the base model is the plain base model again."""
        with self._lock:
            if self._peft is not None:
                self._peft.unload()
                self._peft = None
                self._base.model.eval()
            self._loaded.clear()
            self._checked.clear()
