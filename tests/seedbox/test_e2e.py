"""The whole way, with every part real: a seeder and a "seedbox" qbittorrent-nox on
loopback, q4d-hook installed by install.sh into a temporary HOME and wired through
qBittorrent's WebUI API, q4d-labeld from that install, Mosquitto, and the bridge (in
process) fetching over sshd. A torrent completes on the seedbox; the hook's event
reaches the bridge; the payload lands byte-identical; the torrent ends up tagged
q4d:DONE in the seedbox's qBittorrent. Then the same with the broker down at completion
(the outbox), the bridge down (its persistent session) and the event lost altogether
(reconciliation with `rescan`)."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.models import FINISHED_STATES, ItemState

from tests.bridge.test_e2e import Env, digest_tree, running_bridge
from tests.bridge.test_nodes import command, port_open
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer, _stop_process, free_port
from tests.seedbox.support import COMPLETED, QbtApi, install_hook, make_torrent, torrent_hash

pytestmark = pytest.mark.timeout(180)

HOSTILE = "Show \"quoted\" 'single' $(touch pwned) `touch pwned2` é ☃ 東京.mkv"
DONE_TAGS = {"q4d:DONE"}


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Torrent:
    name: str
    hash: str
    raw: bytes
    data: Path


@dataclass
class Rig:
    tmp: Path
    broker: Mosquitto
    sshd: SshServer
    seeder: QBittorrent
    box: QBittorrent
    home: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def remote(self) -> Path:
        """Where the seedbox qBittorrent saves: the bridge's remote root."""
        return self.tmp / "seedbox"

    @property
    def hook(self) -> Path:
        return self.home / ".local" / "bin" / "q4d-hook"

    @property
    def outbox(self) -> Path:
        return self.home / ".local" / "state" / "q4d" / "outbox"

    @property
    def hook_log(self) -> Path:
        return self.home / ".local" / "state" / "q4d" / "hook.log"

    def api(self, qbt: QBittorrent) -> QbtApi:
        return QbtApi(qbt.url, qbt.username, qbt.password)

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home)}

    def install(self, broker_port: int) -> None:
        install_hook(self.home, self.tmp, self.box, broker_port)

    def bridge(self, **extra: Any) -> AbstractAsyncContextManager[Env]:
        client = {"type": "qbittorrent", "url": self.box.url, "username": self.box.username,
                  "password": self.box.password, "poll_interval": 1}  # fmt: skip
        seedbox = {
            # The default is `~/.local/bin/q4d-hook flush`; sshd's user here is not the
            # HOME the hook was installed into.
            "hook_flush": f"{shlex.quote(str(self.hook))} flush",
            "client": client,
            "reconcile": {"interval": 0},
            **extra,
        }
        return running_bridge(self.tmp, self.broker, self.sshd, engine="sftp", seedbox=seedbox)

    def torrent(self, name: str, seed: int) -> Torrent:
        """A payload the seeder has and seeds."""
        data = self.tmp / "seed-data" / f"t{seed}" / name
        data.parent.mkdir(parents=True)
        data.write_bytes(os.urandom(768 * 1024 + seed))
        raw = make_torrent(data, self.tmp / f"t{seed}.torrent")
        info_hash = torrent_hash(raw)
        self.api(self.seeder).add(raw, data.parent)
        return Torrent(name, info_hash, raw, data)

    async def download(self, torrent: Torrent) -> None:
        """The seedbox downloads it from the seeder, offline: its peer is given by hand."""
        seeder, box = self.api(self.seeder), self.api(self.box)
        await until(lambda: seeder.info(torrent.hash).get("progress") == 1, 30, "the seeder")
        box.add(torrent.raw, self.remote)
        deadline = time.monotonic() + 60
        while box.info(torrent.hash).get("progress") != 1:
            assert time.monotonic() < deadline, "the seedbox never finished the download"
            if box.info(torrent.hash):
                box.add_peers(torrent.hash, f"127.0.0.1:{self.seeder.peer_port}")
            await asyncio.sleep(0.5)

    async def tagged_done(self, torrent: Torrent) -> None:
        box = self.api(self.box)
        await until(lambda: box.tags(torrent.hash) == DONE_TAGS, 30, "the q4d:DONE tag")

    def start_labeld(self) -> None:
        log = self.tmp / "labeld.log"
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(self.home / ".local" / "bin" / "q4d-labeld")],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        deadline = time.monotonic() + 15
        while "listening on" not in log.read_bytes()[offset:].decode(errors="replace"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

    def stop_labeld(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=15) == 0
        self.procs.clear()

    def hook_said(self, text: str) -> bool:
        return self.hook_log.exists() and text in self.hook_log.read_text()

    def flush(self) -> str:
        done = subprocess.run(
            [str(self.hook), "flush"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions across its own restart, as a real one does."""
    with Mosquitto(tmp_path / "broker", persistent=True) as mosquitto:
        yield mosquitto


@pytest.fixture
def rig(tmp_path: Path, broker: Mosquitto, sshd: SshServer) -> Iterator[Rig]:
    home = tmp_path / "home"
    home.mkdir()
    with QBittorrent(tmp_path / "seeder") as seeder, QBittorrent(tmp_path / "box") as box:
        made = Rig(tmp_path, broker, sshd, seeder, box, home)
        made.install(broker.port)
        made.remote.mkdir()
        try:
            yield made
        finally:
            for proc in made.procs:
                _stop_process(proc)


@pytest.fixture
async def labeld(rig: Rig) -> AsyncIterator[Rig]:
    rig.start_labeld()
    yield rig
    rig.stop_labeld()


async def landed(env: Env, torrent: Torrent) -> Any:
    """The bridge's item for the torrent, once done, with the payload checked."""

    def finished() -> list[Any]:
        items = [i for i in env.bridge.lifecycle.items.values() if i.hash == torrent.hash]
        return items if items and all(i.state in FINISHED_STATES for i in items) else []

    items = await env.recorder.wait_for(finished, 60, f"the item for {torrent.name}")
    assert [i.state for i in items] == [ItemState.DONE], [i.last_error for i in items]
    local = env.library / "other" / torrent.name
    assert digest_tree(local) == digest_tree(torrent.data)
    return items[0]


async def test_a_completion_lands_at_home_and_is_tagged_done(labeld: Rig) -> None:
    rig = labeld
    torrent = rig.torrent(HOSTILE, 1)
    async with rig.bridge() as env:
        await rig.download(torrent)
        item = await landed(env, torrent)
        await rig.tagged_done(torrent)
        (event,) = [m.json() for m in env.recorder.on(COMPLETED)]
    # The name went through qBittorrent's argv, the outbox, MQTT and the bridge intact.
    assert (event["name"], event["path"], event["hash"]) == (
        HOSTILE,
        str(rig.remote / HOSTILE),
        torrent.hash,
    )
    assert (item.name, item.remote_path) == (HOSTILE, str(rig.remote / HOSTILE))
    assert event["client"] == "qbittorrent" and event["size"] == torrent.data.stat().st_size
    for where in (rig.home, rig.tmp, Path.cwd()):
        assert not list(where.glob("pwned*"))
    assert not list(rig.outbox.glob("*.msg"))


async def test_broker_down_at_completion_then_delivered_exactly_once(rig: Rig) -> None:
    torrent = rig.torrent("Broker.Down.S01E01.mkv", 2)
    async with rig.bridge():
        pass  # the bridge has run before: the broker holds its session
    rig.broker.stop()
    await rig.download(torrent)
    # The hook could not publish: the event waits in the outbox.
    await until(
        lambda: rig.hook_said("left in the outbox for"),
        30,
        "the hook to give up on the broker",
    )
    assert len(list(rig.outbox.glob("*.msg"))) == 1
    rig.broker.start()
    rig.start_labeld()
    try:
        # On connecting, the bridge runs the hook's flush on the seedbox over SSH.
        async with rig.bridge() as env:
            item = await landed(env, torrent)
            await rig.tagged_done(torrent)
            assert len(env.recorder.on(COMPLETED)) == 1
            assert not env.recorder.events("duplicate")
            assert len(env.bridge.lifecycle.items) == 1
    finally:
        rig.stop_labeld()
    assert item.event_id.startswith("qbittorrent-")
    assert not list(rig.outbox.glob("*.msg"))
    assert rig.flush() == "sent 0, 0 left\n"


async def test_bridge_down_at_completion(labeld: Rig) -> None:
    rig = labeld
    async with rig.bridge():
        pass  # the bridge's persistent session now exists at the broker

    # The event reached the broker while the bridge was away: its session keeps it.
    kept = rig.torrent("Kept.By.The.Broker.mkv", 3)
    await rig.download(kept)
    await until(lambda: rig.hook_said("sent 1, 0 left"), 30, "the hook")
    async with rig.bridge() as env:
        item = await landed(env, kept)
        await rig.tagged_done(kept)
    assert item.event_id.startswith("qbittorrent-")

    # The event never reached the broker and its outbox file is lost: reconciliation
    # finds the completed torrent in qBittorrent.
    rig.broker.stop()
    lost = rig.torrent("Never.Announced.mkv", 4)
    await rig.download(lost)
    await until(lambda: list(rig.outbox.glob("*.msg")), 30, "the outbox file")
    await until(lambda: rig.hook_said("left in the outbox for"), 30, "the hook")
    for message in rig.outbox.glob("*.msg"):
        message.unlink()
    rig.broker.start()
    async with rig.bridge() as env:
        await until(lambda: env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"]["reachable"], 30,
                    "the node")  # fmt: skip
        result = await command(env, "rescan")
        (enqueued,) = result["result"]["seedboxes"]["sb1"]["enqueued"]
        await env.wait_settled(2, timeout=60)
        found = env.bridge.lifecycle.items[enqueued]
        assert (found.hash, found.state, found.event_id) == (
            lost.hash,
            ItemState.DONE,
            f"reconcile-{lost.hash}",
        )
        assert digest_tree(env.library / "other" / lost.name) == digest_tree(lost.data)
        await rig.tagged_done(lost)
        assert rig.api(rig.box).tags(kept.hash) == DONE_TAGS


async def test_no_exposed_ports_through_the_bridges_ssh_link(rig: Rig) -> None:
    """broker_forward: the seedbox reaches no broker of its own; the hook and q4d-labeld
    use 127.0.0.1:PORT on the seedbox, which the bridge forwards home over SSH."""
    port = free_port()
    rig.install(port)  # the same install, re-run with the forwarded port
    torrent = rig.torrent("Through.The.Tunnel.mkv", 5)
    async with rig.bridge(broker_forward={"port": port}) as env:
        await until(lambda: port_open(port), 30, "the forwarded port")
        await asyncio.to_thread(rig.start_labeld)
        try:
            await rig.download(torrent)
            await landed(env, torrent)
            await rig.tagged_done(torrent)
        finally:
            await asyncio.to_thread(rig.stop_labeld)
    assert rig.hook_said("sent 1, 0 left")
