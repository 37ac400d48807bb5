"""What the bridge tells a user, without a socket: command refusals that name the
torrent, what a retry answers, and how an item payload says what holds it (its own
pause or the queue's)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.models import FINISHED_STATES, Item, ItemState
from q4d_bridge.mqtt.commands import CommandDesk
from q4d_bridge.mqtt.payloads import held, item_payload

from tests.bridge.test_lifecycle import ALL, Script, bridge, queue, settle, until
from tests.bridge.test_queue import item as make_item

__all__ = ["bridge"]  # the fixture, from test_lifecycle


def ask(b: Bridge, op: str, **args: Any) -> dict[str, Any]:
    """A command through the bridge's CommandDesk, as it would answer it on MQTT."""
    answers: list[bytes] = []
    desk = CommandDesk(b.controller, answers.append)
    desk.handle(json.dumps({"id": "c", "op": op, "args": args}).encode())
    (answer,) = answers
    parsed: dict[str, Any] = json.loads(answer)
    return parsed


async def test_refusals_name_the_torrent_and_keep_their_codes(
    bridge: tuple[Bridge, Script],
) -> None:
    b, _ = bridge
    b.controller.pause(None)
    refusals = {}
    for state in ALL:
        for op in ("cancel", "pause", "retry"):
            (item,) = queue(b, 1, state=state, name=f"Ubuntu 24.04 ({state.value})")
            answer = ask(b, op, item_id=item.id)
            if not answer["ok"]:
                refusals[(state, op)] = answer["error"]
                assert item.state is state  # nothing changed
    verifying = '"Ubuntu 24.04 (verifying)" is verifying; it finishes in a moment'
    assert refusals == {
        **{
            (s, op): {
                "code": "invalid_state",
                "message": f'"Ubuntu 24.04 ({s.value})" '
                f"{'has failed' if s is ItemState.FAILED else 'is ' + s.value}; nothing to {op}",
            }
            for s in FINISHED_STATES
            for op in ("cancel", "pause")
        },
        **{
            (s, "retry"): {
                "code": "invalid_state",
                "message": f'"Ubuntu 24.04 ({s.value})" is {s.value}; nothing to retry',
            }
            for s in (ItemState.QUEUED, ItemState.TRANSFERRING, ItemState.PROCESSING)
        },
        (ItemState.DONE, "retry"): {
            "code": "invalid_state",
            "message": '"Ubuntu 24.04 (done)" is done and in the library; to fetch it again, '
            "retry with force (the library copy is replaced once the new one is verified)",
        },
        (ItemState.PROCESSING, "pause"): {
            "code": "invalid_state",
            "message": '"Ubuntu 24.04 (processing)" is home; its post-processing cannot pause',
        },
        (ItemState.VERIFYING, "cancel"): {"code": "invalid_state", "message": verifying},
        (ItemState.VERIFYING, "pause"): {"code": "invalid_state", "message": verifying},
        (ItemState.VERIFYING, "retry"): {
            "code": "invalid_state",
            "message": '"Ubuntu 24.04 (verifying)" is verifying; nothing to retry',
        },
    }
    assert ask(b, "cancel", item_id="0" * 16)["error"] == {
        "code": "not_found", "message": f"no item {'0' * 16}",
    }  # fmt: skip
    (gone,) = queue(b, 1, state=ItemState.FAILED, name="Old Show", destination="removed")
    assert ask(b, "retry", item_id=gone.id)["error"] == {
        "code": "not_configured",
        "message": '"Old Show": its seedbox sb1 or destination removed is no longer configured',
    }


async def test_retry_answers_how_many_it_requeued_and_their_names(
    bridge: tuple[Bridge, Script],
) -> None:
    b, _ = bridge
    b.controller.pause(None)
    first, second = queue(b, 2, state=ItemState.FAILED)
    queue(b, 1, state=ItemState.FAILED, destination="removed")  # skipped: not configured
    queue(b, 1, state=ItemState.DONE)  # not failed: not retried without an id
    answer = ask(b, "retry")
    assert answer["result"] == {
        "items": [first.id, second.id], "count": 2, "names": [first.name, second.name],
    }  # fmt: skip
    assert ask(b, "retry")["result"] == {"items": [], "count": 0, "names": []}
    (done,) = queue(b, 1, state=ItemState.DONE, name="Film")
    assert ask(b, "retry", item_id=done.id, force=True)["result"] == {
        "items": [done.id], "count": 1, "names": ["Film"],
    }  # fmt: skip


@pytest.mark.parametrize("state", ALL)
def test_held_says_which_pause_keeps_an_item_from_starting(state: ItemState) -> None:
    """Only an item that would start (queued or waiting) is held; its own pause wins,
    since it outlasts the queue's."""
    for own in (False, True):
        for queue_paused in (False, True):
            item = make_item(1, state=state, paused=own)
            expected = None
            if state in (ItemState.QUEUED, ItemState.WAITING):
                expected = "item" if own else "queue" if queue_paused else None
            assert held(item, queue_paused) == expected
            payload = item_payload(item, queue_paused=queue_paused)
            assert (payload["paused"], payload["held"]) == (own, expected)


async def test_a_queue_pause_republishes_what_it_holds(
    bridge: tuple[Bridge, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pausing the queue stops the running item (back to queued, `paused` false, held
    by the queue) and publishes the queued ones again, now held; an item paused on its
    own stays held by itself through both. get_queue says the same."""
    b, script = bridge
    sent: dict[str, dict[str, Any]] = {}
    publish = b.publisher.item

    def capture(item: Item, *, immediate: bool = False) -> None:
        # What goes out now, or (throttled) within the second, built alike.
        sent[item.id] = item_payload(item, queue_paused=b.scheduler.paused)
        publish(item, immediate=immediate)

    monkeypatch.setattr(b.publisher, "item", capture)
    running, own = queue(b, 2)
    b.scheduler.wake()
    await until(lambda: running.id in script.attempts and own.id in script.attempts)
    b.controller.pause(own.id)
    await until(lambda: own.state is ItemState.QUEUED)
    (waiting,) = queue(b, 1, state=ItemState.WAITING, next_attempt_at=2e9)
    b.controller.pause(None)
    await until(lambda: running.state is ItemState.QUEUED)
    await settle()
    held_now = {i: (sent[i]["state"], sent[i]["paused"], sent[i]["held"]) for i in sent}
    assert held_now == {
        running.id: ("queued", False, "queue"),
        own.id: ("queued", True, "item"),
        waiting.id: ("waiting", False, "queue"),
    }
    listed = {
        i["id"]: i["held"] for i in map(json.loads, b.controller.get_queue(None, 500, 0).items)
    }
    assert listed == {running.id: "queue", own.id: "item", waiting.id: "queue"}
    assert b.state().as_dict()["paused"] is True

    sent.clear()
    b.controller.resume(None)
    await settle()
    assert sent[waiting.id]["held"] is None
    assert sent[running.id]["state"] == "transferring"  # it started again at once
    assert own.id not in sent  # nothing changed for it: still held by itself
