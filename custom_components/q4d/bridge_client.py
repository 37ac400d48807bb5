"""Commands to the bridge: publish `{id, op, args}`, wait for the matching result.

The bridge answers every command on `command/result` with the command's id; the
coordinator parses those messages and hands them to `async_resolve`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from homeassistant.components import mqtt
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError

from .const import COMMAND_TIMEOUT, DOMAIN
from .models import CommandResult


class BridgeRefusal(HomeAssistantError):
    """The bridge answered a command with an error: its code, message and details."""

    def __init__(self, op: str, result: CommandResult) -> None:
        """Translated like every refusal (`command_failed`)."""
        self.code = result.error_code or "error"
        self.details = result.error_details
        super().__init__(
            translation_domain=DOMAIN,
            translation_key="command_failed",
            translation_placeholders={
                "op": op,
                "code": self.code,
                "message": result.error_message or "",
            },
        )


class BridgeClient:
    """Sends commands to one bridge and matches its results to them."""

    def __init__(
        self,
        hass: HomeAssistant,
        command_topic: str,
        online: Callable[[], bool],
        name: Callable[[], str],
    ) -> None:
        """Commands go to `command_topic`; `online` and `name` describe the bridge now."""
        self.hass = hass
        self.command_topic = command_topic
        self._online = online
        self._name = name
        self._pending: dict[str, asyncio.Future[CommandResult]] = {}

    async def async_command(
        self, op: str, args: dict[str, Any] | None = None, *, time_limit: float | None = None
    ) -> Any:
        """Send a command to the bridge and wait for its result."""
        if not self._online():
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="bridge_offline",
                translation_placeholders={"bridge": self._name()},
            )
        if time_limit is None:
            time_limit = COMMAND_TIMEOUT
        request_id = f"ha-{uuid4().hex}"
        future: asyncio.Future[CommandResult] = self.hass.loop.create_future()
        self._pending[request_id] = future
        payload = json.dumps({"id": request_id, "op": op, "args": args or {}})
        try:
            await mqtt.async_publish(self.hass, self.command_topic, payload, qos=1, retain=False)
            async with asyncio.timeout(time_limit):
                result = await future
        except TimeoutError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="command_timeout",
                translation_placeholders={
                    "op": op,
                    "bridge": self._name(),
                    "timeout": f"{time_limit:g}",
                },
            ) from err
        finally:
            self._pending.pop(request_id, None)
        if not result.ok:
            raise BridgeRefusal(op, result)
        return result.result

    @callback
    def async_resolve(self, request_id: str, result: CommandResult) -> None:
        """Answer the command waiting for this result (others' results are ignored)."""
        future = self._pending.get(request_id)
        if future is not None and not future.done():
            future.set_result(result)

    @callback
    def async_stop(self) -> None:
        """Fail the commands still waiting: the entry is unloading."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    HomeAssistantError(
                        translation_domain=DOMAIN,
                        translation_key="entry_unloaded",
                        translation_placeholders={"bridge": self._name()},
                    )
                )
        self._pending.clear()
