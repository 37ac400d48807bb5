"""Helpers for the q4d integration tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from homeassistant.components import mqtt
from homeassistant.const import MAJOR_VERSION, MINOR_VERSION
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_fire_mqtt_message,
    async_fire_time_changed,
)

from custom_components.q4d.const import DOMAIN

from .payloads import COMMAND_TOPIC, RESULT_TOPIC, dumps

type Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any] | None]

# The one place the tests tell Home Assistant versions apart. 2026.8 made a device
# belong to one config entry (so removing one takes a new websocket command). The
# registries' contents differ too: each tested version has its own snapshots.
HA_VERSION = (MAJOR_VERSION, MINOR_VERSION)
HA_2026_8 = HA_VERSION >= (2026, 8)
SNAPSHOT_SET = "ha2026.10" if HA_VERSION >= (2026, 10) else "ha2025.4"


def q4d_device(hass: HomeAssistant, identifier: str) -> dr.DeviceEntry | None:
    """The device of a q4d config entry with that identifier (`async_get_device` is
    deprecated in newer Home Assistant, where identifiers are unique per entry)."""
    registry = dr.async_get(hass)
    for entry in hass.config_entries.async_entries(DOMAIN):
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id):
            if (DOMAIN, identifier) in device.identifiers:
                return device
    return None


async def async_remove_device(client: Any, device_id: str, entry_id: str) -> bool:
    """Remove a device the way the frontend does; whether Home Assistant allowed it."""
    if HA_2026_8:
        await client.send_json_auto_id(
            {"type": "config/device_registry/remove", "device_id": device_id}
        )
    else:
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": entry_id,
                "device_id": device_id,
            }
        )
    response = await client.receive_json()
    return bool(response["success"])


async def async_flush(hass: HomeAssistant, seconds: float = 2.0) -> None:
    """Let throttled entity writes (at most one per second) happen."""
    await hass.async_block_till_done()
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))
    await hass.async_block_till_done()


async def async_send(hass: HomeAssistant, topic: str, payload: str, *, flush: bool = True) -> None:
    """Deliver one message from the bridge."""
    async_fire_mqtt_message(hass, topic, payload)
    if flush:
        await async_flush(hass)
    else:
        await hass.async_block_till_done()


class FakeBridge:
    """Answers commands on `command` the way the bridge does, and records them."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Start with every op answered `ok`."""
        self.hass = hass
        self.commands: list[dict[str, Any]] = []
        self.answers: dict[str, Answer] = {}
        self.silent = False
        self._unsubscribe: CALLBACK_TYPE | None = None

    async def async_start(self) -> None:
        """Subscribe to the command topic."""
        self._unsubscribe = await mqtt.async_subscribe(self.hass, COMMAND_TOPIC, self._on_command)

    def stop(self) -> None:
        """Unsubscribe."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def ops(self) -> list[tuple[str, dict[str, Any]]]:
        """(op, args) of every command received."""
        return [(c["op"], c.get("args", {})) for c in self.commands]

    @callback
    def _on_command(self, msg: mqtt.ReceiveMessage) -> None:
        command = json.loads(msg.payload)
        self.commands.append(command)
        if self.silent:
            return
        answer = self.answers.get(command["op"], {"ok": True, "result": {"items": []}})
        if callable(answer):
            answer = answer(command)
            if answer is None:
                return
        async_fire_mqtt_message(
            self.hass, RESULT_TOPIC, dumps({"v": 1, "id": command["id"], **answer})
        )
