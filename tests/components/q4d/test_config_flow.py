"""Config flow: MQTT discovery, manual set-up, reconfigure and options (100% coverage)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.q4d.const import (
    CONF_BRIDGE_ID,
    CONF_ITEM_ENTITIES,
    CONF_PREFIX,
    CONF_RETENTION,
    DOMAIN,
)

from .payloads import STATUS_TOPIC, status


@pytest.fixture(autouse=True)
def mock_setup_entry() -> Generator[AsyncMock]:
    """Do not set entries up: only the flow is under test."""
    with patch("custom_components.q4d.async_setup_entry", return_value=True) as mock:
        yield mock


@pytest.fixture
def short_status_wait() -> Generator[None]:
    """Give up waiting for a bridge's status quickly."""
    with patch("custom_components.q4d.config_flow.STATUS_TIMEOUT", 0.05):
        yield


def discovery(
    payload: str = status(),
    topic: str = STATUS_TOPIC,
) -> MqttServiceInfo:
    """What MQTT discovery hands the flow."""
    return MqttServiceInfo(
        topic=topic,
        payload=payload,
        qos=1,
        retain=True,
        subscribed_topic="q4d/bridge/+/status",
        timestamp=0.0,
    )


async def configure_while_status_arrives(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    flow_id: str,
    user_input: dict[str, Any],
    topic: str,
    payloads: list[str],
) -> FlowResult:
    """Submit a step that waits for the bridge's status, and deliver it meanwhile."""
    task = hass.async_create_task(hass.config_entries.flow.async_configure(flow_id, user_input))
    for _ in range(100):
        await asyncio.sleep(0)
        if any(call[0][0] == topic for call in mqtt_mock.async_subscribe.call_args_list):
            break
    for payload in payloads:
        async_fire_mqtt_message(hass, topic, payload)
    return await task


async def test_discovery(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A retained status starts a flow that needs only a confirmation."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=discovery()
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "confirm"
    assert result["description_placeholders"] == {
        "name": "Home media bridge",
        "bridge_id": "home",
        "version": "0.1.0",
        "state": "online",
    }
    # the same bridge again while the first flow waits
    again = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=discovery(status("offline"))
    )
    assert again["type"] is FlowResultType.ABORT
    assert again["reason"] == "already_in_progress"

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Home media bridge"
    assert result["data"] == {CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"}
    assert result["result"].unique_id == "home"


async def test_discovery_offline_without_version(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """An offline bridge (its last will) can be set up too."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_MQTT},
        data=discovery(status("offline", version=None, name=None)),
    )
    assert result["description_placeholders"] == {
        "name": "home",
        "bridge_id": "home",
        "version": "?",
        "state": "offline",
    }


async def test_discovery_already_configured(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """A configured bridge aborts its discovery, and a new prefix is taken over."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="home", data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "old"}
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_MQTT},
        data=discovery(status(prefix="q4d")),
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PREFIX] == "q4d"


@pytest.mark.parametrize(
    "payload",
    [
        # the last will left under the prefix the bridge used before
        status("offline"),
        # an online status whose bridge says it is on another prefix
        status(prefix="media/q4d"),
        # an online status without a prefix
        status(prefix=None),
    ],
)
async def test_discovery_stale_status_keeps_prefix(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, payload: str
) -> None:
    """Only an online bridge on its own prefix moves a configured entry there."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="home",
        data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "media/q4d"},
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=discovery(payload)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PREFIX] == "media/q4d"


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("q4d/bridge/status", status()),
        ("q4d/bridges/home/status", status()),
        ("q4d/bridge/home/state", status()),
        (STATUS_TOPIC, ""),
        (STATUS_TOPIC, "not json"),
        (STATUS_TOPIC, '{"v": 1, "state": "online"}'),
        (STATUS_TOPIC, status(bridge_id="other")),
    ],
)
async def test_discovery_invalid(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, topic: str, payload: str
) -> None:
    """Anything that is not a bridge's status aborts."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_MQTT}, data=discovery(payload, topic)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_discovery_custom_prefix(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """The prefix is taken from the topic."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_MQTT},
        data=discovery(status(prefix="media/q4d"), "media/q4d/bridge/home/status"),
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["data"] == {CONF_BRIDGE_ID: "home", CONF_PREFIX: "media/q4d"}


async def test_user(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A bridge set up by id and prefix, once its status is seen."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    result = await configure_while_status_arrives(
        hass,
        mqtt_mock,
        result["flow_id"],
        {CONF_BRIDGE_ID: " home ", CONF_PREFIX: "/media/q4d/"},
        "media/q4d/bridge/home/status",
        ["", "junk", status(bridge_id="other"), status(prefix="media/q4d")],
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Home media bridge"
    assert result["data"] == {CONF_BRIDGE_ID: "home", CONF_PREFIX: "media/q4d"}
    assert result["result"].unique_id == "home"


@pytest.mark.usefixtures("short_status_wait")
async def test_user_errors(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """Bad ids and prefixes, and bridges that never answer, are errors on the form."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BRIDGE_ID: "Home Bridge", CONF_PREFIX: "q4d/#"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_BRIDGE_ID: "invalid_bridge_id", CONF_PREFIX: "invalid_prefix"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BRIDGE_ID: "home", CONF_PREFIX: "//"}
    )
    assert result["errors"] == {CONF_PREFIX: "invalid_prefix"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "bridge_not_found"}
    result = await configure_while_status_arrives(
        hass,
        mqtt_mock,
        result["flow_id"],
        {CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"},
        STATUS_TOPIC,
        [status()],
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_already_configured(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A bridge already set up aborts the manual flow."""
    MockConfigEntry(
        domain=DOMAIN, unique_id="home", data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"}
    ).add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_user_without_mqtt(hass: HomeAssistant) -> None:
    """Without the MQTT integration there is nothing to set up."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "mqtt_not_available"


async def test_reconfigure(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """The prefix can be changed; the bridge must answer under the new one."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="home", data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"}
    )
    entry.add_to_hass(hass)
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    assert result["description_placeholders"] == {"bridge_id": "home"}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_PREFIX: "a+b"})
    assert result["errors"] == {CONF_PREFIX: "invalid_prefix"}

    with patch("custom_components.q4d.config_flow.STATUS_TIMEOUT", 0.05):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_PREFIX: "elsewhere"}
        )
    assert result["errors"] == {"base": "bridge_not_found"}

    result = await configure_while_status_arrives(
        hass,
        mqtt_mock,
        result["flow_id"],
        {CONF_PREFIX: "media/q4d"},
        "media/q4d/bridge/home/status",
        [status()],
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == {CONF_BRIDGE_ID: "home", CONF_PREFIX: "media/q4d"}


async def test_options(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """A menu first; Display: item entities on or off, and the retention in minutes."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="home", data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"}
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    assert result["step_id"] == "init"
    assert result["menu_options"] == ["display", "limits", "dispatch"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "display"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "display"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_ITEM_ENTITIES: False, CONF_RETENTION: 15.0}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {CONF_ITEM_ENTITIES: False, CONF_RETENTION: 15}


async def test_options_stored_before_the_menu(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> None:
    """Options stored by the single form of earlier versions fill in Display."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="home",
        data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"},
        options={CONF_ITEM_ENTITIES: True, CONF_RETENTION: 30},
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": "display"}
    )
    shown = {
        str(k): k.description["suggested_value"]
        for k in result["data_schema"].schema
        if k.description
    }
    assert shown == {CONF_ITEM_ENTITIES: True, CONF_RETENTION: 30}


@pytest.mark.parametrize("step_id", ["limits", "dispatch"])
async def test_options_not_loaded(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, step_id: str
) -> None:
    """An entry that is not loaded has no bridge to ask for its limits or weights."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id="home", data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"}
    )
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": step_id}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_loaded"
