"""Push coordinator: mirrors one q4d bridge from its MQTT topics and commands it.

The bridge owns all state. It publishes `status` (retained, also its last will),
`state` (retained snapshot, at most once per second), one retained `item/<id>`
per queue item (an empty payload removes it), lifecycle `event`s, and answers
`command`s on `command/result`. This class keeps the parsed picture, tells the
entities that care when something changed, creates and removes seedbox devices
and item entities as they come and go, fires the bus events, and keeps the
repair issues in step with what the bridge reports.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import (
    async_call_later,
    async_track_point_in_utc_time,
    async_track_time_interval,
)
from homeassistant.helpers.typing import UNDEFINED
from homeassistant.util import dt as dt_util

from . import issues
from .const import (
    COMMAND_TIMEOUT,
    CONF_BRIDGE_ID,
    CONF_ITEM_ENTITIES,
    CONF_PREFIX,
    CONF_RETENTION,
    DEFAULT_ITEM_ENTITIES,
    DEFAULT_RETENTION,
    DOMAIN,
    EVENT_TRANSFER_PREFIX,
    HOST_KEY_ERROR,
    ITEM_BUTTON_KEYS,
    ITEM_SENSOR_KEYS,
    LOGGER,
    MANUFACTURER,
    OFFLINE_ISSUE_AFTER,
    RETENTION_SWEEP_INTERVAL,
    SPACE_ERROR_CODES,
    SYNC_GRACE,
    TRANSFER_EVENTS,
)
from .models import (
    BridgeState,
    BridgeStatus,
    CommandResult,
    Item,
    PayloadError,
    UnsupportedVersion,
    decode,
)

type Q4dConfigEntry = ConfigEntry[Q4dRuntimeData]

type ItemsCallback = Callable[[list[str]], None]
type ItemChangeCallback = Callable[[str, Item | None], None]
type TransferEventCallback = Callable[[str, dict[str, Any]], None]

SEEDBOX_SEPARATOR = ":seedbox:"
DESTINATION_INFIX = "_destination_"
DESTINATION_SUFFIX = "_free_space"
RECENT_EVENTS = 1000


@dataclass(kw_only=True)
class Q4dRuntimeData:
    """Runtime data of a q4d config entry."""

    coordinator: Q4dCoordinator


class Q4dCoordinator:
    """Keeps the parsed bridge model and notifies entities of changes."""

    def __init__(self, hass: HomeAssistant, entry: Q4dConfigEntry) -> None:
        """Initialise from the config entry; nothing is subscribed yet."""
        self.hass = hass
        self.config_entry = entry
        self.bridge_id: str = entry.data[CONF_BRIDGE_ID]
        self.prefix: str = entry.data[CONF_PREFIX]
        self.base_topic = f"{self.prefix}/bridge/{self.bridge_id}"
        self.options = dict(entry.options)
        self.item_entities_enabled: bool = entry.options.get(
            CONF_ITEM_ENTITIES, DEFAULT_ITEM_ENTITIES
        )
        self.retention = float(entry.options.get(CONF_RETENTION, DEFAULT_RETENTION)) * 60

        self.status: BridgeStatus | None = None
        self.state: BridgeState | None = None
        self.items: dict[str, Item] = {}
        self.mqtt_connected = True
        self.synced = False

        self._bridge_listeners: set[CALLBACK_TYPE] = set()
        self._item_listeners: dict[str, set[CALLBACK_TYPE]] = {}
        self._event_listeners: set[TransferEventCallback] = set()
        self._items_callbacks: set[ItemsCallback] = set()
        self._item_change_listeners: set[ItemChangeCallback] = set()

        self._seedboxes: dict[str, str] = {}  # seedbox id -> name, with a device
        self._items_with_entities: set[str] = set()
        self._new_items: list[str] = []
        self._flush_handle: asyncio.Handle | None = None
        self._expiry: dict[str, float] = {}
        self._pending: dict[str, asyncio.Future[CommandResult]] = {}
        self._recent_events: OrderedDict[tuple[str, str, Any], None] = OrderedDict()
        self._unsubscribe: list[CALLBACK_TYPE] = []
        self._offline_timer: CALLBACK_TYPE | None = None
        self._sync_timer: CALLBACK_TYPE | None = None
        self._breaker_timer: CALLBACK_TYPE | None = None
        # Items known before a re-sync started and not published again since.
        self._unseen: set[str] = set()
        # A state snapshot arrived since the (re-)sync started: its counts are current.
        self._sync_fresh = False
        self._destinations: set[str] | None = None  # None until the first state
        self._space_items: dict[str, set[str]] = {}  # destination -> waiting item ids
        self._host_key_items: dict[str, set[str]] = {}  # seedbox -> failed item ids
        self._host_key_links: set[str] = set()  # seedboxes whose SSH link saw a bad key
        self._space_issues: set[str] = set()
        self._host_key_issues: set[str] = set()
        self._breakers_open: set[str] = set()
        self._version_warned: set[str] = set()
        self._offline_logged = False
        self._stopped = False

    # --- lifecycle -----------------------------------------------------------------

    async def async_start(self) -> None:
        """Subscribe to the bridge's topics; retained messages arrive right after."""
        self.mqtt_connected = mqtt.is_connected(self.hass)
        self._async_ensure_bridge_device()
        if not self.item_entities_enabled:
            self._async_remove_stale_item_entities()
        handlers: tuple[tuple[str, Callable[[mqtt.ReceiveMessage], None]], ...] = (
            (f"{self.base_topic}/status", self._handle_status),
            (f"{self.base_topic}/state", self._handle_state),
            (f"{self.base_topic}/item/+", self._handle_item),
            (f"{self.base_topic}/event", self._handle_event),
            (f"{self.base_topic}/command/result", self._handle_result),
        )
        for topic, handler in handlers:
            self._unsubscribe.append(await mqtt.async_subscribe(self.hass, topic, handler, qos=1))
        self._unsubscribe.append(
            mqtt.async_subscribe_connection_status(self.hass, self._handle_mqtt_connection)
        )
        self._unsubscribe.append(
            async_track_time_interval(
                self.hass,
                self._async_sweep,
                timedelta(seconds=RETENTION_SWEEP_INTERVAL),
                name=f"q4d {self.bridge_id} retention",
                cancel_on_shutdown=True,
            )
        )
        # Not seen online yet: a bridge that never shows up is reported like an offline one.
        self._async_start_offline_timer()

    @callback
    def async_stop(self) -> None:
        """Unsubscribe, cancel timers and fail commands still waiting for an answer."""
        self._stopped = True
        while self._unsubscribe:
            self._unsubscribe.pop()()
        for timer in (self._offline_timer, self._sync_timer, self._breaker_timer):
            if timer is not None:
                timer()
        self._offline_timer = self._sync_timer = self._breaker_timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    HomeAssistantError(
                        translation_domain=DOMAIN,
                        translation_key="entry_unloaded",
                        translation_placeholders={"bridge": self.name},
                    )
                )
        self._pending.clear()
        issues.async_delete_all(self.hass, self.config_entry.entry_id)

    # --- public model ---------------------------------------------------------------

    @property
    def online(self) -> bool:
        """Whether the bridge is online and Home Assistant is connected to the broker."""
        return self.mqtt_connected and self.status is not None and self.status.online

    @property
    def name(self) -> str:
        """Display name of the bridge."""
        if self.status is not None:
            return self.status.name
        return self.config_entry.title

    @property
    def bridge_identifier(self) -> tuple[str, str]:
        """Device registry identifier of the bridge device."""
        return (DOMAIN, self.bridge_id)

    def seedbox_identifier(self, seedbox: str) -> tuple[str, str]:
        """Device registry identifier of a seedbox device."""
        return (DOMAIN, f"{self.bridge_id}{SEEDBOX_SEPARATOR}{seedbox}")

    def seedbox_of_identifier(self, identifier: tuple[str, str]) -> str | None:
        """The seedbox id a device identifier of this bridge stands for, if any."""
        domain, value = identifier
        head = f"{self.bridge_id}{SEEDBOX_SEPARATOR}"
        if domain != DOMAIN or not value.startswith(head):
            return None
        return value[len(head) :]

    def seedbox_name(self, seedbox: str) -> str:
        """Display name of a seedbox."""
        sb = self.state.seedboxes.get(seedbox) if self.state is not None else None
        return sb.name if sb is not None else seedbox

    def destination_unique_id(self, destination: str) -> str:
        """Unique id of a destination's free-space sensor."""
        return f"{self.bridge_id}{DESTINATION_INFIX}{destination}{DESTINATION_SUFFIX}"

    def destination_of_unique_id(self, unique_id: str) -> str | None:
        """The destination a free-space sensor's unique id stands for, if it is one."""
        head = f"{self.bridge_id}{DESTINATION_INFIX}"
        if not unique_id.startswith(head) or not unique_id.endswith(DESTINATION_SUFFIX):
            return None
        return unique_id[len(head) : -len(DESTINATION_SUFFIX)] or None

    def item_unique_id(self, item_id: str, key: str) -> str:
        """Unique id of one of an item's entities."""
        return f"{self.bridge_id}_item_{item_id}_{key}"

    def item_of_unique_id(self, unique_id: str) -> str | None:
        """The item id an entity unique id belongs to, if it is an item entity."""
        head = f"{self.bridge_id}_item_"
        if not unique_id.startswith(head):
            return None
        item_id, _, key = unique_id[len(head) :].partition("_")
        if len(item_id) != 16 or key not in (*ITEM_SENSOR_KEYS, *ITEM_BUTTON_KEYS):
            return None  # e.g. an entity of a seedbox whose id is "item"
        return item_id

    def item_has_entities(self, item_id: str) -> bool:
        """Whether the item should currently have entities."""
        return item_id in self._items_with_entities

    @property
    def item_entity_count(self) -> int:
        """Number of items that currently have entities."""
        return len(self._items_with_entities)

    # --- listeners ------------------------------------------------------------------

    @callback
    def async_add_listener(
        self, update_callback: CALLBACK_TYPE, item_id: str | None = None
    ) -> CALLBACK_TYPE:
        """Listen to bridge-level changes, or to one item's changes."""
        if item_id is None:
            self._bridge_listeners.add(update_callback)

            @callback
            def remove_bridge_listener() -> None:
                self._bridge_listeners.discard(update_callback)

            return remove_bridge_listener

        self._item_listeners.setdefault(item_id, set()).add(update_callback)

        @callback
        def remove_item_listener() -> None:
            listeners = self._item_listeners.get(item_id)
            if listeners is not None:
                listeners.discard(update_callback)
                if not listeners:
                    del self._item_listeners[item_id]

        return remove_item_listener

    @callback
    def async_add_event_listener(self, event_callback: TransferEventCallback) -> CALLBACK_TYPE:
        """Listen to transfer events (queued, started, completed, failed)."""
        self._event_listeners.add(event_callback)
        return lambda: self._event_listeners.discard(event_callback)

    @callback
    def async_add_items_callback(self, new_callback: ItemsCallback) -> CALLBACK_TYPE:
        """Be told, in batches, about items that need entities."""
        self._items_callbacks.add(new_callback)
        return lambda: self._items_callbacks.discard(new_callback)

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
    def _notify_bridge(self) -> None:
        for update_callback in list(self._bridge_listeners):
            update_callback()

    @callback
    def _notify_item(self, item_id: str) -> None:
        for update_callback in list(self._item_listeners.get(item_id, ())):
            update_callback()

    @callback
    def _notify_all(self) -> None:
        self._notify_bridge()
        for item_id in list(self._item_listeners):
            self._notify_item(item_id)

    # --- MQTT handlers --------------------------------------------------------------

    @callback
    def _log_invalid(self, kind: str, err: PayloadError, message: str, *args: Any) -> None:
        """Log an unusable payload; another protocol version only once per kind."""
        if not isinstance(err, UnsupportedVersion):
            LOGGER.warning(message, *args, err)
        elif kind not in self._version_warned:
            self._version_warned.add(kind)
            LOGGER.warning(
                "Ignoring %s payloads from bridge %s: %s; this integration speaks protocol "
                "v1 (further ones are logged at debug level)",
                kind,
                self.bridge_id,
                err,
            )
        else:
            LOGGER.debug(message, *args, err)

    @callback
    def _handle_mqtt_connection(self, connected: bool) -> None:
        if connected == self.mqtt_connected:
            return
        self.mqtt_connected = connected
        if not connected:
            # Nothing arrives while disconnected: a sync running now would drop items.
            self._async_cancel_sync_timer()
        elif self.state is not None:
            # Items cleared while disconnected send nothing: their retained message is
            # simply not delivered again.
            self._async_start_sync(resync=True)
        self._notify_all()

    @callback
    def _handle_status(self, msg: mqtt.ReceiveMessage) -> None:
        if not msg.payload:
            return
        try:
            status = BridgeStatus.from_payload(msg.payload)
        except PayloadError as err:
            self._log_invalid(
                "status", err, "Ignoring invalid status from bridge %s: %s", self.bridge_id
            )
            return
        if status.bridge_id != self.bridge_id:
            LOGGER.warning(
                "Ignoring status for bridge %s on the topic of bridge %s",
                status.bridge_id,
                self.bridge_id,
            )
            return
        was_online = self.status is not None and self.status.online
        was_offline = self.status is not None and not self.status.online
        self.status = status
        self._async_ensure_bridge_device()
        if status.online and not was_online:
            if self._offline_logged:
                LOGGER.info("Bridge %s is back online", self.bridge_id)
            self._offline_logged = False
            self._async_cancel_offline_timer()
            issues.async_delete_bridge_offline(self.hass, self.config_entry.entry_id)
            if was_offline and self.state is not None:
                # The bridge re-publishes every item it still has, then its state.
                self._async_start_sync(resync=True)
            self._notify_all()
        elif not status.online and (was_online or not self._offline_logged):
            LOGGER.info("Bridge %s is offline", self.bridge_id)
            self._offline_logged = True
            self._async_start_offline_timer()
            self._notify_all()
        else:
            self._notify_bridge()

    @callback
    def _handle_state(self, msg: mqtt.ReceiveMessage) -> None:
        if not msg.payload:
            return
        try:
            state = BridgeState.from_payload(msg.payload)
        except PayloadError as err:
            self._log_invalid(
                "state", err, "Ignoring invalid state from bridge %s: %s", self.bridge_id
            )
            return
        first = self.state is None
        self.state = state
        if first:
            self._async_start_sync(resync=False)
        self._sync_fresh = True
        self._async_update_seedboxes(state)
        self._async_remove_stale_seedbox_devices()  # a few devices: cheap on every state
        self._async_update_destinations(state)
        if first and self._new_items:
            self._async_flush_new_items()
        self._async_update_breakers()
        self._async_update_host_key_links(state)
        self._async_update_repairs()
        self._async_check_sync()
        self._notify_bridge()

    @callback
    def _handle_item(self, msg: mqtt.ReceiveMessage) -> None:
        item_id = msg.topic.rsplit("/", 1)[-1]
        self._unseen.discard(item_id)  # its retained message is still there (or just went)
        if not msg.payload:
            self._async_remove_item(item_id)
            return
        try:
            item = Item.from_payload(msg.payload)
        except PayloadError as err:
            self._log_invalid("item", err, "Ignoring invalid item %s: %s", item_id)
            return
        if item.id != item_id:
            LOGGER.warning("Ignoring item %s published on the topic of %s", item.id, item_id)
            return
        self._async_update_item(item)

    @callback
    def _handle_event(self, msg: mqtt.ReceiveMessage) -> None:
        try:
            data = decode(msg.payload)
            kind = data["event"]
            item_data = data.get("item")
            item = Item.from_dict(item_data) if isinstance(item_data, dict) else None
        except PayloadError as err:
            self._log_invalid(
                "event", err, "Ignoring invalid event from bridge %s: %s", self.bridge_id
            )
            return
        except (KeyError, TypeError) as err:
            LOGGER.warning("Ignoring invalid event from bridge %s: %s", self.bridge_id, err)
            return
        if item is None:
            return
        known = self.items.get(item.id)
        # The event's copy of the item is only used if nothing newer arrived already; it
        # never creates an item (a redelivered event may be about an item long pruned).
        if known is not None and (item.updated_at or 0) > (known.updated_at or 0):
            self._async_update_item(item)
        if kind not in TRANSFER_EVENTS:
            return
        key = (kind, item.id, data.get("at"))
        if key in self._recent_events:  # the outbox delivers at least once
            return
        self._recent_events[key] = None
        if len(self._recent_events) > RECENT_EVENTS:
            self._recent_events.popitem(last=False)
        event_data = self._event_data(kind, item, data)
        self.hass.bus.async_fire(f"{EVENT_TRANSFER_PREFIX}{kind}", event_data)
        for event_callback in list(self._event_listeners):
            event_callback(kind, event_data)

    @callback
    def _handle_result(self, msg: mqtt.ReceiveMessage) -> None:
        try:
            result = CommandResult.from_payload(msg.payload)
        except UnsupportedVersion as err:
            self._log_invalid("command result", err, "Ignoring command result: %s")
            return
        except PayloadError as err:
            LOGGER.debug("Ignoring invalid command result: %s", err)
            return
        if result.id is None:
            LOGGER.warning(
                "Bridge %s could not read a command: %s", self.bridge_id, result.error_message
            )
            return
        future = self._pending.get(result.id)
        if future is not None and not future.done():
            future.set_result(result)

    # --- items ----------------------------------------------------------------------

    @callback
    def _async_update_item(self, item: Item) -> None:
        previous = self.items.get(item.id)
        self.items[item.id] = item
        self._async_update_item_issues(previous, item)
        if self.item_entities_enabled:
            if item.id in self._items_with_entities:
                if not item.finished:
                    self._expiry.pop(item.id, None)
                elif self.retention <= 0:
                    self._async_remove_item_entities(item.id)
                elif item.id not in self._expiry:
                    self._expiry[item.id] = self._deadline(item)
            elif not item.finished or self._deadline(item) > time.time():
                self._items_with_entities.add(item.id)
                if item.finished:
                    self._expiry[item.id] = self._deadline(item)
                self._async_schedule_new_item(item.id)
        if not self.synced:
            self._async_check_sync()
        self._notify_item(item.id)
        self._notify_item_change(item.id, item)

    def _deadline(self, item: Item) -> float:
        finished = item.finished_at if item.finished_at is not None else time.time()
        return finished + self.retention

    @callback
    def _async_remove_item(self, item_id: str) -> None:
        item = self.items.pop(item_id, None)
        self._unseen.discard(item_id)
        if item is not None:
            self._async_update_item_issues(item, None)
            self._notify_item_change(item_id, None)
        self._async_remove_item_entities(item_id)

    @callback
    def _async_schedule_new_item(self, item_id: str) -> None:
        """Batch new items so a burst of retained items adds entities in one go."""
        self._new_items.append(item_id)
        if self._flush_handle is None:
            self._flush_handle = self.hass.loop.call_soon(self._async_flush_new_items)

    @callback
    def _async_flush_new_items(self) -> None:
        self._flush_handle = None
        if self._stopped or self.state is None:
            return  # kept until the first state names the seedbox devices
        new = [
            item_id
            for item_id in dict.fromkeys(self._new_items)  # an item may come, go and come back
            if item_id in self._items_with_entities and item_id in self.items
        ]
        self._new_items.clear()
        if not new:
            return
        for new_callback in list(self._items_callbacks):
            new_callback(new)

    @callback
    def _async_remove_item_entities(self, item_id: str) -> None:
        self._items_with_entities.discard(item_id)
        self._expiry.pop(item_id, None)
        ent_reg = er.async_get(self.hass)
        for platform, keys in (
            (Platform.SENSOR, ITEM_SENSOR_KEYS),
            (Platform.BUTTON, ITEM_BUTTON_KEYS),
        ):
            for key in keys:
                unique_id = self.item_unique_id(item_id, key)
                if entity_id := ent_reg.async_get_entity_id(platform, DOMAIN, unique_id):
                    ent_reg.async_remove(entity_id)

    @callback
    def _async_sweep(self, _now: datetime | None = None) -> None:
        """Remove the entities of finished items whose retention has passed."""
        now = time.time()
        for item_id in [i for i, deadline in self._expiry.items() if deadline <= now]:
            self._async_remove_item_entities(item_id)

    @callback
    def _async_start_sync(self, *, resync: bool) -> None:
        """Wait for the bridge's retained items, then forget what did not come.

        The first sync starts with the first state snapshot. A re-sync starts when
        Home Assistant reconnects to the broker (the retained items are delivered
        again) and when the bridge comes back online (it re-publishes them): items
        removed meanwhile are simply not among them, so every known item counts as
        unseen until its topic delivers again.
        """
        self.synced = False
        self._unseen = set(self.items) if resync else set()
        self._sync_fresh = False
        self._async_cancel_sync_timer()
        self._sync_timer = async_call_later(
            self.hass,
            SYNC_GRACE,
            HassJob(self._async_sync_timeout, cancel_on_shutdown=True),
        )

    @callback
    def _async_cancel_sync_timer(self) -> None:
        if self._sync_timer is not None:
            self._sync_timer()
            self._sync_timer = None

    @callback
    def _async_check_sync(self) -> None:
        """Synced early once a state since the sync began counts no more items than seen."""
        if self.synced or self.state is None or not self._sync_fresh:
            return
        if len(self.items) - len(self._unseen) >= self.state.total_items:
            self._async_synced()

    @callback
    def _async_sync_timeout(self, _now: datetime) -> None:
        self._sync_timer = None
        if not self.synced:
            self._async_synced()

    @callback
    def _async_synced(self) -> None:
        """All retained items are in: forget the items, and entities, the bridge lacks."""
        self.synced = True
        self._async_cancel_sync_timer()
        unseen, self._unseen = self._unseen, set()
        if unseen:
            LOGGER.debug("Bridge %s no longer has items %s", self.bridge_id, sorted(unseen))
        for item_id in unseen:
            self._async_remove_item(item_id)
        self._async_remove_stale_item_entities()

    @callback
    def _async_remove_stale_item_entities(self) -> None:
        ent_reg = er.async_get(self.hass)
        for entry in er.async_entries_for_config_entry(ent_reg, self.config_entry.entry_id):
            item_id = self.item_of_unique_id(entry.unique_id)
            if item_id is not None and item_id not in self._items_with_entities:
                ent_reg.async_remove(entry.entity_id)

    # --- devices --------------------------------------------------------------------

    @callback
    def _async_ensure_bridge_device(self) -> None:
        status = self.status
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.config_entry.entry_id,
            identifiers={self.bridge_identifier},
            manufacturer=MANUFACTURER,
            model="Bridge",
            name=self.name,
            # Before the first status the version stored from last time stays.
            sw_version=status.version if status is not None else UNDEFINED,
        )

    @callback
    def _async_update_seedboxes(self, state: BridgeState) -> None:
        dev_reg = dr.async_get(self.hass)
        for seedbox in [sb for sb in self._seedboxes if sb not in state.seedboxes]:
            del self._seedboxes[seedbox]
            self._async_remove_seedbox_device(seedbox)
        for seedbox, sb_state in state.seedboxes.items():
            if self._seedboxes.get(seedbox) == sb_state.name:
                continue
            self._seedboxes[seedbox] = sb_state.name
            dev_reg.async_get_or_create(
                config_entry_id=self.config_entry.entry_id,
                identifiers={self.seedbox_identifier(seedbox)},
                manufacturer=MANUFACTURER,
                model="Seedbox",
                name=sb_state.name,
                via_device=self.bridge_identifier,
            )

    @callback
    def _async_remove_seedbox_device(self, seedbox: str) -> None:
        dev_reg = dr.async_get(self.hass)
        device = dev_reg.async_get_device(identifiers={self.seedbox_identifier(seedbox)})
        if device is not None:
            LOGGER.info("Seedbox %s left bridge %s; removing its device", seedbox, self.bridge_id)
            self._async_move_item_entities_to_bridge(device.id)
            dev_reg.async_update_device(
                device.id, remove_config_entry_id=self.config_entry.entry_id
            )
        issues.async_delete_seedbox(self.hass, self.config_entry.entry_id, seedbox)
        self._breakers_open.discard(seedbox)
        self._host_key_issues.discard(seedbox)
        self._host_key_links.discard(seedbox)

    @callback
    def _async_move_item_entities_to_bridge(self, device_id: str) -> None:
        """Keep the entities of a leaving seedbox's items: they move to the bridge device.

        Items of a seedbox the bridge no longer has (failed `not_configured`, or
        finished ones still in its history) stay until the bridge prunes them.
        """
        bridge_device_id = self.device_id_for(self.bridge_identifier)
        ent_reg = er.async_get(self.hass)
        for entry in er.async_entries_for_device(
            ent_reg, device_id, include_disabled_entities=True
        ):
            if (
                entry.config_entry_id == self.config_entry.entry_id
                and self.item_of_unique_id(entry.unique_id) is not None
            ):
                ent_reg.async_update_entity(entry.entity_id, device_id=bridge_device_id)

    @callback
    def _async_update_destinations(self, state: BridgeState) -> None:
        """Remove the free-space sensors of destinations the bridge no longer has."""
        if self._destinations is None:
            ent_reg = er.async_get(self.hass)
            bridge_device_id = self.device_id_for(self.bridge_identifier)
            for entry in er.async_entries_for_config_entry(ent_reg, self.config_entry.entry_id):
                destination = self.destination_of_unique_id(entry.unique_id)
                if (
                    destination is not None
                    and entry.device_id == bridge_device_id
                    and destination not in state.destinations
                ):
                    ent_reg.async_remove(entry.entity_id)
        else:
            for destination in self._destinations - set(state.destinations):
                self._async_remove_destination_entity(destination)
        self._destinations = set(state.destinations)

    @callback
    def _async_remove_destination_entity(self, destination: str) -> None:
        ent_reg = er.async_get(self.hass)
        unique_id = self.destination_unique_id(destination)
        if entity_id := ent_reg.async_get_entity_id(Platform.SENSOR, DOMAIN, unique_id):
            LOGGER.info(
                "Destination %s left bridge %s; removing its sensor", destination, self.bridge_id
            )
            ent_reg.async_remove(entity_id)

    @callback
    def _async_remove_stale_seedbox_devices(self) -> None:
        assert self.state is not None
        dev_reg = dr.async_get(self.hass)
        for device in dr.async_entries_for_config_entry(dev_reg, self.config_entry.entry_id):
            for identifier in device.identifiers:
                seedbox = self.seedbox_of_identifier(identifier)
                if seedbox is not None and seedbox not in self.state.seedboxes:
                    self._async_remove_seedbox_device(seedbox)

    def device_id_for(self, identifier: tuple[str, str]) -> str | None:
        """Device registry id for one of this bridge's devices."""
        device = dr.async_get(self.hass).async_get_device(identifiers={identifier})
        return device.id if device is not None else None

    # --- repair issues --------------------------------------------------------------

    @callback
    def _async_start_offline_timer(self) -> None:
        if self._offline_timer is None and not self._stopped:
            self._offline_timer = async_call_later(
                self.hass,
                OFFLINE_ISSUE_AFTER,
                HassJob(self._async_offline_too_long, cancel_on_shutdown=True),
            )

    @callback
    def _async_cancel_offline_timer(self) -> None:
        if self._offline_timer is not None:
            self._offline_timer()
            self._offline_timer = None

    @callback
    def _async_offline_too_long(self, _now: datetime) -> None:
        self._offline_timer = None
        if self.status is None or not self.status.online:
            issues.async_create_bridge_offline(
                self.hass,
                self.config_entry.entry_id,
                name=self.name,
                minutes=round(OFFLINE_ISSUE_AFTER / 60),
            )

    @callback
    def _async_update_breakers(self) -> None:
        """Raise or clear the breaker issues, and re-check when the next cool-down ends.

        The bridge does not publish its state when a cool-down ends (only when
        something changes), so a breaker counts as open only until `breaker_until`.
        """
        state = self.state
        assert state is not None
        now = time.time()
        next_check: float | None = None
        for seedbox, sb_state in state.seedboxes.items():
            is_open = sb_state.breaker_open_at(now)
            if is_open and sb_state.breaker_until is not None:
                until = sb_state.breaker_until
                next_check = until if next_check is None else min(next_check, until)
            if is_open and seedbox not in self._breakers_open:
                self._breakers_open.add(seedbox)
                issues.async_create_breaker_open(
                    self.hass,
                    self.config_entry.entry_id,
                    seedbox=seedbox,
                    name=sb_state.name,
                    failures=sb_state.consecutive_failures,
                )
            elif not is_open and seedbox in self._breakers_open:
                self._breakers_open.discard(seedbox)
                issues.async_delete_breaker_open(self.hass, self.config_entry.entry_id, seedbox)
        if self._breaker_timer is not None:
            self._breaker_timer()
            self._breaker_timer = None
        if next_check is not None and not self._stopped:
            self._breaker_timer = async_track_point_in_utc_time(
                self.hass,
                HassJob(self._async_breaker_cooled_down, cancel_on_shutdown=True),
                dt_util.utc_from_timestamp(next_check),
            )

    @callback
    def _async_breaker_cooled_down(self, _now: datetime) -> None:
        self._breaker_timer = None
        self._async_update_breakers()
        self._notify_bridge()  # the circuit breaker sensors

    @callback
    def _async_update_host_key_links(self, state: BridgeState) -> None:
        """Follow the held SSH links: a refused host key counts until a connection works."""
        for seedbox, sb_state in state.seedboxes.items():
            ssh = sb_state.ssh
            if ssh is None or ssh.connected:
                self._host_key_links.discard(seedbox)
            elif ssh.host_key_mismatch:
                self._host_key_links.add(seedbox)
        self._host_key_links.intersection_update(state.seedboxes)

    @callback
    def _async_update_repairs(self) -> None:
        """Raise and clear the free-space and host-key issues from what is known now.

        Space: a destination with less free space than the bridge's margin, or a
        waiting item held up for lack of space there. Host key: a seedbox whose held
        SSH link was refused for its host key and has not connected since; for a
        seedbox without a held link (or an older bridge), failed items that report a
        host key mismatch. Failed items stay in the bridge's history for days, so
        they count only where nothing better is known.
        """
        state = self.state
        space = {d for d, members in self._space_items.items() if members}
        host_key: set[str] = set()
        if state is not None:
            space.update(n for n, dest in state.destinations.items() if dest.short_of_space)
            for seedbox, sb_state in state.seedboxes.items():
                if sb_state.ssh is not None:
                    if seedbox in self._host_key_links:
                        host_key.add(seedbox)
                elif self._host_key_items.get(seedbox):
                    host_key.add(seedbox)
        entry_id = self.config_entry.entry_id
        for destination in sorted(self._space_issues - space):
            issues.async_delete_space(self.hass, entry_id, destination)
        for destination in sorted(space - self._space_issues):
            issues.async_create_space(self.hass, entry_id, destination=destination)
        for seedbox in sorted(self._host_key_issues - host_key):
            issues.async_delete_host_key(self.hass, entry_id, seedbox)
        for seedbox in sorted(host_key - self._host_key_issues):
            issues.async_create_host_key(
                self.hass, entry_id, seedbox=seedbox, name=self.seedbox_name(seedbox)
            )
        self._space_issues = space
        self._host_key_issues = host_key

    @callback
    def _async_update_item_issues(self, previous: Item | None, item: Item | None) -> None:
        """Track items waiting for space and items refused for a host key mismatch."""
        current = item if item is not None else previous
        if current is None:  # pragma: no cover - never both None
            return
        changed = False
        for table, old, new in (
            (self._space_items, _space_key(previous), _space_key(item)),
            (self._host_key_items, _host_key_key(previous), _host_key_key(item)),
        ):
            if old == new:
                continue
            changed = True
            if old is not None and (members := table.get(old)) is not None:
                members.discard(current.id)
                if not members:
                    del table[old]
            if new is not None:
                table.setdefault(new, set()).add(current.id)
        if changed:
            self._async_update_repairs()

    # --- events ---------------------------------------------------------------------

    def _event_data(self, kind: str, item: Item, data: dict[str, Any]) -> dict[str, Any]:
        event_data: dict[str, Any] = {
            "bridge_id": self.bridge_id,
            "config_entry_id": self.config_entry.entry_id,
            "bridge_device_id": self.device_id_for(self.bridge_identifier),
            "device_id": self.device_id_for(self.seedbox_identifier(item.seedbox)),
            "item_id": item.id,
            "name": item.name,
            "seedbox": item.seedbox,
            "category": item.category,
            "destination": item.destination,
            "destination_path": item.local_path,
            "size": item.size,
            "duration": item.duration if kind in ("completed", "failed") else None,
            "error": item.error_message if kind == "failed" else None,
            "error_code": item.error_code if kind == "failed" else None,
            "at": data.get("at"),
        }
        if kind == "queued":
            event_data["retry"] = data.get("retry") is True
        if kind == "completed":
            event_data["verified"] = data.get("verified")
            event_data["repaired_pieces"] = data.get("repaired_pieces")
        return event_data

    # --- commands -------------------------------------------------------------------

    async def async_command(
        self, op: str, args: dict[str, Any] | None = None, *, time_limit: float | None = None
    ) -> Any:
        """Send a command to the bridge and wait for its result."""
        if not self.online:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="bridge_offline",
                translation_placeholders={"bridge": self.name},
            )
        if time_limit is None:
            time_limit = COMMAND_TIMEOUT
        request_id = f"ha-{uuid4().hex}"
        future: asyncio.Future[CommandResult] = self.hass.loop.create_future()
        self._pending[request_id] = future
        payload = json.dumps({"id": request_id, "op": op, "args": args or {}})
        try:
            await mqtt.async_publish(
                self.hass, f"{self.base_topic}/command", payload, qos=1, retain=False
            )
            async with asyncio.timeout(time_limit):
                result = await future
        except TimeoutError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="command_timeout",
                translation_placeholders={
                    "op": op,
                    "bridge": self.name,
                    "timeout": f"{time_limit:g}",
                },
            ) from err
        finally:
            self._pending.pop(request_id, None)
        if not result.ok:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="command_failed",
                translation_placeholders={
                    "op": op,
                    "code": result.error_code or "error",
                    "message": result.error_message or "",
                },
            )
        return result.result


def _space_key(item: Item | None) -> str | None:
    """The destination a waiting item waits on for free space, if it does."""
    if item is None or item.state != "waiting":
        return None
    if item.error_code not in SPACE_ERROR_CODES:
        return None
    return item.destination or "default"


def _host_key_key(item: Item | None) -> str | None:
    """The seedbox whose host key refused a failed item, if it did."""
    if item is None or item.state != "failed" or item.error_code != HOST_KEY_ERROR:
        return None
    return item.seedbox
