"""Who hears of the bridge model's changes: entities, the card, repairs, item entities.

Kept apart from the coordinator that parses the MQTT messages: it only says what
changed, this class tells whoever asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.core import CALLBACK_TYPE, callback

from .models import Item

type ItemChangeCallback = Callable[[str, Item | None], None]
type TransferEventCallback = Callable[[str, dict[str, Any]], None]


class Q4dListeners:
    """Listener registrations, and the notifications the coordinator sends them."""

    def __init__(self) -> None:
        """No listeners yet."""
        self._bridge_listeners: set[CALLBACK_TYPE] = set()
        # item id -> its listeners, each with the progress fields it shows
        self._item_listeners: dict[str, dict[CALLBACK_TYPE, frozenset[str]]] = {}
        self._event_listeners: set[TransferEventCallback] = set()
        self._item_change_listeners: set[ItemChangeCallback] = set()

    @callback
    def async_add_listener(
        self,
        update_callback: CALLBACK_TYPE,
        item_id: str | None = None,
        progress_fields: frozenset[str] = frozenset(),
    ) -> CALLBACK_TYPE:
        """Listen to bridge-level changes, or to one item's changes: all but those that
        touch only progress fields (`PROGRESS_FIELDS`) outside `progress_fields`."""
        if item_id is None:
            self._bridge_listeners.add(update_callback)

            @callback
            def remove_bridge_listener() -> None:
                self._bridge_listeners.discard(update_callback)

            return remove_bridge_listener

        self._item_listeners.setdefault(item_id, {})[update_callback] = progress_fields

        @callback
        def remove_item_listener() -> None:
            listeners = self._item_listeners.get(item_id)
            if listeners is not None:
                listeners.pop(update_callback, None)
                if not listeners:
                    del self._item_listeners[item_id]

        return remove_item_listener

    @callback
    def async_add_event_listener(self, event_callback: TransferEventCallback) -> CALLBACK_TYPE:
        """Listen to the events fired on the bus: transfers (queued, started, completed,
        failed) and refused completions (completion_rejected, completion_duplicate)."""
        self._event_listeners.add(event_callback)
        return lambda: self._event_listeners.discard(event_callback)

    @callback
    def async_add_item_change_listener(self, change_callback: ItemChangeCallback) -> CALLBACK_TYPE:
        """Be told of every item added or changed (the item) or removed (None)."""
        self._item_change_listeners.add(change_callback)
        return lambda: self._item_change_listeners.discard(change_callback)

    @callback
    def _notify_item_change(self, item_id: str, item: Item | None) -> None:
        for change_callback in list(self._item_change_listeners):
            change_callback(item_id, item)

    @callback
    def _notify_event(self, kind: str, event_data: dict[str, Any]) -> None:
        for event_callback in list(self._event_listeners):
            event_callback(kind, event_data)

    @callback
    def _notify_bridge(self) -> None:
        for update_callback in list(self._bridge_listeners):
            update_callback()

    @callback
    def _notify_item(self, item_id: str) -> None:
        for update_callback in list(self._item_listeners.get(item_id, ())):
            update_callback()

    @callback
    def _notify_item_update(self, item: Item, previous: Item | None) -> None:
        """Tell the item's listeners of a new version of it. One that changes progress
        fields alone (most do, with a thousand items transferring) reaches only those
        that show one of them."""
        listeners = self._item_listeners.get(item.id)
        if not listeners:
            return
        progress = item.progress_changes(previous)
        for update_callback, fields in list(listeners.items()):
            if progress is None or not fields.isdisjoint(progress):
                update_callback()

    @callback
    def _notify_all(self) -> None:
        self._notify_bridge()
        for item_id in list(self._item_listeners):
            self._notify_item(item_id)
