"""`memlake keys ...` and `memlake index rebuild` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memlake.cli import main
from serving.auth import ApiKeyStore
from tests.serving.conftest import Stack


def test_keys_create_list_revoke(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys.json"
    monkeypatch.setenv("MEMLAKE_SERVING_API_KEYS_FILE", str(keys_file))
    assert main(["keys", "create", "user:zoe", "--name", "laptop", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["principal"] == "user:zoe"
    assert ApiKeyStore(keys_file).authenticate(created["key"]).key_id == created["key_id"]
    assert created["key"] not in keys_file.read_text()

    assert main(["keys", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed == {**listed, "key_id": created["key_id"], "name": "laptop", "revoked_at": None}
    assert "key" not in listed

    assert main(["keys", "revoke", created["key_id"]]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "revoke", "nope"]) == 1
    assert main(["keys", "create", "not-a-principal"]) == 1


@pytest.mark.integration
def test_index_rebuild_fills_a_fresh_collection_from_the_lake(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cube = stack.cube("cli-rebuild")
    stack.remember(cube, "Rebuilt indexes hold every live memory.", settle=True)
    stack.components.recorder.flush()
    stack.catch_up()
    expected = stack.components.keeper.current().searchable_keys()
    s = stack.settings
    monkeypatch.setenv("MEMLAKE_LAKE_ROOT", s.lake.root)
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", s.kafka.bootstrap)
    monkeypatch.setenv("MEMLAKE_KAFKA_EVENTS_TOPIC", s.kafka.events_topic)
    monkeypatch.setenv("MEMLAKE_SERVING_MILVUS_URI", str(tmp_path / "rebuilt.db"))
    # Sealed memories are indexed only if their subjects' keys can be opened.
    monkeypatch.setenv("MEMLAKE_GOVERNANCE_KEY_STORE", str(s.governance.key_store))
    assert main(["index", "rebuild"]) == 0
    out = capsys.readouterr().out
    written = int(out.split()[1])
    # Reads may have landed since (they change no indexed row): the same rows either way.
    assert written == len(expected)
