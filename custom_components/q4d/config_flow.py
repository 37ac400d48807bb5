"""Config flow: MQTT discovery from a bridge's retained status, manual set-up, options."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import voluptuous as vol
from homeassistant.components import mqtt
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.selector import TextSelector
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo

from .const import (
    CONF_BRIDGE_ID,
    CONF_PREFIX,
    DEFAULT_PREFIX,
    DOMAIN,
    STATUS_TIMEOUT,
)
from .models import BridgeStatus, PayloadError
from .options_flow import Q4dOptionsFlow
from .subentries import SUBENTRY_FLOWS

# The bridge's own rules (bridge/q4d_bridge/config/schema.py): ids and topic prefixes.
BRIDGE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PREFIX = re.compile(r"^[^#+\x00]+$")


async def async_read_status(
    hass: HomeAssistant, prefix: str, bridge_id: str
) -> BridgeStatus | None:
    """Wait for the bridge's retained status message; None if none arrives in time."""
    future: asyncio.Future[BridgeStatus] = hass.loop.create_future()

    @callback
    def _on_status(msg: mqtt.ReceiveMessage) -> None:
        if future.done() or not msg.payload:
            return
        try:
            status = BridgeStatus.from_payload(msg.payload)
        except PayloadError:
            return
        if status.bridge_id == bridge_id:
            future.set_result(status)

    unsubscribe = await mqtt.async_subscribe(
        hass, f"{prefix}/bridge/{bridge_id}/status", _on_status, qos=1
    )
    try:
        async with asyncio.timeout(STATUS_TIMEOUT):
            return await future
    except TimeoutError:
        return None
    finally:
        unsubscribe()


USER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_BRIDGE_ID): TextSelector(),
        vol.Required(CONF_PREFIX, default=DEFAULT_PREFIX): TextSelector(),
    }
)


def _validate(user_input: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    bridge_id = user_input[CONF_BRIDGE_ID].strip()
    prefix = user_input[CONF_PREFIX].strip().strip("/")
    errors: dict[str, str] = {}
    if not BRIDGE_ID.match(bridge_id):
        errors[CONF_BRIDGE_ID] = "invalid_bridge_id"
    if not prefix or not PREFIX.match(prefix):
        errors[CONF_PREFIX] = "invalid_prefix"
    return bridge_id, prefix, errors


class Q4dConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up one config entry per bridge (unique id = bridge id)."""

    VERSION = 2  # 2: unambiguous entity unique ids (see unique_ids)

    _status: BridgeStatus
    _prefix: str

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> Q4dOptionsFlow:
        """Options: display, the bridge's transfer limits and dispatch weights."""
        return Q4dOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Seedboxes, destinations, rules, *arr instances and home torrent clients of the
        bridge (see `subentries`)."""
        return SUBENTRY_FLOWS

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """A bridge's retained status on `<prefix>/bridge/<id>/status`."""
        parts = discovery_info.topic.split("/")
        if len(parts) < 4 or parts[-3] != "bridge" or parts[-1] != "status":
            return self.async_abort(reason="invalid_discovery_info")
        prefix = "/".join(parts[:-3])
        try:
            status = BridgeStatus.from_payload(discovery_info.payload)
        except PayloadError:
            return self.async_abort(reason="invalid_discovery_info")
        if status.bridge_id != parts[-2]:
            return self.async_abort(reason="invalid_discovery_info")
        await self.async_set_unique_id(status.bridge_id)
        if status.online and status.prefix == prefix:
            # A running bridge on this prefix: a configured entry follows it here.
            self._abort_if_unique_id_configured(updates={CONF_PREFIX: prefix})
        # Anything else may be a stale retained message under a prefix the bridge left
        # (its last will stays there for good): it must not move the entry back.
        self._abort_if_unique_id_configured()
        self._status = status
        self._prefix = prefix
        self.context["title_placeholders"] = {"name": status.name}
        return await self.async_step_confirm()

    async def async_step_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm a discovered bridge."""
        if user_input is not None:
            return self.async_create_entry(
                title=self._status.name,
                data={CONF_BRIDGE_ID: self._status.bridge_id, CONF_PREFIX: self._prefix},
            )
        self._set_confirm_only()
        return self.async_show_form(
            step_id="confirm",
            description_placeholders={
                "name": self._status.name,
                "bridge_id": self._status.bridge_id,
                "version": self._status.version or "?",
                "state": "online" if self._status.online else "offline",
            },
        )

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Set up a bridge by its id and topic prefix."""
        if not await mqtt.async_wait_for_mqtt_client(self.hass):
            return self.async_abort(reason="mqtt_not_available")
        errors: dict[str, str] = {}
        if user_input is not None:
            bridge_id, prefix, errors = _validate(user_input)
            if not errors:
                await self.async_set_unique_id(bridge_id, raise_on_progress=False)
                self._abort_if_unique_id_configured()
                status = await async_read_status(self.hass, prefix, bridge_id)
                if status is None:
                    errors["base"] = "bridge_not_found"
                else:
                    return self.async_create_entry(
                        title=status.name,
                        data={CONF_BRIDGE_ID: bridge_id, CONF_PREFIX: prefix},
                    )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(USER_SCHEMA, user_input or {}),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the topic prefix of a configured bridge."""
        entry = self._get_reconfigure_entry()
        bridge_id: str = entry.data[CONF_BRIDGE_ID]
        errors: dict[str, str] = {}
        if user_input is not None:
            _, prefix, errors = _validate({**user_input, CONF_BRIDGE_ID: bridge_id})
            if not errors:
                if await async_read_status(self.hass, prefix, bridge_id) is None:
                    errors["base"] = "bridge_not_found"
                else:
                    return self.async_update_reload_and_abort(
                        entry, data_updates={CONF_PREFIX: prefix}
                    )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_PREFIX): TextSelector()}),
                user_input or {CONF_PREFIX: entry.data[CONF_PREFIX]},
            ),
            description_placeholders={"bridge_id": bridge_id},
            errors=errors,
        )
