"""Device triggers: transfer queued, started, completed or failed on a bridge or seedbox,
and a completion it refused (rejected, or a duplicate)."""

from __future__ import annotations

import voluptuous as vol
from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.device_automation.exceptions import (
    InvalidDeviceAutomationConfig,
)
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.const import (
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_EVENT_DATA,
    CONF_PLATFORM,
    CONF_TYPE,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType

from .const import COMPLETION_EVENTS, DOMAIN, EVENT_TRANSFER_PREFIX, TRANSFER_EVENTS
from .unique_ids import SEEDBOX_SEPARATOR

# trigger type -> the bus event it listens to
BUS_EVENTS = {
    **{f"transfer_{kind}": f"{EVENT_TRANSFER_PREFIX}{kind}" for kind in TRANSFER_EVENTS},
    **{kind: f"{DOMAIN}_{kind}" for kind in COMPLETION_EVENTS},
}
TRIGGER_TYPES = list(BUS_EVENTS)

TRIGGER_SCHEMA = DEVICE_TRIGGER_BASE_SCHEMA.extend({vol.Required(CONF_TYPE): vol.In(TRIGGER_TYPES)})


def _event_data_key(hass: HomeAssistant, device_id: str) -> str | None:
    """`bridge_device_id` for a bridge device, `device_id` for a seedbox device."""
    device = dr.async_get(hass).async_get(device_id)
    if device is None:
        return None
    for domain, identifier in device.identifiers:
        if domain == DOMAIN:
            return "device_id" if SEEDBOX_SEPARATOR in identifier else "bridge_device_id"
    return None


async def async_get_triggers(hass: HomeAssistant, device_id: str) -> list[dict[str, str]]:
    """The triggers of a q4d device."""
    if _event_data_key(hass, device_id) is None:
        return []
    return [
        {
            CONF_PLATFORM: "device",
            CONF_DOMAIN: DOMAIN,
            CONF_DEVICE_ID: device_id,
            CONF_TYPE: trigger_type,
        }
        for trigger_type in TRIGGER_TYPES
    ]


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Listen to the trigger's bus event for this device."""
    device_id: str = config[CONF_DEVICE_ID]
    key = _event_data_key(hass, device_id)
    if key is None:
        raise InvalidDeviceAutomationConfig(f"Device {device_id} is not a q4d device")
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            CONF_PLATFORM: "event",
            event_trigger.CONF_EVENT_TYPE: BUS_EVENTS[config[CONF_TYPE]],
            CONF_EVENT_DATA: {key: device_id},
        }
    )
    return await event_trigger.async_attach_trigger(
        hass, event_config, action, trigger_info, platform_type="device"
    )
