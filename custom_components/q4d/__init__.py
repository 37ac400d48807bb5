"""The q4d integration: a q4d bridge mirrored and steered over Home Assistant's MQTT."""

from __future__ import annotations

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.typing import ConfigType

from . import unique_ids
from .card import async_setup_card
from .config_sync import ConfigSync
from .const import CONF_BRIDGE_ID, CONF_ITEM_ENTITIES, DOMAIN, LOGGER
from .coordinator import Q4dConfigEntry, Q4dCoordinator, Q4dRuntimeData
from .repairs import Q4dRepairs
from .services import async_setup_services

PLATFORMS = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.EVENT,
    Platform.NUMBER,
    Platform.SENSOR,
    Platform.SWITCH,
]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the q4d actions and the transfers card."""
    async_setup_services(hass)
    await async_setup_card(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: Q4dConfigEntry) -> bool:
    """Set up a bridge: wait for MQTT, add the platforms, then subscribe."""
    if not await mqtt.async_wait_for_mqtt_client(hass):
        raise ConfigEntryNotReady(translation_domain=DOMAIN, translation_key="mqtt_not_available")
    coordinator = Q4dCoordinator(hass, entry)
    config_sync = ConfigSync(coordinator)
    entry.runtime_data = Q4dRuntimeData(coordinator=coordinator, config_sync=config_sync)
    entry.async_on_unload(coordinator.async_stop)
    entry.async_on_unload(coordinator.item_entities.async_start())
    entry.async_on_unload(Q4dRepairs(coordinator).async_start())
    # Entities name their device by identifier only: the bridge's must exist first.
    coordinator.devices.async_update_bridge(coordinator.name, None)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await coordinator.async_start()
    entry.async_on_unload(await config_sync.async_start())
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    return True


async def async_migrate_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Version 1 entities get unambiguous unique ids (see `unique_ids`).

    Per-item entities became opt-in with version 2; a version-1 entry that never chose
    keeps them, so an upgrade removes nothing its user's dashboards may show.
    """
    if entry.version > 2:
        return False  # a newer integration's entry: leave it alone
    if entry.version == 1:
        await unique_ids.async_migrate_unique_ids(hass, entry.entry_id, entry.data[CONF_BRIDGE_ID])
        options = {CONF_ITEM_ENTITIES: True, **entry.options}
        hass.config_entries.async_update_entry(entry, options=options, version=2)
        LOGGER.debug("Migrated q4d entry %s to version 2", entry.entry_id)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: Q4dConfigEntry) -> bool:
    """Unload a bridge; the coordinator unsubscribes through the entry's unload hooks."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def _async_update_listener(hass: HomeAssistant, entry: Q4dConfigEntry) -> None:
    """Options changed: reload, so item entities follow the new settings.

    Other changes (discovery keys, title) need no reload; data changes from discovery
    and reconfigure schedule their own.
    """
    if dict(entry.options) != entry.runtime_data.coordinator.options:
        hass.config_entries.async_schedule_reload(entry.entry_id)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: Q4dConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Allow removing a seedbox device only once the bridge no longer reports it."""
    coordinator = entry.runtime_data.coordinator
    if unique_ids.bridge_identifier(coordinator.bridge_id) in device.identifiers:
        return False
    state = coordinator.state
    for identifier in device.identifiers:
        seedbox = unique_ids.seedbox_of_identifier(coordinator.bridge_id, identifier)
        if seedbox is not None:
            return state is None or seedbox not in state.seedboxes
    return True
