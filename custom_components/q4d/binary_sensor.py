"""Binary sensors: bridge connectivity, seedbox reachability, SSH link and circuit breaker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import Q4dConfigEntry, Q4dCoordinator
from .entity import Q4dBridgeEntity, Q4dSeedboxEntity, async_add_seedbox_entities
from .models import SeedboxState

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class Q4dSeedboxBinarySensorDescription(BinarySensorEntityDescription):
    """A binary sensor of a seedbox device."""

    value_fn: Callable[[SeedboxState], bool | None]
    exists_fn: Callable[[SeedboxState], bool] = lambda sb: True


CONNECTIVITY = BinarySensorEntityDescription(
    key="connectivity",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)

SEEDBOX_BINARY_SENSORS: tuple[Q4dSeedboxBinarySensorDescription, ...] = (
    Q4dSeedboxBinarySensorDescription(
        key="reachable",
        translation_key="reachable",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        exists_fn=lambda sb: sb.client is not None,
        value_fn=lambda sb: sb.client.reachable if sb.client else None,
    ),
    Q4dSeedboxBinarySensorDescription(
        key="ssh_link",
        translation_key="ssh_link",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        exists_fn=lambda sb: sb.ssh is not None,
        value_fn=lambda sb: sb.ssh.connected if sb.ssh else None,
    ),
    Q4dSeedboxBinarySensorDescription(
        key="breaker",
        translation_key="breaker",
        device_class=BinarySensorDeviceClass.PROBLEM,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda sb: sb.breaker_active,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: Q4dConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up q4d binary sensors."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities([Q4dConnectivitySensor(coordinator, CONNECTIVITY)])
    async_add_seedbox_entities(
        coordinator,
        async_add_entities,
        SEEDBOX_BINARY_SENSORS,
        lambda d, sb: d.exists_fn(sb),
        Q4dSeedboxBinarySensor,
    )


class Q4dConnectivitySensor(Q4dBridgeEntity, BinarySensorEntity):
    """Whether the bridge is online (its retained status, or its last will)."""

    @property
    def available(self) -> bool:
        """Available while Home Assistant is connected to the broker."""
        return self.coordinator.mqtt_connected

    @property
    def is_on(self) -> bool:
        """On while the bridge says it is online."""
        return self.coordinator.online

    def _value_key(self) -> Any:
        return self.is_on


class Q4dSeedboxBinarySensor(Q4dSeedboxEntity, BinarySensorEntity):
    """A binary sensor of a seedbox."""

    entity_description: Q4dSeedboxBinarySensorDescription

    def __init__(
        self,
        coordinator: Q4dCoordinator,
        description: Q4dSeedboxBinarySensorDescription,
        seedbox: str,
    ) -> None:
        """Initialise a seedbox binary sensor."""
        super().__init__(coordinator, description, seedbox)

    @property
    def is_on(self) -> bool | None:
        """The sensor's value for this seedbox."""
        seedbox = self.seedbox_state
        return None if seedbox is None else self.entity_description.value_fn(seedbox)

    def _value_key(self) -> Any:
        return self.is_on
