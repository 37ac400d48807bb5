"""The home torrent client subentry flow: a client at home that a rule's or a
destination's hand-off gives landed payloads to (it seeds them from the library),
tested with its login, then saved on the bridge."""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import SubentryFlowResult
from homeassistant.helpers.selector import BooleanSelector

from ..config_values import HOME_CLIENT_TYPES, home_client_value
from ..subentry_flow import PASSWORD, TEXT, BridgeSubentryFlow, select

HOME_CLIENT_FIELDS: Final = frozenset({"name", "type", "url", "username", "password", "verify_tls"})


class HomeClientSubentryFlow(BridgeSubentryFlow):
    """A qBittorrent or Transmission at home: tested (its login, version and free
    space), then saved. Its password is never shown back: an edit keeps the bridge's
    unless one is typed."""

    subentry_type = "home_client"
    first_step = "home_client"
    id_field = "name"

    async def async_step_home_client(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """The client, its URL and login."""
        errors: dict[str, str] = {}
        if user_input is not None:
            result, errors = await self._async_submit(
                user_input, "home_client", home_client_value, HOME_CLIENT_FIELDS
            )
            if result is not None:
                return result
        suggested = {k: v for k, v in (user_input or self._current).items() if k != "password"}
        schema: dict[Any, Any] = {vol.Required("name"): TEXT} if self._creating else {}
        schema |= {
            vol.Required("type", default="qbittorrent"): select(
                tuple(HOME_CLIENT_TYPES), "home_client_type"
            ),
            vol.Required("url"): TEXT,
            vol.Optional("username"): TEXT,
            # left empty, a new client has none; an edit keeps the bridge's
            vol.Optional("password"): PASSWORD,
            vol.Optional("verify_tls", default=True): BooleanSelector(),
        }
        return self.async_show_form(
            step_id="home_client",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), suggested),
            errors=errors,
            description_placeholders=self._placeholders,
        )
