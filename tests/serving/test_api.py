"""The HTTP API end to end: real broker, Delta tables, Beam pipeline, Milvus Lite, embedder and LLM."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from memlake.events import MemoryArchived, new_event
from memlake.model import Actor, ActorKind
from serving.auth import ApiKeyStore
from tests.serving.conftest import ROLES, Stack

pytestmark = pytest.mark.integration


_CUBES: dict[str, dict[str, Any]] = {
    "ryw": {},
    "lifecycle": {},
    "filters": {},
    "ttl": {},
    "history": {},
    "lineage": {},
    "usage": {},
    "privacy": {},
    "governed": {},
    "multi-a": {},
    "multi-b": {"readers": ()},
    "chat": {},
    "errors": {},
}


@pytest.fixture(scope="module")
def cubes(stack: Stack) -> dict[str, str]:
    """Every cube this module's tests use, created at once: one pipeline round instead of one per test."""
    return stack.cubes(_CUBES)


def ids(result: dict[str, Any]) -> list[str]:
    return [hit["memory"]["memory_id"] for hit in result["hits"]]


def test_read_your_writes(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["ryw"]
    receipt = stack.remember(cube, "The staging database lives in eu-west-1.", settle=False)
    assert {"event_id", "partition", "offset", "topic", "memory_id"} <= set(receipt)
    result = stack.search(
        [cube],
        "where is the staging database",
        consistency="wait",
        wait_for=[{"partition": receipt["partition"], "offset": receipt["offset"]}],
    )
    assert ids(result) == [receipt["memory_id"]]
    assert result["snapshot_version"] >= 0
    hit = result["hits"][0]
    assert hit["ranks"] == {"dense": 1, "lexical": 1}
    assert 0 < hit["relevance"] <= 1


def test_memory_update_and_delete_change_what_search_returns(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["lifecycle"]
    m = stack.remember(cube, "Bob's favourite colour is green.", tags=["colour"])
    other = stack.remember(cube, "Bob works on the payments team.", settle=True)
    mid = m["memory_id"]
    response = stack.client.patch(
        f"/v1/cubes/{cube}/memories/{mid}",
        json={"text": "Bob's favourite colour is purple."},
        headers=stack.headers("writer"),
    )
    assert response.status_code == 202, response.text
    stack.settle(response.json())
    got = stack.client.get(f"/v1/cubes/{cube}/memories/{mid}", headers=stack.headers("reader")).json()
    assert got["text"] == "Bob's favourite colour is purple."
    assert got["version"] == 2
    assert ids(stack.search([cube], "purple", mode="lexical")) == [mid]
    assert ids(stack.search([cube], "green", mode="lexical")) == []

    response = stack.client.delete(f"/v1/cubes/{cube}/memories/{mid}", headers=stack.headers("owner"))
    assert response.status_code == 202
    stack.settle(response.json())
    for mode in ("hybrid", "dense", "lexical"):
        assert mid not in ids(stack.search([cube], "favourite colour purple", mode=mode)), mode
    listed = stack.client.get(f"/v1/cubes/{cube}/memories", headers=stack.headers("owner")).json()
    assert [x["memory_id"] for x in listed["memories"]] == [other["memory_id"]]
    deleted = stack.client.get(
        f"/v1/cubes/{cube}/memories", params={"status": "deleted"}, headers=stack.headers("owner")
    ).json()
    assert [x["memory_id"] for x in deleted["memories"]] == [mid]
    # A deleted memory cannot change any more.
    again = stack.client.delete(f"/v1/cubes/{cube}/memories/{mid}", headers=stack.headers("owner"))
    assert again.status_code == 404


def test_filters_on_kind_tags_time_and_status(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["filters"]
    work = stack.remember(cube, "Quarterly planning meeting on Monday.", tags=["work"], memory_type="event")
    home = stack.remember(cube, "Planning the garden on Monday.", tags=["home"], settle=True)
    assert ids(stack.search([cube], "planning monday", filters={"tags_any": ["work"]})) == [work["memory_id"]]
    assert ids(stack.search([cube], "planning monday", filters={"memory_types": ["event"]})) == [
        work["memory_id"]
    ]
    assert ids(stack.search([cube], "planning monday", filters={"kinds": ["parametric"]})) == []
    assert set(ids(stack.search([cube], "planning monday"))) == {work["memory_id"], home["memory_id"]}
    assert ids(stack.search([cube], "planning", filters={"created_after": "2100-01-01T00:00:00Z"})) == []

    # Archive one (as consolidation would); it leaves default results but can be asked for.
    event = new_event(
        MemoryArchived,
        cube_id=cube,
        memory_id=home["memory_id"],
        actor=Actor(kind=ActorKind.SYSTEM, id="consolidate"),
        payload={"reason": "decay"},
    )
    [receipt] = stack.components.commands._sink.send([event])
    stack.settle({"cube_id": cube, "partition": receipt.partition, "offset": receipt.offset})
    assert ids(stack.search([cube], "garden planning")) == [work["memory_id"]]
    archived = stack.search([cube], "garden planning", filters={"statuses": ["archived"]})
    assert ids(archived) == [home["memory_id"]]
    bad = stack.client.post(
        "/v1/search",
        json={"query": "x", "cube_ids": [cube], "filters": {"statuses": ["deleted"]}},
        headers=stack.headers("owner"),
    )
    assert bad.status_code == 422


def test_expired_memories_are_not_returned_even_before_the_expiry_event(
    stack: Stack, cubes: dict[str, str]
) -> None:
    cube = cubes["ttl"]
    short = stack.remember(cube, "The door code is 4711 today.", ttl_seconds=1, settle=True)
    time.sleep(1.2)
    assert short["memory_id"] not in ids(stack.search([cube], "door code"))


def test_rollback_versions_as_of_and_diff(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["history"]
    first = stack.remember(cube, "Project Falcon ships in March.")
    second = stack.remember(cube, "Project Falcon slipped to June.", settle=True)
    cube_now = stack.client.get(f"/v1/cubes/{cube}", headers=stack.headers("reader")).json()
    assert cube_now["version"] == 3

    versions = stack.client.get(f"/v1/cubes/{cube}/versions", headers=stack.headers("reader")).json()
    assert [v["event_type"] for v in versions["versions"]] == ["cube.created", "memory.added", "memory.added"]
    page = stack.client.get(
        f"/v1/cubes/{cube}/versions", params={"limit": 2}, headers=stack.headers("reader")
    ).json()
    assert page["next_after_version"] == 2

    at2 = stack.client.get(
        f"/v1/cubes/{cube}/as-of", params={"version": 2}, headers=stack.headers("reader")
    ).json()
    assert [m["memory_id"] for m in at2["memories"]] == [first["memory_id"]]
    out_of_range = stack.client.get(
        f"/v1/cubes/{cube}/as-of", params={"version": 99}, headers=stack.headers("reader")
    )
    assert out_of_range.status_code == 422
    neither = stack.client.get(f"/v1/cubes/{cube}/as-of", headers=stack.headers("reader"))
    assert neither.status_code == 422

    diff = stack.client.get(
        f"/v1/cubes/{cube}/diff", params={"from_version": 2, "to_version": 3}, headers=stack.headers("reader")
    ).json()
    assert [m["memory_id"] for m in diff["added"]] == [second["memory_id"]]
    assert diff["removed"] == []
    assert diff["changed"] == []

    response = stack.client.post(
        f"/v1/cubes/{cube}/rollback", json={"to_version": 2}, headers=stack.headers("owner")
    )
    assert response.status_code == 202, response.text
    stack.settle(response.json())
    for mode in ("hybrid", "dense", "lexical"):
        assert ids(stack.search([cube], "Project Falcon June March", mode=mode)) == [first["memory_id"]], mode
    too_far = stack.client.post(
        f"/v1/cubes/{cube}/rollback", json={"to_version": 50}, headers=stack.headers("owner")
    )
    assert too_far.status_code == 422


def test_history_and_lineage(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["lineage"]
    source = stack.remember(cube, "Carol prefers morning meetings.", settle=True)
    mid = source["memory_id"]
    response = stack.client.patch(
        f"/v1/cubes/{cube}/memories/{mid}", json={"tags": ["pref"]}, headers=stack.headers("owner")
    )
    stack.settle(response.json())
    derived = stack.remember(
        cube, "Schedule Carol's reviews before noon.", lineage=[{"memory_id": mid, "version": 2}], settle=True
    )
    history = stack.client.get(
        f"/v1/cubes/{cube}/memories/{mid}/history", headers=stack.headers("reader")
    ).json()
    assert [(v["memory"]["version"], v["event_type"]) for v in history["versions"]] == [
        (1, "memory.added"),
        (2, "memory.updated"),
    ]
    lineage = stack.client.get(
        f"/v1/cubes/{cube}/memories/{derived['memory_id']}/lineage", headers=stack.headers("reader")
    ).json()
    assert lineage["lineage"]["sources"][0]["memory_id"] == mid
    assert lineage["lineage"]["sources"][0]["version"] == 2
    upstream = stack.client.get(
        f"/v1/cubes/{cube}/memories/{mid}/lineage", headers=stack.headers("reader")
    ).json()
    assert [m["memory_id"] for m in upstream["derived"]] == [derived["memory_id"]]


def test_searches_are_counted_by_memory_accessed_events(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["usage"]
    m = stack.remember(cube, "Dana's birthday is on the 3rd of May.", settle=True)
    for _ in range(2):
        assert ids(stack.search([cube], "Dana birthday", role="reader")) == [m["memory_id"]]
    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline:
        got = stack.client.get(
            f"/v1/cubes/{cube}/memories/{m['memory_id']}", headers=stack.headers("owner")
        ).json()
        count = got["access_count"]
        if count >= 2:
            break
        time.sleep(0.3)
    assert count == 2
    assert got["last_accessed_at"] is not None
    # Reads move behavioural indicators, never the memory's version.
    assert got["version"] == 1


def test_private_memories_and_readers_override(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["privacy"]
    private = stack.remember(cube, "Eve's salary is 90k.", visibility="private")
    named = stack.remember(cube, "Eve's manager is Frank.", readers_override=[ROLES["writer"]])
    public = stack.remember(cube, "Eve joined in 2021.", settle=True)
    reader_hits = ids(stack.search([cube], "Eve salary manager joined", role="reader"))
    assert reader_hits == [public["memory_id"]]
    assert set(ids(stack.search([cube], "Eve salary manager joined", role="writer"))) == {
        private["memory_id"],
        named["memory_id"],
        public["memory_id"],
    }
    hidden = stack.client.get(
        f"/v1/cubes/{cube}/memories/{private['memory_id']}", headers=stack.headers("reader")
    )
    assert hidden.status_code == 404
    listed = stack.client.get(f"/v1/cubes/{cube}/memories", headers=stack.headers("reader")).json()
    assert [m["memory_id"] for m in listed["memories"]] == [public["memory_id"]]


def test_acl_and_policy_changes_take_effect(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["governed"]
    stack.remember(cube, "Gina's passport number is X123.")
    response = stack.client.put(
        f"/v1/cubes/{cube}/acl", json={"writers": [], "readers": []}, headers=stack.headers("owner")
    )
    assert response.status_code == 202
    stack.settle(response.json())
    assert stack.client.get(f"/v1/cubes/{cube}", headers=stack.headers("reader")).status_code == 404

    response = stack.client.put(
        f"/v1/cubes/{cube}/policy", json={"policy": {"encrypt_content": True}}, headers=stack.headers("owner")
    )
    stack.settle(response.json())
    sealed = stack.remember(cube, "Gina lives at 12 Elm Street.", settle=True)
    got = stack.client.get(
        f"/v1/cubes/{cube}/memories/{sealed['memory_id']}", headers=stack.headers("owner")
    ).json()
    assert got["sealed"] is True
    assert got["text"] == "Gina lives at 12 Elm Street."
    assert ids(stack.search([cube], "where does Gina live"))[0] == sealed["memory_id"]


def test_search_over_several_cubes_needs_every_cube_readable(stack: Stack, cubes: dict[str, str]) -> None:
    a = cubes["multi-a"]
    b = cubes["multi-b"]
    ma = stack.remember(a, "Hiro plays the violin.")
    mb = stack.remember(b, "Hiro plays chess on Fridays.")
    stack.settle(ma)
    stack.settle(mb)
    assert set(ids(stack.search([a, b], "what does Hiro play"))) == {ma["memory_id"], mb["memory_id"]}
    refused = stack.client.post(
        "/v1/search", json={"query": "Hiro", "cube_ids": [a, b]}, headers=stack.headers("reader")
    )
    assert refused.status_code == 404
    assert b in refused.json()["error"]["message"]


def test_chat_answers_with_the_memories_it_used(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["chat"]
    tea = stack.remember(cube, "Ivan drinks green tea every morning.")
    stack.remember(cube, "Ivan's car is a red bicycle.", settle=True)
    response = stack.client.post(
        "/v1/chat",
        json={
            "cube_ids": [cube],
            "messages": [{"role": "user", "content": "What does Ivan drink?"}],
            "max_new_tokens": 16,
        },
        headers=stack.headers("reader"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["memories_used"][0]["memory_id"] == tea["memory_id"]
    assert sum(m["tokens"] for m in body["memories_used"]) <= stack.settings.serving.context_token_budget
    assert body["answer"].strip()
    assert body["usage"]["completion_tokens"] <= 16

    tight = stack.client.post(
        "/v1/chat",
        json={
            "cube_ids": [cube],
            "messages": [{"role": "user", "content": "What does Ivan drink?"}],
            "max_new_tokens": 4,
            "token_budget": 0,
        },
        headers=stack.headers("reader"),
    ).json()
    assert tight["memories_used"] == []

    with stack.client.stream(
        "POST",
        "/v1/chat",
        json={
            "cube_ids": [cube],
            "messages": [{"role": "user", "content": "What does Ivan drink?"}],
            "stream": True,
            "max_new_tokens": 8,
        },
        headers=stack.headers("reader"),
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = [
            line.removeprefix("event: ") for line in streamed.iter_lines() if line.startswith("event: ")
        ]
    assert events[0] == "memories"
    assert events[-1] == "done"
    assert "token" in events
    over = stack.client.post(
        "/v1/chat",
        json={"cube_ids": [cube], "messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 10_000},
        headers=stack.headers("reader"),
    )
    assert over.status_code == 422


def test_health_readiness_metrics_and_openapi(stack: Stack, cubes: dict[str, str]) -> None:
    assert stack.client.get("/v1/health").json() == {
        "status": "ok",
        "snapshot_version": None,
        "memories": None,
        "problem": None,
    }
    ready = stack.client.get("/v1/ready").json()
    assert ready["status"] == "ok"
    assert ready["snapshot_version"] >= 0
    stack.search([cubes["ryw"]], "anything")  # this test's own search: the stage histogram has one
    text = stack.client.get("/metrics").text
    for name in (
        "memlake_http_request_duration_seconds_bucket",
        "memlake_snapshot_version",
        "memlake_index_lag_versions",
        "memlake_consumer_lag_events",
        "memlake_search_stage_seconds_bucket",
    ):
        assert name in text, name
    assert "memlake_embedded_pipeline_standing_by 0.0" in text  # the stack's own pipeline writes
    spec = stack.client.get("/v1/openapi.json").json()
    assert all(path.startswith("/v1/") for path in spec["paths"] if path != "/metrics")
    assert "/v1/chat/completions" in spec["paths"]


def test_errors_are_json_and_say_what_was_wrong(stack: Stack, cubes: dict[str, str]) -> None:
    cube = cubes["errors"]
    no_key = stack.client.get(f"/v1/cubes/{cube}")
    assert no_key.status_code == 401
    assert no_key.headers["www-authenticate"].startswith("Bearer")
    assert no_key.json()["error"]["type"] == "unauthenticated"
    bad_key = stack.client.get(f"/v1/cubes/{cube}", headers={"Authorization": "Bearer mlk_nope_nope"})
    assert bad_key.status_code == 401

    invalid = stack.client.post(
        "/v1/search", json={"query": "", "cube_ids": []}, headers=stack.headers("owner")
    )
    assert invalid.status_code == 422
    fields = {d["field"] for d in invalid.json()["error"]["details"]}
    assert {"body.query", "body.cube_ids"} <= fields

    long_query = stack.client.post(
        "/v1/search", json={"query": "x" * 5000, "cube_ids": [cube]}, headers=stack.headers("owner")
    )
    assert long_query.status_code == 422
    assert "over the limit" in long_query.json()["error"]["message"]
    big_k = stack.client.post(
        "/v1/search", json={"query": "x", "cube_ids": [cube], "top_k": 10_000}, headers=stack.headers("owner")
    )
    assert big_k.status_code == 422

    huge = stack.client.post(
        f"/v1/cubes/{cube}/memories",
        content=json.dumps({"text": "y" * 2_000_000}),
        headers={**stack.headers("owner"), "content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["type"] == "payload_too_large"

    never = stack.client.get(
        f"/v1/cubes/{cube}",
        params={"consistency": "wait", "wait_for": "0:999999999"},
        headers=stack.headers("owner"),
    )
    assert never.status_code == 422
    assert never.json()["error"]["details"][0]["field"] == "wait_for.offset"


def test_a_revoked_key_is_refused_by_the_running_service(stack: Stack, cubes: dict[str, str]) -> None:
    store = ApiKeyStore(stack.settings.serving.api_keys_file)
    issued = store.create("user:temporary")
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert stack.client.get("/v1/cubes", headers=headers).status_code == 200
    store.revoke(issued.key.key_id)
    refused = stack.client.get("/v1/cubes", headers=headers)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]
