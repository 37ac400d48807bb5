"""`get_queue` in pages, on the live bridge over Mosquitto: a client walks a long history
by `next_offset` and gets every item once, in the documented order; `states` filters
before the paging (and `total` counts what it kept); bad `limit` and `offset` values are
answered `invalid_args`, naming the argument."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.models import CompletionEvent, ItemState
from q4d_bridge.mqtt.commands import DEFAULT_PAGE
from q4d_bridge.persistence.store import Store
from q4d_bridge.rules import Resolution

from tests.bridge.test_e2e import Env, running_bridge
from tests.helpers.mqtt import publish
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(60)
PREFIX = "q4d/bridge/test"
# finished items only, so nothing starts: the listing stays as seeded
CYCLE = [ItemState.DONE] * 6 + [ItemState.FAILED] * 3 + [ItemState.CANCELLED]


def seed(data_dir: Path, count: int) -> list[tuple[str, str, int, float]]:
    """`count` finished items in the bridge's store, with priorities -1, 0 and 3 and
    distinct ages; (id, state, priority, received_at) of each."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(data_dir / "q4d.sqlite3")
    now = time.time()
    seeded = []
    for n in range(count):
        event = CompletionEvent(
            event_id=f"e{n}", seedbox="sb1", path=f"/r/x{n}", name=f"x{n}",
            hash=f"{n:040x}", size=100,
        )  # fmt: skip
        resolution = Resolution(None, "default", Path("/lib"), Path(f"/lib/x{n}"), "sftp")
        (admission,) = store.admit([(event, resolution)], now=now - 3600 + n)
        item = admission.item
        item.state = CYCLE[n % len(CYCLE)]
        item.priority = (0, 3, 0, -1, 0)[n % 5]
        item.finished_at = item.updated_at = now - 60
        store.save(item)
        seeded.append((item.id, item.state.value, item.priority, item.received_at))
    store.close()
    return seeded


def in_order(seeded: list[tuple[str, str, int, float]], *states: str) -> list[str]:
    """The ids get_queue lists: priority high first, then oldest first."""
    kept = [s for s in seeded if not states or s[1] in states]
    return [s[0] for s in sorted(kept, key=lambda s: (-s[2], s[3]))]


@pytest.fixture
async def history(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Env, list[tuple[str, str, int, float]]]]:
    seeded = seed(tmp_path / "data", request.param)
    async with running_bridge(
        tmp_path, mosquitto, sshd, recorded=(f"{PREFIX}/command/result",)
    ) as env:
        assert len(env.bridge.lifecycle.items) == len(seeded)
        yield env, seeded


async def answer(env: Env, request_id: str, args: dict[str, Any]) -> dict[str, Any]:
    """The bridge's answer to get_queue with `args`, over MQTT."""
    payload = json.dumps({"id": request_id, "op": "get_queue", "args": args}).encode()
    await publish(env.port, [(f"{PREFIX}/command", payload)])
    answers = await env.recorder.wait_for(
        lambda: [m.json() for m in env.recorder.messages if m.json()["id"] == request_id],
        15,
        f"answer to {request_id}",
    )
    (only,) = answers
    return dict(only)


async def walk(env: Env, args: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Every page from offset 0, following next_offset: (ids, results)."""
    ids: list[str] = []
    results: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        reply = await answer(env, f"walk-{len(results)}", {**args, "offset": offset})
        assert reply["ok"], reply
        results.append(reply["result"])
        ids += [item["id"] for item in reply["result"]["items"]]
        offset = reply["result"]["next_offset"]
    return ids, results


@pytest.mark.parametrize("history", [DEFAULT_PAGE + 23], indirect=True)
async def test_a_client_pages_through_the_whole_history(
    history: tuple[Env, list[tuple[str, str, int, float]]],
) -> None:
    env, seeded = history
    expected = in_order(seeded)
    total = len(expected)
    first = await answer(env, "default", {})  # a client that knows nothing of paging
    assert first["ok"], first
    page = first["result"]
    assert [i["id"] for i in page["items"]] == expected[:DEFAULT_PAGE]
    assert (page["total"], page["next_offset"]) == (total, DEFAULT_PAGE)
    assert {i["state"] for i in page["items"]} == {"done", "failed", "cancelled"}

    ids, pages = await walk(env, {"limit": 97})
    assert ids == expected  # each item once, in order, across page boundaries
    assert [len(p["items"]) for p in pages] == [97] * 5 + [total - 5 * 97]
    assert [p["next_offset"] for p in pages] == [97, 194, 291, 388, 485, None]
    assert {p["total"] for p in pages} == {total}

    whole = await answer(env, "whole", {"limit": 10_000})
    assert [i["id"] for i in whole["result"]["items"]] == expected
    assert whole["result"]["next_offset"] is None
    beyond = await answer(env, "beyond", {"offset": total, "limit": 5})
    assert beyond["result"] == {"items": [], "total": total, "next_offset": None}
    last = await answer(env, "last", {"offset": total - 1, "limit": 1})
    assert [i["id"] for i in last["result"]["items"]] == expected[-1:]
    assert last["result"]["next_offset"] is None


@pytest.mark.parametrize("history", [40], indirect=True)
async def test_states_are_kept_before_the_paging(
    history: tuple[Env, list[tuple[str, str, int, float]]],
) -> None:
    env, seeded = history
    expected = in_order(seeded, "failed", "cancelled")
    assert len(expected) == 16
    ids, pages = await walk(env, {"states": ["failed", "cancelled"], "limit": 5})
    assert ids == expected
    assert [(len(p["items"]), p["total"], p["next_offset"]) for p in pages] == [
        (5, 16, 5), (5, 16, 10), (5, 16, 15), (1, 16, None),
    ]  # fmt: skip
    assert {i["state"] for p in pages for i in p["items"]} == {"failed", "cancelled"}
    none = await answer(env, "none", {"states": ["queued"], "limit": 5, "offset": 3})
    assert none["result"] == {"items": [], "total": 0, "next_offset": None}


@pytest.mark.parametrize("history", [3], indirect=True)
async def test_bad_paging_arguments_are_refused(
    history: tuple[Env, list[tuple[str, str, int, float]]],
) -> None:
    env, _ = history
    refused = [
        ({"limit": 0}, "value must be at least 1 for dictionary value @ data['limit']"),
        ({"limit": 10_001}, "value must be at most 10000 for dictionary value @ data['limit']"),
        ({"limit": True}, "expected int for dictionary value @ data['limit']"),
        ({"limit": 5.0}, "expected int for dictionary value @ data['limit']"),
        ({"limit": "5"}, "expected int for dictionary value @ data['limit']"),
        ({"limit": None}, "expected int for dictionary value @ data['limit']"),
        ({"offset": -1}, "value must be at least 0 for dictionary value @ data['offset']"),
        ({"offset": 1.5}, "expected int for dictionary value @ data['offset']"),
        ({"page": 2}, "extra keys not allowed @ data['page']"),
    ]
    for n, (args, message) in enumerate(refused):
        reply = await answer(env, f"bad-{n}", {"states": ["done"], **args})
        assert reply["ok"] is False, args
        assert reply["error"] == {"code": "invalid_args", "message": f"get_queue: {message}"}
    # the bounds themselves are fine
    for n, args in enumerate([{"limit": 1}, {"limit": 10_000, "offset": 0}]):
        reply = await answer(env, f"bound-{n}", args)
        assert reply["ok"] and reply["result"]["total"] == 3, args
