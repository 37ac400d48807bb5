"""Item payloads, encoded for MQTT. A finished item's is kept once encoded: it changes
only through a transition (a retry, a new priority), and every transition moves the
item's state or `updated_at`, which the kept copy is checked against. So a history of
10,000 items is listed (`get_queue`) and re-published by joining bytes, not by building
and encoding 10,000 dicts each time. An unfinished item's payload is encoded afresh each
time: its progress moves between transitions. A `get_queue` page encodes its own items
only: the history is sorted, not encoded."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..models import FINISHED_STATES, Item, ItemState
from .codec import dumps
from .payloads import EncodedItems, item_payload

_Key = tuple[str, float, int, bool]  # what a change to a finished item always moves


class ItemPayloads:
    def __init__(self, queue_paused: Callable[[], bool]) -> None:
        self._queue_paused = queue_paused  # an unfinished item's payload says if it holds it
        self._finished: dict[str, tuple[_Key, bytes]] = {}

    def payload(self, item: Item) -> dict[str, Any]:
        return item_payload(item, queue_paused=self._queue_paused())

    def encoded(self, item: Item) -> bytes:
        if item.state not in FINISHED_STATES:
            self._finished.pop(item.id, None)
            return dumps(self.payload(item))
        key = (item.state.value, item.updated_at, item.priority, item.paused)
        kept = self._finished.get(item.id)
        if kept is not None and kept[0] == key:
            return kept[1]
        raw = dumps(item_payload(item))  # the queue's pause holds no finished item
        self._finished[item.id] = (key, raw)
        return raw

    def forget(self, item_id: str) -> None:
        self._finished.pop(item_id, None)

    def page(
        self, items: Iterable[Item], states: list[ItemState] | None, limit: int, offset: int
    ) -> EncodedItems:
        """`limit` items from `offset` of those in `states` (all without), by priority
        (high first) then age; `total` counts them all."""
        wanted = set(states) if states else None
        listed = sorted(
            (i for i in items if wanted is None or i.state in wanted),
            key=lambda i: (-i.priority, i.received_at),
        )
        page = listed[offset : offset + limit]
        end = offset + len(page)
        return EncodedItems(
            [self.encoded(i) for i in page],
            total=len(listed),
            next_offset=end if end < len(listed) else None,
        )
