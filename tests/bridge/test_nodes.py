"""Torrent-client nodes against a real qbittorrent-nox: stats in the bridge's state,
reconciliation of completions no event announced, the rescan command; and the SSH link
that flushes the hook's outbox and forwards the broker to the seedbox."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.clients.base import Torrent
from q4d_bridge.clients.qbittorrent import QbittorrentClient
from q4d_bridge.clients.reconcile import SETTLE, missed_completions
from q4d_bridge.config.model import ClientConfig, ReconcileConfig
from q4d_bridge.models import ItemState

from tests.bridge.test_e2e import Env, digest_tree, make_file, running_bridge
from tests.bridge.test_integrity import add_torrent
from tests.bridge.test_verify import mktorrent
from tests.helpers.mqtt import publish
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer, free_port

pytestmark = pytest.mark.timeout(120)
NOW = 1_700_000_000.0


def torrent(**fields: Any) -> Torrent:
    base: dict[str, Any] = {
        "hash": "AB" * 20, "name": "Film", "state": "stalledUP", "progress": 1.0,
        "category": "movies", "tags": (), "content_path": "/r/Film", "size": 10,
        "completed_at": NOW - 60, "tracker": None,
    }  # fmt: skip
    return Torrent(**(base | fields))


def test_missed_completions_filters() -> None:
    config = ReconcileConfig(max_age=3600, categories=("movies", "tv"), tags=())
    candidates = [
        torrent(hash="01" * 20),
        torrent(hash="02" * 20, progress=0.5),  # still downloading
        torrent(hash="03" * 20, tags=("DONE",)),  # labelled by q4d already
        torrent(hash="04" * 20, category="music"),  # not a watched category
        torrent(hash="05" * 20, completed_at=NOW - 7200),  # older than max_age
        torrent(hash="06" * 20),  # the bridge has an item for it
        torrent(hash="07" * 20, category="QUEUED"),  # Q4D classic wrote the category
        torrent(hash="0a" * 20, tags=("sonarr", "q4d:FAILED")),  # q4d-labeld's tag
    ]
    events = missed_completions("sb1", "qbittorrent", candidates, {"06" * 20}, config, NOW)
    assert [(e.hash, e.event_id) for e in events] == [("01" * 20, f"reconcile-{'01' * 20}")]
    assert events[0].path == "/r/Film" and events[0].category == "movies"
    tagged = ReconcileConfig(max_age=3600, tags=("seedbox",))
    chosen = [torrent(hash="08" * 20, tags=("seedbox", "x")), torrent(hash="09" * 20)]
    assert [e.hash for e in missed_completions("sb1", "q", chosen, set(), tagged, NOW)] == [
        "08" * 20
    ]


def test_a_periodic_pass_leaves_fresh_completions_to_their_events() -> None:
    """A torrent that completed seconds ago has its hook's event on the way: a periodic
    pass (settle) leaves it alone instead of racing it; an asked-for pass does not."""
    config = ReconcileConfig(max_age=3600)
    fresh, old = torrent(hash="0b" * 20, completed_at=NOW - 5), torrent(hash="0c" * 20)
    periodic = missed_completions("sb1", "q", [fresh, old], set(), config, NOW, settle=SETTLE)
    assert [e.hash for e in periodic] == ["0c" * 20]
    asked = missed_completions("sb1", "q", [fresh, old], set(), config, NOW)
    assert [e.hash for e in asked] == ["0b" * 20, "0c" * 20]


async def command(env: Env, op: str, **args: Any) -> dict[str, Any]:
    request_id = f"{op}-{time.monotonic_ns()}"
    payload = json.dumps({"id": request_id, "op": op, "args": args}).encode()
    await publish(env.port, [("q4d/bridge/test/command", payload)])
    results = await env.recorder.wait_for(
        lambda: [
            m.json()
            for m in env.recorder.on("q4d/bridge/test/command/result")
            if m.json()["id"] == request_id
        ],
        60,
        f"result of {op}",
    )
    return results[0]


async def seeded(qbt: QBittorrent, remote: Path, name: str, made: Path, seed: int) -> str:
    """A torrent whose data is on the seedbox, complete once qBittorrent checked it."""
    make_file(remote / name, 3 * 2**20, seed=seed)
    info_hash = mktorrent(remote / name, made / f"{name}.torrent").info_hash
    await add_torrent(qbt, made / f"{name}.torrent", remote)
    client = QbittorrentClient(
        ClientConfig("qbittorrent", qbt.url, qbt.username, qbt.password, verify_tls=True)
    )
    try:
        for _ in range(100):
            if any(t.hash == info_hash for t in await client.completed_torrents()):
                return info_hash
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise AssertionError(f"qBittorrent never completed {name}")


async def test_reconciliation_and_node_stats(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    made = tmp_path / "made"
    made.mkdir()
    with QBittorrent(tmp_path / "qbt") as qbt:
        client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                  "password": qbt.password, "poll_interval": 1}  # fmt: skip
        seedbox = {"client": client, "reconcile": {"interval": 0}}
        async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", seedbox=seedbox) as env:
            missed = await seeded(qbt, env.remote, "missed.mkv", made, 1)
            announced = await seeded(qbt, env.remote, "announced.mkv", made, 2)
            await env.complete("announced.mkv", announced)
            await env.wait_settled(1)
            # qBittorrent finishes checking the seeded data before it reports them complete.
            node = await env.recorder.wait_for(
                lambda: (n := env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"])["reachable"]
                and n["torrents"] == 2 and n,
                30, "node stats",
            )  # fmt: skip
            assert node["free_space"] > 0 and node["error"] is None
            # Only the torrent no event announced is enqueued, and only once.
            first = await command(env, "rescan")
            (enqueued,) = first["result"]["seedboxes"]["sb1"]["enqueued"]
            # In total too, for a UI to say "1 missed completion queued".
            assert (first["result"]["count"], first["result"]["names"]) == (1, ["missed.mkv"])
            await env.wait_settled(2)
            again = await command(env, "rescan", seedbox="sb1")
            assert again["result"]["seedboxes"]["sb1"]["enqueued"] == []
            assert (again["result"]["count"], again["result"]["names"]) == (0, [])
            assert (await command(env, "rescan", seedbox="nope"))["error"]["code"] == "not_found"
            item = env.bridge.lifecycle.items[enqueued]
            assert (item.hash, item.state, item.event_id) == (
                missed, ItemState.DONE, f"reconcile-{missed}"
            )  # fmt: skip
            assert digest_tree(env.library / "other" / "missed.mkv") == digest_tree(
                env.remote / "missed.mkv"
            )
            # State shows the node as seen by the last poll; a dead client is reported.
            qbt.stop()
            await env.recorder.wait_for(
                lambda: env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"]["reachable"] is False,
                30, "node unreachable",
            )  # fmt: skip
            failed = await command(env, "rescan")
            assert "unreachable" in failed["result"]["seedboxes"]["sb1"]["error"]


async def test_node_with_wrong_password_is_reported(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    with QBittorrent(tmp_path / "qbt") as qbt:
        client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                  "password": "wrong", "poll_interval": 1}  # fmt: skip
        seedbox = {"client": client, "reconcile": {"interval": 0}}
        async with running_bridge(tmp_path, mosquitto, sshd, seedbox=seedbox) as env:
            node = await env.recorder.wait_for(
                lambda: (n := env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"])["reachable"]
                is False and n,
                30, "login failure",
            )  # fmt: skip
    assert "login failed" in node["error"]
    assert "wrong" not in node["error"]


async def test_no_client_means_no_node(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd) as env:
        assert env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"] is None
        result = await command(env, "rescan")
    assert result["result"]["seedboxes"]["sb1"]["error"] == "no torrent client configured"


async def test_ssh_link_flushes_the_outbox_and_forwards_the_broker(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """On every SSH connect the hook's outbox flush runs on the seedbox; with
    broker_forward the seedbox reaches the home broker through that connection."""
    marker = tmp_path / "flushed"
    hook = tmp_path / "hook bin" / "q4d-hook"
    hook.parent.mkdir()
    hook.write_text(f"#!/bin/sh\necho \"$1\" >> '{marker}'\n")
    hook.chmod(0o755)
    port = free_port()
    seedbox = {"hook_flush": f"'{hook}' flush", "broker_forward": {"port": port}}
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", seedbox=seedbox) as env:
        await env.recorder.wait_for(marker.exists, 30, "flush on connect")
        assert marker.read_text() == "flush\n"
        link = await env.recorder.wait_for(
            lambda: (ssh := env.bridge.state().as_dict()["seedboxes"]["sb1"]["ssh"])["connected"] and ssh,
            30, "link state",
        )  # fmt: skip
        assert link["error"] is None and link["checked_at"]
        # The "seedbox" publishes to its own loopback port: the bridge's SSH link
        # carries it home.
        make_file(env.remote / "tunnelled.mkv", 2**20, seed=7)
        path = str(env.remote / "tunnelled.mkv")
        event = {"v": 1, "event_id": "tunnel-1", "path": path, "hash": "7" * 40}
        await env.recorder.wait_for(lambda: port_open(port), 30, "forwarded port")
        await publish(port, [("q4d/seedbox/sb1/completed", json.dumps(event).encode())])
        await env.wait_settled(1)
        assert env.items_in(ItemState.DONE)
        # Read again once a payload landed there (off the event loop).
        destinations = await env.recorder.wait_for(
            lambda: (d := env.bridge.state().as_dict()["destinations"])["default"]["free_space"] and d,
            10, "free space of the destination",
        )  # fmt: skip
        assert destinations["tv"]["free_space"] is None  # not created yet
        # A dropped link is re-established, and the outbox is flushed again.
        for pid in sshd.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await env.recorder.wait_for(
            lambda: marker.read_text().count("flush") >= 2, 30, "flush after reconnect"
        )


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_the_state_says_when_the_ssh_link_drops_and_returns(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The seedbox's sshd goes away (its sessions killed, nothing listening) and comes
    back: the retained state says so each time, with nothing else changing to publish it
    (no items, no torrent client, the destinations' free space constant)."""
    topic = "q4d/bridge/test/state"

    def rest(state: dict[str, Any]) -> dict[str, Any]:
        """The state but the link and its time."""
        state = copy.deepcopy(state)
        del state["updated_at"], state["seedboxes"]["sb1"]["ssh"]
        return state

    with SshServer(tmp_path / "sshd") as sshd:
        async with running_bridge(
            tmp_path, mosquitto, sshd, engine="sftp", disk_free=lambda _path: 100 * 2**30
        ) as env:

            def states(since: int, connected: bool) -> list[dict[str, Any]]:
                published = [m.json() for m in env.recorder.on(topic)[since:]]
                return [
                    s for s in published if s["seedboxes"]["sb1"]["ssh"]["connected"] is connected
                ]

            await env.recorder.wait_for(lambda: states(0, True), 30, "the link up in the state")
            await asyncio.sleep(1.5)  # past the state's throttle: what follows is the link's
            before = len(env.recorder.on(topic))
            last = env.recorder.on(topic)[-1].json()
            sessions = sshd.session_pids()
            assert sessions, "the bridge holds no SSH session"
            await asyncio.to_thread(sshd.stop)
            for pid in sessions:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            down = await env.recorder.wait_for(
                lambda: states(before, False), 30, "the link down in the state"
            )
            assert rest(down[0]) == rest(last)
            after_down = len(env.recorder.on(topic))
            await asyncio.to_thread(sshd.start)
            up = await env.recorder.wait_for(
                lambda: states(after_down, True), 60, "the link up again in the state"
            )
            assert up[0]["seedboxes"]["sb1"]["ssh"]["error"] is None
            assert rest(up[0]) == rest(last)
            # the retained state is the link's present, as Home Assistant reads it on start
            assert env.recorder.on(topic)[-1].json()["seedboxes"]["sb1"]["ssh"]["connected"]
