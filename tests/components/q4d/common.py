"""Helpers for the q4d integration tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from homeassistant.components import mqtt
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_fire_mqtt_message,
    async_fire_time_changed,
)

from .payloads import COMMAND_TOPIC, RESULT_TOPIC, dumps

type Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any] | None]


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
