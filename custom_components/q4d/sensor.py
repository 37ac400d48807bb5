"""Sensors: the bridge's queue, totals and destinations, seedbox client stats, queue items
(item_sensor.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    MAX_LENGTH_STATE_STATE,
    EntityCategory,
    UnitOfDataRate,
    UnitOfInformation,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType
from homeassistant.util import dt as dt_util

from . import unique_ids
from .const import DISPATCH_REASONS
from .coordinator import Q4dConfigEntry, Q4dCoordinator
from .entity import (
    Q4dBridgeEntity,
    Q4dSeedboxEntity,
    async_add_item_entities,
    async_add_seedbox_entities,
)
from .item_sensor import ITEM_SENSORS, Q4dItemSensor
from .models import BridgeState, Destination, Item, SeedboxState

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class Q4dBridgeSensorDescription(SensorEntityDescription):
    """A sensor of the bridge device."""

    value_fn: Callable[[BridgeState], StateType | datetime]


@dataclass(frozen=True, kw_only=True)
class Q4dSeedboxSensorDescription(SensorEntityDescription):
    """A sensor of a seedbox device."""

    value_fn: Callable[[SeedboxState], StateType]
    attributes_fn: Callable[[SeedboxState], dict[str, Any]] | None = None
    needs_client: bool = False


def _timestamp(value: float | None) -> datetime | None:
    return None if value is None else dt_util.utc_from_timestamp(value)


def _bandwidth(state: BridgeState) -> str | None:
    """The limit's number cannot say "unlimited" for 0: this sensor does."""
    if state.bandwidth_limit is None:
        return None
    return "limited" if state.bandwidth_limit > 0 else "unlimited"


def _dispatch_reason(seedbox: SeedboxState) -> str | None:
    """Why the bridge would or would not send the client new torrents; unknown from
    older bridges (no `dispatch`) and for reasons newer than this integration."""
    dispatch = seedbox.client.dispatch if seedbox.client else None
    reason = dispatch.reason_code if dispatch else None
    return reason if reason in DISPATCH_REASONS else None


def _last_rejection(seedbox: SeedboxState) -> dict[str, Any]:
    """Why the bridge refused the seedbox's last message, and when."""
    last = seedbox.last_rejection
    return {
        "last_reason": last.reason_code if last else None,
        "last_message": _text(last.message) if last and last.message else None,
        "last_rejected_at": _timestamp(last.at) if last else None,
    }


def _text(value: str) -> str:
    """A free-text state, cut to the 255 characters Home Assistant allows."""
    if len(value) <= MAX_LENGTH_STATE_STATE:
        return value
    return value[: MAX_LENGTH_STATE_STATE - 1] + "…"


BRIDGE_SENSORS: tuple[Q4dBridgeSensorDescription, ...] = (
    Q4dBridgeSensorDescription(
        key="queued",
        translation_key="queued",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.counts["queued"],
    ),
    Q4dBridgeSensorDescription(
        key="active",
        translation_key="active",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.active,
    ),
    Q4dBridgeSensorDescription(
        key="waiting",
        translation_key="waiting",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.counts["waiting"],
    ),
    Q4dBridgeSensorDescription(
        key="failed",
        translation_key="failed",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.counts["failed"],
    ),
    Q4dBridgeSensorDescription(
        key="transfer_rate",
        translation_key="transfer_rate",
        device_class=SensorDeviceClass.DATA_RATE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfDataRate.BYTES_PER_SECOND,
        suggested_unit_of_measurement=UnitOfDataRate.MEGABYTES_PER_SECOND,
        suggested_display_precision=2,
        value_fn=lambda s: s.rate,
    ),
    Q4dBridgeSensorDescription(
        key="bandwidth",
        translation_key="bandwidth",
        device_class=SensorDeviceClass.ENUM,
        options=["unlimited", "limited"],
        value_fn=_bandwidth,
    ),
    Q4dBridgeSensorDescription(
        key="bytes_transferred",
        translation_key="bytes_transferred",
        device_class=SensorDeviceClass.DATA_SIZE,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfInformation.BYTES,
        suggested_unit_of_measurement=UnitOfInformation.GIGABYTES,
        suggested_display_precision=2,
        value_fn=lambda s: s.totals.get("bytes_transferred"),
    ),
    Q4dBridgeSensorDescription(
        key="last_completed",
        translation_key="last_completed",
        value_fn=lambda s: _text(s.last_completed.name) if s.last_completed else None,
    ),
    Q4dBridgeSensorDescription(
        key="last_completed_at",
        translation_key="last_completed_at",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda s: _timestamp(s.last_completed.at) if s.last_completed else None,
    ),
    Q4dBridgeSensorDescription(
        key="completed_total",
        translation_key="completed_total",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.totals.get("completed"),
    ),
    Q4dBridgeSensorDescription(
        key="received_total",
        translation_key="received_total",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.totals.get("received"),
    ),
    Q4dBridgeSensorDescription(
        key="rejected_total",
        translation_key="rejected_total",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.totals.get("rejected"),
    ),
    Q4dBridgeSensorDescription(
        key="duplicates_total",
        translation_key="duplicates_total",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.totals.get("duplicates"),
    ),
    # Shown by default, unlike the two above: what an ignore rule left on the seedbox
    # is a choice the user made and wants to see working, not a fault to dig for.
    Q4dBridgeSensorDescription(
        key="ignored_total",
        translation_key="ignored_total",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda s: s.totals.get("ignored"),
    ),
)

SEEDBOX_SENSORS: tuple[Q4dSeedboxSensorDescription, ...] = (
    Q4dSeedboxSensorDescription(
        key="queue_length",
        translation_key="queue_length",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda sb: sb.queued + sb.waiting,
    ),
    Q4dSeedboxSensorDescription(
        key="active_transfers",
        translation_key="active_transfers",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda sb: sb.active,
    ),
    Q4dSeedboxSensorDescription(
        key="transfer_rate",
        translation_key="transfer_rate",
        device_class=SensorDeviceClass.DATA_RATE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfDataRate.BYTES_PER_SECOND,
        suggested_unit_of_measurement=UnitOfDataRate.MEGABYTES_PER_SECOND,
        suggested_display_precision=2,
        value_fn=lambda sb: sb.rate,
    ),
    Q4dSeedboxSensorDescription(
        key="failed",
        translation_key="failed",
        state_class=SensorStateClass.MEASUREMENT,
        entity_registry_enabled_default=False,
        value_fn=lambda sb: sb.failed,
    ),
    Q4dSeedboxSensorDescription(
        key="consecutive_failures",
        translation_key="consecutive_failures",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda sb: sb.consecutive_failures,
    ),
    Q4dSeedboxSensorDescription(
        key="free_space",
        translation_key="free_space",
        device_class=SensorDeviceClass.DATA_SIZE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfInformation.BYTES,
        suggested_unit_of_measurement=UnitOfInformation.GIGABYTES,
        suggested_display_precision=1,
        needs_client=True,
        value_fn=lambda sb: sb.client.free_space if sb.client else None,
    ),
    Q4dSeedboxSensorDescription(
        key="active_downloads",
        translation_key="active_downloads",
        state_class=SensorStateClass.MEASUREMENT,
        needs_client=True,
        value_fn=lambda sb: sb.client.active_downloads if sb.client else None,
    ),
    Q4dSeedboxSensorDescription(
        key="download_rate",
        translation_key="download_rate",
        device_class=SensorDeviceClass.DATA_RATE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfDataRate.BYTES_PER_SECOND,
        suggested_unit_of_measurement=UnitOfDataRate.MEGABYTES_PER_SECOND,
        suggested_display_precision=2,
        needs_client=True,
        value_fn=lambda sb: sb.client.download_rate if sb.client else None,
    ),
    Q4dSeedboxSensorDescription(
        key="upload_rate",
        translation_key="upload_rate",
        device_class=SensorDeviceClass.DATA_RATE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfDataRate.BYTES_PER_SECOND,
        suggested_unit_of_measurement=UnitOfDataRate.MEGABYTES_PER_SECOND,
        suggested_display_precision=2,
        needs_client=True,
        value_fn=lambda sb: sb.client.upload_rate if sb.client else None,
    ),
    Q4dSeedboxSensorDescription(
        key="torrents",
        translation_key="torrents",
        state_class=SensorStateClass.MEASUREMENT,
        entity_registry_enabled_default=False,
        needs_client=True,
        value_fn=lambda sb: sb.client.torrents if sb.client else None,
    ),
    Q4dSeedboxSensorDescription(
        key="dispatch_score",
        translation_key="dispatch_score",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        suggested_display_precision=1,
        needs_client=True,
        value_fn=lambda sb: sb.client.dispatch.score if sb.client and sb.client.dispatch else None,
    ),
    Q4dSeedboxSensorDescription(
        key="dispatch",
        translation_key="dispatch",
        device_class=SensorDeviceClass.ENUM,
        options=list(DISPATCH_REASONS),
        needs_client=True,
        value_fn=_dispatch_reason,
    ),
    # Shown by default: a completion the bridge refused never lands, and only its log
    # said why (a path outside remote_roots, a broken hook).
    Q4dSeedboxSensorDescription(
        key="rejected",
        translation_key="rejected_completions",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda sb: sb.rejected,
        attributes_fn=_last_rejection,
    ),
    Q4dSeedboxSensorDescription(
        key="duplicates",
        translation_key="duplicate_completions",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda sb: sb.duplicates,
    ),
)

DESTINATION_FREE_SPACE = SensorEntityDescription(
    key="destination_free_space",
    translation_key="destination_free_space",
    device_class=SensorDeviceClass.DATA_SIZE,
    state_class=SensorStateClass.MEASUREMENT,
    native_unit_of_measurement=UnitOfInformation.BYTES,
    suggested_unit_of_measurement=UnitOfInformation.GIGABYTES,
    suggested_display_precision=1,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: Q4dConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up q4d sensors; seedbox and item sensors are added as they appear."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(Q4dBridgeSensor(coordinator, d) for d in BRIDGE_SENSORS)
    known_destinations: set[str] = set()

    @callback
    def _async_add_destinations() -> None:
        state = coordinator.state
        if state is None:
            return
        known_destinations.intersection_update(state.destinations)  # gone: removed
        new = [d for d in state.destinations if d not in known_destinations]
        if new:
            known_destinations.update(new)
            async_add_entities(Q4dDestinationSensor(coordinator, d) for d in new)

    _async_add_destinations()
    entry.async_on_unload(coordinator.async_add_listener(_async_add_destinations))
    async_add_seedbox_entities(
        coordinator,
        async_add_entities,
        SEEDBOX_SENSORS,
        lambda d, sb: not d.needs_client or sb.client is not None,
        Q4dSeedboxSensor,
    )

    def _item_sensors(item: Item) -> list[Entity]:
        return [Q4dItemSensor(coordinator, d, item) for d in ITEM_SENSORS]

    async_add_item_entities(coordinator, async_add_entities, _item_sensors)


class Q4dBridgeSensor(Q4dBridgeEntity, SensorEntity):
    """A sensor of the bridge."""

    entity_description: Q4dBridgeSensorDescription

    @property
    def native_value(self) -> StateType | datetime:
        """The sensor's value from the latest state snapshot."""
        state = self.coordinator.state
        return None if state is None else self.entity_description.value_fn(state)

    def _value_key(self) -> Any:
        return self.native_value


class Q4dDestinationSensor(Q4dBridgeEntity, SensorEntity):
    """Free space of one of the bridge's destinations."""

    def __init__(self, coordinator: Q4dCoordinator, destination: str) -> None:
        """Initialise a destination's free-space sensor."""
        super().__init__(coordinator, DESTINATION_FREE_SPACE)
        self.destination = destination
        self._attr_unique_id = unique_ids.destination(coordinator.bridge_id, destination)
        self._attr_translation_placeholders = {"destination": destination}

    @property
    def destination_state(self) -> Destination | None:
        """This destination in the latest state snapshot."""
        state = self.coordinator.state
        return state.destinations.get(self.destination) if state is not None else None

    @property
    def available(self) -> bool:
        """Available while the bridge is online and reports this destination."""
        return super().available and self.destination_state is not None

    @property
    def native_value(self) -> int | None:
        """Bytes free on the destination's filesystem; unknown while it cannot be read."""
        destination = self.destination_state
        return None if destination is None else destination.free_space

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """The margin every download must leave free on the destination."""
        destination = self.destination_state
        return {"min_free_space": destination.min_free_space if destination else None}

    def _value_key(self) -> Any:
        return (self.native_value, self.extra_state_attributes["min_free_space"])


class Q4dSeedboxSensor(Q4dSeedboxEntity, SensorEntity):
    """A sensor of a seedbox."""

    entity_description: Q4dSeedboxSensorDescription

    def __init__(
        self, coordinator: Q4dCoordinator, description: Q4dSeedboxSensorDescription, seedbox: str
    ) -> None:
        """Initialise a seedbox sensor."""
        super().__init__(coordinator, description, seedbox)

    @property
    def native_value(self) -> StateType:
        """The sensor's value for this seedbox."""
        seedbox = self.seedbox_state
        return None if seedbox is None else self.entity_description.value_fn(seedbox)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """The attributes of sensors that have some, for this seedbox."""
        attributes_fn = self.entity_description.attributes_fn
        seedbox = self.seedbox_state
        return None if attributes_fn is None or seedbox is None else attributes_fn(seedbox)

    def _value_key(self) -> Any:
        return (self.native_value, self.extra_state_attributes)
