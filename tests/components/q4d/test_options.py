"""The options flow of a loaded entry: the menu, the bridge's transfer limits
(`set_limits`) and its dispatch weights (`config_set` of the `dispatch` section),
against the stand-in bridge at the MQTT boundary (config_bridge.py). The display
options and an entry that is not loaded are in test_config_flow.py; the real bridge
answers the same in test_options_e2e.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_mqtt_message

from .common import FakeBridge, async_flush, async_send
from .config_bridge import DISPATCH_DEFAULTS, ConfigBridge, refusal
from .payloads import STATE_TOPIC, STATUS_TOPIC, state, status

STRINGS = json.loads(
    (Path(__file__).parents[3] / "custom_components/q4d/strings.json").read_text()
)["options"]
MAX = "number.home_media_bridge_maximum_concurrent_transfers"
BANDWIDTH = "number.home_media_bridge_bandwidth_limit"
WEIGHTS = {
    "disk_weight": 1.5,
    "download_weight": 3.0,
    "bandwidth_weight": 0.25,
    "min_score": -2.0,
    "size_estimate": " 4GiB ",
    "categories": ["tv", " ", "movies "],
}


def translated(result: Any) -> Any:
    """Every label, menu option, error and abort reason shown is in strings.json."""
    if result["type"] is FlowResultType.MENU:
        assert set(result["menu_options"]) == set(STRINGS["step"]["init"]["menu_options"])
    elif result["type"] is FlowResultType.FORM:
        step = STRINGS["step"][result["step_id"]]
        assert {str(k) for k in result["data_schema"].schema} <= set(step["data"])
        assert set((result["errors"] or {}).values()) <= set(STRINGS["error"])
    elif result["type"] is FlowResultType.ABORT:
        assert result["reason"] in STRINGS["abort"]
    return result


async def open_step(hass: HomeAssistant, entry: MockConfigEntry, step_id: str) -> Any:
    """The options flow, its menu item `step_id` chosen."""
    menu = translated(await hass.config_entries.options.async_init(entry.entry_id))
    assert menu["type"] is FlowResultType.MENU
    return await submit(hass, menu, {"next_step_id": step_id})


async def submit(hass: HomeAssistant, result: Any, user_input: dict[str, Any]) -> Any:
    """Submit the form (or the menu)."""
    return translated(
        await hass.config_entries.options.async_configure(result["flow_id"], user_input)
    )


def suggested(result: Any) -> dict[str, Any]:
    """The form's values as shown."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


@pytest.fixture
async def dispatch_bridge(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> ConfigBridge:
    """A bridge whose dispatch weights are its defaults, published."""
    bridge = ConfigBridge(hass, fake_bridge)
    bridge.dispatch = ("default", DISPATCH_DEFAULTS)
    bridge.publish()
    await hass.async_block_till_done()
    return bridge


# --- transfer limits -------------------------------------------------------------------------


async def test_limits(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Prefilled from the state in force, in MB/s; what changed is sent; the numbers
    show it as soon as the bridge re-publishes its state; the options and the loaded
    entry stay as they were."""

    def _set_limits(command: dict[str, Any]) -> dict[str, Any]:
        limits = {"max_concurrent": 3, "bandwidth_limit": 10485760} | command["args"]
        payload = state(limits={**limits, "per_seedbox": {}})
        hass.loop.call_soon(async_fire_mqtt_message, hass, STATE_TOPIC, payload)
        return {"ok": True, "result": limits}

    fake_bridge.answers["set_limits"] = _set_limits
    options = dict(init_integration.options)
    coordinator = init_integration.runtime_data.coordinator
    result = await open_step(hass, init_integration, "limits")
    assert result["step_id"] == "limits"
    assert suggested(result) == {"max_concurrent": 3, "bandwidth_limit": 10.49}
    # the bandwidth shown rounded and sent back unchanged is not a change
    result = await submit(hass, result, {"max_concurrent": 5.0, "bandwidth_limit": 10.49})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert fake_bridge.ops == [("set_limits", {"max_concurrent": 5})]
    await async_flush(hass)
    assert hass.states.get(MAX).state == "5"
    assert init_integration.options == options
    assert init_integration.runtime_data.coordinator is coordinator  # not reloaded

    result = await open_step(hass, init_integration, "limits")
    assert suggested(result) == {"max_concurrent": 5, "bandwidth_limit": 10.49}
    result = await submit(hass, result, {"max_concurrent": 5, "bandwidth_limit": 0})
    assert fake_bridge.ops[-1] == ("set_limits", {"bandwidth_limit": 0})
    await async_flush(hass)
    assert hass.states.get(BANDWIDTH).state == "0.0"


async def test_limits_unchanged(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Nothing changed: nothing sent (a limit sent would be stored over the YAML's)."""
    result = await open_step(hass, init_integration, "limits")
    result = await submit(hass, result, {"max_concurrent": 3, "bandwidth_limit": 10.49})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert fake_bridge.ops == []


async def test_limits_before_any_state(
    hass: HomeAssistant, setup_entry: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """No state from the bridge yet: an empty form, both limits sent."""
    await async_send(hass, STATUS_TOPIC, status())
    result = await open_step(hass, setup_entry, "limits")
    assert suggested(result) == {}
    result = await submit(hass, result, {"max_concurrent": 2, "bandwidth_limit": 1.5})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert fake_bridge.ops == [("set_limits", {"max_concurrent": 2, "bandwidth_limit": 1500000})]


async def test_limits_bridge_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """An offline bridge: a form error, nothing sent; back online, the same form saves."""
    result = await open_step(hass, init_integration, "limits")
    await async_send(hass, STATUS_TOPIC, status("offline"))
    form = {"max_concurrent": 8, "bandwidth_limit": 10.49}
    result = await submit(hass, result, form)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert suggested(result) == form
    assert fake_bridge.ops == []
    await async_send(hass, STATUS_TOPIC, status())
    result = await submit(hass, result, form)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert fake_bridge.ops == [("set_limits", {"max_concurrent": 8})]


async def test_limits_bridge_silent(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A bridge that does not answer in time: `cannot_connect`."""
    fake_bridge.silent = True
    result = await open_step(hass, init_integration, "limits")
    with patch("custom_components.q4d.bridge_client.COMMAND_TIMEOUT", 0.01):
        result = await submit(hass, result, {"max_concurrent": 8, "bandwidth_limit": 10.49})
    assert result["errors"] == {"base": "cannot_connect"}


async def test_limits_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A refusal the form has no text of its own for: `unknown`, with the message."""
    fake_bridge.answers["set_limits"] = refusal("invalid_args", "set_limits: bad value")
    result = await open_step(hass, init_integration, "limits")
    result = await submit(hass, result, {"max_concurrent": 8, "bandwidth_limit": 10.49})
    assert result["errors"] == {"base": "unknown"}
    assert result["description_placeholders"]["message"] == "set_limits: bad value"


# --- dispatch weights --------------------------------------------------------------------------


async def test_dispatch(
    hass: HomeAssistant, init_integration: MockConfigEntry, dispatch_bridge: ConfigBridge
) -> None:
    """Prefilled from the bridge's entry (its size in bytes shown as it reads back);
    saved with `config_set`, keys the form does not show kept; shown again as saved."""
    options = dict(init_integration.options)
    result = await open_step(hass, init_integration, "dispatch")
    assert result["step_id"] == "dispatch"
    assert suggested(result) == {
        "disk_weight": 1.0, "download_weight": 2.0, "bandwidth_weight": 0.1,
        "min_score": -1.0, "size_estimate": "10GiB", "categories": [],
    }  # fmt: skip
    result = await submit(hass, result, WEIGHTS)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    value = {
        **DISPATCH_DEFAULTS, "disk_weight": 1.5, "download_weight": 3.0,
        "bandwidth_weight": 0.25, "min_score": -2.0, "size_estimate": "4GiB",
        "categories": ["tv", "movies"],
    }  # fmt: skip
    assert dispatch_bridge.commands("config_set") == [
        {"section": "dispatch", "id": "dispatch", "value": value}
    ]
    assert init_integration.options == options
    await hass.async_block_till_done()
    result = await open_step(hass, init_integration, "dispatch")
    assert suggested(result)["size_estimate"] == "4GiB"
    assert suggested(result)["categories"] == ["tv", "movies"]
    # a size the bridge publishes in bytes that is no whole unit stays in bytes
    dispatch_bridge.dispatch = ("runtime", {**value, "size_estimate": 1000})
    dispatch_bridge.revision += 1
    dispatch_bridge.publish()
    await hass.async_block_till_done()
    result = await open_step(hass, init_integration, "dispatch")
    assert suggested(result)["size_estimate"] == "1000"


async def test_dispatch_read_only(
    hass: HomeAssistant, init_integration: MockConfigEntry, dispatch_bridge: ConfigBridge
) -> None:
    """Weights from the YAML file: the step says where to edit them, and stops."""
    dispatch_bridge.dispatch = ("yaml", DISPATCH_DEFAULTS)
    dispatch_bridge.publish()
    await hass.async_block_till_done()
    result = await open_step(hass, init_integration, "dispatch")
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "dispatch_read_only"


async def test_dispatch_unsupported(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """No configuration published, or one without a dispatch section: nothing to edit."""
    result = await open_step(hass, init_integration, "dispatch")
    assert result["reason"] == "unsupported"
    ConfigBridge(hass, fake_bridge).publish()
    await hass.async_block_till_done()
    result = await open_step(hass, init_integration, "dispatch")
    assert result["reason"] == "unsupported"


async def test_dispatch_invalid_size(
    hass: HomeAssistant, init_integration: MockConfigEntry, dispatch_bridge: ConfigBridge
) -> None:
    """A size the bridge could not read is refused before asking it."""
    result = await open_step(hass, init_integration, "dispatch")
    result = await submit(hass, result, {**WEIGHTS, "size_estimate": "ten gigs"})
    assert result["errors"] == {"size_estimate": "invalid_size"}
    assert dispatch_bridge.commands("config_set") == []
    assert suggested(result)["size_estimate"] == "ten gigs"


@pytest.mark.parametrize(
    ("answer", "errors", "message"),
    [
        (refusal("invalid", "bad", errors=["dispatch.categories[0]: length of value must be at "
                                           "most 200", "dispatch.min_score: expected float"],
                 fields={"categories[0]": "length of value must be at most 200",
                         "min_score": "expected float", "history": "not shown"}),
         {"base": "invalid", "categories": "invalid_field", "min_score": "invalid_field"},
         "dispatch.categories[0]: length of value must be at most 200; "
         "dispatch.min_score: expected float"),
        (refusal("read_only", "dispatch is defined in the YAML file; edit it there"),
         {"base": "read_only"}, "dispatch is defined in the YAML file; edit it there"),
        (refusal("invalid_args", "config_set: bad section"), {"base": "unknown"},
         "config_set: bad section"),
        (refusal("timeout", "busy"), {"base": "unknown"}, "busy"),
    ],
)  # fmt: skip
async def test_dispatch_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    dispatch_bridge: ConfigBridge,
    answer: dict[str, Any],
    errors: dict[str, str],
    message: str,
) -> None:
    """The bridge's refusal on the form: the fields it names, its message; fixed, saved."""
    dispatch_bridge.sets = [answer]
    result = await open_step(hass, init_integration, "dispatch")
    result = await submit(hass, result, WEIGHTS)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert result["description_placeholders"]["message"] == message
    result = await submit(hass, result, WEIGHTS)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_dispatch_stored_not_applied(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    dispatch_bridge: ConfigBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stored but not applied until the bridge restarts: saved, and logged."""
    caplog.set_level(logging.WARNING)
    dispatch_bridge.sets = [refusal("apply_failed", "not applied", revision=7)]
    result = await open_step(hass, init_integration, "dispatch")
    result = await submit(hass, result, WEIGHTS)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert "could not apply them now" in caplog.text


async def test_dispatch_bridge_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry, dispatch_bridge: ConfigBridge
) -> None:
    """An offline bridge: the form opens from its last configuration, and says on
    submit that the bridge did not answer."""
    await async_send(hass, STATUS_TOPIC, status("offline"))
    result = await open_step(hass, init_integration, "dispatch")
    assert result["step_id"] == "dispatch"
    result = await submit(hass, result, WEIGHTS)
    assert result["errors"] == {"base": "cannot_connect"}
    assert dispatch_bridge.commands("config_set") == []
