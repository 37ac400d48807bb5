"""The HA-first install: a bridge started from a broker-only file (no seedbox, no
destination, no rule), against Mosquitto and sshd on loopback. It goes online, answers,
publishes an empty state; then the configuration commands add its first seedbox (host key
given), a completion with nowhere to go is rejected as no_destination, and once a
destination and a rule are set the next completion lands, all without a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import load_config
from q4d_bridge.models import ItemState
from q4d_bridge.mqtt.remote import RemoteError

from tests.bridge.test_api_metrics import scrape, served
from tests.bridge.test_e2e import digest_tree, make_file
from tests.bridge.test_live_apply import until
from tests.bridge.test_runtime_config_bridge import TOPICS, ask, land, running
from tests.bridge.test_runtime_config_dispatch import DISPATCH_DEFAULTS
from tests.helpers.mqtt import Recorder, publish
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(120)
PREFIX = "q4d/bridge/test"


def broker_only(tmp_path: Path, port: int) -> Path:
    """The minimal configuration docs/configuration.md shows: the broker alone."""
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "bridge": {"id": "test"},
                "data_dir": str(tmp_path / "data"),
                "broker": {"host": "127.0.0.1", "port": port},
            }
        )
    )
    return path


def last(recorder: Recorder, topic: str) -> Any:
    messages = recorder.on(topic)
    return messages[-1].json() if messages else None


async def test_a_broker_only_bridge_takes_its_first_seedbox_destination_and_rule_live(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    remote, library = tmp_path / "seedbox", tmp_path / "library"
    remote.mkdir()
    async with running(broker_only(tmp_path, mosquitto.port), mosquitto.port) as (
        bridge,
        recorder,
    ):
        # Idle but present: online (HA discovers it here), an empty state, answers.
        status = await recorder.wait_for(
            lambda: last(recorder, f"{PREFIX}/status"), 10, "the status"
        )
        assert (status["state"], status["seedboxes"]) == ("online", [])
        state = await recorder.wait_for(lambda: last(recorder, f"{PREFIX}/state"), 10, "state")
        assert state["seedboxes"] == {}
        assert (await ask(bridge, "get_queue"))["items"] == []
        listed = await ask(bridge, "config_get")
        assert listed["sections"] == {
            "seedboxes": [], "destinations": [], "rules": [], "arr": [], "home_clients": [],
            "dispatch": [{"id": "dispatch", "source": "default", "value": DISPATCH_DEFAULTS}],
        }  # fmt: skip
        with pytest.raises(RemoteError) as refused:  # no torrent client to add it to
            await ask(bridge, "add", magnet=f"magnet:?xt=urn:btih:{'ab' * 20}&dn=Film")
        assert refused.value.code == "no_eligible_client"
        assert not bridge.failed

        # Before any seedbox, a completion is refused at the door, nothing else happens.
        early = {"v": 1, "event_id": "before", "path": str(remote / "Before.mkv")}
        await publish(mosquitto.port, [("q4d/seedbox/sb1/completed", json.dumps(early).encode())])
        [unknown] = await recorder.wait_for(
            lambda: recorder.events("rejected"), 10, "the first rejection"
        )
        assert unknown["reason"] == "unknown_seedbox" and not bridge.failed

        # The first seedbox, its host key confirmed as HA's flow sends it.
        seedbox = {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                   "key": str(sshd.client_key), "host_key": sshd.host_public_key,
                   "remote_roots": [str(remote)], "engine": "sftp"}  # fmt: skip
        result = await ask(bridge, "config_set", section="seedboxes", id="sb1", value=seedbox)
        assert result["applied"] == {
            "routing": False,
            "arr": False,
            "home_clients": False,
            "dispatch": False,
            "seedboxes": {"added": ["sb1"], "changed": [], "removed": []},
            "unconfigured": [],
            "restart_required": [],  # classic mode, off, took no seedbox of its own
        }
        await recorder.wait_for(
            lambda: (last(recorder, f"{PREFIX}/status") or {}).get("seedboxes") == ["sb1"],
            10,
            "the status listing sb1",
        )

        # No destination yet: its completion is refused with the reason, not fetched.
        make_file(remote / "Early.mkv", 1000, seed=1)
        event = {"v": 1, "event_id": "early", "path": str(remote / "Early.mkv"), "hash": None}
        await publish(mosquitto.port, [("q4d/seedbox/sb1/completed", json.dumps(event).encode())])
        _, rejected = await recorder.wait_for(
            lambda: recorder.events("rejected")[1:] and recorder.events("rejected"),
            10,
            "the rejection",
        )
        assert rejected["reason"] == "no_destination", rejected
        assert "no default destination is configured" in rejected["detail"]
        counted = await recorder.wait_for(
            lambda: (last(recorder, f"{PREFIX}/state") or {}).get("seedboxes", {}).get("sb1"),
            10,
            "sb1 in the state",
        )
        await until(lambda: bridge.state().seedboxes["sb1"].rejected == 1, "the count")
        last_rejection = bridge.state().seedboxes["sb1"].last_rejection
        assert last_rejection is not None and last_rejection["reason"] == "no_destination"
        assert counted is not None and not bridge.lifecycle.items

        # A destination and a rule that takes everything: the next completion lands.
        await ask(bridge, "config_set", section="destinations", id="films",
                  value=str(library / "films"))  # fmt: skip
        assert bridge.config.routing.default_destination == "films"  # the only one
        await ask(bridge, "config_set", section="rules", id="all",
                  value={"destination": "films", "match": []})  # fmt: skip
        make_file(remote / "Film.2024.mkv", 300_000, seed=2)
        landed = await land(bridge, "sb1", remote / "Film.2024.mkv", "films")
        assert landed == library / "films" / "Film.2024.mkv"
        assert digest_tree(landed) == digest_tree(remote / "Film.2024.mkv")
        assert [i.state for i in bridge.lifecycle.items.values()] == [ItemState.DONE]
        assert not bridge.failed
        config_body = last(recorder, TOPICS.config)
        assert [e["id"] for e in config_body["sections"]["seedboxes"]] == ["sb1"]


async def test_a_bridge_without_seedboxes_has_metrics_and_an_empty_state(tmp_path: Path) -> None:
    bridge = Bridge(load_config(broker_only(tmp_path, 1883), {}))
    try:
        state = bridge.state()
        assert state.seedboxes == {} and state.as_dict()["seedboxes"] == {}
        async with served(bridge) as client:
            samples = await scrape(client)
        assert ("q4d_items", frozenset({("state", "queued")})) in samples
        assert not any("seedbox" in dict(labels) for _name, labels in samples)
    finally:
        bridge.store.close()
