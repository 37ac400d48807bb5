"""The bridge's devices, kept in the device registry, and what entities link to.

Only this module describes devices (name, model, version, the seedboxes' link to the
bridge); entities name theirs by identifier alone. Lookups go through the config
entry's own devices: identifiers are unique only within a config entry in newer Home
Assistant, and `async_get_device` is deprecated there.
"""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.typing import UNDEFINED, UndefinedType

from . import unique_ids
from .const import DOMAIN, LOGGER, MANUFACTURER
from .models import BridgeState, BridgeStatus, SeedboxState

# Display names of the torrent clients the bridge supports, by its `type`.
CLIENT_MODELS = {
    "qbittorrent": "qBittorrent",
    "transmission": "Transmission",
    "deluge": "Deluge",
    "rtorrent": "rTorrent",
}


def device_info(identifier: tuple[str, str]) -> DeviceInfo:
    """What an entity says about its device: which one; this module describes it."""
    return DeviceInfo(identifiers={identifier})


def _seedbox_description(sb_state: SeedboxState) -> tuple[str, str, str | UndefinedType | None]:
    """(name, model, version) of a seedbox's device: model and version are its torrent
    client's."""
    client = sb_state.client
    if client is None:
        return sb_state.name, "Seedbox", None
    model = "Seedbox" if client.type is None else CLIENT_MODELS.get(client.type, client.type)
    # A client the bridge could not ask (yet) has no version: the last one stays.
    return sb_state.name, model, UNDEFINED if client.version is None else client.version


class Q4dDevices:
    """Keeps the bridge device, one device per seedbox and the destination sensors in
    step with what the bridge reports."""

    def __init__(self, hass: HomeAssistant, entry_id: str, bridge_id: str) -> None:
        """Nothing is registered until the first update."""
        self.hass = hass
        self.entry_id = entry_id
        self.bridge_id = bridge_id
        # seedbox id -> its device's (name, model, version), for those with a device
        self._seedboxes: dict[str, tuple[str, str, str | UndefinedType | None]] = {}
        self._destinations: set[str] | None = None  # None until the first state

    def device_id(self, identifier: tuple[str, str]) -> str | None:
        """Device registry id of one of this entry's devices."""
        for device in dr.async_entries_for_config_entry(dr.async_get(self.hass), self.entry_id):
            if identifier in device.identifiers:
                return device.id
        return None

    @callback
    def async_update_bridge(self, name: str, status: BridgeStatus | None) -> None:
        """Create or update the bridge device (before the first status, keep the version
        stored from last time)."""
        dr.async_get(self.hass).async_get_or_create(
            config_entry_id=self.entry_id,
            identifiers={unique_ids.bridge_identifier(self.bridge_id)},
            manufacturer=MANUFACTURER,
            model="Bridge",
            name=name,
            sw_version=status.version if status is not None else UNDEFINED,
        )

    @callback
    def async_update(self, state: BridgeState) -> None:
        """Follow the seedboxes and destinations of a new state snapshot."""
        dev_reg = dr.async_get(self.hass)
        for seedbox in [sb for sb in self._seedboxes if sb not in state.seedboxes]:
            del self._seedboxes[seedbox]
        bridge_device_id = self.device_id(unique_ids.bridge_identifier(self.bridge_id))
        for seedbox, sb_state in state.seedboxes.items():
            description = _seedbox_description(sb_state)
            if self._seedboxes.get(seedbox) == description:
                continue
            self._seedboxes[seedbox] = description
            name, model, version = description
            # The link to the bridge by device id: `via_device` is deprecated in newer
            # Home Assistant, and older ones take `via_device_id` only on updates.
            device = dev_reg.async_get_or_create(
                config_entry_id=self.entry_id,
                identifiers={unique_ids.seedbox_identifier(self.bridge_id, seedbox)},
                manufacturer=MANUFACTURER,
                model=model,
                name=name,
                sw_version=version,
            )
            if device.via_device_id != bridge_device_id:
                dev_reg.async_update_device(device.id, via_device_id=bridge_device_id)
        # A few devices: cheap on every state, and catches ones left from a past run.
        for device in dr.async_entries_for_config_entry(dev_reg, self.entry_id):
            for identifier in device.identifiers:
                gone = unique_ids.seedbox_of_identifier(self.bridge_id, identifier)
                if gone is not None and gone not in state.seedboxes:
                    self._async_remove_seedbox_device(device.id, gone, bridge_device_id)
        self._async_update_destinations(state)

    @callback
    def _async_remove_seedbox_device(
        self, device_id: str, seedbox: str, bridge_device_id: str | None
    ) -> None:
        """Remove a seedbox that left; its items' entities move to the bridge device.

        Items of a seedbox the bridge no longer has (failed `not_configured`, or
        finished ones still in its history) keep their entities until the bridge
        prunes them.
        """
        LOGGER.info("Seedbox %s left bridge %s; removing its device", seedbox, self.bridge_id)
        ent_reg = er.async_get(self.hass)
        for entry in er.async_entries_for_device(
            ent_reg, device_id, include_disabled_entities=True
        ):
            key = unique_ids.parse(self.bridge_id, entry.unique_id)
            if entry.config_entry_id == self.entry_id and key and key.kind == unique_ids.Kind.ITEM:
                ent_reg.async_update_entity(entry.entity_id, device_id=bridge_device_id)
        dr.async_get(self.hass).async_remove_device(device_id)

    @callback
    def _async_update_destinations(self, state: BridgeState) -> None:
        """Remove the free-space sensors of destinations the bridge no longer has."""
        ent_reg = er.async_get(self.hass)
        if self._destinations is None:
            for entry in er.async_entries_for_config_entry(ent_reg, self.entry_id):
                key = unique_ids.parse(self.bridge_id, entry.unique_id)
                if (
                    key is not None
                    and key.kind == unique_ids.Kind.DESTINATION
                    and key.subject not in state.destinations
                ):
                    ent_reg.async_remove(entry.entity_id)
        else:
            for destination in self._destinations - set(state.destinations):
                unique_id = unique_ids.destination(self.bridge_id, destination)
                if entity_id := ent_reg.async_get_entity_id(Platform.SENSOR, DOMAIN, unique_id):
                    LOGGER.info(
                        "Destination %s left bridge %s; removing its sensor",
                        destination,
                        self.bridge_id,
                    )
                    ent_reg.async_remove(entity_id)
        self._destinations = set(state.destinations)
