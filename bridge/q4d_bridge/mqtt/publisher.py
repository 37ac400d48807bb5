"""Everything the bridge says on MQTT: status, state snapshot, items, events, labels.

Retained topics (state, items) are throttled to at most one write per second each and
fully re-published on every (re)connect, so nothing is lost while the broker is away.
Lifecycle events and labels are written to the store's outbox in the same transaction
as the change they announce, and leave it only once the broker acknowledged them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiomqtt

from .. import __version__
from ..dispatch.requests import Request
from ..models import Item, Label
from ..persistence.store import Message, Store
from .codec import PROTOCOL_VERSION, dumps
from .listing import ItemPayloads
from .payloads import classic_label_payload, label_payload, request_item_payload
from .topics import Topics

_LOGGER = logging.getLogger(__name__)
THROTTLE = 1.0
MAX_IN_FLIGHT = 200
OUTBOX_BATCH = 100


class Publisher:
    def __init__(
        self,
        *,
        topics: Topics,
        store: Store,
        bridge_name: str,
        seedbox_ids: list[str],
        classic_label_topic: str | None,
        snapshot: Callable[[], dict[str, Any]],
        items: Callable[[], Mapping[str, Item]],
        payloads: ItemPayloads,
        requests: Callable[[], list[Request]] = list,
    ) -> None:
        self.topics = topics
        self.store = store
        self.bridge_name = bridge_name
        self.seedbox_ids = seedbox_ids
        self.classic_label_topic = classic_label_topic
        self._snapshot = snapshot
        self._items = items
        self._requests = requests  # add requests shown in the queue before their item exists
        self.payloads = payloads
        self._client: aiomqtt.Client | None = None
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._dirty_items: dict[str, Item] = {}
        self._item_sent: dict[str, float] = {}
        self._state_dirty = False
        self._state_sent = 0.0
        self._outbox_wakeup = asyncio.Event()
        self._flush_wakeup = asyncio.Event()
        self._republishing: asyncio.Task[None] | None = None
        self._retained: dict[str, bytes] = {}  # sent again on every (re)connect

    # --- connection lifecycle ------------------------------------------------------

    def status_payload(self, state: str) -> bytes:
        return dumps(
            {
                "v": PROTOCOL_VERSION,
                "state": state,
                "version": __version__,
                "name": self.bridge_name,
                "bridge_id": self.topics.bridge_id,
                "prefix": self.topics.prefix,
                "seedboxes": self.seedbox_ids,
            }
        )

    async def attach(self, client: aiomqtt.Client) -> None:
        """Called on every (re)connect: announce, then re-publish all retained state,
        the items in the background (_republish)."""
        self._client = client
        await client.publish(self.topics.status, self.status_payload("online"), qos=1, retain=True)
        for request in self._requests():
            self.request(request)
        self._send(self.topics.state, dumps(self._snapshot()), retain=True)
        for topic, payload in self._retained.items():
            self._send(topic, payload, retain=True)
        self._state_sent = time.monotonic()
        self._state_dirty = False
        self._outbox_wakeup.set()
        self._republishing = asyncio.create_task(self._republish(client))

    async def _republish(self, client: aiomqtt.Client) -> None:
        """Every item's retained topic again, each encoded once a publish slot is free:
        a long history never holds thousands of payloads and tasks at once, and intake
        and commands are served meanwhile."""
        items = self._items()
        for item in list(items.values()):
            while len(self._tasks) >= MAX_IN_FLIGHT:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
            if self._client is not client:
                return  # disconnected: the next attach starts over
            if items.get(item.id) is not item:
                continue  # pruned meanwhile: its removal is on its way
            self._dirty_items.pop(item.id, None)
            self._send(self.topics.item(item.id), self.payloads.encoded(item), retain=True)
            self._item_sent[item.id] = time.monotonic()

    async def detach(self, *, graceful: bool) -> None:
        client, self._client = self._client, None
        if self._republishing is not None:
            self._republishing.cancel()
        if client is not None and graceful:
            await self.drain()
            await client.publish(
                self.topics.status, self.status_payload("offline"), qos=1, retain=True
            )

    async def drain(self, grace: float = 5.0) -> None:
        """Wait for publishes in flight (clean shutdown, tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)

    # --- low level -----------------------------------------------------------------

    def _send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        client = self._client
        if client is None:
            return
        task = asyncio.create_task(self._publish(client, topic, payload, retain))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, retain: bool
    ) -> None:
        async with self._slots:
            try:
                await client.publish(topic, payload, qos=1, retain=retain)
            except aiomqtt.MqttError as err:
                # Retained topics are re-sent on reconnect; events are best effort.
                _LOGGER.debug("publish to %s failed: %s", topic, err)

    # --- items, events, state ------------------------------------------------------

    def item(self, item: Item, *, immediate: bool = False) -> None:
        """Publish an item's retained topic; progress-only updates are throttled."""
        now = time.monotonic()
        if immediate or now - self._item_sent.get(item.id, 0.0) >= THROTTLE:
            self._dirty_items.pop(item.id, None)
            self._item_sent[item.id] = now
            self._send(self.topics.item(item.id), self.payloads.encoded(item), retain=True)
        else:
            self._dirty_items[item.id] = item
            self._flush_wakeup.set()
        self.state_changed()

    def request(self, request: Request) -> None:
        """Publish an add request that stands in the queue (retained, like an item)."""
        self._send(self.topics.item(request.id), dumps(request_item_payload(request)), retain=True)
        self.state_changed()

    def removal_message(self, item_id: str) -> Message:
        return Message(self.topics.item(item_id), b"", retain=True)

    def item_removed(self, item_id: str) -> None:
        """Forget throttling state; the retraction itself travels through the outbox."""
        self._dirty_items.pop(item_id, None)
        self._item_sent.pop(item_id, None)
        self.payloads.forget(item_id)
        self.outbox_pending()
        self.state_changed()

    def event_message(self, kind: str, item: Item | None = None, **extra: Any) -> Message:
        payload: dict[str, Any] = {"v": PROTOCOL_VERSION, "event": kind, "at": time.time()}
        if item is not None:
            payload["item"] = self.payloads.payload(item)
        payload.update(extra)
        return Message(self.topics.event, dumps(payload))

    def label_messages(self, item: Item, label: Label) -> list[Message]:
        if item.hash is None:
            return []
        messages = [Message(self.topics.label(item.seedbox), label_payload(item.hash, label))]
        # Q4D's hook labelled a classic item QUEUED itself. A second QUEUED keeps LabelD.sh
        # (a fresh mosquitto_sub per message) relabelling while DONE may arrive, unheard.
        if self.classic_label_topic and not (item.classic and label is Label.QUEUED):
            messages.append(
                Message(self.classic_label_topic, classic_label_payload(item.hash, label))
            )
        return messages

    def state_changed(self) -> None:
        now = time.monotonic()
        if now - self._state_sent >= THROTTLE:
            self._state_sent = now
            self._state_dirty = False
            self._send(self.topics.state, dumps(self._snapshot()), retain=True)
        else:
            self._state_dirty = True
            self._flush_wakeup.set()

    def retained(self, topic: str, payload: bytes) -> None:
        """A retained topic of its own (the configuration): sent now if connected, and
        again on every reconnect."""
        self._retained[topic] = payload
        self._send(topic, payload, retain=True)

    def seedboxes_changed(self) -> None:
        """The seedboxes served changed (Bridge.apply): the retained status lists them."""
        self._send(self.topics.status, self.status_payload("online"), retain=True)
        self.state_changed()

    def result(self, payload: bytes) -> None:
        self._send(self.topics.command_result, payload)

    async def run_flusher(self) -> None:
        """Send throttled item and state updates once their second has passed."""
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            await asyncio.sleep(THROTTLE / 4)
            now = time.monotonic()
            for item_id, item in list(self._dirty_items.items()):
                if now - self._item_sent.get(item_id, 0.0) >= THROTTLE:
                    self.item(item, immediate=True)
            if self._state_dirty and now - self._state_sent >= THROTTLE:
                self.state_changed()
            if self._dirty_items or self._state_dirty:
                self._flush_wakeup.set()

    # --- outbox --------------------------------------------------------------------

    def outbox_pending(self) -> None:
        self._outbox_wakeup.set()

    async def run_outbox_sender(self) -> None:
        """Deliver the store's outbox in order; rows leave only after their PUBACK."""
        while True:
            await self._outbox_wakeup.wait()
            self._outbox_wakeup.clear()
            while (client := self._client) is not None:
                batch = self.store.outbox(OUTBOX_BATCH)
                if not batch:
                    break
                # Started in order, so paho writes them to the socket in order.
                results = await asyncio.gather(
                    *(
                        client.publish(m.topic, m.payload, qos=1, retain=m.retain)
                        for _s, m in batch
                    ),
                    return_exceptions=True,
                )
                # Only the unbroken run of delivered rows leaves: a row after a failed one
                # goes again later, so the order on the wire is never inverted.
                delivered = []
                for (seq, _m), result in zip(batch, results, strict=True):
                    if result is not None:
                        break
                    delivered.append(seq)
                self.store.remove_outbox(delivered)
                failure = next((r for r in results if r is not None), None)
                if failure is not None:
                    _LOGGER.info("outbox delivery paused until reconnect: %s", failure)
                    break
