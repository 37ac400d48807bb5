"""A new configuration applied to the running bridge (Bridge.apply, live.py), against
Mosquitto and sshd on loopback: seedboxes added, changed and removed, routing swapped,
and what needs a restart said so. Configurations come from the real loader."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.live import ConfirmRequired, changes
from q4d_bridge.models import Item, ItemState
from q4d_bridge.mqtt.commands import CommandError
from q4d_bridge.tracker_rules import TrackerRule

from tests.bridge.test_e2e import Env, digest_tree, make_file, running_bridge
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import publish
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(90)
MiB = 2**20
PREFIX = "q4d/bridge/test"


def config(raw: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> Config:
    """The running bridge's raw configuration with a change, through the loader."""
    new = copy.deepcopy(raw)
    change(new)
    return parse_config(new)


def second_seedbox(env: Env, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    """sb2: the same sshd as sb1, its own download folder."""
    root = tmp_path / "seedbox2"
    root.mkdir(exist_ok=True)
    return {**env.raw["seedboxes"][0], "id": "sb2", "remote_roots": [str(root)], **settings}


async def complete(env: Env, seedbox: str, path: Path, **fields: Any) -> None:
    event = {"v": 1, "event_id": f"{seedbox}-{path.name}", "path": str(path), **fields}
    await publish(env.port, [(f"q4d/seedbox/{seedbox}/completed", json.dumps(event).encode())])


async def until[T](check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while (found := check()) is None or found is False:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return found


async def item_of(bridge: Bridge, path: Path) -> Item:
    return await until(
        lambda: next(
            (i for i in bridge.lifecycle.items.values() if i.remote_path == str(path)), None
        ),
        f"an item for {path}",
    )


async def in_state(item: Item, *states: ItemState, timeout: float = 30) -> Item:
    await until(lambda: item.state in states, f"{item.name} {'/'.join(states)}", timeout)
    return item


def rejections(env: Env) -> list[dict[str, Any]]:
    return env.recorder.events("rejected")


def leftover_tasks(*names: str) -> list[str]:
    return [
        t.get_name()
        for t in asyncio.all_tasks()
        if not t.done() and any(t.get_name().startswith(n) for n in names)
    ]


async def test_a_seedbox_added_live_lands_its_completion(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        bridge = env.bridge
        sb2 = second_seedbox(env, tmp_path)
        payload = tmp_path / "seedbox2" / "Film.mkv"
        make_file(payload, 2 * MiB, seed=3)
        # Not served yet: refused at the door.
        await complete(env, "sb2", payload, hash="c" * 40)
        await env.recorder.wait_for(lambda: rejections(env), 10, "the rejection")
        assert not bridge.lifecycle.items

        applied = await bridge.apply(
            config(env.raw, lambda raw: raw["seedboxes"].append(sb2)), confirm=False
        )

        assert applied == {
            "routing": False,
            "arr": False,
            "home_clients": False,
            "dispatch": False,
            "seedboxes": {"added": ["sb2"], "changed": [], "removed": []},
            "unconfigured": [],
            "restart_required": [],
        }
        await complete(env, "sb2", payload, hash="c" * 40, event_id="again")
        item = await in_state(await item_of(bridge, payload), ItemState.DONE)
        assert item.seedbox == "sb2"
        assert digest_tree(env.library / "other" / "Film.mkv") == digest_tree(payload)
        # Its parts are all there, its SSH link held, and HA hears of it.
        assert bridge.scheduler.limits.per_seedbox["sb2"] == sb2["max_concurrent"]
        assert "sb2" in bridge.scheduler.breakers and "sb2" in bridge.sessions
        assert bridge.has_job("ssh-sb2")
        await env.recorder.wait_for(
            lambda: any("sb2" in m.json()["seedboxes"] for m in env.recorder.on(f"{PREFIX}/state")),
            10,
            "sb2 in the state",
        )
        await env.recorder.wait_for(
            lambda: env.recorder.on(f"{PREFIX}/status")[-1].json()["seedboxes"] == ["sb1", "sb2"],
            10,
            "the retained status listing sb2",
        )


async def test_a_rule_changed_live_routes_the_next_completion(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        bridge = env.bridge
        for name in ("Queued.S01E01.mkv", "Next.S01E02.mkv"):
            make_file(env.remote / name, 100_000, seed=len(name))
        bridge.controller.pause(None)  # the first waits in the queue across the change
        await complete(env, "sb1", env.remote / "Queued.S01E01.mkv", category="tv")
        queued = await item_of(bridge, env.remote / "Queued.S01E01.mkv")
        assert queued.destination == "tv"

        def series(raw: dict[str, Any]) -> None:
            raw["destinations"]["series"] = str(env.library / "series")
            raw["rules"][0]["destination"] = "series"

        applied = await bridge.apply(config(env.raw, series), confirm=False)

        assert applied["routing"] is True and applied["restart_required"] == []
        bridge.controller.resume(None)
        await complete(env, "sb1", env.remote / "Next.S01E02.mkv", category="tv")
        following = await item_of(bridge, env.remote / "Next.S01E02.mkv")
        await in_state(queued, ItemState.DONE)
        await in_state(following, ItemState.DONE)
        # The queued item kept its destination; the next one took the new rule.
        assert (env.library / "tv" / "Queued.S01E01.mkv").is_file()
        assert (env.library / "series" / "Next.S01E02.mkv").is_file()
        assert following.destination == "series"


async def test_a_destination_gone_with_queued_items_asks_for_confirmation(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        bridge = env.bridge
        make_file(env.remote / "Film.mkv", 100_000, seed=1)
        bridge.controller.pause(None)
        await complete(env, "sb1", env.remote / "Film.mkv", category="movies")
        item = await item_of(bridge, env.remote / "Film.mkv")

        def no_movies(raw: dict[str, Any]) -> None:
            del raw["destinations"]["movies"], raw["rules"][1]
            raw["type_codes"].pop("M")

        # A tracker rule (stored, not configuration) sending there holds it, confirmed or not.
        desk = bridge.commands.rules
        assert desk is not None
        desk.add(TrackerRule("example.org", None, "movies", False))
        with pytest.raises(CommandError) as in_use:
            await bridge.apply(config(env.raw, no_movies), confirm=True)
        assert in_use.value.code == "in_use" and "example.org" in in_use.value.message
        desk.remove("example.org")

        with pytest.raises(ConfirmRequired) as refused:
            await bridge.apply(config(env.raw, no_movies), confirm=False)
        assert refused.value.code == "confirm_required" and refused.value.items == [item.id]
        assert "movies" in bridge.config.routing.destinations  # nothing applied

        applied = await bridge.apply(config(env.raw, no_movies), confirm=True)
        assert applied["unconfigured"] == [item.id]
        assert item.state is ItemState.FAILED and item.error_code == "not_configured"
        assert "movies" not in bridge.config.routing.destinations


async def test_a_seedbox_removed_stops_its_items_only_when_confirmed(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", transfers={"bandwidth_limit": 2 * MiB}
    ) as env:
        bridge = env.bridge
        sb2 = second_seedbox(env, tmp_path, max_concurrent=1)
        with_sb2 = config(env.raw, lambda raw: raw["seedboxes"].append(sb2))
        await bridge.apply(with_sb2, confirm=False)
        running, queued = tmp_path / "seedbox2" / "Big.mkv", tmp_path / "seedbox2" / "Small.mkv"
        make_file(running, 40 * MiB, seed=1)  # ~20 s at 2 MiB/s: still running at removal
        make_file(queued, 100_000, seed=2)
        await complete(env, "sb2", running)
        first = await in_state(await item_of(bridge, running), ItemState.TRANSFERRING)
        await complete(env, "sb2", queued)
        second = await item_of(bridge, queued)
        await until(lambda: first.bytes_done > 0, "bytes of the first")
        session = bridge.sessions["sb2"]
        without_sb2 = config(env.raw, lambda raw: None)

        with pytest.raises(ConfirmRequired) as refused:
            await bridge.apply(without_sb2, confirm=False)
        assert sorted(refused.value.items) == sorted([first.id, second.id])
        assert "sb2" in bridge.config.seedboxes and first.state is ItemState.TRANSFERRING

        applied = await bridge.apply(without_sb2, confirm=True)

        assert applied["seedboxes"]["removed"] == ["sb2"]
        assert sorted(applied["unconfigured"]) == sorted([first.id, second.id])
        for item in (first, second):
            await in_state(item, ItemState.FAILED, timeout=10)
            assert item.error_code == "not_configured"
        assert "sb2" not in bridge.sessions and "sb2" not in bridge.scheduler.breakers
        assert not bridge.has_job("ssh-sb2")
        await until(lambda: not bridge.live._retiring, "its parts closed")
        assert session._conn is None
        assert leftover_tasks("transfer-", "retire-", "ssh-sb2") == []
        # Its completions are refused again, and the retained state forgets it.
        rejected = len(rejections(env))
        await complete(env, "sb2", queued, event_id="after")
        await env.recorder.wait_for(lambda: len(rejections(env)) > rejected, 10, "refused")
        await env.recorder.wait_for(
            lambda: "sb2" not in env.recorder.on(f"{PREFIX}/state")[-1].json()["seedboxes"],
            10,
            "sb2 gone from the state",
        )


async def test_a_seedbox_changed_mid_transfer_finishes_it_and_uses_the_new_settings(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", transfers={"bandwidth_limit": 4 * MiB}
    ) as env:
        bridge = env.bridge
        other_root = tmp_path / "seedbox-b"
        big, later = env.remote / "Big.mkv", other_root / "Later.mkv"
        make_file(big, 12 * MiB, seed=1)  # ~3 s at 4 MiB/s
        make_file(later, 100_000, seed=2)
        await complete(env, "sb1", big)
        item = await in_state(await item_of(bridge, big), ItemState.TRANSFERRING)
        await until(lambda: item.bytes_done > 0, "the first bytes")
        old_session, old_config = bridge.sessions["sb1"], bridge.config.seedboxes["sb1"]
        old_link = bridge._jobs["ssh-sb1"] if bridge._jobs else None

        def moved(raw: dict[str, Any]) -> None:
            raw["seedboxes"][0]["remote_roots"].append(str(other_root))
            raw["seedboxes"][0]["max_concurrent"] = 2

        applied = await bridge.apply(config(env.raw, moved), confirm=False)

        assert applied["seedboxes"]["changed"] == ["sb1"]
        assert bridge.sessions["sb1"] is not old_session
        assert bridge.scheduler.limits.per_seedbox["sb1"] == 2
        assert old_link is not None and old_link.cancelling()  # its held link: the new one's
        assert bridge._jobs and bridge._jobs["ssh-sb1"] is not old_link
        assert item.state is ItemState.TRANSFERRING  # not cancelled
        await until(lambda: old_session._conn is not None, "the old session still open")
        await in_state(item, ItemState.DONE)
        assert digest_tree(env.library / "other" / "Big.mkv") == digest_tree(big)
        assert item.attempts == 1
        # The old session closed once its last attempt ended; its SFTP pool let go.
        await until(lambda: not bridge.live._retiring, "the old parts closed")
        assert old_session._conn is None
        assert old_config not in bridge.sftp._idle
        # The next completion is read with the new settings: a root the old ones lacked.
        await complete(env, "sb1", later)
        landed = await in_state(await item_of(bridge, later), ItemState.DONE)
        assert landed.seedbox == "sb1"
        assert digest_tree(env.library / "other" / "Later.mkv") == digest_tree(later)


async def test_sections_read_once_at_start_are_said_to_need_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        bridge = env.bridge
        session = bridge.sessions["sb1"]

        def elsewhere(raw: dict[str, Any]) -> None:
            raw["transfers"]["max_attempts"] = 7
            raw["history_retention"] = 3600

        applied = await bridge.apply(config(env.raw, elsewhere), confirm=False)

        assert applied == {
            "routing": False,
            "arr": False,
            "home_clients": False,
            "dispatch": False,
            "seedboxes": {"added": [], "changed": [], "removed": []},
            "unconfigured": [],
            "restart_required": ["history_retention", "transfers"],
        }
        assert bridge.config.transfers.max_attempts == 2  # still what it started with
        assert bridge.sessions["sb1"] is session  # nothing rebuilt


def test_what_changes_is_told_apart_without_a_bridge(tmp_path: Path, sshd: SshServer) -> None:
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key, known_hosts=sshd.known_hosts
    )
    del raw["classic"]["seedbox"]  # classic mode off: by default it would use the first
    sb2 = {**raw["seedboxes"][0], "id": "sb2", "remote_roots": ["/srv/b"]}
    both = config(raw, lambda r: r["seedboxes"].append(sb2))
    only_sb2 = config(raw, lambda r: r.update(seedboxes=[sb2]))
    moved = config(raw, lambda r: r["destinations"].update(tv=str(tmp_path / "elsewhere")))

    found = changes(both, only_sb2)
    assert (found.removed, found.added, found.changed) == (("sb1",), (), ())
    assert found.restart_required == () and found.routing is False
    assert found.gone_destinations == frozenset()
    # A destination at another path is gone for the items routed to the old one.
    assert changes(parse_config(copy.deepcopy(raw)), moved).gone_destinations == {"tv"}
    renamed = config(raw, lambda r: r["bridge"].update(name="Other"))
    assert changes(parse_config(copy.deepcopy(raw)), renamed).restart_required == ("bridge",)


async def test_a_client_added_changed_and_removed_live_is_polled_as_configured(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    with QBittorrent(tmp_path / "qbt") as qbt:
        async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
            bridge = env.bridge
            assert not bridge.has_job("clients")  # no seedbox has a client yet
            client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                      "password": qbt.password, "poll_interval": 1}  # fmt: skip
            sb2 = second_seedbox(env, tmp_path, client=client, reconcile={"interval": 0})
            await bridge.apply(config(env.raw, lambda r: r["seedboxes"].append(sb2)), confirm=False)

            # The first client brings the client loops; it is polled at once.
            assert bridge.has_job("clients") and bridge.has_job("requests")
            await until(lambda: bridge.monitor.status["sb2"].reachable, "sb2's client polled")
            assert bridge.state().seedboxes["sb2"].client is not None

            wrong = {**sb2, "client": {**client, "password": "not-the-password"}}
            applied = await bridge.apply(
                config(env.raw, lambda r: r["seedboxes"].append(wrong)), confirm=False
            )
            assert applied["seedboxes"]["changed"] == ["sb2"]
            # A fresh status, then the new client's answer: its login is refused.
            status = bridge.monitor.status["sb2"]
            assert status.reachable is None
            await until(lambda: status.reachable is False, "the new client's login refused")

            await bridge.apply(config(env.raw, lambda r: None), confirm=False)
            assert "sb2" not in bridge.monitor.status and "sb2" not in bridge.clients
            await asyncio.sleep(1.5)  # a poll interval: the monitor goes on without it
            assert bridge.has_job("clients") and not bridge.failed
