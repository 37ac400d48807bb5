"""End to end: completions the real bridge refuses reach Home Assistant through a real
Mosquitto: the seedbox's Rejected completions sensor with the last reason, a
q4d_completion_rejected event each, the repair issue at the fifth, cleared when a
completion of the seedbox is accepted; a duplicate fires q4d_completion_duplicate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import mqtt
from homeassistant.const import STATE_ON
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from custom_components.q4d.const import DOMAIN
from tests.components.q4d.live import async_connect, wait_for
from tests.conftest import allow_loopback_sockets
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(120)

REJECTED = "sensor.sb1_rejected_completions"
CONNECTIVITY = "binary_sensor.test_bridge_connectivity"


async def completion(hass: HomeAssistant, event_id: str, path: str) -> None:
    """A completion of seedbox sb1, published through Home Assistant's MQTT client."""
    payload = {"v": 1, "event_id": event_id, "path": path, "hash": None}
    await mqtt.async_publish(hass, "q4d/seedbox/sb1/completed", json.dumps(payload), qos=1)


@pytest.mark.usefixtures("mock_hass_config")
async def test_refusals_end_to_end(
    hass: HomeAssistant, tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """Five completions outside the seedbox's roots, then one inside, then it again."""
    allow_loopback_sockets()
    remote = tmp_path / "seedbox"
    remote.mkdir()
    (remote / "Film.mkv").write_bytes(b"film" * 1000)
    config = bridge_config(
        tmp_path / "data",
        tmp_path / "library",
        key=sshd.client_key,
        known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port,
        ssh_port=sshd.port,
        user=sshd.user,
        remote_root=str(remote),
    )
    config["seedboxes"][0]["engine"] = "sftp"
    bridge = BridgeProcess(tmp_path / "bridge", config)
    bridge.start()
    try:
        mqtt_entry, entry = await async_connect(hass, mosquitto, bridge)
        await wait_for(
            lambda: getattr(hass.states.get(CONNECTIVITY), "state", None) == STATE_ON,
            "bridge online",
            bridge=bridge,
        )
        await wait_for(lambda: hass.states.get(REJECTED), "the sensor", bridge=bridge)
        assert hass.states.get(REJECTED).state == "0"
        fired: list[tuple[str, dict[str, Any]]] = []

        @callback
        def _record(event: Event[Any]) -> None:
            if event.event_type.startswith("q4d_completion_"):
                fired.append((event.event_type, dict(event.data)))

        hass.bus.async_listen("*", _record)
        issues = ir.async_get(hass)
        issue_id = f"{entry.entry_id}_completion_rejections_sb1"

        for n in range(5):
            await completion(hass, f"outside-{n}", f"/etc/secret-{n}")
        await wait_for(lambda: len(fired) == 5, "5 rejections", bridge=bridge)
        assert {t for t, _ in fired} == {"q4d_completion_rejected"}
        assert [d["name"] for _, d in fired] == [f"secret-{n}" for n in range(5)]
        assert {(d["seedbox"], d["reason"]) for _, d in fired} == {("sb1", "unsafe_path")}
        assert all(d["device_id"] is not None for _, d in fired)
        await wait_for(
            lambda: hass.states.get(REJECTED).state == "5", "the sensor counts 5", bridge=bridge
        )
        sensor = hass.states.get(REJECTED)
        assert sensor.attributes["last_reason"] == "unsafe_path"
        assert "/etc/secret-4" in sensor.attributes["last_message"]
        raised = issues.async_get_issue(DOMAIN, issue_id)
        assert raised is not None
        assert raised.translation_placeholders["reason"] == "unsafe_path"

        # a completion of the seedbox is accepted: the issue goes
        await completion(hass, "inside", str(remote / "Film.mkv"))
        await wait_for(
            lambda: issues.async_get_issue(DOMAIN, issue_id) is None,
            "the issue cleared",
            bridge=bridge,
        )
        # the same event again: a duplicate, counted by the bridge
        await completion(hass, "inside", str(remote / "Film.mkv"))
        await wait_for(lambda: len(fired) == 6, "the duplicate", bridge=bridge)
        kind, data = fired[-1]
        assert (kind, data["name"], data["reason"]) == (
            "q4d_completion_duplicate",
            "Film.mkv",
            "event_id",
        )
        coordinator = entry.runtime_data.coordinator
        await wait_for(
            lambda: coordinator.state.seedboxes["sb1"].duplicates == 1,
            "the duplicate counted in the state",
            bridge=bridge,
        )
        assert hass.states.get(REJECTED).state == "5"

        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    finally:
        bridge.stop()
