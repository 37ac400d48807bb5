"""The transfers card's websocket feed and the card's script, served by the integration."""

from __future__ import annotations

import hashlib
from typing import Any
from unittest.mock import patch

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    MqttMockHAClient,
    WebSocketGenerator,
)

from custom_components.q4d.card import CARD_PATH, CARD_URL
from custom_components.q4d.const import CONF_BRIDGE_ID, CONF_ITEM_ENTITIES, CONF_PREFIX, DOMAIN
from custom_components.q4d.websocket_api import HISTORY_LIMIT, SUBSCRIBE

from .common import async_flush, async_send
from .payloads import (
    ITEM_1,
    ITEM_2,
    ITEM_3,
    NOW,
    REQUEST_1,
    STATE_TOPIC,
    STATUS_TOPIC,
    item,
    item_topic,
    request_item,
    state,
    state_dict,
    transferring,
)

NEW = "aaaaaaaaaaaaaaaa"


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """No item entities: the feed does not need them (and bursts set up faster)."""
    return {CONF_ITEM_ENTITIES: False}


class Feed:
    """A websocket client subscribed to the transfers feed."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.next_id = 1
        self.subscription = 0

    async def subscribe(self, **extra: Any) -> dict[str, Any]:
        """Subscribe; the answer (a result, or an error)."""
        self.subscription = self.next_id
        await self.send({"type": SUBSCRIBE, **extra})
        answer: dict[str, Any] = await self.client.receive_json()
        assert answer["id"] == self.subscription
        return answer

    async def send(self, message: dict[str, Any]) -> None:
        await self.client.send_json({"id": self.next_id, **message})
        self.next_id += 1

    async def event(self) -> dict[str, Any]:
        """The next event of the subscription."""
        message = await self.client.receive_json()
        assert message["id"] == self.subscription, message
        assert message["type"] == "event", message
        event: dict[str, Any] = message["event"]
        return event

    async def assert_quiet(self) -> None:
        """Nothing was sent: a ping's pong is the next message."""
        await self.send({"type": "ping"})
        assert (await self.client.receive_json())["type"] == "pong"


async def feed(hass_ws_client: WebSocketGenerator, hass: HomeAssistant) -> Feed:
    return Feed(await hass_ws_client(hass))


async def test_snapshot(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """The first event: the bridge's queue summary and its items."""
    client = await feed(hass_ws_client, hass)
    answer = await client.subscribe()
    assert answer["success"] is True
    snapshot = await client.event()
    assert snapshot["type"] == "snapshot"
    assert snapshot["entry_id"] == init_integration.entry_id
    assert snapshot["bridge"] == {
        "name": "Home media bridge",
        "online": True,
        "paused": False,
        "counts": {
            "queued": 1,
            "transferring": 1,
            "verifying": 0,
            "processing": 0,
            "waiting": 0,
            "done": 0,
            "failed": 1,
            "cancelled": 0,
            "requested": 0,
            "downloading": 0,
        },
        "rate": 52428800.0,
        "bandwidth_limit": 10485760,
        "max_concurrent": 3,
        "seedboxes": {"seedbox1": "My seedbox", "seedbox2": "Second seedbox"},
        "updated_at": NOW,
    }
    items = {i["id"]: i for i in snapshot["items"]}
    assert set(items) == {ITEM_1, ITEM_2, ITEM_3}
    assert items[ITEM_1] == {
        "id": ITEM_1,
        "name": "Show.S01E01.mkv",
        "seedbox": "seedbox1",
        "destination": "tv",
        "local_path": "/media/tv/Show.S01E01.mkv",
        "state": "transferring",
        "paused": False,
        "priority": 0,
        "size": 1500000000,
        "bytes_done": 524288000,
        "progress": 35.0,
        "rate": 52428800.0,
        "eta": 18.6,
        "attempts": 1,
        "error_code": None,
        "error": None,
        "received_at": NOW,
        "started_at": NOW + 2,
        "finished_at": None,
        "next_attempt_at": None,
        "duration": None,
        "request_id": None,
        "request": False,
        "step": None,
    }
    assert items[ITEM_2]["priority"] == 5
    assert items[ITEM_3]["error"] == "lftp exit 1: max-retries exceeded"
    assert items[ITEM_3]["duration"] == 4.0


async def test_item_added_changed_removed(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """Items published after the subscription are pushed as they come, change and go."""
    client = await feed(hass_ws_client, hass)
    await client.subscribe()
    await client.event()

    await async_send(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    update = await client.event()
    assert update["type"] == "update"
    assert [i["id"] for i in update["items"]] == [NEW]
    assert update["items"][0]["state"] == "queued"
    assert update["removed"] == []
    assert "bridge" not in update

    await async_send(hass, item_topic(NEW), transferring(NEW, name="New.mkv", progress=50.0))
    update = await client.event()
    assert [(i["id"], i["state"], i["progress"]) for i in update["items"]] == [
        (NEW, "transferring", 50.0)
    ]

    await async_send(hass, item_topic(NEW), "")
    update = await client.event()
    assert update == {"type": "update", "items": [], "removed": [NEW]}
    await client.assert_quiet()


async def test_torrent_requests(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """Torrents added through the bridge show before they are in the queue: requested,
    then downloading on the seedbox, then the queue item the download became (carrying
    the request's id) while the request's topic is retracted; the counts follow."""
    client = await feed(hass_ws_client, hass)
    await client.subscribe()
    await client.event()

    counts = {**state_dict()["counts"], "requested": 1}
    requested = request_item(state="requested", progress=0.0)
    await async_send(hass, item_topic(REQUEST_1), requested, flush=False)
    await async_send(hass, STATE_TOPIC, state(counts=counts))
    update = await client.event()
    (row,) = update["items"]
    assert row["id"] == row["request_id"] == REQUEST_1
    assert (row["state"], row["request"], row["destination"]) == ("requested", True, None)
    assert update["bridge"]["counts"]["requested"] == 1

    await async_send(hass, item_topic(REQUEST_1), request_item(), flush=False)
    await async_send(hass, STATE_TOPIC, state(counts={**counts, "requested": 0, "downloading": 1}))
    update = await client.event()
    assert [(i["state"], i["progress"], i["rate"], i["bytes_done"]) for i in update["items"]] == [
        ("downloading", 50.0, 4194304.0, 750000000)
    ]
    assert update["bridge"]["counts"]["downloading"] == 1

    await async_send(hass, item_topic(REQUEST_1), "", flush=False)
    await async_send(hass, item_topic(NEW), item(NEW, request_id=REQUEST_1))
    update = await client.event()
    assert update["removed"] == [REQUEST_1]
    assert [(i["id"], i["state"], i["request_id"], i["request"]) for i in update["items"]] == [
        (NEW, "queued", REQUEST_1, False)
    ]

    # a request that failed before its download reached the queue stays as a failed row
    failure = {"code": "client_error", "message": "qBittorrent refused the torrent"}
    failed = request_item(state="failed", error=failure, finished_at=NOW + 9, progress=0.0)
    await async_send(hass, item_topic(REQUEST_1), failed)
    (row,) = (await client.event())["items"]
    assert (row["state"], row["request"], row["error"]) == ("failed", True, failure["message"])


async def test_changes_are_coalesced(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """A burst of changes, and of bridge states, makes one message with the latest of each."""
    client = await feed(hass_ws_client, hass)
    await client.subscribe()
    await client.event()

    ids = [f"{n:016x}" for n in range(1, 201)]
    # Longer than the burst takes in real time, however slow the machine.
    with patch("custom_components.q4d.websocket_api.PUSH_DELAY", 30.0):
        for item_id in ids:
            await async_send(hass, item_topic(item_id), item(item_id), flush=False)
        for progress in (10.0, 20.0, 30.0):
            await async_send(hass, item_topic(ITEM_1), transferring(progress=progress), flush=False)
        await async_send(hass, STATE_TOPIC, state(paused=True), flush=False)
        await async_send(hass, STATE_TOPIC, state(paused=True, rate=1.0), flush=False)
    await async_flush(hass, 60)

    update = await client.event()
    assert len(update["items"]) == len(ids) + 1
    assert {i["id"] for i in update["items"]} == {*ids, ITEM_1}
    assert next(i for i in update["items"] if i["id"] == ITEM_1)["progress"] == 30.0
    assert update["bridge"]["paused"] is True
    assert update["bridge"]["rate"] == 1.0
    await client.assert_quiet()


async def test_history_is_the_newest_finished(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """A snapshot holds every unfinished item but only the newest finished ones."""
    for n in range(HISTORY_LIMIT + 5):
        item_id = f"{n + 1:016x}"
        at = NOW + 10 + n  # all after ITEM_3 failed (NOW + 5)
        finished = {"started_at": NOW, "finished_at": at, "updated_at": at}
        await async_send(hass, item_topic(item_id), item(item_id, "done", **finished), flush=False)
    await async_flush(hass)

    client = await feed(hass_ws_client, hass)
    await client.subscribe()
    snapshot = await client.event()
    finished = [i for i in snapshot["items"] if i["state"] in ("done", "failed")]
    assert [i["finished_at"] for i in finished] == [
        NOW + 10 + n for n in reversed(range(5, HISTORY_LIMIT + 5))
    ]
    unfinished = {i["id"] for i in snapshot["items"]} - {i["id"] for i in finished}
    assert unfinished == {ITEM_1, ITEM_2}


async def test_bridge_changes_are_pushed(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """A new state and an offline status reach the card with the queue summary."""
    client = await feed(hass_ws_client, hass)
    await client.subscribe()
    await client.event()

    await async_send(hass, STATE_TOPIC, state(paused=True, rate=0.0))
    update = await client.event()
    assert update["items"] == update["removed"] == []
    assert update["bridge"]["paused"] is True
    assert update["bridge"]["rate"] == 0.0

    await async_send(hass, STATUS_TOPIC, '{"v":1,"state":"offline","bridge_id":"home"}')
    assert (await client.event())["bridge"]["online"] is False


async def test_unsubscribe_stops_the_feed(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """After unsubscribing nothing more is sent, even for changes already gathered."""
    client = await feed(hass_ws_client, hass)
    await client.subscribe()
    await client.event()
    await async_send(hass, item_topic(NEW), item(NEW), flush=False)  # gathered, not sent yet

    await client.send({"type": "unsubscribe_events", "subscription": client.subscription})
    assert (await client.client.receive_json())["success"] is True
    await async_send(hass, item_topic(NEW), transferring(NEW))
    await async_send(hass, STATE_TOPIC, state(paused=True))
    await client.assert_quiet()


async def test_reload_sends_a_new_snapshot(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """A reload: a snapshot without the bridge, then one from the new coordinator,
    which the feed follows from then on."""
    client = await feed(hass_ws_client, hass)
    await client.subscribe(entry_id=init_integration.entry_id)
    await client.event()

    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    unloaded = await client.event()
    assert unloaded == {
        "type": "snapshot",
        "entry_id": init_integration.entry_id,
        "bridge": None,
        "items": [],
    }
    reloaded = await client.event()
    assert reloaded["type"] == "snapshot"
    assert reloaded["bridge"] is not None

    await async_send(hass, item_topic(NEW), item(NEW))
    update = None
    while update is None or NEW not in [i["id"] for i in update.get("items", [])]:
        update = await client.event()  # the retained messages delivered again come first

    assert await hass.config_entries.async_unload(init_integration.entry_id)
    assert init_integration.state is ConfigEntryState.NOT_LOADED
    assert (await client.event())["bridge"] is None
    await async_send(hass, item_topic(NEW), "")
    await client.assert_quiet()


async def test_unknown_entry(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_ws_client: WebSocketGenerator
) -> None:
    """An entry id that is no q4d entry is not found."""
    client = await feed(hass_ws_client, hass)
    answer = await client.subscribe(entry_id="no-such-entry")
    assert answer["success"] is False
    assert answer["error"]["code"] == "not_found"
    await client.assert_quiet()


async def test_entry_needed_with_several_bridges(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mqtt_mock: MqttMockHAClient,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """Without entry_id, the only bridge; with two of them, entry_id is required."""
    MockConfigEntry(
        domain=DOMAIN, data={CONF_BRIDGE_ID: "other", CONF_PREFIX: "q4d"}, unique_id="other"
    ).add_to_hass(hass)
    client = await feed(hass_ws_client, hass)
    answer = await client.subscribe()
    assert answer["success"] is False
    assert answer["error"]["code"] == "invalid_format"


async def test_no_bridge(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, hass_ws_client: WebSocketGenerator
) -> None:
    """Without any q4d entry there is nothing to subscribe to."""
    assert await async_setup_component(hass, DOMAIN, {})
    client = await feed(hass_ws_client, hass)
    answer = await client.subscribe()
    assert answer["success"] is False
    assert answer["error"]["code"] == "not_found"


async def test_entry_set_up_later(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mock_config_entry: MockConfigEntry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """A card opened before its bridge is loaded gets the snapshot once it is."""
    assert await async_setup_component(hass, DOMAIN, {})
    mock_config_entry.add_to_hass(hass)
    client = await feed(hass_ws_client, hass)
    await client.subscribe()
    assert (await client.event())["bridge"] is None

    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    snapshot = await client.event()
    assert snapshot["bridge"]["name"] == "Home media bridge"
    assert snapshot["items"] == []


async def test_card_script_is_served(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_client: ClientSessionGenerator
) -> None:
    """The integration serves the card's script itself."""
    client = await hass_client()
    answer = await client.get(CARD_URL)
    assert answer.status == 200
    assert answer.content_type in ("application/javascript", "text/javascript")
    script = await answer.text()
    assert 'const CARD = "q4d-transfers-card";' in script
    assert "customElements.define(CARD, Q4dTransfersCard)" in script
    assert SUBSCRIBE in script


async def test_dashboards_load_the_card(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """With the frontend loaded, every dashboard loads the script, its URL carrying a
    digest of the script (a changed script is fetched again, whatever the version)."""
    hass.config.components.add("frontend")
    with patch("custom_components.q4d.card.add_extra_js_url") as add_extra_js_url:
        assert await async_setup_component(hass, DOMAIN, {})
    digest = hashlib.sha256(CARD_PATH.read_bytes()).hexdigest()[:12]
    add_extra_js_url.assert_called_once_with(hass, f"{CARD_URL}?v={digest}")
