"""From Home Assistant's subentry flows to the library, every part real: a seedbox added
in Home Assistant (its real MQTT client, a real Mosquitto) is tested and saved on the
real bridge process, its host key shown by fingerprint and confirmed; a completion from
it then lands. A destination and a rule added the same way route the next one; the
seedbox edited applies live; the rule removed in Home Assistant goes from the bridge.

The bridge's YAML keeps one seedbox of its own (a bridge needs one to start); the
seedbox added here is another login on the same sshd, with its own remote root."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import mqtt, persistent_notification
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, ConfigEntry
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType

from tests.components.q4d.live import async_connect, wait_for
from tests.conftest import allow_loopback_sockets
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(180)
BASE = "q4d/bridge/test"
CONNECTIVITY = "binary_sensor.test_bridge_connectivity"


def fingerprint(public_key: Path) -> str:
    """`SHA256:…` as ssh-keygen shows it."""
    shown = subprocess.run(
        ["ssh-keygen", "-lf", str(public_key)], check=True, capture_output=True, text=True
    )
    return shown.stdout.split()[1]


def subentry(entry: ConfigEntry, key: str, default: Any = LookupError) -> Any:
    """The entry's subentry with that unique id."""
    found = next((s for s in entry.subentries.values() if s.unique_id == key), None)
    if found is None and default is LookupError:
        raise LookupError(key)
    return found if found is not None else default


def runtime_entries(body: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    """A section of the bridge's retained configuration: its runtime entries by id."""
    return {e["id"]: e for e in body["sections"][section] if e["source"] == "runtime"}


async def completion(hass: HomeAssistant, event_id: str, path: Path, **extra: Any) -> None:
    """What the seedbox hook of sb2 publishes when a torrent completes."""
    payload = {"v": 1, "event_id": event_id, "path": str(path), "hash": None, **extra}
    await mqtt.async_publish(hass, "q4d/seedbox/sb2/completed", json.dumps(payload), qos=1)


async def step(hass: HomeAssistant, flow: Any, user_input: dict[str, Any] | None) -> Any:
    """Submit a subentry flow's form."""
    return await hass.config_entries.subentries.async_configure(flow["flow_id"], user_input)


async def start(
    hass: HomeAssistant, entry: ConfigEntry, kind: str, subentry_id: str | None = None
) -> Any:
    """A subentry flow: adding one, or editing `subentry_id`."""
    context: dict[str, Any] = {"source": SOURCE_USER}
    if subentry_id is not None:
        context = {"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id}
    return await hass.config_entries.subentries.async_init((entry.entry_id, kind), context=context)


@pytest.mark.usefixtures("mock_hass_config")
async def test_seedbox_destination_and_rule_from_home_assistant(
    hass: HomeAssistant, tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    allow_loopback_sockets()
    began = time.monotonic()
    library, yaml_root, remote = tmp_path / "library", tmp_path / "yaml-box", tmp_path / "box"
    yaml_root.mkdir()
    remote.mkdir()
    film = remote / "Film.2024.mkv"
    film.write_bytes(bytes(range(256)) * 4096)
    show = remote / "Show.S01E01.mkv"
    show.write_bytes(b"show" * 50000)
    config = bridge_config(
        tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user,
        remote_root=str(yaml_root),
    )  # fmt: skip
    config["seedboxes"][0]["engine"] = "sftp"
    bridge = BridgeProcess(tmp_path / "bridge", config)
    bridge.start()
    retained: list[dict[str, Any]] = []
    items: dict[str, dict[str, Any]] = {}

    @callback
    def _on_config(msg: mqtt.ReceiveMessage) -> None:
        retained.append(json.loads(msg.payload))

    @callback
    def _on_item(msg: mqtt.ReceiveMessage) -> None:
        if msg.payload:
            item = json.loads(msg.payload)
            items[item["id"]] = item

    def landed(name: str) -> dict[str, Any] | None:
        return next((i for i in items.values() if i["name"] == name and i["state"] == "done"), None)

    try:
        mqtt_entry, entry = await async_connect(hass, mosquitto, bridge)
        unsubscribe = [
            await mqtt.async_subscribe(hass, f"{BASE}/config", _on_config, qos=1),
            await mqtt.async_subscribe(hass, f"{BASE}/item/+", _on_item, qos=1),
        ]
        await wait_for(
            lambda: getattr(hass.states.get(CONNECTIVITY), "state", None) == STATE_ON,
            "the bridge online in Home Assistant", bridge=bridge,
        )  # fmt: skip
        sync = entry.runtime_data.config_sync
        await wait_for(lambda: sync.config is not None, "the bridge's configuration", bridge=bridge)
        # the YAML's seedbox is mirrored, read-only
        assert subentry(entry, "seedbox:sb1").data["read_only"] is True

        # --- a seedbox: SSH settings, its host key confirmed, no torrent client ------------
        private_key = sshd.client_key.read_text()
        flow = await start(hass, entry, "seedbox")
        assert (flow["type"], flow["step_id"]) == (FlowResultType.FORM, "ssh")
        form = {
            "id": "sb2", "name": "Added from HA", "host": "127.0.0.1", "port": sshd.port,
            "user": sshd.user, "auth": "key", "private_key": private_key,
            "remote_roots": ["downloads"], "max_concurrent": 2, "engine": "sftp",
        }  # fmt: skip
        # the bridge's schema refuses a relative root, by its field
        flow = await step(hass, flow, form)
        assert (flow["step_id"], flow["errors"]) == (
            "ssh", {"base": "invalid", "remote_roots": "invalid_field"}
        ), flow  # fmt: skip
        assert "remote_roots[0]" in flow["description_placeholders"]["message"]
        # a root the seedbox lacks: found once its host key is confirmed
        missing = str(tmp_path / "no-such-root")
        flow = await step(hass, flow, form | {"remote_roots": [missing]})
        assert (flow["type"], flow["step_id"]) == (FlowResultType.FORM, "host_key"), flow
        shown = flow["description_placeholders"]["fingerprint"]
        assert shown == fingerprint(sshd.host_key.with_name(sshd.host_key.name + ".pub"))
        flow = await step(hass, flow, {})
        assert (flow["step_id"], flow["errors"]) == ("ssh", {"remote_roots": "root_missing"}), flow
        assert flow["description_placeholders"]["root"] == missing
        # the same host: its key stays confirmed
        flow = await step(hass, flow, form | {"remote_roots": [str(remote)]})
        assert (flow["type"], flow["step_id"]) == (FlowResultType.FORM, "client"), flow
        flow = await step(hass, flow, {"type": "none"})
        assert flow["type"] is FlowResultType.CREATE_ENTRY, flow
        await hass.async_block_till_done()

        seedbox = subentry(entry, "seedbox:sb2")
        assert (seedbox.title, seedbox.data["read_only"]) == ("Added from HA", False)
        body = await wait_for(
            lambda: next(
                (b for b in reversed(retained) if "sb2" in runtime_entries(b, "seedboxes")), None
            ),
            "the seedbox in the bridge's retained configuration", bridge=bridge,
        )  # fmt: skip
        added = runtime_entries(body, "seedboxes")["sb2"]
        value = added["value"]
        assert (value["host"], value["port"], value["remote_roots"]) == (
            "127.0.0.1", sshd.port, [str(remote)]
        )  # fmt: skip
        assert added["has_key"] is True and added["has_host_key"] is True
        # the key stayed on the bridge: in a file of its own, never in a topic or subentry
        assert "PRIVATE KEY" not in json.dumps(retained)
        assert "PRIVATE KEY" not in json.dumps([s.as_dict() for s in entry.subentries.values()])
        pinned = Path(value["known_hosts"]).read_text()
        assert sshd.host_public_key in pinned

        # --- a completion of the new seedbox lands (the default destination) --------------
        await completion(hass, "e2e-film", film)
        item = await wait_for(lambda: landed(film.name), "the film landed", 60, bridge)
        assert item["seedbox"] == "sb2"
        assert Path(item["local_path"]) == library / "other" / film.name
        assert Path(item["local_path"]).read_bytes() == film.read_bytes()

        # --- a destination and a rule sending category e2e there -------------------------
        flow = await start(hass, entry, "destination")
        assert (flow["type"], flow["step_id"]) == (FlowResultType.FORM, "destination")
        blocked = tmp_path / "a-file"
        blocked.write_text("not a folder")
        flow = await step(hass, flow, {"name": "e2e", "path": str(blocked / "e2e")})
        assert (flow["step_id"], flow["errors"]) == ("destination", {"path": "missing"}), flow
        flow = await step(hass, flow, {"name": "e2e", "path": str(library / "e2e")})
        assert flow["type"] is FlowResultType.CREATE_ENTRY, flow
        flow = await start(hass, entry, "rule")
        assert (flow["type"], flow["step_id"]) == (FlowResultType.FORM, "rule")
        flow = await step(
            hass, flow, {"id": "to-e2e", "order": 10, "destination": "e2e", "add_condition": True}
        )
        assert (flow["type"], flow["step_id"]) == (FlowResultType.FORM, "condition"), flow
        flow = await step(
            hass, flow, {"field": "category", "operator": "is", "value": "e2e", "add_another": False}
        )  # fmt: skip
        assert flow["type"] is FlowResultType.CREATE_ENTRY, flow
        await hass.async_block_till_done()
        body = await wait_for(
            lambda: next(
                (b for b in reversed(retained) if "to-e2e" in runtime_entries(b, "rules")), None
            ),
            "the rule in the bridge's retained configuration", bridge=bridge,
        )  # fmt: skip
        assert runtime_entries(body, "destinations")["e2e"]["value"]["path"] == str(library / "e2e")
        rule = runtime_entries(body, "rules")["to-e2e"]
        assert rule["order"] == 10 and rule["value"]["destination"] == "e2e"

        await completion(hass, "e2e-show", show, category="e2e")
        item = await wait_for(lambda: landed(show.name), "the show landed", 60, bridge)
        assert Path(item["local_path"]) == library / "e2e" / show.name
        assert (library / "e2e" / show.name).read_bytes() == show.read_bytes()

        # --- the seedbox edited: its limit applies at once ---------------------------------
        coordinator = entry.runtime_data.coordinator

        def limit() -> int | None:
            state = coordinator.state.seedboxes.get("sb2")
            return state.max_concurrent if state is not None else None

        # the state snapshot is throttled: it follows
        await wait_for(lambda: limit() == 2, "the new seedbox in the state", bridge=bridge)
        flow = await start(hass, entry, "seedbox", seedbox.subentry_id)
        assert (flow["type"], flow["step_id"]) == (FlowResultType.FORM, "ssh"), flow
        flow = await step(
            hass, flow,
            {"name": "Added from HA", "host": "127.0.0.1", "port": sshd.port,
             "user": sshd.user, "auth": "key", "remote_roots": [str(remote)],
             "max_concurrent": 5, "engine": "sftp"},
        )  # fmt: skip
        assert (flow["type"], flow["step_id"]) == (FlowResultType.FORM, "client"), flow
        flow = await step(hass, flow, {"type": "none"})
        assert (flow["type"], flow["reason"]) == (FlowResultType.ABORT, "reconfigure_successful")
        await wait_for(lambda: limit() == 5, "the new limit in the state", bridge=bridge)
        assert entry.subentries[seedbox.subentry_id].data["value"]["max_concurrent"] == 5

        # --- the destination removed while the rule sends there: the bridge keeps it -------
        notes: dict[str, str] = {}

        @callback
        def _on_notes(_: Any, changed: dict[str, Any]) -> None:
            notes.update({key: note["message"] for key, note in changed.items()})

        unsubscribe.append(persistent_notification.async_register_callback(hass, _on_notes))
        destination = subentry(entry, "destination:e2e")
        hass.config_entries.async_remove_subentry(entry, destination.subentry_id)
        note = await wait_for(
            lambda: next((m for k, m in notes.items() if k.endswith("destination:e2e")), None),
            "the refusal explained", bridge=bridge,
        )  # fmt: skip
        assert "rules.to-e2e" in note
        assert subentry(entry, "destination:e2e").data["value"]["path"] == str(library / "e2e")
        assert "e2e" in runtime_entries(retained[-1], "destinations")

        # --- the rule removed in Home Assistant goes from the bridge -----------------------
        hass.config_entries.async_remove_subentry(entry, subentry(entry, "rule:to-e2e").subentry_id)
        await wait_for(
            lambda: "to-e2e" not in runtime_entries(retained[-1], "rules"),
            "the rule gone from the bridge", bridge=bridge,
        )  # fmt: skip
        await hass.async_block_till_done()
        assert all(s.unique_id != "rule:to-e2e" for s in entry.subentries.values())
        # routing follows at once; the edited seedbox (its key kept) still fetches
        again = remote / "Show.S01E02.mkv"
        again.write_bytes(b"again" * 40000)
        await completion(hass, "e2e-again", again, category="e2e")
        item = await wait_for(lambda: landed(again.name), "the next show landed", 60, bridge)
        assert Path(item["local_path"]) == library / "other" / again.name
        assert Path(item["local_path"]).read_bytes() == again.read_bytes()

        # --- the seedbox removed: gone from the bridge, its secret files too ---------------
        key_file = Path(value["key"])
        assert key_file.read_text().strip() == private_key.strip()
        hass.config_entries.async_remove_subentry(entry, seedbox.subentry_id)
        await wait_for(
            lambda: "sb2" not in runtime_entries(retained[-1], "seedboxes"),
            "the seedbox gone from the bridge", bridge=bridge,
        )  # fmt: skip
        assert not key_file.exists() and not Path(value["known_hosts"]).exists()
        await hass.async_block_till_done()
        assert subentry(entry, "seedbox:sb2", None) is None
        print(f"\nconfiguration end to end: {time.monotonic() - began:.1f} s")

        for unsub in unsubscribe:
            unsub()
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    finally:
        bridge.stop()
    assert "PRIVATE KEY" not in bridge.log()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("q4d.sqlite3*"))
    assert stored and b"PRIVATE KEY" not in stored
