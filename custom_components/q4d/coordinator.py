"""Push coordinator: mirrors one q4d bridge from its MQTT topics.

The bridge owns all state. It publishes `status` (retained, also its last will),
`state` (retained snapshot, at most once per second), one retained `item/<id>`
per queue item (an empty payload removes it), lifecycle `event`s, and answers
`command`s on `command/result`. This class parses them into the typed model
(`status`, `state`, `items`), keeps the registry's devices in step, fires the bus
events and tells its listeners. What follows from the model lives beside it: item
entities (`item_entities`), repair issues (`repairs`), commands (`bridge_client`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.util import dt as dt_util

from . import unique_ids
from .bridge_client import BridgeClient
from .bus_events import duplicate_data, rejected_data, transfer_data
from .const import (
    CONF_BRIDGE_ID,
    CONF_PREFIX,
    DOMAIN,
    EVENT_TRANSFER_PREFIX,
    LOGGER,
    TRANSFER_EVENTS,
)
from .devices import Q4dDevices
from .item_entities import ItemEntities, ItemsCallback
from .listeners import Q4dListeners
from .models import (
    BridgeState,
    BridgeStatus,
    CommandResult,
    Item,
    PayloadError,
    UnsupportedVersion,
    decode,
)
from .sync import RetainedItemsSync

if TYPE_CHECKING:  # pragma: no cover - config_sync imports this module
    from .config_sync import ConfigSync

type Q4dConfigEntry = ConfigEntry[Q4dRuntimeData]

RECENT_EVENTS = 1000


@dataclass(kw_only=True)
class Q4dRuntimeData:
    """Runtime data of a q4d config entry."""

    coordinator: Q4dCoordinator
    config_sync: ConfigSync


class Q4dCoordinator(Q4dListeners):
    """Keeps the parsed bridge model and notifies listeners of changes.

    Bridge listeners hear of every status, state and connection change, and of every
    change of `synced`; item listeners of their item's changes.
    """

    def __init__(self, hass: HomeAssistant, entry: Q4dConfigEntry) -> None:
        """Initialise from the config entry; nothing is subscribed yet."""
        super().__init__()
        self.hass = hass
        self.config_entry = entry
        self.bridge_id: str = entry.data[CONF_BRIDGE_ID]
        self.prefix: str = entry.data[CONF_PREFIX]
        self.base_topic = f"{self.prefix}/bridge/{self.bridge_id}"
        self.options = dict(entry.options)

        self.status: BridgeStatus | None = None
        self.state: BridgeState | None = None
        self.items: dict[str, Item] = {}
        self.mqtt_connected = True

        self.devices = Q4dDevices(hass, entry.entry_id, self.bridge_id)
        self.client = BridgeClient(
            hass, f"{self.base_topic}/command", lambda: self.online, lambda: self.name
        )
        self.item_entities = ItemEntities(self)

        self._recent_events: OrderedDict[tuple[str, Any, Any], None] = OrderedDict()
        self._unsubscribe: list[CALLBACK_TYPE] = []
        self._sync = RetainedItemsSync(hass, self._async_synced)
        self._cooldown_timer: CALLBACK_TYPE | None = None
        self._version_warned: set[str] = set()
        self._offline_logged = False

    # --- lifecycle -----------------------------------------------------------------

    async def async_start(self) -> None:
        """Subscribe to the bridge's topics; retained messages arrive right after."""
        self.mqtt_connected = mqtt.is_connected(self.hass)
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

    @callback
    def async_stop(self) -> None:
        """Unsubscribe, cancel timers and fail commands still waiting for an answer."""
        while self._unsubscribe:
            self._unsubscribe.pop()()
        self._sync.async_cancel()
        self._async_cancel_cooldown_timer()
        self.client.async_stop()

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

    def seedbox_name(self, seedbox: str) -> str:
        """Display name of a seedbox."""
        sb = self.state.seedboxes.get(seedbox) if self.state is not None else None
        return sb.name if sb is not None else seedbox

    async def async_command(
        self, op: str, args: dict[str, Any] | None = None, *, time_limit: float | None = None
    ) -> Any:
        """Send a command to the bridge and wait for its result."""
        return await self.client.async_command(op, args, time_limit=time_limit)

    @callback
    def async_add_items_callback(self, new_callback: ItemsCallback) -> CALLBACK_TYPE:
        """Be told, in batches, about items that need entities."""
        return self.item_entities.async_add_items_callback(new_callback)

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
            self._sync.async_cancel()
        elif self.state is not None:
            # Items cleared while disconnected send nothing: their retained message is
            # simply not delivered again.
            self._sync.async_start(self.items)
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
        self.devices.async_update_bridge(self.name, status)
        if status.online and not was_online:
            if self._offline_logged:
                LOGGER.info("Bridge %s is back online", self.bridge_id)
            self._offline_logged = False
            if was_offline and self.state is not None:
                # The bridge re-publishes every item it still has, then its state.
                self._sync.async_start(self.items)
            self._notify_all()
        elif not status.online and (was_online or not self._offline_logged):
            LOGGER.info("Bridge %s is offline", self.bridge_id)
            self._offline_logged = True
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
            self._sync.async_start(())
        self.devices.async_update(state)
        self._async_schedule_cooldown()
        self._sync.async_state(len(self.items), state.total_items)
        self._notify_bridge()

    @callback
    def _handle_item(self, msg: mqtt.ReceiveMessage) -> None:
        item_id = msg.topic.rsplit("/", 1)[-1]
        self._sync.async_seen(item_id)  # its retained message is still there (or just went)
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
            if kind == "rejected":
                key = (kind, data.get("topic"), data.get("at"))
                self._async_fire("completion_rejected", key, rejected_data(data))
            return
        known = self.items.get(item.id)
        # The event's copy of the item is only used if nothing newer arrived already; it
        # never creates an item (a redelivered event may be about an item long pruned).
        if known is not None and (item.updated_at or 0) > (known.updated_at or 0):
            self._async_update_item(item)
        key = (kind, item.id, data.get("at"))
        if kind == "duplicate":
            self._async_fire("completion_duplicate", key, duplicate_data(item, data))
        elif kind in TRANSFER_EVENTS:
            self._async_fire(kind, key, transfer_data(kind, item, data))

    @callback
    def _async_fire(self, kind: str, key: tuple[str, Any, Any], data: dict[str, Any]) -> None:
        """Fire a bus event and tell the event listeners, once per bridge event (the
        outbox delivers at least once)."""
        if key in self._recent_events:
            return
        self._recent_events[key] = None
        if len(self._recent_events) > RECENT_EVENTS:
            self._recent_events.popitem(last=False)
        seedbox = data.get("seedbox")
        event_data = {
            "bridge_id": self.bridge_id,
            "config_entry_id": self.config_entry.entry_id,
            "bridge_device_id": self.devices.device_id(
                unique_ids.bridge_identifier(self.bridge_id)
            ),
            "device_id": self.devices.device_id(
                unique_ids.seedbox_identifier(self.bridge_id, seedbox)
            )
            if isinstance(seedbox, str)
            else None,
            **data,
        }
        prefix = EVENT_TRANSFER_PREFIX if kind in TRANSFER_EVENTS else f"{DOMAIN}_"
        self.hass.bus.async_fire(f"{prefix}{kind}", event_data)
        self._notify_event(kind, event_data)

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
        self.client.async_resolve(result.id, result)

    # --- items ----------------------------------------------------------------------

    @callback
    def _async_update_item(self, item: Item) -> None:
        previous = self.items.get(item.id)
        self.items[item.id] = item
        self._notify_item_update(item, previous)
        self._notify_item_change(item.id, item)
        # After the listeners: a sync completed by this item keeps its entities.
        if self.state is not None:
            self._sync.async_check(len(self.items), self.state.total_items)

    @callback
    def _async_remove_item(self, item_id: str) -> None:
        if self.items.pop(item_id, None) is not None:
            self._notify_item_change(item_id, None)

    @property
    def synced(self) -> bool:
        """Whether every retained item of the bridge is in (see `sync`)."""
        return self._sync.synced

    @callback
    def _async_synced(self, unseen: set[str]) -> None:
        """Forget the items the bridge no longer has."""
        if unseen:
            LOGGER.debug("Bridge %s no longer has items %s", self.bridge_id, sorted(unseen))
        for item_id in unseen:
            self._async_remove_item(item_id)
        self._notify_bridge()

    # --- circuit breakers -----------------------------------------------------------

    @callback
    def _async_schedule_cooldown(self) -> None:
        """Tell the listeners when the next circuit breaker's cool-down ends.

        The bridge does not publish its state when a cool-down ends (only when
        something changes), so a breaker counts as open only until `breaker_until`.
        """
        self._async_cancel_cooldown_timer()
        assert self.state is not None
        now = time.time()
        ends = [
            sb.breaker_until
            for sb in self.state.seedboxes.values()
            if sb.breaker_until is not None and sb.breaker_open_at(now)
        ]
        if ends:
            self._cooldown_timer = async_track_point_in_utc_time(
                self.hass,
                HassJob(self._async_cooled_down, cancel_on_shutdown=True),
                dt_util.utc_from_timestamp(min(ends)),
            )

    @callback
    def _async_cancel_cooldown_timer(self) -> None:
        if self._cooldown_timer is not None:
            self._cooldown_timer()
            self._cooldown_timer = None

    @callback
    def _async_cooled_down(self, _now: datetime) -> None:
        self._cooldown_timer = None
        self._async_schedule_cooldown()
        self._notify_bridge()
