"""A long history at little cost. Encoded item payloads (mqtt/listing.py): a finished
item's is kept, and follows every change a transition makes to it; `get_queue`'s
answer, spliced from them, is the one a plain encoding of the same dicts gives. The
scheduler's index of unfinished items follows every transition, and the state snapshot
sums the finished ones up only when they change. The re-publishing of every item on a
(re)connect keeps a bounded window of publishes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from q4d_bridge.lifecycle.machine import Lifecycle
from q4d_bridge.lifecycle.policy import Breaker, Limits
from q4d_bridge.models import FINISHED_STATES, Item, ItemState
from q4d_bridge.mqtt.codec import dumps
from q4d_bridge.mqtt.listing import ItemPayloads
from q4d_bridge.mqtt.payloads import EncodedItems, command_result, item_payload
from q4d_bridge.mqtt.publisher import MAX_IN_FLIGHT, Publisher
from q4d_bridge.mqtt.topics import Topics
from q4d_bridge.persistence.store import Store
from q4d_bridge.state import FinishedTally, SeedboxFacts, build_state, tally_finished
from q4d_bridge.transfer.errors import ErrorCode, TransferError

from tests.bridge.test_lifecycle import ALL, Heard, stored


@pytest.fixture
def life(tmp_path: Path) -> tuple[Lifecycle, Store, Heard]:
    store = Store(tmp_path / "q4d.sqlite3")
    return Lifecycle(store, Heard()), store, Heard()


def test_every_state_encodes_as_item_payload(life: tuple[Lifecycle, Store, Heard]) -> None:
    _, store, _ = life
    for queue_paused in (False, True):
        payloads = ItemPayloads(lambda paused=queue_paused: paused)
        for state in ALL:
            item = stored(store, state)
            assert payloads.encoded(item) == dumps(item_payload(item, queue_paused=queue_paused))
            assert payloads.encoded(item) == payloads.encoded(item)  # kept or not, the same


def test_a_kept_payload_follows_the_transitions(life: tuple[Lifecycle, Store, Heard]) -> None:
    lifecycle, store, _ = life
    payloads = ItemPayloads(lambda: False)
    item = stored(store, ItemState.TRANSFERRING)
    lifecycle.items[item.id] = item
    err = TransferError(ErrorCode.REMOTE_MISSING, "gone")

    def current() -> dict[str, object]:
        return json.loads(payloads.encoded(item))  # type: ignore[no-any-return]

    lifecycle.failed(item, err)
    assert current()["state"] == "failed"
    lifecycle.prioritised(item, 9)  # a finished item: only its priority moves
    assert current()["priority"] == 9
    lifecycle.resumed(item)
    assert current() == item_payload(item)
    lifecycle.retried(item)
    assert current()["state"] == "queued" and current()["error"] is None
    lifecycle.start(item, item.updated_at + 1)
    lifecycle.done(item, 100, {})
    assert current() == item_payload(item)
    payloads.forget(item.id)
    assert current() == item_payload(item)


def test_get_queue_answer_is_the_plain_encoding(life: tuple[Lifecycle, Store, Heard]) -> None:
    _, store, _ = life
    payloads = ItemPayloads(lambda: True)
    items = [stored(store, state) for state in ALL]
    page = EncodedItems([payloads.encoded(i) for i in items], total=20, next_offset=len(items))
    plain = {
        "items": [item_payload(i, queue_paused=True) for i in items],
        "total": 20,
        "next_offset": len(items),
    }
    assert command_result("c1", result=page) == command_result("c1", result=plain)
    assert json.loads(command_result("c2", result=EncodedItems([], 0, None))) == {
        "v": 1, "id": "c2", "ok": True,
        "result": {"items": [], "total": 0, "next_offset": None},
    }  # fmt: skip


def test_get_queue_encodes_only_its_page(
    life: tuple[Lifecycle, Store, Heard], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of a long history costs its own items' encoding, not the history's."""
    _, store, _ = life
    items = [stored(store, state, priority=n % 3, received_at=float(n))
             for n, state in enumerate(ALL * 4)]  # fmt: skip
    payloads = ItemPayloads(lambda: False)
    encoded: list[str] = []
    encode = payloads.encoded

    def counted(item: Item) -> bytes:
        encoded.append(item.id)
        return encode(item)

    monkeypatch.setattr(payloads, "encoded", counted)
    page = payloads.page(items, None, 4, 10)
    ordered = sorted(items, key=lambda i: (-i.priority, i.received_at))
    assert encoded == [i.id for i in ordered[10:14]]
    assert [json.loads(raw)["id"] for raw in page.items] == encoded
    assert (page.total, page.next_offset) == (len(items), 14)
    done = [i for i in ordered if i.state is ItemState.DONE]
    last = payloads.page(items, [ItemState.DONE], 3, len(done) - 2)
    assert [json.loads(raw)["id"] for raw in last.items] == [i.id for i in done[-2:]]
    assert (last.total, last.next_offset) == (len(done), None)


def test_the_unfinished_index_follows_the_items(life: tuple[Lifecycle, Store, Heard]) -> None:
    lifecycle, store, _ = life
    done = stored(store, ItemState.DONE)
    queued = stored(store)
    again = Lifecycle(store, Heard())  # loaded from the store
    assert set(again.unfinished) == {queued.id}
    lifecycle.admitted(queued)
    lifecycle.items[done.id] = done
    lifecycle.start(queued, queued.updated_at + 1)
    assert set(lifecycle.unfinished) == {queued.id}
    lifecycle.cancelled(queued)
    assert lifecycle.unfinished == {}
    lifecycle.retried(done)
    lifecycle.retried(queued)
    assert set(lifecycle.unfinished) == {done.id, queued.id}
    lifecycle.forget([done.id])
    assert set(lifecycle.unfinished) == {queued.id}
    assert all(i.state not in FINISHED_STATES for i in lifecycle.unfinished.values())


class _SlowBroker:
    """Takes item publishes only once `open` is set; counts those in flight."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.items: list[str] = []
        self.in_flight = self.most = 0

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if "/item/" not in topic:
            return
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.open.wait()
        self.in_flight -= 1
        self.items.append(topic.rsplit("/", 1)[1])


async def test_a_long_history_is_republished_a_window_at_a_time(
    life: tuple[Lifecycle, Store, Heard],
) -> None:
    """On (re)connect every item goes out again, no more than MAX_IN_FLIGHT at once,
    in the background; one pruned meanwhile is not brought back."""
    _, store, _ = life
    items = {i.id: i for i in (stored(store, ItemState.DONE) for _ in range(MAX_IN_FLIGHT + 50))}
    publisher = Publisher(
        topics=Topics("q4d", "t"), store=store, bridge_name="t", seedbox_ids=["sb1"],
        classic_label_topic=None, snapshot=dict, items=lambda: items,
        payloads=ItemPayloads(lambda: False),
    )  # fmt: skip
    broker = _SlowBroker()
    await publisher.attach(broker)  # type: ignore[arg-type]
    for _ in range(5):
        await asyncio.sleep(0)
    assert broker.in_flight == MAX_IN_FLIGHT  # attach returned; the rest waits its turn
    assert len(publisher._tasks) == MAX_IN_FLIGHT  # not one task and payload per item
    pruned = list(items)[-1]
    del items[pruned]
    broker.open.set()
    await asyncio.wait_for(publisher._republishing, 5)  # type: ignore[arg-type]
    await publisher.drain()
    assert sorted(broker.items) == sorted(items) and broker.most == MAX_IN_FLIGHT


def test_the_state_sums_the_finished_items_up_as_a_walk_of_all_would(
    life: tuple[Lifecycle, Store, Heard],
) -> None:
    """The snapshot from the unfinished items and the finished ones' tally says what
    one walk over every item says; the tally is taken again only when they changed."""
    lifecycle, store, _ = life
    items = [stored(store, state, seedbox=sb, finished_at=float(n), rate=1.5)
             for n, (state, sb) in enumerate((s, sb) for sb in ("sb1", "sb2") for s in ALL * 3)]  # fmt: skip
    for item in items:
        lifecycle.items[item.id] = item
        if item.state not in FINISHED_STATES:
            lifecycle.unfinished[item.id] = item

    def snapshot(tally: FinishedTally) -> dict[str, object]:
        return build_state(
            bridge_id="b", unfinished=lifecycle.unfinished.values(), finished=tally,
            paused=False, limits=Limits(2, {}), bandwidth_limit=0, counters={},
            seedboxes={sb: SeedboxFacts(sb, Breaker(3, 60), None, None, 0) for sb in ("sb1", "sb2")},
            free_space={}, destinations=(), min_free_space=0, now=1.0,
        ).as_dict()  # fmt: skip

    state = snapshot(tally_finished(lifecycle.items.values()))
    assert state["counts"] == {s.value: 6 for s in ALL}
    for sb in ("sb1", "sb2"):
        by = {k: state["seedboxes"][sb][k] for k in ("queued", "active", "waiting", "failed")}  # type: ignore[index]
        assert by == {"queued": 3, "active": 6, "waiting": 3, "failed": 3}
    done = [i for i in items if i.state is ItemState.DONE]
    assert state["last_completed"]["id"] == done[-1].id  # type: ignore[index]
    before = lifecycle.finished_changes
    lifecycle.prioritised(done[0], 5)
    lifecycle.start(items[0], 2.0)  # queued -> transferring: the finished ones stay as they were
    assert lifecycle.finished_changes == before + 1
    lifecycle.retried(done[0])
    lifecycle.forget([done[1].id])
    assert lifecycle.finished_changes == before + 3
