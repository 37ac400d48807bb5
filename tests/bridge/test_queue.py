"""Queue policy: priorities, limits, pause, backoff."""

from __future__ import annotations

import random

from q4d_bridge.lifecycle.policy import Limits, next_wakeup, pick_runnable, retry_delay
from q4d_bridge.models import Item, ItemState


def item(n: int, seedbox: str = "a", **kw: object) -> Item:
    base: dict[str, object] = {
        "id": f"{n:016x}",
        "event_id": str(n),
        "seedbox": seedbox,
        "hash": None,
        "name": str(n),
        "remote_path": f"/r/{n}",
        "destination": "d",
        "local_path": f"/l/{n}",
        "category": None,
        "tags": (),
        "type_code": None,
        "size": 1,
        "state": ItemState.QUEUED,
        "received_at": float(n),
    }
    base.update(kw)
    return Item(**base)  # type: ignore[arg-type]


def ids(items: list[Item]) -> list[int]:
    return [int(i.id, 16) for i in items]


def test_priority_then_age_within_limits() -> None:
    pool = [item(1), item(2, priority=5), item(3, seedbox="b"), item(4, seedbox="b"), item(5)]
    picked = pick_runnable(pool, Limits(3, {"a": 2, "b": 1}), paused=False, now=0)
    assert ids(picked) == [2, 1, 3]


def test_active_items_use_slots() -> None:
    pool = [item(1, state=ItemState.TRANSFERRING), item(2, state=ItemState.VERIFYING), item(3)]
    assert pick_runnable(pool, Limits(2, {}), paused=False, now=0) == []
    assert ids(pick_runnable(pool, Limits(3, {"a": 3}), paused=False, now=0)) == [3]


def test_pause_and_waiting() -> None:
    pool = [
        item(1, paused=True),
        item(2, state=ItemState.WAITING, next_attempt_at=50.0),
        item(3, state=ItemState.FAILED),
        item(4, state=ItemState.WAITING, next_attempt_at=10.0),
    ]
    assert pick_runnable(pool, Limits(5, {}), paused=True, now=100) == []
    assert ids(pick_runnable(pool, Limits(5, {}), paused=False, now=20)) == [4]
    assert ids(pick_runnable(pool, Limits(5, {}), paused=False, now=60)) == [2, 4]
    assert next_wakeup(pool) == 10.0


def test_backoff_doubles_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0)):
        delay = retry_delay(attempt, 1.0, 60.0, rng)
        assert base * 0.5 <= delay <= base


def test_breaker_opens_cools_down_and_half_opens() -> None:
    from q4d_bridge.lifecycle.policy import Breaker

    breaker = Breaker(threshold=3, cooldown=60)
    assert not breaker.failure(0) and not breaker.failure(1)
    assert breaker.failure(2)  # third in a row opens it
    assert breaker.is_open(30)
    assert not breaker.is_open(63)  # cool-down over: half-open
    assert breaker.failure(64)  # one more failure re-opens at once
    breaker.success()
    assert (breaker.failures, breaker.open_until) == (0, None)


def test_blocked_seedboxes_are_skipped() -> None:
    pool = [item(1, seedbox="a"), item(2, seedbox="b")]
    assert ids(pick_runnable(pool, Limits(5, {}), paused=False, now=0, blocked={"a"})) == [2]
