from __future__ import annotations

from pathlib import Path

import pytest

from memlake.errors import ArtifactError
from training.artifacts import FileSystemArtifactStore, artifact_sha256, path_component


def _folder(root: Path, content: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "a.bin").write_bytes(content)
    (root / "sub").mkdir()
    (root / "sub" / "b.json").write_text("{}")
    return root


def test_an_artifact_is_stored_once_and_read_back_with_its_digest(tmp_path: Path) -> None:
    store = FileSystemArtifactStore(str(tmp_path / "store"))
    source = _folder(tmp_path / "src", b"weights")
    uri = store.put(source, f"kv/{path_component('team:a/b')}/1")
    assert uri == f"{tmp_path}/store/kv/team%3Aa%2Fb/1"
    assert store.exists(uri)
    assert artifact_sha256(store.fetch(uri)) == artifact_sha256(source)
    with pytest.raises(ArtifactError, match="already exists"):
        store.put(source, f"kv/{path_component('team:a/b')}/1")
    store.delete(uri)
    assert not store.exists(uri)
    with pytest.raises(ArtifactError, match="no such artifact"):
        store.fetch(uri)


def test_the_digest_covers_names_and_bytes(tmp_path: Path) -> None:
    one = _folder(tmp_path / "one", b"x")
    two = _folder(tmp_path / "two", b"y")
    assert artifact_sha256(one) != artifact_sha256(two)
    (two / "a.bin").write_bytes(b"x")
    assert artifact_sha256(one) == artifact_sha256(two)
    (two / "a.bin").rename(two / "c.bin")
    assert artifact_sha256(one) != artifact_sha256(two)


def test_uris_outside_the_store_are_refused(tmp_path: Path) -> None:
    store = FileSystemArtifactStore(str(tmp_path / "store"))
    with pytest.raises(ArtifactError, match="not under the artifact store"):
        store.fetch("/elsewhere/x")
