"""Sensors of one queue item (opt-in): status, progress, rate and time left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.sensor import (
    DOMAIN as SENSOR_DOMAIN,
)
from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
)
from homeassistant.const import PERCENTAGE, UnitOfDataRate, UnitOfTime
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.typing import StateType
from homeassistant.util import dt as dt_util

from .coordinator import Q4dCoordinator
from .entity import Q4dItemEntity
from .models import ITEM_STATUSES, Item


@dataclass(frozen=True, kw_only=True)
class Q4dItemSensorDescription(SensorEntityDescription):
    """A sensor of a queue item."""

    value_fn: Callable[[Q4dCoordinator, Item], StateType]
    # The progress fields (`PROGRESS_FIELDS`) the value shows: a change to others alone
    # does not concern the sensor.
    progress_fields: frozenset[str] = frozenset()


def _status(coordinator: Q4dCoordinator, item: Item) -> str:
    return item.status(coordinator.state, time.time())


# Item sensors have no state class: items come and go, long-term statistics would pile
# up. Only the rate has a suggested unit: each is stored in the entity registry, and
# items come by the thousand.
ITEM_SENSORS: tuple[Q4dItemSensorDescription, ...] = (
    Q4dItemSensorDescription(
        key="status",
        translation_key="item_status",
        device_class=SensorDeviceClass.ENUM,
        options=list(ITEM_STATUSES),
        value_fn=_status,
    ),
    Q4dItemSensorDescription(
        key="progress",
        translation_key="item_progress",
        native_unit_of_measurement=PERCENTAGE,
        value_fn=lambda _, item: item.progress,
        progress_fields=frozenset({"progress"}),
    ),
    Q4dItemSensorDescription(
        key="rate",
        translation_key="item_rate",
        device_class=SensorDeviceClass.DATA_RATE,
        native_unit_of_measurement=UnitOfDataRate.BYTES_PER_SECOND,
        suggested_unit_of_measurement=UnitOfDataRate.MEGABYTES_PER_SECOND,
        suggested_display_precision=2,
        value_fn=lambda _, item: item.rate,
        progress_fields=frozenset({"rate"}),
    ),
    Q4dItemSensorDescription(
        key="eta",
        translation_key="item_eta",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        value_fn=lambda _, item: item.eta,
        progress_fields=frozenset({"eta"}),
    ),
)


def status_attributes(coordinator: Q4dCoordinator, item: Item) -> dict[str, Any]:
    """The item's details for dashboards and templates, leaving out what it lacks: no
    error on an item that has none, no finish time before it finished."""
    attributes: dict[str, Any] = {
        "item_id": item.id,
        "seedbox": coordinator.seedbox_name(item.seedbox),
        "destination": item.destination,
        "library_path": item.local_path,
        "category": item.category,
        "size_bytes": item.size,
        "priority": item.priority,
        "attempts": item.attempts,
        "finished_at": dt_util.utc_from_timestamp(item.finished_at).isoformat()
        if item.finished and item.finished_at is not None
        else None,
    }
    if item.steps:  # post-processing: where it is and what each step did
        attributes["step"] = item.step
        attributes["steps"] = {
            str(s.get("name")): {"state": s.get("state"), "detail": s.get("detail")}
            for s in item.steps
        }
    # Only why it waits or failed: a cancelled item keeps its last attempt's error.
    if item.state in ("waiting", "failed", "processing"):
        attributes["error_code"] = item.error_code
        attributes["error"] = item.error_message
    return {key: value for key, value in attributes.items() if value is not None}


class Q4dItemSensor(Q4dItemEntity, SensorEntity):
    """A sensor of a queue item."""

    entity_description: Q4dItemSensorDescription

    def __init__(
        self, coordinator: Q4dCoordinator, description: Q4dItemSensorDescription, item: Item
    ) -> None:
        """Initialise an item sensor."""
        super().__init__(coordinator, description, item)
        self._listen_progress = description.progress_fields

    async def async_added_to_hass(self) -> None:
        """The status also follows the bridge's state: its queue pause and breakers."""
        await super().async_added_to_hass()
        if self.entity_description.key == "status":
            self.async_on_remove(
                self.coordinator.async_add_listener(self._handle_coordinator_update)
            )

    def get_initial_entity_options(self) -> er.EntityOptionsType | None:
        """The suggested unit's display precision too, stored with the new registry entry
        (the entity shows the suggested unit when first added: no scaling applies).
        Otherwise Home Assistant updates the entry with it right after creating it:
        one more registry write and event per item."""
        options = super().get_initial_entity_options()
        precision = self.entity_description.suggested_display_precision
        if options is None or precision is None:
            return options
        return {**options, SENSOR_DOMAIN: {"suggested_display_precision": precision}}

    @property
    def native_value(self) -> StateType:
        """The item's value."""
        item = self.item
        return None if item is None else self.entity_description.value_fn(self.coordinator, item)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Details of the item on its status sensor."""
        item = self.item
        if self.entity_description.key != "status" or item is None:
            return None
        return status_attributes(self.coordinator, item)

    def _value_key(self) -> Any:
        attributes = self.extra_state_attributes
        return (self.native_value, tuple(attributes.items()) if attributes else None)
