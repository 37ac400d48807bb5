"""Which queue items have entities, and for how long.

Live items have entities; finished ones keep them for the configured retention and
then lose them, and so do items the bridge removes. Torrent requests not in the queue
yet have none (the card shows them). New items are handed to the platforms in
batches, so a burst of retained items adds its entities in one go.
Entities of items this run does not know (left from an earlier run) go once the
model is in sync with the bridge's retained items.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from homeassistant.const import Platform
from homeassistant.core import CALLBACK_TYPE, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_time_interval

from . import unique_ids
from .const import (
    CONF_ITEM_ENTITIES,
    CONF_RETENTION,
    DEFAULT_ITEM_ENTITIES,
    DEFAULT_RETENTION,
    DOMAIN,
    ITEM_BUTTON_KEYS,
    ITEM_SENSOR_KEYS,
    RETENTION_SWEEP_INTERVAL,
)
from .models import Item

if TYPE_CHECKING:  # pragma: no cover - the coordinator imports this module
    from .coordinator import Q4dCoordinator

type ItemsCallback = Callable[[list[str]], None]


class ItemEntities:
    """Follows the coordinator's items and keeps their entities in the registry."""

    def __init__(self, coordinator: Q4dCoordinator) -> None:
        """Read the options; nothing is followed until `async_start`."""
        self.coordinator = coordinator
        self.hass = coordinator.hass
        options = coordinator.config_entry.options
        self.enabled: bool = options.get(CONF_ITEM_ENTITIES, DEFAULT_ITEM_ENTITIES)
        self.retention = float(options.get(CONF_RETENTION, DEFAULT_RETENTION)) * 60
        self._with_entities: set[str] = set()
        self._expiry: dict[str, float] = {}  # finished item id -> when its entities go
        self._new: list[str] = []
        self._flush_handle: asyncio.Handle | None = None
        self._callbacks: set[ItemsCallback] = set()
        self._synced = False

    def has_entities(self, item_id: str) -> bool:
        """Whether the item should currently have entities."""
        return item_id in self._with_entities

    @property
    def count(self) -> int:
        """Number of items that currently have entities."""
        return len(self._with_entities)

    @callback
    def async_add_items_callback(self, new_callback: ItemsCallback) -> CALLBACK_TYPE:
        """Be told, in batches, about items that need entities."""
        self._callbacks.add(new_callback)
        return lambda: self._callbacks.discard(new_callback)

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Follow the coordinator (or, with item entities off, remove them all)."""
        if not self.enabled:
            self._async_remove_stale()
            return lambda: None
        unsubscribe = [
            self.coordinator.async_add_item_change_listener(self._async_item_changed),
            self.coordinator.async_add_listener(self._async_bridge_changed),
            async_track_time_interval(
                self.hass,
                self._async_sweep,
                timedelta(seconds=RETENTION_SWEEP_INTERVAL),
                name=f"q4d {self.coordinator.bridge_id} retention",
                cancel_on_shutdown=True,
            ),
        ]

        @callback
        def stop() -> None:
            for unsub in unsubscribe:
                unsub()
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None

        return stop

    @callback
    def _async_item_changed(self, item_id: str, item: Item | None) -> None:
        if item is None:
            self._async_remove(item_id)
        elif item_id in self._with_entities:
            if not item.finished:
                self._expiry.pop(item_id, None)
            elif self.retention <= 0:
                self._async_remove(item_id)
            elif item_id not in self._expiry:
                self._expiry[item_id] = self._deadline(item)
        # Requests get none: their entities would go when the download reaches the
        # queue (a queue item has an id of its own), and no item command applies to them.
        elif not item.is_request and (not item.finished or self._deadline(item) > time.time()):
            self._with_entities.add(item_id)
            if item.finished:
                self._expiry[item_id] = self._deadline(item)
            self._new.append(item_id)
            if self._flush_handle is None:
                self._flush_handle = self.hass.loop.call_soon(self._async_flush)

    @callback
    def _async_bridge_changed(self) -> None:
        """Hand over items held back for the first state; clean up once in sync."""
        if self._new and self._flush_handle is None:
            self._async_flush()
        synced = self.coordinator.synced
        if synced and not self._synced:
            self._async_remove_stale()
        self._synced = synced

    def _deadline(self, item: Item) -> float:
        finished = item.finished_at if item.finished_at is not None else time.time()
        return finished + self.retention

    @callback
    def _async_flush(self) -> None:
        self._flush_handle = None
        if self.coordinator.state is None:
            return  # kept until the first state names the seedbox devices
        new = [
            item_id
            for item_id in dict.fromkeys(self._new)  # an item may come, go and come back
            if item_id in self._with_entities
        ]
        self._new.clear()
        if not new:
            return
        for new_callback in list(self._callbacks):
            new_callback(new)

    @callback
    def _async_remove(self, item_id: str) -> None:
        self._with_entities.discard(item_id)
        self._expiry.pop(item_id, None)
        ent_reg = er.async_get(self.hass)
        bridge_id = self.coordinator.bridge_id
        for platform, keys in (
            (Platform.SENSOR, ITEM_SENSOR_KEYS),
            (Platform.BUTTON, ITEM_BUTTON_KEYS),
        ):
            for key in keys:
                unique_id = unique_ids.item(bridge_id, item_id, key)
                if entity_id := ent_reg.async_get_entity_id(platform, DOMAIN, unique_id):
                    ent_reg.async_remove(entity_id)

    @callback
    def _async_sweep(self, _now: datetime) -> None:
        """Remove the entities of finished items whose retention has passed."""
        now = time.time()
        for item_id in [i for i, deadline in self._expiry.items() if deadline <= now]:
            self._async_remove(item_id)

    @callback
    def _async_remove_stale(self) -> None:
        """Remove the registry's item entities of items that should have none."""
        ent_reg = er.async_get(self.hass)
        entry_id = self.coordinator.config_entry.entry_id
        for entry in er.async_entries_for_config_entry(ent_reg, entry_id):
            key = unique_ids.parse(self.coordinator.bridge_id, entry.unique_id)
            if (
                key is not None
                and key.kind == unique_ids.Kind.ITEM
                and key.subject not in self._with_entities
            ):
                ent_reg.async_remove(entry.entity_id)
