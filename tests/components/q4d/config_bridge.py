"""A bridge's configuration commands, answered at the MQTT boundary as the spec of issue
20 says (`config_test`, `config_set`, `config_remove`, the retained `config` topic).

Only what Home Assistant sees is simulated: the bridge keeps secrets in files and
publishes their paths, redacted entries and revisions. The end-to-end test with the
real bridge is elsewhere.
"""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant, callback
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message

from .common import FakeBridge
from .payloads import BASE, dumps

CONFIG_TOPIC = f"{BASE}/config"
SECRETS = "/data/q4d/secrets"
# What the bridge fills a `dispatch` value in with (bridge/q4d_bridge/config/schema.py).
DISPATCH_DEFAULTS: dict[str, Any] = {
    "disk_weight": 1.0, "download_weight": 2.0, "bandwidth_weight": 0.1, "min_score": -1.0,
    "size_estimate": 10 * 1024**3, "history": 200, "categories": [], "watch_interval": 5.0,
    "fetch_timeout": 30.0,
}  # fmt: skip


def refusal(code: str, message: str = "", **details: Any) -> dict[str, Any]:
    """A `command_result` refusing the command."""
    return {"ok": False, "error": {"code": code, "message": message, **details}}


class ConfigBridge:
    """The bridge's configuration: sections of `{id: (source, value)}`, answered."""

    def __init__(self, hass: HomeAssistant, bridge: FakeBridge) -> None:
        """Empty sections; every probe passes until told otherwise."""
        self.hass = hass
        self.bridge = bridge
        self.revision = 1
        self.sections: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
            "seedboxes": {},
            "destinations": {},
            "rules": {},
            "arr": {},
            "home_clients": {},
        }
        # the one-entry `dispatch` section: (source, value); None: a bridge without it
        self.dispatch: tuple[str, dict[str, Any]] | None = None
        # answers to give, in turn, before behaving normally
        self.tests: list[dict[str, Any]] = []
        self.sets: list[dict[str, Any]] = []
        self.removes: list[dict[str, Any]] = []
        self.publish_first = False  # publish the config before answering
        bridge.answers.update(
            config_test=self._test, config_set=self._set, config_remove=self._remove
        )

    def add(
        self, section: str, entry_id: str, value: dict[str, Any], source: str = "runtime"
    ) -> None:
        """An entry the bridge has (not published until `publish`)."""
        self.sections[section][entry_id] = (source, value)

    def body(self) -> dict[str, Any]:
        """The `config_get` answer's body."""
        sections: dict[str, list[dict[str, Any]]] = {}
        for section, entries in self.sections.items():
            listed = []
            for entry_id, (source, value) in entries.items():
                entry: dict[str, Any] = {"id": entry_id, "source": source, "value": dict(value)}
                # the `has_*` hints sit beside the value, as the bridge publishes them
                entry |= {k: entry["value"].pop(k) for k in value if k.startswith("has_")}
                if section == "rules":  # the id is the entry's, the order beside the value
                    entry["value"].pop("id", None)
                    if "order" in value:
                        entry["order"] = entry["value"].pop("order")
                listed.append(entry)
            if section == "rules":  # runtime rules by order, then the YAML ones
                listed.sort(key=lambda e: (e["source"] != "runtime", e.get("order", 0)))
            sections[section] = listed
        if self.dispatch is not None:
            source, value = self.dispatch
            sections["dispatch"] = [{"id": "dispatch", "source": source, "value": dict(value)}]
        return {"revision": self.revision, "sections": sections}

    @callback
    def publish(self) -> None:
        """The `config` topic, as a live subscriber gets it (a broker sets the retain
        flag only on what it sends when a subscription starts)."""
        async_fire_mqtt_message(self.hass, CONFIG_TOPIC, dumps(self.body()))

    def commands(self, op: str) -> list[dict[str, Any]]:
        """The args of every `op` command received."""
        return [args for name, args in self.bridge.ops if name == op]

    def _changed(self) -> dict[str, Any]:
        self.revision += 1
        if self.publish_first:
            self.publish()
        else:
            self.hass.loop.call_soon(self.publish)
        return {"ok": True, "result": {"revision": self.revision, "applied": {}}}

    def _test(self, command: dict[str, Any]) -> dict[str, Any]:
        return self.tests.pop(0) if self.tests else {"ok": True, "result": {}}

    def _set(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.sets:
            return self.sets.pop(0)
        args = command["args"]
        section, entry_id = args["section"], args["id"]
        if section == "dispatch":
            self.dispatch = ("runtime", DISPATCH_DEFAULTS | args["value"])
            return self._changed()
        stored = dict(args["value"])
        stored.pop("id", None)  # the entry's id, not part of what is stored
        # what the bridge keeps: files for the secrets, their paths in the entry
        for secret, key in (
            ("private_key", "key"), ("password", "password_file"), ("api_key", "api_key_file"),
        ):  # fmt: skip
            if secret in stored:
                stored.pop(secret)
                stored[key] = f"{SECRETS}/{section}-{entry_id}-{secret}"
        stored.pop("passphrase", None)
        if stored.pop("host_key", None):
            stored["known_hosts"] = f"/data/q4d/known_hosts/{entry_id}"
        client = stored.get("client")
        if isinstance(client, dict) and "password" in client:
            client = dict(client)
            client.pop("password")
            client["password_file"] = f"{SECRETS}/{section}-{entry_id}-client_password"
            stored["client"] = client
        self.sections[section][entry_id] = ("runtime", stored)
        return self._changed()

    def _remove(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.removes:
            return self.removes.pop(0)
        args = command["args"]
        if self.sections[args["section"]].pop(args["id"], None) is None:
            return refusal("not_found", f"no {args['id']}")
        return self._changed()
