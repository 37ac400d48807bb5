"""The transfers card's data feed: a websocket subscription to a bridge's queue.

`q4d/transfers/subscribe` (optional `entry_id`; without it, the only q4d entry) is
answered with a result, then a `snapshot` event: the bridge with its queue summary,
every unfinished item and the most recently finished ones. `update` events follow
with the items added or changed, the ids of those removed and the bridge when it
changed, coalesced over PUSH_DELAY: a thousand items that each change every second
make four messages a second, not a thousand. When the entry is reloaded, unloaded or
set up later, a new snapshot follows (`bridge` null while it is not loaded), so a
card open in a browser keeps working through an options change.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import voluptuous as vol
from homeassistant.components.websocket_api import async_register_command
from homeassistant.components.websocket_api.connection import ActiveConnection
from homeassistant.components.websocket_api.const import ERR_INVALID_FORMAT, ERR_NOT_FOUND
from homeassistant.components.websocket_api.decorators import websocket_command
from homeassistant.components.websocket_api.messages import event_message
from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect

from .const import DOMAIN
from .coordinator import Q4dConfigEntry, Q4dCoordinator
from .models import Item

SUBSCRIBE: Final = "q4d/transfers/subscribe"
PUSH_DELAY: Final = 0.25  # seconds over which changes are gathered into one message
HISTORY_LIMIT: Final = 50  # finished items in a snapshot, newest first


@callback
def async_register(hass: HomeAssistant) -> None:
    """Register the websocket commands (once, from async_setup)."""
    async_register_command(hass, websocket_subscribe)


@websocket_command({vol.Required("type"): SUBSCRIBE, vol.Optional("entry_id"): str})
@callback
def websocket_subscribe(
    hass: HomeAssistant, connection: ActiveConnection, msg: dict[str, Any]
) -> None:
    """Subscribe to one bridge's transfers: a snapshot, then the changes."""
    entry_id: str | None = msg.get("entry_id")
    entry: Q4dConfigEntry | None
    if entry_id is not None:
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            connection.send_error(msg["id"], ERR_NOT_FOUND, f"No q4d bridge with entry {entry_id}")
            return
    else:
        entries: list[Q4dConfigEntry] = hass.config_entries.async_entries(
            DOMAIN, include_ignore=False, include_disabled=False
        )
        if not entries:
            connection.send_error(msg["id"], ERR_NOT_FOUND, "No q4d bridge is set up")
            return
        if len(entries) > 1:
            message = "Several q4d bridges are set up: give entry_id"
            connection.send_error(msg["id"], ERR_INVALID_FORMAT, message)
            return
        entry = entries[0]
    feed = TransferFeed(hass, connection, msg["id"], entry)
    connection.subscriptions[msg["id"]] = feed.async_stop
    connection.send_result(msg["id"])
    feed.async_start()


class TransferFeed:
    """One subscription: follows the entry's coordinator and sends what changes."""

    def __init__(
        self,
        hass: HomeAssistant,
        connection: ActiveConnection,
        msg_id: int,
        entry: Q4dConfigEntry,
    ) -> None:
        """Nothing is followed until async_start."""
        self.hass = hass
        self.connection = connection
        self.msg_id = msg_id
        self.entry = entry
        self.coordinator: Q4dCoordinator | None = None
        self._unlisten: list[CALLBACK_TYPE] = []
        self._unsubscribe_entry: CALLBACK_TYPE | None = None
        self._changed: dict[str, Item | None] = {}
        self._bridge_changed = False
        self._timer: asyncio.TimerHandle | None = None

    @callback
    def async_start(self) -> None:
        """Send the snapshot and follow the coordinator (and the entry's reloads)."""
        self._unsubscribe_entry = async_dispatcher_connect(
            self.hass, SIGNAL_CONFIG_ENTRY_CHANGED, self._entry_changed
        )
        self._attach()

    @callback
    def async_stop(self) -> None:
        """The client unsubscribed or went away."""
        self._detach()
        if self._unsubscribe_entry is not None:
            self._unsubscribe_entry()
            self._unsubscribe_entry = None

    @callback
    def _entry_changed(self, _change: ConfigEntryChange, entry: Q4dConfigEntry) -> None:
        if entry.entry_id == self.entry.entry_id and _coordinator(entry) is not self.coordinator:
            self._attach()

    @callback
    def _attach(self) -> None:
        """Follow the entry's current coordinator (if loaded) from a fresh snapshot."""
        self._detach()
        coordinator = self.coordinator = _coordinator(self.entry)
        items: list[dict[str, Any]] = []
        if coordinator is not None:
            self._unlisten = [
                coordinator.async_add_item_change_listener(self._item_changed),
                coordinator.async_add_listener(self._bridge_updated),
            ]
            unfinished = [i for i in coordinator.items.values() if not i.finished]
            finished = sorted(
                (i for i in coordinator.items.values() if i.finished),
                key=lambda i: i.finished_at or 0.0,
                reverse=True,
            )
            items = [item_summary(i) for i in (*unfinished, *finished[:HISTORY_LIMIT])]
        self._send(
            {
                "type": "snapshot",
                "entry_id": self.entry.entry_id,
                "bridge": bridge_summary(coordinator) if coordinator is not None else None,
                "items": items,
            }
        )

    @callback
    def _detach(self) -> None:
        while self._unlisten:
            self._unlisten.pop()()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._changed.clear()
        self._bridge_changed = False

    @callback
    def _item_changed(self, item_id: str, item: Item | None) -> None:
        self._changed[item_id] = item
        self._schedule()

    @callback
    def _bridge_updated(self) -> None:
        self._bridge_changed = True
        self._schedule()

    @callback
    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = self.hass.loop.call_later(PUSH_DELAY, self._flush)

    @callback
    def _flush(self) -> None:
        self._timer = None
        coordinator = self.coordinator
        assert coordinator is not None  # detaching cancels the timer
        changed, self._changed = self._changed, {}
        message: dict[str, Any] = {
            "type": "update",
            "items": [item_summary(i) for i in changed.values() if i is not None],
            "removed": [item_id for item_id, i in changed.items() if i is None],
        }
        if self._bridge_changed:
            self._bridge_changed = False
            message["bridge"] = bridge_summary(coordinator)
        self._send(message)

    @callback
    def _send(self, message: dict[str, Any]) -> None:
        self.connection.send_message(event_message(self.msg_id, message))


def _coordinator(entry: Q4dConfigEntry) -> Q4dCoordinator | None:
    """The coordinator of a loaded entry."""
    if entry.state is not ConfigEntryState.LOADED:
        return None
    return entry.runtime_data.coordinator


def bridge_summary(coordinator: Q4dCoordinator) -> dict[str, Any]:
    """The bridge and its queue, as the card shows them."""
    state = coordinator.state
    return {
        "name": coordinator.name,
        "online": coordinator.online,
        "paused": state is not None and state.paused,
        "counts": state.counts if state is not None else {},
        "rate": state.rate if state is not None else 0.0,
        "bandwidth_limit": state.bandwidth_limit if state is not None else None,
        "max_concurrent": state.max_concurrent if state is not None else None,
        "seedboxes": {sb: s.name for sb, s in state.seedboxes.items()} if state is not None else {},
        "updated_at": state.updated_at if state is not None else None,
    }


def item_summary(item: Item) -> dict[str, Any]:
    """One item, with the fields the card shows (`request`: a torrent request, not in the
    queue yet)."""
    return {
        "id": item.id,
        "name": item.name,
        "seedbox": item.seedbox,
        "destination": item.destination,
        "local_path": item.local_path,
        "state": item.state,
        "paused": item.paused,
        "priority": item.priority,
        "size": item.size,
        "bytes_done": item.bytes_done,
        "progress": item.progress,
        "rate": item.rate,
        "eta": item.eta,
        "attempts": item.attempts,
        "error_code": item.error_code,
        "error": item.error_message,
        "received_at": item.received_at,
        "started_at": item.started_at,
        "finished_at": item.finished_at,
        "next_attempt_at": item.next_attempt_at,
        "duration": item.duration,
        "request_id": item.request_id,
        "request": item.is_request,
        "step": item.step,
    }
