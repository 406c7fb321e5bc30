"""Envelope encryption with real AES-256-GCM and a real key folder (no broker needed)."""

from __future__ import annotations

import base64
import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from memlake.errors import SealedContentError
from memlake.model import Content, Sealed
from streams.sealing import LocalKeyStore, Sealer


@pytest.fixture
def sealer(tmp_path: Path) -> Sealer:
    return Sealer(LocalKeyStore(tmp_path / "keys"))


def test_the_constructor_does_no_io(tmp_path: Path) -> None:
    Sealer(LocalKeyStore(tmp_path / "keys"))
    assert not (tmp_path / "keys").exists()


def test_seal_and_open_round_trip(sealer: Sealer) -> None:
    sealed = sealer.seal("Bob's blood type is O-", "bob")
    assert sealed.subject_id == "bob"
    assert sealed.alg == "AES-256-GCM"
    assert b"blood" not in base64.b64decode(sealed.ciphertext)
    assert sealer.open(sealed) == "Bob's blood type is O-"
    assert sealer.open(Content(sealed=sealed)) == "Bob's blood type is O-"
    assert sealer.open(Content(text="clear")) == "clear"


def test_one_key_per_subject_and_fresh_nonces(sealer: Sealer) -> None:
    a1, a2 = sealer.seal("same", "ann"), sealer.seal("same", "ann")
    b = sealer.seal("same", "bob")
    assert a1.key_id == a2.key_id != b.key_id
    assert a1.nonce != a2.nonce
    assert a1.ciphertext != a2.ciphertext


def test_destroying_the_key_makes_every_copy_unreadable(sealer: Sealer, tmp_path: Path) -> None:
    sealed = sealer.seal("about bob", "bob")
    other = sealer.seal("about ann", "ann")
    assert sealer.keys.destroy("bob") == sealed.key_id
    with pytest.raises(SealedContentError) as info:
        sealer.open(sealed)
    assert info.value.key_id == sealed.key_id
    # Another process (a fresh store on the same folder) cannot open it either.
    with pytest.raises(SealedContentError):
        Sealer(LocalKeyStore(tmp_path / "keys")).open(sealed)
    assert sealer.open(other) == "about ann"
    assert sealer.keys.destroy("bob") is None


def test_a_subject_sealed_again_after_erasure_gets_a_new_key(sealer: Sealer) -> None:
    old = sealer.seal("before", "bob")
    sealer.keys.destroy("bob")
    new = sealer.seal("after", "bob")
    assert new.key_id != old.key_id
    assert sealer.open(new) == "after"
    with pytest.raises(SealedContentError, match="was destroyed"):
        sealer.open(old)


def test_a_key_destroyed_by_another_process_is_noticed(sealer: Sealer, tmp_path: Path) -> None:
    sealed = sealer.seal("cached key", "bob")
    assert sealer.open(sealed) == "cached key"
    LocalKeyStore(tmp_path / "keys").destroy("bob")
    with pytest.raises(SealedContentError):
        sealer.open(sealed)


def test_tampered_or_moved_ciphertext_does_not_open(sealer: Sealer) -> None:
    sealed = sealer.seal("secret", "bob")
    raw = bytearray(base64.b64decode(sealed.ciphertext))
    raw[0] ^= 1
    tampered = sealed.model_copy(update={"ciphertext": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(SealedContentError, match="does not open"):
        sealer.open(tampered)
    sealer.seal("ann's", "ann")
    ann_key = sealer.keys.key_for("ann").key_id
    moved = Sealed(
        key_id=ann_key, subject_id="ann", nonce=sealed.nonce, ciphertext=sealed.ciphertext
    )  # bob's blob relabelled as ann's
    with pytest.raises(SealedContentError):
        sealer.open(moved)


def test_key_files_are_wrapped_and_private(sealer: Sealer, tmp_path: Path) -> None:
    key = sealer.keys.key_for("bob")
    files = {p.name: p for p in (tmp_path / "keys").iterdir()}
    assert "master.key" in files
    assert stat.S_IMODE(files["master.key"].stat().st_mode) == 0o600
    (record_path,) = [p for name, p in files.items() if name.endswith(".json")]
    record = json.loads(record_path.read_text())
    assert record["key_id"] == key.key_id
    assert base64.b64decode(record["wrapped"]) != key.secret
    assert key.secret.hex() not in record_path.read_text()
    assert "secret" not in repr(key)
    assert key.secret not in repr(key).encode()


def _key_id_in_child(root: str) -> str:
    return LocalKeyStore(Path(root)).key_for("racer").key_id


def test_processes_racing_for_a_new_subject_agree_on_one_key(tmp_path: Path) -> None:
    root = str(tmp_path / "keys")
    LocalKeyStore(Path(root)).key_for("warm-up")  # the master key exists before the race
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_key_id_in_child, [root] * 8)
    assert len(set(ids)) == 1
