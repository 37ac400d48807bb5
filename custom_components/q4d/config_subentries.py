"""Subentry flows: a bridge's seedboxes, destinations and rules, added and edited from
Home Assistant. Each flow tests what it can on the bridge (`config_test`), then saves
it there (`config_set`); the bridge validates with the schema `check-config` uses and
applies the change live. A subentry holds no secret: the bridge keeps them.

Removal is not a flow: `config_sync` sees a subentry gone and tells the bridge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import voluptuous as vol
from homeassistant.config_entries import (
    SOURCE_USER,
    ConfigEntryState,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from .bridge_client import BridgeRefusal
from .config_sync import APPLY_TIMEOUT, ConfigSync
from .config_values import (
    CLIENT_TYPES,
    ENGINES,
    IDENTIFIER,
    RULE_FIELDS,
    SECRET_KEYS,
    SECTIONS,
    SIZE_OPS,
    STRING_OPS,
    BridgeEntry,
    client_value,
    condition,
    condition_of,
    destination_value,
    public,
    rule_value,
    seedbox_auth,
    seedbox_value,
    subentry_title,
    unique_id,
)

# An SSH probe may wait for the bridge's 20 s connect timeout, then check every root.
TEST_TIMEOUT: Final = 60.0
PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
TEXT = TextSelector()
# Refusals the forms explain on their own; anything else is `unknown` with its message.
KNOWN_CODES: Final = frozenset(
    {
        "cannot_connect", "invalid", "read_only", "host_key_mismatch", "auth_failed",
        "unreachable", "timeout", "root_missing", "root_unreadable", "not_writable",
        "chown_failed", "missing",
    }
)  # fmt: skip
# What any probe may answer; a client's are told apart from the SSH link's.
TEST_CODES: Final = frozenset({"auth_failed", "unreachable", "timeout"})
# The form field a refusal points at, when it points at one.
CODE_FIELDS: Final = {
    "root_missing": "remote_roots",
    "root_unreadable": "remote_roots",
    "not_writable": "path",
    "missing": "path",
    "chown_failed": "owner",
}


def _select(options: tuple[str, ...], key: str) -> SelectSelector:
    return SelectSelector(
        SelectSelectorConfig(
            options=list(options), translation_key=key, mode=SelectSelectorMode.DROPDOWN
        )
    )


def _number(low: int, high: int) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(min=low, max=high, step=1, mode=NumberSelectorMode.BOX)
    )


@dataclass(slots=True)
class Answer:
    """The bridge's answer to a command: its result, or its refusal."""

    result: dict[str, Any] = field(default_factory=dict)
    code: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class BridgeSubentryFlow(ConfigSubentryFlow):
    """What the three flows share: the bridge, its answers, saving."""

    subentry_type: ClassVar[str]
    first_step: ClassVar[str]
    id_field: ClassVar[str] = "id"

    def __init__(self) -> None:
        """A new flow: nothing known yet."""
        self._id = ""
        self._current: dict[str, Any] = {}
        self._placeholders: dict[str, str] = {"message": "", "root": ""}
        self._sync: ConfigSync | None = None

    @property
    def _creating(self) -> bool:
        return self.source == SOURCE_USER

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Add an entry to the bridge."""
        if (sync := self._bridge()) is None:
            return self.async_abort(reason="cannot_connect")
        self._sync = sync
        return await self._async_first_step()

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Edit the bridge's entry (not one from its YAML file)."""
        subentry = self._get_reconfigure_subentry()
        if subentry.data.get("read_only"):
            return self.async_abort(reason="read_only_yaml")
        if (sync := self._bridge()) is None:
            return self.async_abort(reason="cannot_connect")
        self._sync = sync
        self._id = str(subentry.data["id"])
        bridge_entry = sync.entry_of(self.subentry_type, self._id)
        self._current = dict(
            bridge_entry.value if bridge_entry is not None else subentry.data["value"]
        )
        return await self._async_first_step()

    async def _async_first_step(self) -> SubentryFlowResult:
        """The flow's first form, prefilled from `_current` by `_prepare`."""
        self._prepare()
        step = getattr(self, f"async_step_{self.first_step}")
        result: SubentryFlowResult = await step()
        return result

    def _prepare(self) -> None:
        """Fill the forms in from the entry being edited (nothing on a new one)."""

    def _bridge(self) -> ConfigSync | None:
        """The bridge's configuration, if the bridge can be asked now."""
        entry = self._get_entry()
        if entry.state is not ConfigEntryState.LOADED:
            return None
        return entry.runtime_data.config_sync if entry.runtime_data.coordinator.online else None

    def _check_id(self, form: dict[str, Any]) -> dict[str, str]:
        """A new entry's id (or name) is the bridge's kind of id, and not taken."""
        if not self._creating:
            return {}
        self._id = form[self.id_field].strip()
        assert self._sync is not None
        if not IDENTIFIER.match(self._id):
            return {self.id_field: "invalid_id"}
        if self._id in self._sync.ids(self.subentry_type):
            return {self.id_field: "already_configured"}
        return {}

    async def _async_command(self, op: str, args: dict[str, Any], time_limit: float) -> Answer:
        assert self._sync is not None
        try:
            result = await self._sync.coordinator.async_command(op, args, time_limit=time_limit)
        except BridgeRefusal as err:
            message = (err.translation_placeholders or {}).get("message", "")
            return Answer(code=err.code, message=message, details=err.details)
        except HomeAssistantError:
            return Answer(code="cannot_connect")
        return Answer(result=result if isinstance(result, dict) else {})

    async def _async_test(self, kind: str, value: dict[str, Any]) -> Answer:
        return await self._async_command(
            "config_test", {"kind": kind, "value": value}, TEST_TIMEOUT
        )

    def _errors(self, answer: Answer, fields: frozenset[str], scope: str = "") -> dict[str, str]:
        """A refusal as form errors: `base`, and the fields it points at. With a `scope`
        (`client`), the bridge's keys under it are the form's fields, and a failed test
        says so (`client_auth_failed`)."""
        code = str(answer.code)
        message = answer.message
        errors: dict[str, str] = {}
        if code == "invalid":
            reasons = answer.details.get("fields")
            for key in reasons if isinstance(reasons, dict) else {}:
                name = str(key)
                if scope:
                    name = name.removeprefix(f"{scope}.") if name.startswith(f"{scope}.") else ""
                if name in fields:
                    errors[name] = "invalid_field"
            lines = answer.details.get("errors")
            if isinstance(lines, list) and lines:
                message = "; ".join(str(line) for line in lines)
        self._placeholders = {"message": message, "root": str(answer.details.get("root", ""))}
        if code not in KNOWN_CODES:
            errors["base"] = "unknown"
        elif CODE_FIELDS.get(code) in fields:
            errors[CODE_FIELDS[code]] = code
        elif scope and code in TEST_CODES:
            errors["base"] = f"{scope}_{code}"
        else:
            errors["base"] = code
        return errors

    async def _async_save(self, value: dict[str, Any]) -> SubentryFlowResult | Answer:
        """`config_set`, then the subentry: created, or updated and the flow ended."""
        assert self._sync is not None
        key = unique_id(self.subentry_type, self._id)
        self._sync.async_hold(key)
        answer = await self._async_command(
            "config_set",
            {"section": SECTIONS[self.subentry_type], "id": self._id, "value": value},
            APPLY_TIMEOUT,
        )
        if answer.code is not None:
            self._sync.async_release(key)
            return answer
        self._sync.async_changed(answer.result.get("revision"))
        bridge_entry = BridgeEntry(id=self._id, read_only=False, value=value)
        title = subentry_title(self.subentry_type, bridge_entry)
        data = {"id": self._id, "read_only": False, "value": public(value)}
        # The subentry exists once this step returns; `async_remove` then releases it.
        if self._creating:
            return self.async_create_entry(title=title, data=data, unique_id=key)
        return self.async_update_and_abort(
            self._get_entry(), self._get_reconfigure_subentry(), title=title, data=data
        )

    def async_remove(self) -> None:
        """The flow ended (saved, aborted or closed): the sync owns the entry again."""
        if self._sync is not None and self._id:
            self._sync.async_release(unique_id(self.subentry_type, self._id))


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
        self._ssh = value
        self._host_key = None
        return await self._async_test_ssh()

    async def _async_test_ssh(self) -> SubentryFlowResult:
        host_key = {"host_key": self._host_key} if self._host_key else {}
        answer = await self._async_test("ssh", {**self._ssh, **host_key})
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
            through_ssh = client["url"].startswith("scgi+ssh://")
            answer = await self._async_test(
                "client", {**client, **({"seedbox": self._id} if through_ssh else {})}
            )
            if answer.code is not None:
                return self._show_client(self._errors(answer, CLIENT_FIELDS, "client"))
        value = {**self._ssh, **({"client": client} if client else {})}
        if self._host_key:
            value["host_key"] = self._host_key
        result = await self._async_save(value)
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
            vol.Required("port", default=22): _number(1, 65535),
            vol.Required("user"): TEXT,
            vol.Required("auth", default="key"): _select(("key", "password"), "seedbox_auth"),
            vol.Optional("private_key"): TextSelector(
                TextSelectorConfig(multiline=True, type=TextSelectorType.PASSWORD)
            ),
            vol.Optional("passphrase"): PASSWORD,
            vol.Optional("password"): PASSWORD,
            vol.Optional("remote_roots"): TextSelector(TextSelectorConfig(multiple=True)),
            vol.Required("max_concurrent", default=2): _number(1, 64),
            vol.Required("engine", default="auto"): _select(ENGINES, "seedbox_engine"),
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
                vol.Required("type", default="none"): _select(
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
            vol.Required("order"): _number(0, 100000),
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
            vol.Required("field"): _select(RULE_FIELDS, "rule_field"),
            vol.Required("operator"): _select(STRING_OPS + SIZE_OPS, "rule_operator"),
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


SUBENTRY_FLOWS: Final[dict[str, type[ConfigSubentryFlow]]] = {
    "seedbox": SeedboxSubentryFlow,
    "destination": DestinationSubentryFlow,
    "rule": RuleSubentryFlow,
}
