"""The tracker-rule actions: add_tracker_rule and remove_tracker_rule, their commands
and the bridge's refusals (with a fake bridge); then with every part real (Home
Assistant's MQTT client, Mosquitto, the bridge process): a rule added from Home
Assistant ignores the next completion, whose count Home Assistant shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import mqtt
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.q4d.const import DOMAIN
from tests.components.q4d.live import async_connect, wait_for
from tests.conftest import allow_loopback_sockets
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.services import Mosquitto, SshServer

from .common import FakeBridge

RULE = {
    "tracker": "tracker.example.org", "category": None, "destination": None, "ignore": True,
    "source": "runtime",
}  # fmt: skip


async def test_add_and_remove_tracker_rule(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """The actions send the commands (empty fields left out) and return the results."""
    fake_bridge.answers["tracker_rule_add"] = {
        "ok": True, "result": {"rule": RULE, "replaced": False, "rules": [RULE]},
    }  # fmt: skip
    fake_bridge.answers["tracker_rule_remove"] = {
        "ok": True, "result": {"removed": "tracker.example.org", "rules": []},
    }  # fmt: skip
    added = await hass.services.async_call(
        DOMAIN, "add_tracker_rule",
        {"tracker": "tracker.example.org", "ignore": True, "destination": "", "category": ""},
        blocking=True, return_response=True,
    )  # fmt: skip
    assert added == {"rule": RULE, "replaced": False, "rules": [RULE]}
    removed = await hass.services.async_call(
        DOMAIN, "remove_tracker_rule", {"tracker": "tracker.example.org"},
        blocking=True, return_response=True,
    )  # fmt: skip
    assert removed == {"removed": "tracker.example.org", "rules": []}
    assert fake_bridge.ops == [
        ("tracker_rule_add", {"tracker": "tracker.example.org", "ignore": True}),
        ("tracker_rule_remove", {"tracker": "tracker.example.org"}),
    ]


async def test_list_tracker_rules(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """The list action returns the bridge's rules, the file's marked as such."""
    in_file = {**RULE, "tracker": "keep.example.org", "source": "file"}
    fake_bridge.answers["tracker_rules"] = {"ok": True, "result": {"rules": [in_file, RULE]}}
    listed = await hass.services.async_call(
        DOMAIN, "list_tracker_rules", {}, blocking=True, return_response=True
    )
    assert listed == {"rules": [in_file, RULE]}
    assert fake_bridge.ops == [("tracker_rules", {})]


@pytest.mark.parametrize(
    ("code", "key", "validation"),
    [
        ("invalid_args", "tracker_rule_invalid", True),
        ("not_found", "command_failed", True),
        ("internal", "command_failed", False),
    ],
)
async def test_refusals(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    code: str,
    key: str,
    validation: bool,
) -> None:
    """A rule the bridge refuses is the input's fault, with the bridge's reason."""
    message = "tracker_rule_add: give destination, category or ignore: true"
    fake_bridge.answers["tracker_rule_add"] = {
        "ok": False, "error": {"code": code, "message": message},
    }  # fmt: skip
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, "add_tracker_rule", {"tracker": "x.org"}, blocking=True
        )
    assert err.value.translation_key == key
    assert isinstance(err.value, ServiceValidationError) == validation
    if code == "invalid_args":
        assert str(err.value) == f"The q4d bridge refused the tracker rule: {message}"


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("mock_hass_config")
async def test_tracker_rule_from_home_assistant_ignores_the_next_completion(
    hass: HomeAssistant, tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    allow_loopback_sockets()
    remote = tmp_path / "seedbox"
    config = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key,
        known_hosts=sshd.known_hosts, broker_port=mosquitto.port, ssh_port=sshd.port,
        user=sshd.user, remote_root=str(remote),
    )  # fmt: skip
    config["seedboxes"][0]["engine"] = "sftp"
    bridge = BridgeProcess(tmp_path / "bridge", config)
    bridge.start()
    try:
        mqtt_entry, entry = await async_connect(hass, mosquitto, bridge)
        sensor = "sensor.test_bridge_ignored_completions"
        await wait_for(
            lambda: (s := hass.states.get(sensor)) is not None and s.state == "0",
            "the ignored count shown", 30, bridge,
        )  # fmt: skip
        added: Any = await hass.services.async_call(
            DOMAIN, "add_tracker_rule", {"tracker": "https://Tracker.Example.org/a/pk",
                                         "ignore": True},
            blocking=True, return_response=True,
        )  # fmt: skip
        assert added["rule"] == RULE and added["rules"] == [RULE]
        event = {"v": 1, "event_id": "ha-1", "path": str(remote / "Film.mkv"),
                 "hash": "ab" * 20, "tracker": "https://tracker.example.org/announce"}  # fmt: skip
        for _ in range(2):  # resent: counted once
            await mqtt.async_publish(hass, "q4d/seedbox/sb1/completed", json.dumps(event), qos=1)
        await wait_for(
            lambda: (s := hass.states.get(sensor)) is not None and s.state == "1",
            "the ignored completion counted", 30, bridge,
        )  # fmt: skip
        with pytest.raises(ServiceValidationError):
            await hass.services.async_call(
                DOMAIN, "add_tracker_rule", {"tracker": "x.org", "destination": "nope"},
                blocking=True,
            )  # fmt: skip
        removed: Any = await hass.services.async_call(
            DOMAIN, "remove_tracker_rule", {"tracker": "tracker.example.org"},
            blocking=True, return_response=True,
        )  # fmt: skip
        assert removed == {"removed": "tracker.example.org", "rules": []}
        listed = await hass.services.async_call(
            DOMAIN, "list_tracker_rules", {}, blocking=True, return_response=True
        )
        assert listed == {"rules": []}
        assert hass.states.get(sensor).state == "1"  # type: ignore[union-attr]
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    finally:
        bridge.stop()
