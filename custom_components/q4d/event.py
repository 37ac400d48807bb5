"""Event entity: the bridge's transfer events (queued, started, completed, failed) and the
completions it refused (completion_rejected, completion_duplicate)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import COMPLETION_EVENTS, TRANSFER_EVENTS
from .coordinator import Q4dConfigEntry, Q4dCoordinator
from .entity import Q4dBridgeEntity

PARALLEL_UPDATES = 0

TRANSFER = EventEntityDescription(
    key="transfer",
    translation_key="transfer",
    event_types=[*TRANSFER_EVENTS, *COMPLETION_EVENTS],
)


def _event_attributes(coordinator: Q4dCoordinator, data: dict[str, Any]) -> dict[str, Any]:
    """What the entity keeps of a bus event: the torrent's name first, its seedbox by
    name, units in the keys, and nothing the event lacks (no error on success, no
    reason but for a refused completion)."""
    seedbox = data.get("seedbox")
    attributes = {
        "name": data.get("name"),
        "item_id": data.get("item_id"),
        "seedbox": coordinator.seedbox_name(seedbox) if isinstance(seedbox, str) else None,
        "category": data.get("category"),
        "destination": data.get("destination"),
        "size_bytes": data.get("size"),
        "duration_seconds": data.get("duration"),
        "error": data.get("error"),
        "reason": data.get("reason"),
        "message": data.get("message"),
    }
    return {key: value for key, value in attributes.items() if value is not None}


async def async_setup_entry(
    hass: HomeAssistant,
    entry: Q4dConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the transfer event entity."""
    async_add_entities([Q4dTransferEvent(entry.runtime_data.coordinator, TRANSFER)])


class Q4dTransferEvent(Q4dBridgeEntity, EventEntity):
    """The latest transfer event of the bridge, or completion it refused.

    Like every q4d entity it writes at most once per second: in a burst only the last
    event of each second is kept. The `q4d_transfer_*` and `q4d_completion_*` bus
    events (and the device triggers built on them) carry every single event.
    """

    _pending: tuple[str, dict[str, Any]] | None = None
    _serial = 0

    async def async_added_to_hass(self) -> None:
        """Listen to the coordinator's bus events."""
        await super().async_added_to_hass()
        self.async_on_remove(self.coordinator.async_add_event_listener(self._handle_event))

    @property
    def available(self) -> bool:
        """Available while the bridge is online."""
        return self.coordinator.online

    def _value_key(self) -> Any:
        return self._serial

    @callback
    def _handle_event(self, kind: str, data: dict[str, Any]) -> None:
        self._pending = (kind, _event_attributes(self.coordinator, data))
        self._serial += 1
        self._handle_coordinator_update()

    @callback
    def _async_write_now(self, written: tuple[bool, Any]) -> None:
        if self._pending is not None:
            kind, attributes = self._pending
            self._pending = None
            self._trigger_event(kind, attributes)
        super()._async_write_now(written)
