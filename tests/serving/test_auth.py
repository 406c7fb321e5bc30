from __future__ import annotations

import json
from pathlib import Path

import pytest

from memlake.errors import AuthenticationError, ConfigError
from serving.auth import ApiKeyStore


def test_a_created_key_authenticates_as_its_principal_and_only_its_digest_is_stored(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    issued = store.create("user:alice", name="laptop")
    key = store.authenticate(issued.secret)
    assert key.principal == "user:alice"
    assert key.actor.id == "alice"
    stored = (tmp_path / "keys.json").read_text()
    assert issued.secret not in stored
    assert json.loads(stored)["keys"][0]["digest"].startswith("sha256:")
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


def test_wrong_missing_malformed_and_revoked_keys_are_refused(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    issued = store.create("agent:bot")
    with pytest.raises(AuthenticationError, match="required"):
        store.authenticate(None)
    with pytest.raises(AuthenticationError, match="malformed"):
        store.authenticate("hello")
    with pytest.raises(AuthenticationError, match="unknown"):
        store.authenticate(issued.secret[:-2] + "xx")
    # A running service (its own store object) sees the revocation without a restart.
    service_view = ApiKeyStore(tmp_path / "keys.json")
    assert service_view.authenticate(issued.secret).key_id == issued.key.key_id
    store.revoke(issued.key.key_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        service_view.authenticate(issued.secret)
    assert [k.active for k in service_view.entries()] == [False]


def test_principals_must_be_kind_colon_id(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    with pytest.raises(ConfigError):
        store.create("alice")
    with pytest.raises(AuthenticationError, match="no API key"):
        store.revoke("nope")
