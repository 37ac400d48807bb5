"""Fixtures for the q4d integration tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Any
from unittest.mock import PropertyMock, patch

# Imported before any test freezes time: freezegun breaks the import of the MQTT
# config flow's Supervisor client (its models resolve `datetime` annotations).
import homeassistant.components.mqtt.config_flow  # noqa: F401
import pytest
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from pytest_homeassistant_custom_component.typing import MqttMockHAClient
from syrupy.assertion import SnapshotAssertion
from syrupy.location import PyTestLocation

from custom_components.q4d import PLATFORMS
from custom_components.q4d.config_flow import Q4dConfigFlow
from custom_components.q4d.const import (
    CONF_BRIDGE_ID,
    CONF_ITEM_ENTITIES,
    CONF_PREFIX,
    CONF_RETENTION,
    DOMAIN,
)

from .common import SNAPSHOT_SET, FakeBridge, async_flush, async_send
from .payloads import (
    ITEM_1,
    ITEM_2,
    ITEM_3,
    NOW,
    STATE_TOPIC,
    STATUS_TOPIC,
    item,
    item_topic,
    state,
    status,
    transferring,
)


class Q4dSnapshotExtension(HomeAssistantSnapshotExtension):
    """Home Assistant's snapshot format, in `snapshots/<Home Assistant version>/`:
    what the registries hold differs between the versions the tests run on."""

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        """Directory of the snapshot files."""
        return str(Path(test_location.filepath).parent / "snapshots" / SNAPSHOT_SET)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Snapshot assertions in Home Assistant's format."""
    return snapshot.use_extension(Q4dSnapshotExtension)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/ in every test."""


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Create entities that are disabled by default enabled (for snapshots)."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Options of the config entry (parametrize to change).

    The payloads carry fixed 2023 timestamps; a century of retention keeps their
    finished items within it. Retention tests set their own.
    """
    return {CONF_ITEM_ENTITIES: True, CONF_RETENTION: 60 * 24 * 365 * 100}


@pytest.fixture
def mock_config_entry(entry_options: dict[str, Any]) -> MockConfigEntry:
    """A config entry for bridge `home` under prefix `q4d`."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Home media bridge",
        data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"},
        options=entry_options,
        unique_id="home",
        entry_id="01JQ4DENTRY000000000000000",
        version=Q4dConfigFlow.VERSION,
    )


@pytest.fixture
def platforms() -> list[Platform]:
    """Platforms to set up (parametrize to narrow)."""
    return PLATFORMS


@pytest.fixture
async def setup_entry(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mock_config_entry: MockConfigEntry,
    platforms: list[Platform],
) -> AsyncGenerator[MockConfigEntry]:
    """The entry set up, before the bridge said anything."""
    with patch("custom_components.q4d.PLATFORMS", platforms):
        mock_config_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
        yield mock_config_entry


@pytest.fixture
async def init_integration(hass: HomeAssistant, setup_entry: MockConfigEntry) -> MockConfigEntry:
    """The entry set up, with the bridge's retained status, state and three items."""
    await async_send(hass, STATUS_TOPIC, status(), flush=False)
    await async_send(hass, item_topic(ITEM_1), transferring(ITEM_1), flush=False)
    await async_send(
        hass,
        item_topic(ITEM_2),
        item(ITEM_2, name="Film.2021.mkv", seedbox="seedbox2", destination="movies", priority=5),
        flush=False,
    )
    await async_send(
        hass,
        item_topic(ITEM_3),
        item(
            ITEM_3,
            "failed",
            name="Broken.iso",
            attempts=3,
            error={"code": "connection", "message": "lftp exit 1: max-retries exceeded"},
            started_at=NOW + 1,
            finished_at=NOW + 5,
            updated_at=NOW + 5,
        ),
        flush=False,
    )
    await async_send(hass, STATE_TOPIC, state())
    await async_flush(hass)
    return setup_entry


@pytest.fixture
async def fake_bridge(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient
) -> AsyncGenerator[FakeBridge]:
    """A bridge that answers commands."""
    bridge = FakeBridge(hass)
    await bridge.async_start()
    yield bridge
    bridge.stop()
