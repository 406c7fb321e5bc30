"""Where KV caches and adapters live: an `ArtifactStore` of immutable folders.

An artifact is a folder written once under a key and never changed: a new
KV cache or adapter is a new folder. Its sha256 (over file names and bytes)
travels in the event's `ArtifactRef`, so a reader can tell a damaged or
swapped copy from the one the event describes.

`FileSystemArtifactStore` is the adapter over pyarrow's file systems: a local
folder by default, S3 or GCS by URI (`s3://bucket/prefix`) in production.
Remote folders are fetched into a local cache before use.
"""

from __future__ import annotations

__all__ = ["ArtifactStore", "FileSystemArtifactStore", "artifact_sha256", "path_component"]

import hashlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import quote

from memlake.errors import ArtifactError


def path_component(value: str) -> str:
    """An identifier as one safe path component (cube ids may hold ':' and '/')."""
    return quote(value, safe="-._")


def artifact_sha256(folder: Path) -> str:
    """Digest of a folder's files: names and bytes, in name order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(8 * 1024 * 1024):
                digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore(ABC):
    """Immutable artifact folders addressed by URI."""

    @abstractmethod
    def put(self, folder: Path, key: str) -> str:
        """Store a local folder under `key`; returns its URI. An existing key is refused."""

    @abstractmethod
    def fetch(self, uri: str) -> Path:
        """A local folder with the artifact's files (the folder itself when it is local)."""

    @abstractmethod
    def exists(self, uri: str) -> bool: ...

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Remove an artifact (erasure, or dropping a job's leftovers)."""


class FileSystemArtifactStore(ArtifactStore):
    """Artifacts under a folder or object-store prefix, through `pyarrow.fs`."""

    def __init__(self, root: str, *, cache_dir: Path | None = None) -> None:
        self._root = root.rstrip("/")
        self._cache_dir = cache_dir
        self._fs: Any = None
        self._base = ""

    @property
    def root(self) -> str:
        return self._root

    @property
    def is_local(self) -> bool:
        return "://" not in self._root or self._root.startswith("file://")

    def _filesystem(self) -> tuple[Any, str]:
        if self._fs is None:
            import pyarrow as pa
            import pyarrow.fs as pafs

            try:
                self._fs, self._base = pafs.FileSystem.from_uri(self._root)
            except (pa.ArrowInvalid, OSError) as e:
                raise ArtifactError(self._root, f"cannot open the artifact store: {e}") from e
        return self._fs, self._base

    def uri_of(self, key: str) -> str:
        return f"{self._root}/{key.strip('/')}"

    def _path_of(self, uri: str) -> str:
        if not uri.startswith(self._root + "/"):
            raise ArtifactError(uri, f"not under the artifact store {self._root}")
        _, base = self._filesystem()
        return f"{base.rstrip('/')}/{uri[len(self._root) + 1 :]}"

    def put(self, folder: Path, key: str) -> str:
        import pyarrow.fs as pafs

        uri = self.uri_of(key)
        if self.exists(uri):
            raise ArtifactError(uri, "an artifact already exists under this key")
        fs, _ = self._filesystem()
        target = self._path_of(uri)
        try:
            if self.is_local:
                # Copy beside the target, then rename: a crash never leaves half a folder.
                final = Path(target)
                final.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
                shutil.copytree(folder, staging, dirs_exist_ok=True)
                os.replace(staging, final)
            else:
                pafs.copy_files(str(folder), target, destination_filesystem=fs)
        except OSError as e:
            raise ArtifactError(uri, f"could not store: {e}") from e
        return uri

    def exists(self, uri: str) -> bool:
        import pyarrow.fs as pafs

        fs, _ = self._filesystem()
        info = fs.get_file_info(self._path_of(uri))
        return bool(info.type != pafs.FileType.NotFound)

    def fetch(self, uri: str) -> Path:
        import pyarrow.fs as pafs

        path = self._path_of(uri)
        if not self.exists(uri):
            raise ArtifactError(uri, "no such artifact")
        if self.is_local:
            return Path(path)
        cache = self._cache_dir or Path(tempfile.gettempdir()) / "memlake-artifacts"
        local = cache / hashlib.sha256(uri.encode()).hexdigest()[:24]
        if not local.is_dir():
            fs, _ = self._filesystem()
            cache.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
            try:
                pafs.copy_files(path, str(staging), source_filesystem=fs)
                os.replace(staging, local)
            except OSError as e:
                shutil.rmtree(staging, ignore_errors=True)
                raise ArtifactError(uri, f"could not fetch: {e}") from e
        return local

    def delete(self, uri: str) -> None:
        fs, _ = self._filesystem()
        try:
            fs.delete_dir(self._path_of(uri))
        except FileNotFoundError:
            return
        except OSError as e:
            raise ArtifactError(uri, f"could not delete: {e}") from e
