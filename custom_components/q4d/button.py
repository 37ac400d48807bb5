"""Buttons: retry failed items and rescan seedboxes; retry or cancel one item."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import RESCAN_TIMEOUT
from .coordinator import Q4dConfigEntry, Q4dCoordinator
from .entity import Q4dBridgeEntity, Q4dItemEntity, async_add_item_entities
from .models import Item

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class Q4dBridgeButtonDescription(ButtonEntityDescription):
    """A button of the bridge device."""

    op: str
    timeout: float | None = None


@dataclass(frozen=True, kw_only=True)
class Q4dItemButtonDescription(ButtonEntityDescription):
    """A button of a queue item."""

    op: str


BRIDGE_BUTTONS: tuple[Q4dBridgeButtonDescription, ...] = (
    Q4dBridgeButtonDescription(key="retry_failed", translation_key="retry_failed", op="retry"),
    Q4dBridgeButtonDescription(
        key="rescan",
        translation_key="rescan",
        entity_category=EntityCategory.CONFIG,
        op="rescan",
        timeout=RESCAN_TIMEOUT,
    ),
)

ITEM_BUTTONS: tuple[Q4dItemButtonDescription, ...] = (
    Q4dItemButtonDescription(
        key="retry",
        translation_key="item_retry",
        op="retry",
    ),
    Q4dItemButtonDescription(
        key="cancel",
        translation_key="item_cancel",
        op="cancel",
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: Q4dConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up q4d buttons."""
    coordinator = entry.runtime_data.coordinator
    async_add_entities(Q4dBridgeButton(coordinator, d) for d in BRIDGE_BUTTONS)

    def _item_buttons(item: Item) -> list[Entity]:
        return [Q4dItemButton(coordinator, d, item) for d in ITEM_BUTTONS]

    async_add_item_entities(coordinator, async_add_entities, _item_buttons)


class Q4dBridgeButton(Q4dBridgeEntity, ButtonEntity):
    """A bridge-wide command."""

    entity_description: Q4dBridgeButtonDescription

    async def async_press(self) -> None:
        """Send the command."""
        description = self.entity_description
        if description.timeout is None:
            await self.coordinator.async_command(description.op)
        else:
            await self.coordinator.async_command(description.op, time_limit=description.timeout)


class Q4dItemButton(Q4dItemEntity, ButtonEntity):
    """A command for one item (the bridge refuses it in states it does not apply to)."""

    entity_description: Q4dItemButtonDescription

    def __init__(
        self, coordinator: Q4dCoordinator, description: Q4dItemButtonDescription, item: Item
    ) -> None:
        """Initialise an item button."""
        super().__init__(coordinator, description, item)

    def _value_key(self) -> Any:
        return None

    async def async_press(self) -> None:
        """Send the command for this item."""
        await self.coordinator.async_command(self.entity_description.op, {"item_id": self.item_id})
