"""API keys: who a request acts as.

A key is `mlk_<key id>_<secret>`; only the SHA-256 digest of the whole key is
stored, next to the principal it acts as (`user:alice`, `agent:planner`). A
SHA-256 digest (not a slow password hash) is enough because the secret is 256
random bits: there is nothing to guess. Keys are revoked, never deleted, so
the file stays an audit trail. The serving process re-reads the file when it
changes, so `memlake keys revoke` takes effect on a running service at once.
"""

from __future__ import annotations

__all__ = ["ApiKey", "ApiKeyStore", "IssuedKey", "KEY_PREFIX"]

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

from memlake.errors import AuthenticationError, ConfigError
from memlake.model import Actor, utcnow

KEY_PREFIX = "mlk"
_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    principal: str
    name: str
    digest: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def actor(self) -> Actor:
        return Actor.parse(self.principal)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key: the secret is shown once and never stored."""

    key: ApiKey
    secret: str


def _digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class ApiKeyStore:
    """A JSON file of hashed keys (a secrets manager or an identity provider in production)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}
        self._loaded_stamp: tuple[int, int] | None = None

    @property
    def path(self) -> Path:
        return self._path

    # --- reading ----------------------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> dict[str, ApiKey]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError("serving.api_keys_file", f"{self._path} cannot be read: {e}") from e
        if data.get("version") != _FORMAT_VERSION:
            raise ConfigError(
                "serving.api_keys_file", f"{self._path} has unknown version {data.get('version')!r}"
            )
        return {k["key_id"]: ApiKey(**k) for k in data.get("keys", [])}

    def _refresh(self) -> dict[str, ApiKey]:
        stamp = self._stamp()
        with self._lock:
            if stamp != self._loaded_stamp:
                self._keys = self._read() if stamp is not None else {}
                self._loaded_stamp = stamp
            return self._keys

    def entries(self) -> list[ApiKey]:
        return sorted(self._refresh().values(), key=lambda k: (k.created_at, k.key_id))

    def authenticate(self, token: str | None) -> ApiKey:
        """The active key `token` is, or `AuthenticationError`."""
        if not token:
            raise AuthenticationError("an API key is required (Authorization: Bearer mlk_...)")
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != KEY_PREFIX or not key_id or not secret:
            raise AuthenticationError("malformed API key")
        key = self._refresh().get(key_id)
        if key is None or not hmac.compare_digest(key.digest, _digest(token)):
            raise AuthenticationError("unknown API key", key_id=key_id)
        if not key.active:
            raise AuthenticationError(f"API key {key_id} was revoked at {key.revoked_at}", key_id=key_id)
        return key

    # --- writing (the CLI) --------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[dict[str, ApiKey]]:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self._path.with_suffix(self._path.suffix + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                keys = self._read()
                yield keys
                self._write(keys)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, keys: dict[str, ApiKey]) -> None:
        payload = {"version": _FORMAT_VERSION, "keys": [asdict(k) for k in keys.values()]}
        tmp = self._path.with_suffix(self._path.suffix + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    def create(self, principal: str, *, name: str = "", now: datetime | None = None) -> IssuedKey:
        try:
            Actor.parse(principal)
        except ValueError as e:
            raise ConfigError(
                "principal", f"{principal!r} is not kind:id with kind user/agent/service/system"
            ) from e
        key_id = secrets.token_hex(6)
        token = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            key_id=key_id,
            principal=principal,
            name=name,
            digest=_digest(token),
            created_at=(now or utcnow()).isoformat(),
        )
        with self._exclusive() as keys:
            keys[key_id] = key
        return IssuedKey(key, token)

    def revoke(self, key_id: str, *, now: datetime | None = None) -> ApiKey:
        with self._exclusive() as keys:
            key = keys.get(key_id)
            if key is None:
                raise AuthenticationError(f"no API key {key_id!r}", key_id=key_id)
            if key.active:
                key = replace(key, revoked_at=(now or utcnow()).isoformat())
                keys[key_id] = key
        return key
