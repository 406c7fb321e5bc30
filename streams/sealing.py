"""Sealing: envelope encryption of memory content, one data key per subject.

Content about a person travels on the log as `Sealed` ciphertext (AES-256-GCM)
under that subject's data key. The log is never rewritten, so forgetting a
person means destroying their key: every copy of the ciphertext, in Kafka,
in the lake and in backups, becomes unreadable at once (crypto-shredding).

`KeyStore` is the role (a KMS in production); `LocalKeyStore` keeps the data
keys in files, each wrapped (AES-256-GCM) under a master key kept beside them,
which is what a KMS does with its key-encryption key.
"""

from __future__ import annotations

__all__ = ["DataKey", "KeyStore", "LocalKeyStore", "Sealer"]

import base64
import contextlib
import hashlib
import json
import os
import secrets
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memlake.errors import SealedContentError
from memlake.ids import uuid7
from memlake.model import Content, Sealed

_KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # the GCM standard nonce


@dataclass(frozen=True, slots=True)
class DataKey:
    """One subject's data key. `key_id` changes when a destroyed subject gets a new key."""

    key_id: str
    subject_id: str
    secret: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"DataKey(key_id={self.key_id!r}, subject_id={self.subject_id!r})"


class KeyStore(ABC):
    """Where per-subject data keys live (a KMS in production)."""

    @abstractmethod
    def key_for(self, subject_id: str) -> DataKey:
        """The subject's current data key, made on first use."""

    @abstractmethod
    def get(self, subject_id: str, key_id: str) -> DataKey:
        """That exact key; `SealedContentError` when it was destroyed or never existed."""

    @abstractmethod
    def destroy(self, subject_id: str) -> str | None:
        """Destroy the subject's key for good; return its key id (None when there was none)."""


class LocalKeyStore(KeyStore):
    """Data keys in files under one folder, wrapped under a local master key.

    Layout: `master.key` (32 random bytes, mode 0600) and one
    `<sha256(subject)>.json` per subject holding its wrapped key. Creation is
    atomic across processes (a hard link that fails when the file exists), so
    two writers sealing for a new subject at once agree on one key.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._master: bytes | None = None
        # Unwrapped keys by subject with the file identity they came from: a stat per use
        # notices a key destroyed by another process without unwrapping it again.
        self._cache: dict[str, tuple[tuple[int, int], DataKey]] = {}

    @property
    def root(self) -> Path:
        return self._root

    def key_for(self, subject_id: str) -> DataKey:
        with self._lock:
            existing = self._read(subject_id)
            if existing is not None:
                return existing
            key = DataKey(f"dk-{uuid7().hex}", subject_id, secrets.token_bytes(_KEY_BYTES))
            wrapped = self._wrap(key)
            if self._create_exclusively(self._path(subject_id), wrapped):
                return key
            # Another process made one first: use theirs.
            found = self._read(subject_id)
            if found is None:
                raise SealedContentError(
                    key.key_id, f"the key of subject {subject_id!r} vanished on creation"
                )
            return found

    def get(self, subject_id: str, key_id: str) -> DataKey:
        key = self._read(subject_id)
        if key is None:
            raise SealedContentError(key_id, f"no key for subject {subject_id!r} (destroyed or never made)")
        if key.key_id != key_id:
            raise SealedContentError(
                key_id, f"the key was destroyed; subject {subject_id!r} now has key {key.key_id!r}"
            )
        return key

    def destroy(self, subject_id: str) -> str | None:
        with self._lock:
            path = self._path(subject_id)
            key = self._read(subject_id)
            if key is None:
                return None
            # Overwrite before unlinking, so the wrapped key does not linger in free blocks
            # of a simple file system (best effort; a KMS deletes for real).
            with contextlib.suppress(OSError), path.open("r+b") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(0)
                handle.write(secrets.token_bytes(size))
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink(missing_ok=True)
            self._cache.pop(subject_id, None)
            return key.key_id

    # --- files -----------------------------------------------------------------

    def _path(self, subject_id: str) -> Path:
        digest = hashlib.sha256(subject_id.encode()).hexdigest()
        return self._root / f"{digest}.json"

    def _master_key(self) -> bytes:
        if self._master is None:
            path = self._root / "master.key"
            if not path.exists():
                self._create_exclusively(path, secrets.token_bytes(_KEY_BYTES))
            master = path.read_bytes()
            if len(master) != _KEY_BYTES:
                raise SealedContentError("master", f"{path} is not a {_KEY_BYTES}-byte key")
            self._master = master
        return self._master

    def _wrap(self, key: DataKey) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        aad = f"{key.subject_id}|{key.key_id}".encode()
        wrapped = AESGCM(self._master_key()).encrypt(nonce, key.secret, aad)
        record = {
            "key_id": key.key_id,
            "subject_id": key.subject_id,
            "nonce": base64.b64encode(nonce).decode(),
            "wrapped": base64.b64encode(wrapped).decode(),
        }
        return json.dumps(record, sort_keys=True).encode()

    def _read(self, subject_id: str) -> DataKey | None:
        path = self._path(subject_id)
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._cache.pop(subject_id, None)
            return None
        identity = (stat.st_ino, stat.st_mtime_ns)
        cached = self._cache.get(subject_id)
        if cached is not None and cached[0] == identity:
            return cached[1]
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise SealedContentError("unknown", f"key file {path} is unreadable: {e}") from e
        key_id = str(record["key_id"])
        aad = f"{subject_id}|{key_id}".encode()
        try:
            secret = AESGCM(self._master_key()).decrypt(
                base64.b64decode(record["nonce"]), base64.b64decode(record["wrapped"]), aad
            )
        except InvalidTag as e:
            raise SealedContentError(key_id, f"key file {path} does not unwrap under the master key") from e
        key = DataKey(key_id, subject_id, secret)
        self._cache[subject_id] = (identity, key)
        return key

    def _create_exclusively(self, path: Path, data: bytes) -> bool:
        """Write `path` only if it does not exist yet; True when this call created it."""
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True


class Sealer:
    """Seals text for a subject and opens sealed content. The constructor does no I/O."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    @property
    def keys(self) -> KeyStore:
        return self._keys

    def seal(self, text: str, subject_id: str) -> Sealed:
        key = self._keys.key_for(subject_id)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ciphertext = AESGCM(key.secret).encrypt(nonce, text.encode(), _aad(subject_id, key.key_id))
        return Sealed(
            key_id=key.key_id,
            subject_id=subject_id,
            nonce=base64.b64encode(nonce).decode(),
            ciphertext=base64.b64encode(ciphertext).decode(),
        )

    def seal_content(self, text: str, subject_id: str) -> Content:
        return Content(sealed=self.seal(text, subject_id))

    def open(self, content: Content | Sealed) -> str:
        """The clear text of content; `SealedContentError` once the subject's key is destroyed."""
        if isinstance(content, Content):
            if content.text is not None:
                return content.text
            assert content.sealed is not None  # Content holds exactly one of the two
            content = content.sealed
        key = self._keys.get(content.subject_id, content.key_id)
        try:
            clear = AESGCM(key.secret).decrypt(
                base64.b64decode(content.nonce),
                base64.b64decode(content.ciphertext),
                _aad(content.subject_id, content.key_id),
            )
        except (InvalidTag, ValueError) as e:
            raise SealedContentError(
                content.key_id, "the ciphertext does not open (tampered or wrong key)"
            ) from e
        return clear.decode()


def _aad(subject_id: str, key_id: str) -> bytes:
    # Binds the ciphertext to its subject and key: a sealed blob copied onto another
    # subject's memory does not open.
    return f"memlake:v1|{subject_id}|{key_id}".encode()
