"""The seedbox subentry flow: SSH settings, tested; the host key confirmed; the torrent
client, tested; the seedbox saved on the bridge."""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import SubentryFlowResult
from homeassistant.helpers.selector import (
    BooleanSelector,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from ..config_answers import Answer
from ..config_values import (
    CLIENT_TYPES,
    ENGINES,
    SECRET_KEYS,
    client_value,
    seedbox_auth,
    seedbox_value,
)
from ..subentry_flow import PASSWORD, TEXT, BridgeSubentryFlow, number, select

SSH_FIELDS: Final = frozenset(
    {"id", "name", "host", "port", "user", "private_key", "passphrase", "password",
     "remote_roots", "max_concurrent", "engine", "new_host_key"}
)  # fmt: skip
CLIENT_FIELDS: Final = frozenset({"url", "username", "password"})


class SeedboxSubentryFlow(BridgeSubentryFlow):
    """SSH settings, tested; the host key confirmed; the torrent client, tested; saved."""

    subentry_type = "seedbox"
    first_step = "ssh"

    def __init__(self) -> None:
        """A new flow."""
        super().__init__()
        self._ssh: dict[str, Any] = {}
        self._form: dict[str, Any] = {}
        self._offered_key = ""
        self._host_key: str | None = None

    def _prepare(self) -> None:
        value = self._current
        client = value["client"] if isinstance(value.get("client"), dict) else {}
        self._form = {
            **{k: value[k] for k in ("name", "host", "port", "user", "engine") if k in value},
            "remote_roots": value.get("remote_roots", []),
            "max_concurrent": value.get("max_concurrent", 2),
            "auth": seedbox_auth(value),
            "type": client.get("type", "none"),
            "url": client.get("url", ""),
            "username": client.get("username", ""),
        }

    async def async_step_ssh(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """SSH: where the seedbox is, how to log in, which folders to fetch from."""
        if user_input is None:
            return self._show_ssh({})
        self._form |= {
            k: v for k, v in user_input.items() if k not in SECRET_KEYS and k != "new_host_key"
        }
        errors = self._check_id(user_input)
        value, value_errors = seedbox_value({**user_input, "id": self._id}, self._current)
        errors |= value_errors
        if errors:
            return self._show_ssh(errors)
        if (value["host"], value["port"]) != (self._ssh.get("host"), self._ssh.get("port")):
            self._host_key = None  # a host key confirmed in this flow is for its address
        self._ssh = value
        return await self._async_test_ssh()

    def _ssh_value(self) -> dict[str, Any]:
        """The SSH settings, with the host key confirmed in this flow (which replaces
        the file pinning the old one: the bridge takes one or the other)."""
        if not self._host_key:
            return dict(self._ssh)
        value = {k: v for k, v in self._ssh.items() if k != "known_hosts"}
        return value | {"host_key": self._host_key}

    async def _async_test_ssh(self) -> SubentryFlowResult:
        answer = await self._async_test("ssh", self._ssh_value())
        offered = answer.details.get("host_key")
        if answer.code == "host_key_unknown" and isinstance(offered, str):
            self._offered_key = offered
            self._placeholders = {
                "fingerprint": str(answer.details.get("fingerprint", "")),
                "host": str(self._ssh["host"]),
                "port": str(self._ssh["port"]),
            }
            return self.async_show_form(
                step_id="host_key", description_placeholders=self._placeholders
            )
        if answer.code is not None:
            return self._show_ssh(self._errors(answer, SSH_FIELDS))
        return self._show_client({})

    async def async_step_host_key(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """The seedbox's host key, shown by its fingerprint: submitting trusts it."""
        self._host_key = self._offered_key
        return await self._async_test_ssh()

    async def async_step_client(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """The seedbox's torrent client (optional), tested, then the seedbox saved."""
        if user_input is None:
            return self._show_client({})
        self._form |= {k: v for k, v in user_input.items() if k not in SECRET_KEYS}
        client, errors = client_value(user_input, self._current.get("client"))
        if errors:
            return self._show_client(errors)
        if client is not None:
            # A test uses only what it is sent: a password being dropped is left out,
            # and a socket reached over SSH needs the seedbox's settings (maybe unsaved).
            tested = {k: v for k, v in client.items() if v is not None}
            if client["url"].startswith("scgi+ssh://"):
                tested["seedbox"] = self._ssh_value()
            answer = await self._async_test("client", tested)
            if answer.code is not None:
                return self._show_client(self._errors(answer, CLIENT_FIELDS, "client"))
        result = await self._async_save(self._ssh_value() | ({"client": client} if client else {}))
        if not isinstance(result, Answer):
            return result
        ssh_errors = self._errors(result, SSH_FIELDS)
        if set(ssh_errors) - {"base"}:
            return self._show_ssh(ssh_errors)
        return self._show_client(self._errors(result, CLIENT_FIELDS, "client"))

    def _show_ssh(self, errors: dict[str, str]) -> SubentryFlowResult:
        schema: dict[Any, Any] = {vol.Required("id"): TEXT} if self._creating else {}
        schema |= {
            vol.Optional("name"): TEXT,
            vol.Required("host"): TEXT,
            vol.Required("port", default=22): number(1, 65535),
            vol.Required("user"): TEXT,
            vol.Required("auth", default="key"): select(("key", "password"), "seedbox_auth"),
            vol.Optional("private_key"): TextSelector(
                TextSelectorConfig(multiline=True, type=TextSelectorType.PASSWORD)
            ),
            vol.Optional("passphrase"): PASSWORD,
            vol.Optional("password"): PASSWORD,
            vol.Optional("remote_roots"): TextSelector(TextSelectorConfig(multiple=True)),
            vol.Required("max_concurrent", default=2): number(1, 64),
            vol.Required("engine", default="auto"): select(ENGINES, "seedbox_engine"),
        }
        if not self._creating:
            schema[vol.Optional("new_host_key", default=False)] = BooleanSelector()
        return self.async_show_form(
            step_id="ssh",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), self._form),
            errors=errors,
            description_placeholders=self._placeholders,
        )

    def _show_client(self, errors: dict[str, str]) -> SubentryFlowResult:
        schema = vol.Schema(
            {
                vol.Required("type", default="none"): select(
                    ("none", *CLIENT_TYPES), "client_type"
                ),
                vol.Optional("url"): TEXT,
                vol.Optional("username"): TEXT,
                vol.Optional("password"): PASSWORD,
            }
        )
        return self.async_show_form(
            step_id="client",
            data_schema=self.add_suggested_values_to_schema(schema, self._form),
            errors=errors,
            description_placeholders=self._placeholders,
        )
