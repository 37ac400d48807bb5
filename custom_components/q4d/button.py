"""Buttons: retry failed items and rescan seedboxes; retry or cancel one item."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .commands import async_item_command, async_rescan, async_retry_failed
from .const import RESCAN_TIMEOUT
from .coordinator import Q4dConfigEntry, Q4dCoordinator
from .entity import Q4dBridgeEntity, Q4dItemEntity, async_add_item_entities
from .models import Item

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class Q4dBridgeButtonDescription(ButtonEntityDescription):
    """A button of the bridge device; a press reports what it did in a notification."""

    press_fn: Callable[[HomeAssistant, Q4dCoordinator], Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class Q4dItemButtonDescription(ButtonEntityDescription):
    """A button of a queue item, available only while its command applies."""

    op: str
    available_fn: Callable[[Item], bool]


BRIDGE_BUTTONS: tuple[Q4dBridgeButtonDescription, ...] = (
    Q4dBridgeButtonDescription(
        key="retry_failed",
        translation_key="retry_failed",
        press_fn=lambda hass, coordinator: async_retry_failed(hass, coordinator, notify=True),
    ),
    Q4dBridgeButtonDescription(
        key="rescan",
        translation_key="rescan",
        entity_category=EntityCategory.CONFIG,
        press_fn=lambda hass, coordinator: async_rescan(
            hass, coordinator, {}, time_limit=RESCAN_TIMEOUT, notify=True
        ),
    ),
)

# Narrower than what the bridge accepts: a stray press should not fetch a done item
# again, nor hurry an item that is waiting to retry by itself.
ITEM_BUTTONS: tuple[Q4dItemButtonDescription, ...] = (
    Q4dItemButtonDescription(
        key="retry",
        translation_key="item_retry",
        op="retry",
        available_fn=lambda item: item.state == "failed",
    ),
    Q4dItemButtonDescription(
        key="cancel",
        translation_key="item_cancel",
        op="cancel",
        available_fn=lambda item: item.refusal("cancel") is None,
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
        await self.entity_description.press_fn(self.hass, self.coordinator)


class Q4dItemButton(Q4dItemEntity, ButtonEntity):
    """A command for one item."""

    entity_description: Q4dItemButtonDescription

    def __init__(
        self, coordinator: Q4dCoordinator, description: Q4dItemButtonDescription, item: Item
    ) -> None:
        """Initialise an item button."""
        super().__init__(coordinator, description, item)

    @property
    def available(self) -> bool:
        """Available while the item is in a state its command applies to."""
        item = self.item
        return super().available and item is not None and self.entity_description.available_fn(item)

    def _value_key(self) -> Any:
        return None

    async def async_press(self) -> None:
        """Send the command for this item."""
        await async_item_command(self.coordinator, self.entity_description.op, self.item_id)
