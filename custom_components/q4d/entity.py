"""Base entities of the q4d integration: bridge, seedbox and queue-item entities."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from homeassistant.core import CALLBACK_TYPE, HassJob, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_call_at

from . import unique_ids
from .const import WRITE_INTERVAL
from .coordinator import Q4dCoordinator
from .devices import device_info
from .models import Item, SeedboxState

_UNSET: Any = object()


class Q4dEntity(Entity):
    """A q4d entity: pushed by the coordinator, written at most once per second.

    `_value_key()` says what the entity shows; an update that changes neither it nor
    the availability writes nothing, and changes inside the write interval are merged
    into one write at its end.
    """

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, coordinator: Q4dCoordinator, description: EntityDescription) -> None:
        """Initialise the entity."""
        self.coordinator = coordinator
        self.entity_description = description
        self._listen_item: str | None = None
        self._listen_progress: frozenset[str] = frozenset()  # see `async_add_listener`
        self._last_write = 0.0
        self._written: Any = _UNSET
        self._write_timer: CALLBACK_TYPE | None = None

    @property
    def available(self) -> bool:
        """Available while the bridge is online."""
        return self.coordinator.online

    def _value_key(self) -> Any:
        """What the entity shows; writes happen only when this or availability changes."""
        return None

    async def async_added_to_hass(self) -> None:
        """Listen to the coordinator."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self.coordinator.async_add_listener(
                self._handle_coordinator_update, self._listen_item, self._listen_progress
            )
        )
        self.async_on_remove(self._cancel_write_timer)
        self._written = (self.available, self._value_key())
        self._last_write = self.hass.loop.time()

    @cached_property
    def _write_job(self) -> HassJob[[Any], None]:
        """The deferred write, made once: entities come by the thousand."""
        return HassJob(self._async_write_later, cancel_on_shutdown=True)

    @callback
    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer()
            self._write_timer = None

    @callback
    def _handle_coordinator_update(self) -> None:
        """Write the new state now, or at the end of the current write interval."""
        if self._write_timer is not None:
            return
        written = (self.available, self._value_key())
        if written == self._written:
            return
        due = self._last_write + WRITE_INTERVAL
        if due <= self.hass.loop.time():
            self._async_write_now(written)
            return
        self._write_timer = async_call_at(self.hass, self._write_job, due)

    @callback
    def _async_write_later(self, _now: Any) -> None:
        self._write_timer = None
        written = (self.available, self._value_key())
        if written != self._written:
            self._async_write_now(written)

    @callback
    def _async_write_now(self, written: tuple[bool, Any]) -> None:
        self._written = written
        self._last_write = self.hass.loop.time()
        self.async_write_ha_state()


class Q4dBridgeEntity(Q4dEntity):
    """An entity of the bridge device."""

    def __init__(self, coordinator: Q4dCoordinator, description: EntityDescription) -> None:
        """Initialise a bridge entity."""
        super().__init__(coordinator, description)
        self._attr_unique_id = unique_ids.bridge(coordinator.bridge_id, description.key)
        self._attr_device_info = device_info(unique_ids.bridge_identifier(coordinator.bridge_id))

    @property
    def available(self) -> bool:
        """Available while the bridge is online and has published its state."""
        return super().available and self.coordinator.state is not None


class Q4dSeedboxEntity(Q4dEntity):
    """An entity of a seedbox device."""

    def __init__(
        self, coordinator: Q4dCoordinator, description: EntityDescription, seedbox: str
    ) -> None:
        """Initialise a seedbox entity."""
        super().__init__(coordinator, description)
        self.seedbox = seedbox
        self._attr_unique_id = unique_ids.seedbox(coordinator.bridge_id, seedbox, description.key)
        self._attr_device_info = device_info(
            unique_ids.seedbox_identifier(coordinator.bridge_id, seedbox)
        )

    @property
    def seedbox_state(self) -> SeedboxState | None:
        """This seedbox in the latest state snapshot."""
        state = self.coordinator.state
        return state.seedboxes.get(self.seedbox) if state is not None else None

    @property
    def available(self) -> bool:
        """Available while the bridge is online and reports this seedbox."""
        return super().available and self.seedbox_state is not None


class Q4dItemEntity(Q4dEntity):
    """An entity of one queue item, grouped under its seedbox's device.

    Items of a seedbox the state does not list (one removed from the bridge's
    configuration) go under the bridge device instead of a device of their own.
    """

    def __init__(
        self, coordinator: Q4dCoordinator, description: EntityDescription, item: Item
    ) -> None:
        """Initialise an item entity."""
        super().__init__(coordinator, description)
        self.item_id = item.id
        self._listen_item = item.id
        bridge_id = coordinator.bridge_id
        self._attr_unique_id = unique_ids.item(bridge_id, item.id, description.key)
        self._attr_translation_placeholders = {"item": item.name}
        state = coordinator.state
        if state is not None and item.seedbox in state.seedboxes:
            identifier = unique_ids.seedbox_identifier(bridge_id, item.seedbox)
        else:
            identifier = unique_ids.bridge_identifier(bridge_id)
        self._attr_device_info = device_info(identifier)

    @property
    def item(self) -> Item | None:
        """The item as last published."""
        return self.coordinator.items.get(self.item_id)

    @property
    def available(self) -> bool:
        """Available while the bridge is online and still has the item."""
        return super().available and self.item is not None

    async def async_added_to_hass(self) -> None:
        """Listen to the item; remove the entity if the item lost it in the meantime.

        The removal waits for the next loop iteration: the platform finishes adding
        (and writes the state) after this returns, which would leave an orphan state.
        """
        await super().async_added_to_hass()
        if not self.coordinator.item_entities.has_entities(self.item_id):
            handle = self.hass.loop.call_soon(self._async_remove_if_unwanted)
            self.async_on_remove(handle.cancel)

    @callback
    def _async_remove_if_unwanted(self) -> None:
        if not self.coordinator.item_entities.has_entities(self.item_id):
            er.async_get(self.hass).async_remove(self.entity_id)


@callback
def async_add_seedbox_entities[DescriptionT: EntityDescription](
    coordinator: Q4dCoordinator,
    async_add_entities: AddConfigEntryEntitiesCallback,
    descriptions: tuple[DescriptionT, ...],
    exists_fn: Callable[[DescriptionT, SeedboxState], bool],
    factory: Callable[[Q4dCoordinator, DescriptionT, str], Entity],
) -> None:
    """Add a platform's seedbox entities as seedboxes appear in the state snapshot."""
    known: set[tuple[str, str]] = set()

    @callback
    def _async_check() -> None:
        state = coordinator.state
        if state is None:
            return
        known.difference_update({k for k in known if k[0] not in state.seedboxes})
        new: list[Entity] = []
        for seedbox, sb_state in state.seedboxes.items():
            for description in descriptions:
                key = (seedbox, description.key)
                if key not in known and exists_fn(description, sb_state):
                    known.add(key)
                    new.append(factory(coordinator, description, seedbox))
        if new:
            async_add_entities(new)

    _async_check()
    coordinator.config_entry.async_on_unload(coordinator.async_add_listener(_async_check))


@callback
def async_add_item_entities(
    coordinator: Q4dCoordinator,
    async_add_entities: AddConfigEntryEntitiesCallback,
    factory: Callable[[Item], list[Entity]],
) -> None:
    """Add a platform's item entities as items appear (in batches)."""

    @callback
    def _async_add(item_ids: list[str]) -> None:
        entities: list[Entity] = []
        for item_id in item_ids:
            if (item := coordinator.items.get(item_id)) is not None:
                entities.extend(factory(item))
        async_add_entities(entities)

    coordinator.config_entry.async_on_unload(coordinator.async_add_items_callback(_async_add))
