"""Subentry flows: a bridge's seedboxes, destinations, rules and Sonarr/Radarr
instances, added and edited from Home Assistant. Each flow tests what it can on the
bridge (`config_test`), then saves it there (`config_set`); the bridge validates with
the schema `check-config` uses and applies the change live. A subentry holds no secret:
the bridge keeps them.

Removal is not a flow: `config_sync` sees a subentry gone and tells the bridge.
"""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import ConfigSubentryFlow, SubentryFlowResult
from homeassistant.helpers.selector import (
    BooleanSelector,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from .config_values import (
    ARR_TYPES,
    CLIENT_TYPES,
    ENGINES,
    RULE_FIELDS,
    SECRET_KEYS,
    SIZE_OPS,
    STRING_OPS,
    arr_value,
    client_value,
    condition,
    condition_of,
    destination_value,
    rule_value,
    seedbox_auth,
    seedbox_value,
)
from .subentry_flow import PASSWORD, TEXT, Answer, BridgeSubentryFlow, number, select

# --- seedboxes -----------------------------------------------------------------------------

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


# --- destinations --------------------------------------------------------------------------

DESTINATION_FIELDS: Final = frozenset({"name", "path", "owner", "group", "extract"})


class DestinationSubentryFlow(BridgeSubentryFlow):
    """A library folder: tested for writing (and ownership), then saved."""

    subentry_type = "destination"
    first_step = "destination"
    id_field = "name"

    async def async_step_destination(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Where payloads land, who owns them, whether archives are unpacked."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = self._check_id(user_input)
            if not errors:
                value = destination_value(user_input, self._current)
                answer = await self._async_test("destination", value)
                result = await self._async_save(value) if answer.code is None else answer
                if not isinstance(result, Answer):
                    return result
                errors = self._errors(result, DESTINATION_FIELDS)
        current = self._current
        suggested = user_input or {
            "path": current.get("path", ""),
            "owner": str(current.get("owner", "")),
            "group": str(current.get("group", "")),
            "extract": bool(current.get("extract")),
        }
        schema: dict[Any, Any] = {vol.Required("name"): TEXT} if self._creating else {}
        schema |= {
            vol.Required("path"): TEXT,
            vol.Optional("owner"): TEXT,
            vol.Optional("group"): TEXT,
            vol.Optional("extract", default=False): BooleanSelector(),
        }
        return self.async_show_form(
            step_id="destination",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), suggested),
            errors=errors,
            description_placeholders=self._placeholders,
        )


# --- rules ---------------------------------------------------------------------------------

RULE_FORM_FIELDS: Final = frozenset({"id", "order", "destination", "ignore"})


class RuleSubentryFlow(BridgeSubentryFlow):
    """Where matching payloads go (or that they stay): the rule, then its conditions one
    by one (all must match); its `order` places it among the rules."""

    subentry_type = "rule"
    first_step = "rule"

    def __init__(self) -> None:
        """A new flow."""
        super().__init__()
        self._rule: dict[str, Any] = {}
        self._existing: list[tuple[str, str, str]] = []
        self._conditions: list[dict[str, Any]] = []
        self._index = 0

    def _prepare(self) -> None:
        match = self._current.get("match")
        conditions = [condition_of(raw) for raw in match] if isinstance(match, list) else []
        self._existing = [c for c in conditions if c is not None]
        assert self._sync is not None
        orders = self._sync.rule_orders()
        self._rule = {
            "order": self._current.get("order", max(orders, default=0) + 10),
            "ignore": bool(self._current.get("ignore")),
        }
        if self._current.get("destination"):
            self._rule["destination"] = self._current["destination"]

    async def async_step_rule(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """The rule: its id, order, and destination or ignore."""
        if user_input is None:
            return self._show_rule({})
        self._rule = dict(user_input)
        errors = self._check_id(user_input)
        if not user_input.get("destination") and not user_input.get("ignore"):
            errors["destination"] = "destination_required"
        if errors:
            return self._show_rule(errors)
        self._conditions = []
        self._index = 0
        if self._existing or user_input.get("add_condition"):
            return self._show_condition({})
        return await self._async_save_rule()

    async def async_step_condition(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """One condition: kept or dropped if it exists, and whether another follows."""
        if user_input is None:
            return self._show_condition({})
        if user_input.get("keep", True):
            built, errors = condition(user_input)
            if errors:
                return self._show_condition(errors, user_input)
            self._conditions.append(built)
        self._index += 1
        if self._index < len(self._existing) or user_input.get("add_another"):
            return self._show_condition({})
        return await self._async_save_rule()

    async def _async_save_rule(self) -> SubentryFlowResult:
        form = {**self._rule, "id": self._id}
        result = await self._async_save(rule_value(form, self._conditions, self._current))
        if not isinstance(result, Answer):
            return result
        # Back to the start, with the conditions as entered.
        built = [condition_of(c) for c in self._conditions]
        self._existing = [c for c in built if c is not None]
        return self._show_rule(self._errors(result, RULE_FORM_FIELDS))

    def _show_rule(self, errors: dict[str, str]) -> SubentryFlowResult:
        assert self._sync is not None
        destinations = sorted(self._sync.ids("destination"))
        schema: dict[Any, Any] = {vol.Required("id"): TEXT} if self._creating else {}
        schema |= {
            vol.Required("order"): number(0, 100000),
            vol.Optional("destination"): SelectSelector(
                SelectSelectorConfig(options=destinations, mode=SelectSelectorMode.DROPDOWN)
            ),
            vol.Optional("ignore", default=False): BooleanSelector(),
        }
        if not self._existing:
            schema[vol.Optional("add_condition", default=self._creating)] = BooleanSelector()
        return self.async_show_form(
            step_id="rule",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), self._rule),
            errors=errors,
            description_placeholders=self._placeholders,
        )

    def _show_condition(
        self, errors: dict[str, str], user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        existing = self._index < len(self._existing)
        schema: dict[Any, Any] = {
            vol.Required("field"): select(RULE_FIELDS, "rule_field"),
            vol.Required("operator"): select(STRING_OPS + SIZE_OPS, "rule_operator"),
            vol.Optional("value", default=""): TEXT,
        }
        if existing:
            schema[vol.Optional("keep", default=True)] = BooleanSelector()
        if self._index >= len(self._existing) - 1:
            schema[vol.Optional("add_another", default=False)] = BooleanSelector()
        suggested = user_input
        if suggested is None and existing:
            field_, op, value = self._existing[self._index]
            suggested = {"field": field_, "operator": op, "value": value}
        return self.async_show_form(
            step_id="condition",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), suggested or {}),
            errors=errors,
            description_placeholders={"number": str(self._index + 1), **self._placeholders},
        )


# --- Sonarr/Radarr instances ----------------------------------------------------------------

ARR_FIELDS: Final = frozenset({"name", "type", "url", "api_key"})


class ArrSubentryFlow(BridgeSubentryFlow):
    """A Sonarr or Radarr instance the bridge's arr_import step calls: tested (the app's
    system status, with the key), then saved."""

    subentry_type = "arr"
    first_step = "arr"
    id_field = "name"

    async def async_step_arr(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """The app, its URL and API key."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = self._check_id(user_input)
            if not errors:
                value = arr_value(user_input, self._current)
                answer = await self._async_test("arr", value)
                result = await self._async_save(value) if answer.code is None else answer
                if not isinstance(result, Answer):
                    return result
                errors = self._errors(result, ARR_FIELDS)
        current = self._current
        # the key is typed again, never shown back
        suggested = {k: v for k, v in (user_input or current).items() if k != "api_key"}
        schema: dict[Any, Any] = {vol.Required("name"): TEXT} if self._creating else {}
        schema |= {
            vol.Required("type", default="sonarr"): select(ARR_TYPES, "arr_type"),
            vol.Required("url"): TEXT,
            # a new instance needs its key; an edit keeps the bridge's unless one is typed
            (vol.Required if self._creating else vol.Optional)("api_key"): PASSWORD,
        }
        return self.async_show_form(
            step_id="arr",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), suggested),
            errors=errors,
            description_placeholders=self._placeholders,
        )


SUBENTRY_FLOWS: Final[dict[str, type[ConfigSubentryFlow]]] = {
    "seedbox": SeedboxSubentryFlow,
    "destination": DestinationSubentryFlow,
    "rule": RuleSubentryFlow,
    "arr": ArrSubentryFlow,
}
