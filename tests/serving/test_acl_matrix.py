"""Every endpoint x owner / writer / reader / stranger / no key.

A stranger must not be able to read, search, chat over, roll back or even
learn the existence of another principal's cube: its answers about an
existing cube are exactly those about a cube that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.serving.conftest import ROLES, Stack

pytestmark = pytest.mark.integration

ROLE_ORDER = ("owner", "writer", "reader", "stranger", None)


@dataclass(frozen=True)
class Target:
    cube: str
    memory: str
    cube_version: int
    delete: dict[str | None, str]  # role -> a memory only that role tries to delete


@pytest.fixture(scope="module")
def target(stack: Stack) -> Target:
    cube = stack.cube("acl-matrix", writers=("writer",), readers=("reader",))
    memory = stack.remember(cube, "Jun keeps the spare key under the blue pot.")
    delete = {
        role: stack.remember(cube, f"Disposable memory for {role}.")["memory_id"] for role in ROLE_ORDER
    }
    last = stack.remember(cube, "Jun's cat is called Mochi.")
    stack.settle(last)
    version = stack.client.get(f"/v1/cubes/{cube}", headers=stack.headers("owner")).json()["version"]
    return Target(cube, memory["memory_id"], version, delete)


Call = Callable[[Stack, Target, str | None, str], Any]


def _request(method: str, path: str, **kw: Any) -> Call:
    def call(stack: Stack, t: Target, role: str | None, cube: str) -> Any:
        url = path.format(cube=cube, memory=t.memory, delete=t.delete[role], version=t.cube_version)
        body = kw.get("json")
        if callable(body):
            body = body(t)
        headers = {
            **stack.headers(role),
            **{k: v.format(cube=cube) for k, v in kw.get("headers", {}).items()},
        }
        json_body = (
            body
            if not isinstance(body, dict)
            else {k: (v.format(cube=cube) if isinstance(v, str) else v) for k, v in body.items()}
        )
        if isinstance(json_body, dict) and "cube_ids" in json_body:
            json_body["cube_ids"] = [cube]
        return stack.client.request(method, url, params=kw.get("params"), json=json_body, headers=headers)

    return call


ASK = [{"role": "user", "content": "Where is the spare key?"}]
# endpoint -> (call, expected status per role in ROLE_ORDER)
ENDPOINTS: dict[str, tuple[Call, tuple[int, int, int, int, int]]] = {
    "get cube": (_request("GET", "/v1/cubes/{cube}"), (200, 200, 200, 404, 401)),
    "change policy": (
        _request("PUT", "/v1/cubes/{cube}/policy", json={"policy": {}}),
        (202, 403, 403, 404, 401),
    ),
    "change acl": (
        _request(
            "PUT",
            "/v1/cubes/{cube}/acl",
            json={"writers": [ROLES["writer"]], "readers": [ROLES["reader"]]},
        ),
        (202, 403, 403, 404, 401),
    ),
    "list versions": (_request("GET", "/v1/cubes/{cube}/versions"), (200, 200, 200, 404, 401)),
    "as of": (_request("GET", "/v1/cubes/{cube}/as-of", params={"version": 1}), (200, 200, 200, 404, 401)),
    "diff": (
        _request("GET", "/v1/cubes/{cube}/diff", params={"from_version": 1, "to_version": 2}),
        (200, 200, 200, 404, 401),
    ),
    "roll back": (
        _request("POST", "/v1/cubes/{cube}/rollback", json=lambda t: {"to_version": t.cube_version}),
        (202, 403, 403, 404, 401),
    ),
    "add memory": (
        _request("POST", "/v1/cubes/{cube}/memories", json={"text": "A new fact."}),
        (202, 202, 403, 404, 401),
    ),
    "list memories": (_request("GET", "/v1/cubes/{cube}/memories"), (200, 200, 200, 404, 401)),
    "get memory": (_request("GET", "/v1/cubes/{cube}/memories/{memory}"), (200, 200, 200, 404, 401)),
    "update memory": (
        _request("PATCH", "/v1/cubes/{cube}/memories/{memory}", json={"priority": 0.9}),
        (202, 202, 403, 404, 401),
    ),
    "delete memory": (_request("DELETE", "/v1/cubes/{cube}/memories/{delete}"), (202, 202, 403, 404, 401)),
    "memory history": (
        _request("GET", "/v1/cubes/{cube}/memories/{memory}/history"),
        (200, 200, 200, 404, 401),
    ),
    "memory lineage": (
        _request("GET", "/v1/cubes/{cube}/memories/{memory}/lineage"),
        (200, 200, 200, 404, 401),
    ),
    "search": (
        _request("POST", "/v1/search", json={"query": "spare key", "cube_ids": []}),
        (200, 200, 200, 404, 401),
    ),
    "chat": (
        _request("POST", "/v1/chat", json={"cube_ids": [], "messages": ASK, "max_new_tokens": 2}),
        (200, 200, 200, 404, 401),
    ),
    "openai completions": (
        _request(
            "POST",
            "/v1/chat/completions",
            json={"model": "x", "messages": ASK, "max_tokens": 2},
            headers={"X-Memlake-Cube": "{cube}"},
        ),
        (200, 200, 200, 404, 401),
    ),
}


@pytest.mark.parametrize("role", ROLE_ORDER, ids=lambda r: r or "no-key")
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_access(stack: Stack, target: Target, endpoint: str, role: str | None) -> None:
    call, expected = ENDPOINTS[endpoint]
    response = call(stack, target, role, target.cube)
    want = expected[ROLE_ORDER.index(role)]
    assert response.status_code == want, f"{endpoint} as {role}: {response.status_code} {response.text}"
    body = response.json()
    if want >= 400:
        assert set(body) == {"error"}
        assert body["error"]["message"]
    if want == 404:
        # Indistinguishable from a cube that does not exist.
        ghost = "cube-00000000-0000-7000-8000-000000000000"
        missing = call(stack, target, role, ghost)
        assert missing.status_code == 404
        assert body["error"]["type"] == missing.json()["error"]["type"] == "cube_not_found"
        assert body["error"]["message"].replace(target.cube, ghost) == missing.json()["error"]["message"]
        assert target.memory not in response.text
        assert "spare key" not in response.text


def test_anyone_with_a_key_can_create_a_cube_and_lists_show_only_readable_cubes(
    stack: Stack, target: Target
) -> None:
    for role in ("owner", "writer", "reader", "stranger"):
        listed = stack.client.get("/v1/cubes", headers=stack.headers(role)).json()
        visible = target.cube in {c["cube_id"] for c in listed["cubes"]}
        assert visible is (role != "stranger"), role
    assert stack.client.get("/v1/cubes").status_code == 401
    created = stack.client.post(
        "/v1/cubes", json={"name": "mallory's own"}, headers=stack.headers("stranger")
    )
    assert created.status_code == 202
    assert stack.client.post("/v1/cubes", json={"name": "nobody's"}).status_code == 401
