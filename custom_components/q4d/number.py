"""Numbers: the bridge's global transfer limits (the `set_limits` command)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import EntityCategory, UnitOfDataRate
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import Q4dConfigEntry
from .entity import Q4dBridgeEntity
from .models import BridgeState

PARALLEL_UPDATES = 1

MB = 1_000_000


@dataclass(frozen=True, kw_only=True)
class Q4dNumberDescription(NumberEntityDescription):
    """A limit of the bridge."""

    value_fn: Callable[[BridgeState], float | None]
    args_fn: Callable[[float], dict[str, int]]


NUMBERS: tuple[Q4dNumberDescription, ...] = (
    Q4dNumberDescription(
        key="max_concurrent",
        translation_key="max_concurrent",
        entity_category=EntityCategory.CONFIG,
        mode=NumberMode.BOX,
        native_min_value=1,
        native_max_value=256,
        native_step=1,
        value_fn=lambda s: s.max_concurrent,
        args_fn=lambda v: {"max_concurrent": int(v)},
    ),
    # The bridge counts bytes per second; people type MB/s, the unit the rate sensors
    # show (a number has no display unit of its own to convert to). 0 = unlimited, which
    # the Bandwidth sensor says in words.
    Q4dNumberDescription(
        key="bandwidth_limit",
        translation_key="bandwidth_limit",
        device_class=NumberDeviceClass.DATA_RATE,
        entity_category=EntityCategory.CONFIG,
        mode=NumberMode.BOX,
        native_min_value=0,
        native_max_value=10000,
        native_step=0.1,
        native_unit_of_measurement=UnitOfDataRate.MEGABYTES_PER_SECOND,
        value_fn=lambda s: None if s.bandwidth_limit is None else round(s.bandwidth_limit / MB, 2),
        args_fn=lambda v: {"bandwidth_limit": round(v * MB)},
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: Q4dConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the limit numbers."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(Q4dLimitNumber(coordinator, d) for d in NUMBERS)


class Q4dLimitNumber(Q4dBridgeEntity, NumberEntity):
    """A global transfer limit, changed at runtime and persisted by the bridge."""

    entity_description: Q4dNumberDescription

    @property
    def native_value(self) -> float | None:
        """The limit in force."""
        state = self.coordinator.state
        return None if state is None else self.entity_description.value_fn(state)

    def _value_key(self) -> Any:
        return self.native_value

    async def async_set_native_value(self, value: float) -> None:
        """Change the limit on the bridge."""
        await self.coordinator.async_command("set_limits", self.entity_description.args_fn(value))
