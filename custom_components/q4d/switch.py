"""Switch: the bridge's global queue pause."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import Q4dConfigEntry
from .entity import Q4dBridgeEntity

PARALLEL_UPDATES = 1

QUEUE_PAUSED = SwitchEntityDescription(key="queue_paused", translation_key="queue_paused")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: Q4dConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the queue pause switch."""
    async_add_entities([Q4dQueuePausedSwitch(entry.runtime_data.coordinator, QUEUE_PAUSED)])


class Q4dQueuePausedSwitch(Q4dBridgeEntity, SwitchEntity):
    """On while the queue is paused: nothing starts and running transfers stop."""

    @property
    def is_on(self) -> bool | None:
        """Whether the bridge's queue is paused."""
        state = self.coordinator.state
        return None if state is None else state.paused

    def _value_key(self) -> Any:
        return self.is_on

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Pause the queue."""
        await self.coordinator.async_command("pause")

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Resume the queue."""
        await self.coordinator.async_command("resume")
