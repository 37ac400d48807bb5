"""rTorrent's SCGI socket on the seedbox, reached through the bridge's SSH connection to
it (`scgi+ssh://`): the adapter against a real rtorrent behind a real sshd, over a Unix
socket (direct-streamlocal) and a TCP port (direct-tcpip); the SSH link dropped, down or
refused; rTorrent down behind it; the URL forms config takes; and the bridge's node
stats and reconciliation over it."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from q4d_bridge.clients import make_client
from q4d_bridge.clients.base import ClientErrorKind, NewTorrent
from q4d_bridge.clients.rtorrent import RtorrentClient
from q4d_bridge.clients.rtorrent_transport import SshScgiTransport
from q4d_bridge.config.loader import ConfigError, parse_config
from q4d_bridge.config.model import ClientConfig
from q4d_bridge.models import ItemState
from q4d_bridge.seedbox_parts import client_ssh_link
from q4d_bridge.transfer.remote import SeedboxSession

from tests.bridge.test_client_rtorrent import Sleeps, _state, eventually, one, raises, single_file
from tests.bridge.test_client_rtorrent import daemon as rtorrent_daemon
from tests.bridge.test_e2e import digest_tree, make_file, running_bridge
from tests.bridge.test_nodes import command
from tests.helpers.configs import bridge_config
from tests.helpers.services import Mosquitto, SshServer, free_port
from tests.seedbox.support import RTorrent, make_torrent, need, torrent_hash

pytestmark = pytest.mark.timeout(120)


def ssh_url(rt: RTorrent) -> str:
    """The daemon's socket as the seedbox sees it (here, the same machine)."""
    return f"scgi+ssh://{rt.socket}" if rt.unix else f"scgi+ssh://127.0.0.1:{rt.port}"


def raw_config(tmp_path: Path, sshd: SshServer, url: str, **seedbox: Any) -> dict[str, Any]:
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key,
        known_hosts=sshd.known_hosts, ssh_port=sshd.port, user=sshd.user,
    )  # fmt: skip
    raw["seedboxes"][0].update(client={"type": "rtorrent", "url": url}, **seedbox)
    return raw


class Link:
    """The bridge's link (client_ssh_link) to a SeedboxSession, counting its uses."""

    def __init__(self, session: SeedboxSession) -> None:
        self.session = session
        self.link = client_ssh_link(session)
        self.calls = 0

    async def __call__(self) -> asyncssh.SSHClientConnection:
        self.calls += 1
        return await self.link()


@contextlib.asynccontextmanager
async def over_ssh(
    tmp_path: Path, sshd: SshServer, url: str, sleep: Sleeps | None = None, **seedbox: Any
) -> AsyncIterator[tuple[RtorrentClient, Link]]:
    seedbox_config = parse_config(raw_config(tmp_path, sshd, url, **seedbox)).seedboxes["sb1"]
    assert seedbox_config.client is not None
    session = SeedboxSession(seedbox_config)
    link = Link(session)
    if sleep is None:
        client = make_client(seedbox_config.client, ssh=link)
        assert isinstance(client, RtorrentClient)
    else:
        client = RtorrentClient(seedbox_config.client, sleep=sleep, ssh=link)
    try:
        yield client, link
    finally:
        await client.close()
        await session.close()


# rtorrent over TCP and over a Unix socket, as the direct adapter's tests run it
daemon = rtorrent_daemon


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[SshServer]:
    """An sshd of this test's own, to stop and to cut (the session's is shared)."""
    with SshServer(tmp_path / "sshd") as server:
        yield server


def drop_connections(sshd: SshServer) -> None:
    """Every SSH connection to sshd killed, and gone, before the event loop runs again:
    the bridge's side has not noticed yet."""
    pids = sshd.session_pids()
    assert pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "sshd's connection processes did not exit"
        time.sleep(0.02)  # blocking, on purpose: the event loop must not see the drop yet


# --- through the seedbox's SSH link ---------------------------------------------------


async def test_version_torrents_add_pause_resume(
    daemon: RTorrent, sshd: SshServer, tmp_path: Path
) -> None:
    url = ssh_url(daemon)
    async with over_ssh(tmp_path, sshd, url) as (client, link):
        assert isinstance(client._transport, SshScgiTransport) and client.where == url
        assert re.fullmatch(r"\d+\.\d+\.\d+", await client.version())
        connection = await link.session.connection()
        assert await client.torrents() == []
        payload, raw = single_file(tmp_path / "seeded")
        h = torrent_hash(raw)
        await client.add(NewTorrent(torrent_file=raw, save_path=str(payload.parent), category="tv"))
        seeding = await eventually(lambda: _state(client, h, "seeding"), "seeding")
        assert (seeding.category, seeding.content_path) == ("tv", str(payload))
        await client.pause([h])
        assert (await one(client, h)).state == "stopped"
        await client.resume([h])
        assert (await one(client, h)).state == "seeding"
        stats = await client.stats()
        assert (stats.torrents, stats.active_downloads) == (1, 0) and stats.free_space
        await client.remove([h], delete_data=False)
        assert await client.torrents() == [] and payload.exists()
        # Every request asked the link: a channel each, all on the session's one connection.
        assert link.calls >= 8 and await link.session.connection() is connection


async def test_a_dropped_connection_is_unreachable_then_reconnected(
    own_sshd: SshServer, tmp_path: Path
) -> None:
    """The connection cut under the adapter: the request is `unreachable` and tried again
    (1 s), on a new connection the session makes; the stats, not retried, fail once and
    work on the next poll."""
    need("rtorrent")
    rt = RTorrent(tmp_path / "rt", unix=True)
    rt.start()
    slept = Sleeps()
    try:
        async with over_ssh(tmp_path, own_sshd, ssh_url(rt), slept) as (client, link):
            await client.version()
            first = await link.session.connection()
            drop_connections(own_sshd)
            assert not first.is_closed()  # not noticed yet
            assert re.fullmatch(r"\d+\.\d+\.\d+", await client.version())
            assert slept == [1] and first.is_closed()
            second = await link.session.connection()
            assert second is not first and not second.is_closed()

            drop_connections(own_sshd)
            message = await raises(ClientErrorKind.UNREACHABLE, client.stats())
            assert message == (
                f"rTorrent unreachable at {ssh_url(rt)}: the SSH connection to the seedbox "
                "dropped (SSH connection closed)"
            )
            assert (await client.stats()).torrents == 0 and slept == [1]
    finally:
        rt.stop()


async def test_sshd_down_is_unreachable_after_the_retries(
    own_sshd: SshServer, tmp_path: Path
) -> None:
    need("rtorrent")
    rt = RTorrent(tmp_path / "rt")
    rt.start()
    url = ssh_url(rt)
    slept = Sleeps()
    try:
        async with over_ssh(tmp_path, own_sshd, url, slept) as (client, link):
            await client.version()
            await link.session.close()
            own_sshd.stop()
            message = await raises(ClientErrorKind.UNREACHABLE, client.torrents())
            assert message.startswith(
                "rTorrent torrent list: gave up after 4 attempts: rTorrent unreachable at "
                f"{url}: no SSH link to the seedbox: connection: "
            )
            assert slept == [1, 2, 4] and link.calls == 1 + 4
            slept.clear()
            await raises(ClientErrorKind.UNREACHABLE, client.stats())  # the next poll retries
            assert slept == []
            # sshd back while a call waits to retry: the call goes through, reconnected.
            slept.then = {2: own_sshd.start}
            assert await client.torrents() == []
            assert slept == [1, 2]
    finally:
        rt.stop()


async def test_refused_logins_are_not_retried(sshd: SshServer, tmp_path: Path) -> None:
    """A host key that does not match (or a login refused): `auth`, at once."""
    slept = Sleeps()
    url = f"scgi+ssh://127.0.0.1:{free_port()}"
    known = {"known_hosts": str(sshd.wrong_known_hosts)}
    async with over_ssh(tmp_path, sshd, url, slept, **known) as (client, _):
        message = await raises(ClientErrorKind.AUTH, client.version())
    assert message.startswith(f"rTorrent at {url}: no SSH link to the seedbox: host_key_mismatch: ")
    assert slept == []


async def test_rtorrent_down_behind_the_link(
    sshd: SshServer, tmp_path: Path, daemon: RTorrent
) -> None:
    """sshd cannot connect to the socket: `unreachable`, retried, saying what to check."""
    daemon.stop()
    slept = Sleeps()
    url = ssh_url(daemon)
    async with over_ssh(tmp_path, sshd, url, slept) as (client, _):
        message = await raises(ClientErrorKind.UNREACHABLE, client.version())
    reason = "open failed" if daemon.unix else "Connection refused"
    assert message.startswith(
        f"rTorrent version: gave up after 4 attempts: rTorrent unreachable at {url}: the "
        f"seedbox's sshd could not connect to it ({reason}): is rTorrent running, with "
        f"network.scgi.open_{'local at this path' if daemon.unix else 'port on this port'}"
    )
    assert slept == [1, 2, 4]


class NoForwardingSshd(SshServer):
    def _write_config(self) -> None:
        super()._write_config()
        with self.config_path.open("a") as config:
            config.write("DisableForwarding yes\n")


async def test_forwarding_turned_off_on_the_seedbox(tmp_path: Path) -> None:
    """OpenSSH says so for a port (`refused`, not retried); for a Unix socket it says only
    "open failed", as for a missing socket, and the message names both."""
    slept = Sleeps()
    with NoForwardingSshd(tmp_path / "sshd") as sshd:
        url = f"scgi+ssh://127.0.0.1:{free_port()}"
        async with over_ssh(tmp_path, sshd, url, slept) as (client, _):
            message = await raises(ClientErrorKind.REFUSED, client.version())
        assert message == (
            f"rTorrent at {url}: the seedbox's sshd does not forward to it (open failed): see "
            "its AllowTcpForwarding, and the key's restrict or no-port-forwarding in "
            "authorized_keys"
        )
        assert slept == []
        async with over_ssh(tmp_path, sshd, "scgi+ssh:///nowhere.sock", slept) as (client, _):
            message = await raises(ClientErrorKind.UNREACHABLE, client.stats())
        assert "AllowStreamLocalForwarding" in message


def test_make_client_needs_the_link_for_scgi_ssh() -> None:
    config = ClientConfig("rtorrent", "scgi+ssh:///home/me/.rtorrent.sock", None, None, True)
    with pytest.raises(ValueError, match="needs the seedbox's SSH link"):
        make_client(config)


# --- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "extra", "error"),
    [
        ("scgi+ssh:///home/me/.rtorrent.sock", {}, None),
        ("scgi+ssh://127.0.0.1:5000", {}, None),
        ("scgi+ssh://127.0.0.1", {}, None),  # port 5000
        ("scgi+ssh://localhost:5000/", {}, None),  # a name the seedbox resolves, not us
        ("scgi+ssh://[::1]:5000", {}, None),
        ("scgi+ssh:127.0.0.1:5000", {}, "url: must be an http(s) URL (an XML-RPC endpoint such as https://host/RPC2), or scgi://host:port or scgi:///path/to.sock for rTorrent's SCGI socket, or scgi+ssh://… for one on the seedbox, through its SSH link"),
        ("ssh+scgi:///home/me/.rtorrent.sock", {}, "url: must be an http(s) URL"),
        ("scgi+ssh://127.0.0.1:nope", {}, "url: invalid port in 'scgi+ssh://127.0.0.1:nope'"),
        ("scgi+ssh://127.0.0.1:70000", {}, "url: invalid port in 'scgi+ssh://127.0.0.1:70000'"),
        ("scgi+ssh://127.0.0.1:5000/RPC2", {}, "url: expected scgi+ssh://host:port (port 5000 if left out), got 'scgi+ssh://127.0.0.1:5000/RPC2'"),
        ("scgi+ssh://me@127.0.0.1:5000", {}, "url: expected scgi+ssh://host:port (port 5000 if left out), got"),
        ("scgi+ssh://~/.rtorrent.sock", {}, "url: expected scgi+ssh:///absolute/path/to.sock, got 'scgi+ssh://~/.rtorrent.sock' (~ is not expanded: write the whole path)"),
        ("scgi+ssh:///~/.rtorrent.sock", {}, None),  # absolute, if odd: a folder named ~
        ("scgi+ssh://", {}, "url: expected scgi+ssh:///absolute/path/to.sock, got 'scgi+ssh://'"),
        ("scgi+ssh:///home/me/", {}, "url: expected scgi+ssh:///absolute/path/to.sock, got 'scgi+ssh:///home/me/'"),
        ("scgi+ssh:///home/me/.rtorrent.sock", {"username": "me"}, "username: SCGI has no login: username and password are for an http(s) url"),
        ("scgi+ssh://127.0.0.1:5000", {"password": "x"}, "password: SCGI has no login"),
        ("scgi://~/.rtorrent.sock", {}, "url: expected scgi:///absolute/path/to.sock, got 'scgi://~/.rtorrent.sock' (~ is not expanded"),
    ],
)  # fmt: skip
def test_scgi_ssh_urls_in_config(
    tmp_path: Path, sshd: SshServer, url: str, extra: dict[str, Any], error: str | None
) -> None:
    raw = raw_config(tmp_path, sshd, url)
    raw["seedboxes"][0]["client"].update(extra)
    if error is None:
        client = parse_config(copy.deepcopy(raw)).seedboxes["sb1"].client
        assert client is not None and client.url == url
        return
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert any(e.startswith(f"seedboxes[0].client.{error}") for e in info.value.errors), (
        info.value.errors
    )
    if url.startswith("scgi+ssh:127"):
        assert info.value.errors == [f"seedboxes[0].client.{error}"]


# --- the bridge -----------------------------------------------------------------------


async def test_bridge_node_and_reconciliation_through_ssh(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """rTorrent's Unix socket reachable only through the seedbox's SSH link: node stats in
    the state, a completion no event announced found by a rescan and landed; the link
    cut, the node comes back on its next polls."""
    need("rtorrent")
    rt = RTorrent(tmp_path / "rt", unix=True)
    rt.start()
    try:
        client = {"type": "rtorrent", "url": ssh_url(rt), "poll_interval": 1}
        seedbox = {"client": client, "reconcile": {"interval": 0},
                   "torrent_file": str(tmp_path / "rt" / "session" / "{HASH}.torrent")}  # fmt: skip
        async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", seedbox=seedbox) as env:
            make_file(env.remote / "missed.mkv", 3 * 2**20, seed=3)
            raw = make_torrent(env.remote / "missed.mkv", tmp_path / "missed.torrent")
            missed = torrent_hash(raw)
            adapter = env.bridge.clients["sb1"]
            assert isinstance(adapter, RtorrentClient)
            await adapter.add(NewTorrent(torrent_file=raw, save_path=str(env.remote)))
            await eventually(lambda: _state(adapter, missed, "seeding"), "seeding")

            def node() -> dict[str, Any]:
                state: dict[str, Any] = env.bridge.state().as_dict()
                return state["seedboxes"]["sb1"]["client"]  # type: ignore[no-any-return]

            stats = await env.recorder.wait_for(
                lambda: (n := node())["reachable"] and n["torrents"] == 1 and n, 30, "node stats"
            )
            assert stats["free_space"] > 0 and stats["error"] is None
            assert re.fullmatch(r"\d+\.\d+\.\d+", stats["version"])
            result = await command(env, "rescan")
            assert result["result"]["names"] == ["missed.mkv"]
            await env.wait_settled(1)
            item = next(iter(env.bridge.lifecycle.items.values()))
            assert (item.hash, item.state) == (missed, ItemState.DONE)
            assert digest_tree(env.library / "other" / "missed.mkv") == digest_tree(
                env.remote / "missed.mkv"
            )
            await env.recorder.wait_for(lambda: env.recorder.events("completed"), 10, "completed")
            assert env.recorder.events("completed")[0]["verified"] == "pieces"

            # The SSH link cut: the poll after reconnects through the session.
            checked = node()["checked_at"]
            for pid in sshd.session_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await env.recorder.wait_for(
                lambda: (n := node())["checked_at"] > checked + 1 and n["reachable"], 30,
                "the node reachable again",
            )  # fmt: skip
            rt.stop()
            down = await env.recorder.wait_for(
                lambda: (n := node())["reachable"] is False and n, 30, "node unreachable"
            )
            assert down["error"].startswith(f"rTorrent unreachable at {ssh_url(rt)}: ")
    finally:
        rt.stop()
