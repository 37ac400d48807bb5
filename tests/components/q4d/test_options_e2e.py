"""Transfer limits, dispatch weights and a home torrent client set from Home Assistant,
every part real: Home Assistant's MQTT client on a real Mosquitto, a real bridge
process started from a broker-only file, a real qBittorrent on 127.0.0.1 as the home
client. The limits show on the number entities once the bridge applied them; the
weights and the client land in the bridge's retained configuration (the client's
password in the bridge's file only); the bridge's own refusals reach the forms; the
client is kept while a hand-off names it, and removed once none does."""

from __future__ import annotations

import json
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
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, free_port

pytestmark = pytest.mark.timeout(180)
BASE = "q4d/bridge/home"
CONNECTIVITY = "binary_sensor.home_connectivity"
MAX = "number.home_maximum_concurrent_transfers"
BANDWIDTH = "number.home_bandwidth_limit"


def runtime(body: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    """A section of the retained configuration: its runtime entries by id."""
    return {e["id"]: e for e in body["sections"].get(section, []) if e["source"] == "runtime"}


def suggested(result: Any) -> dict[str, Any]:
    """A form's values as shown."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


async def options_step(hass: HomeAssistant, entry: ConfigEntry, step_id: str) -> Any:
    """The options flow, its menu item chosen."""
    menu = await hass.config_entries.options.async_init(entry.entry_id)
    return await hass.config_entries.options.async_configure(
        menu["flow_id"], {"next_step_id": step_id}
    )


async def submit(hass: HomeAssistant, flow: Any, user_input: dict[str, Any]) -> Any:
    """Submit an options form."""
    return await hass.config_entries.options.async_configure(flow["flow_id"], user_input)


async def client_flow(hass: HomeAssistant, entry: ConfigEntry, subentry_id: str = "") -> Any:
    """The home client subentry flow: adding one, or editing `subentry_id`."""
    context: dict[str, Any] = {"source": SOURCE_USER}
    if subentry_id:
        context = {"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id}
    return await hass.config_entries.subentries.async_init(
        (entry.entry_id, "home_client"), context=context
    )


async def client_step(hass: HomeAssistant, flow: Any, user_input: dict[str, Any]) -> Any:
    """Submit the home client form."""
    return await hass.config_entries.subentries.async_configure(flow["flow_id"], user_input)


@pytest.mark.usefixtures("mock_hass_config")
async def test_limits_dispatch_and_home_client_from_home_assistant(
    hass: HomeAssistant, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    allow_loopback_sockets()
    library = tmp_path / "library"
    config = {
        "bridge": {"id": "home", "name": "Home"},
        "data_dir": str(tmp_path / "data"),
        "broker": {"host": "127.0.0.1", "port": mosquitto.port},
    }
    bridge = BridgeProcess(tmp_path / "bridge", config)
    retained: list[dict[str, Any]] = []
    notes: dict[str, str] = {}

    @callback
    def _on_config(msg: mqtt.ReceiveMessage) -> None:
        retained.append(json.loads(msg.payload))

    @callback
    def _on_notes(_: Any, changed: dict[str, Any]) -> None:
        notes.update({key: note["message"] for key, note in changed.items()})

    def published(section: str, entry_id: str, key: str = "", value: Any = None) -> Any:
        """The latest retained entry of that id, once `key` has that value."""
        for body in reversed(retained):
            entry = runtime(body, section).get(entry_id)
            if entry is not None and (not key or entry["value"].get(key) == value):
                return entry
        return None

    with QBittorrent(tmp_path / "home-client") as home:
        bridge.start()
        try:
            mqtt_entry, entry = await async_connect(hass, mosquitto, bridge)
            unsubscribe = [
                await mqtt.async_subscribe(hass, f"{BASE}/config", _on_config, qos=1),
                persistent_notification.async_register_callback(hass, _on_notes),
            ]
            await wait_for(
                lambda: getattr(hass.states.get(CONNECTIVITY), "state", None) == STATE_ON,
                "the bridge online", bridge=bridge,
            )  # fmt: skip
            coordinator = entry.runtime_data.coordinator
            sync = entry.runtime_data.config_sync
            await wait_for(lambda: coordinator.state is not None, "the state", bridge=bridge)
            await wait_for(lambda: sync.config is not None, "the configuration", bridge=bridge)

            # --- transfer limits: prefilled from the state, applied, shown ---------------
            flow = await options_step(hass, entry, "limits")
            assert flow["step_id"] == "limits", flow
            state = coordinator.state
            assert suggested(flow)["max_concurrent"] == state.max_concurrent
            flow = await submit(hass, flow, {"max_concurrent": 7, "bandwidth_limit": 2.5})
            assert flow["type"] is FlowResultType.CREATE_ENTRY, flow
            await wait_for(
                lambda: getattr(hass.states.get(MAX), "state", None) == "7"
                and getattr(hass.states.get(BANDWIDTH), "state", None) == "2.5",
                "the new limits on the numbers", bridge=bridge,
            )  # fmt: skip
            assert coordinator.state.bandwidth_limit == 2_500_000

            # --- dispatch weights: the bridge's defaults, a refusal by field, saved ------
            flow = await options_step(hass, entry, "dispatch")
            assert flow["step_id"] == "dispatch", flow
            assert suggested(flow) == {
                "disk_weight": 1.0, "download_weight": 2.0, "bandwidth_weight": 0.1,
                "min_score": -1.0, "size_estimate": "10GiB", "categories": [],
            }  # fmt: skip
            weights = {
                "disk_weight": 1.5, "download_weight": 3.0, "bandwidth_weight": 0.25,
                "min_score": -2.0, "size_estimate": "4GiB", "categories": ["tv", "movies"],
            }  # fmt: skip
            flow = await submit(hass, flow, weights | {"categories": ["x" * 201]})
            assert flow["errors"] == {"base": "invalid", "categories": "invalid_field"}, flow
            flow = await submit(hass, flow, weights)
            assert flow["type"] is FlowResultType.CREATE_ENTRY, flow
            body = await wait_for(
                lambda: next(
                    (b for b in reversed(retained)
                     if b["sections"]["dispatch"][0]["source"] == "runtime"), None
                ),
                "the weights in the retained configuration", bridge=bridge,
            )  # fmt: skip
            value = body["sections"]["dispatch"][0]["value"]
            assert (value["disk_weight"], value["min_score"], value["categories"]) == (
                1.5, -2.0, ["tv", "movies"]
            )  # fmt: skip
            await wait_for(
                lambda: sync.config is not None
                and sync.config.dispatch is not None
                and not sync.config.dispatch.read_only
                and sync.config.dispatch.value["disk_weight"] == 1.5,
                "the weights in Home Assistant", bridge=bridge,
            )  # fmt: skip
            flow = await options_step(hass, entry, "dispatch")
            assert suggested(flow)["size_estimate"] == "4GiB"
            assert suggested(flow)["download_weight"] == 3.0

            # --- a home client: its login refused, unreachable, then saved ---------------
            form = {"name": "seeder", "type": "qbittorrent", "url": home.url,
                    "username": home.username, "password": "wrong password"}  # fmt: skip
            flow = await client_flow(hass, entry)
            assert flow["step_id"] == "home_client", flow
            flow = await client_step(hass, flow, form)
            assert flow["errors"] == {"base": "auth_failed"}, flow
            closed = f"http://127.0.0.1:{free_port()}"
            flow = await client_step(hass, flow, form | {"url": closed})
            assert flow["errors"] == {"base": "unreachable"}, flow
            flow = await client_step(hass, flow, form | {"password": home.password})
            assert flow["type"] is FlowResultType.CREATE_ENTRY, flow
            assert flow["title"] == "seeder (qBittorrent)"
            saved = await wait_for(
                lambda: published("home_clients", "seeder"), "the client on the bridge",
                bridge=bridge,
            )  # fmt: skip
            assert saved["has_password"] is True
            assert home.password not in json.dumps(retained)
            await hass.async_block_till_done()
            sub = next(s for s in entry.subentries.values() if s.unique_id == "home_client:seeder")
            assert home.password not in json.dumps(sub.as_dict())
            password_file = Path(sub.data["value"]["password_file"])
            assert password_file.read_text().strip() == home.password

            # --- edited without the password: tested and saved with the bridge's file -----
            flow = await client_flow(hass, entry, sub.subentry_id)
            flow = await client_step(
                hass, flow,
                {"type": "qbittorrent", "url": home.url, "username": home.username,
                 "verify_tls": False},
            )  # fmt: skip
            assert flow["reason"] == "reconfigure_successful", flow
            await wait_for(
                lambda: published("home_clients", "seeder", "verify_tls", False),
                "the edit on the bridge", bridge=bridge,
            )  # fmt: skip
            assert password_file.read_text().strip() == home.password

            # --- kept while a hand-off names it; removed once none does ------------------
            await coordinator.async_command(
                "config_set",
                {"section": "destinations", "id": "seeding",
                 "value": {"path": str(library / "seeding"), "handoff": "seeder"}},
                time_limit=30,
            )  # fmt: skip
            await wait_for(
                lambda: published("destinations", "seeding"), "the destination", bridge=bridge
            )
            await hass.async_block_till_done()
            hass.config_entries.async_remove_subentry(entry, sub.subentry_id)
            note = await wait_for(
                lambda: next(
                    (m for k, m in notes.items() if k.endswith("home_client:seeder")), None
                ),
                "the refusal explained", bridge=bridge,
            )  # fmt: skip
            assert "destinations.seeding" in note
            await hass.async_block_till_done()
            sub = next(s for s in entry.subentries.values() if s.unique_id == "home_client:seeder")
            destination = next(
                s for s in entry.subentries.values() if s.unique_id == "destination:seeding"
            )
            hass.config_entries.async_remove_subentry(entry, destination.subentry_id)
            await wait_for(
                lambda: "seeding" not in runtime(retained[-1], "destinations"),
                "the destination gone", bridge=bridge,
            )  # fmt: skip
            await hass.async_block_till_done()
            hass.config_entries.async_remove_subentry(entry, sub.subentry_id)
            await wait_for(
                lambda: "seeder" not in runtime(retained[-1], "home_clients"),
                "the client gone from the bridge", bridge=bridge,
            )  # fmt: skip
            await hass.async_block_till_done()
            assert all(s.unique_id != "home_client:seeder" for s in entry.subentries.values())
            assert not password_file.exists()

            for unsub in unsubscribe:
                unsub()
            assert await hass.config_entries.async_unload(entry.entry_id)
            assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
            await hass.async_block_till_done()
        finally:
            bridge.stop()
    log = bridge.log()
    assert "Traceback" not in log
    assert home.password not in log
