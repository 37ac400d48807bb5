"""The torrent-client test (`config_test` kind `client`) against a real
transmission-daemon: version, free space and torrents; a wrong password (not echoed);
a port nobody listens on; a value the schema refuses; the client of a configured
seedbox. And rTorrent's `scgi+ssh://` through a real sshd: the seedbox's SSH link is
tested first (an unpinned host key stops it), then the client behind it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge import probes
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.probes import ProbeError

from tests.helpers.configs import bridge_config
from tests.helpers.services import LOOPBACK, SshServer, free_port
from tests.seedbox.support import RTorrent, Transmission, need

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Transmission]:
    need("transmission-daemon")
    with Transmission(tmp_path / "transmission") as running:
        yield running


def settings(daemon: Transmission, **changes: Any) -> dict[str, Any]:
    value = {"type": "transmission", "url": daemon.url, "username": daemon.username,
             "password": daemon.password}  # fmt: skip
    return {k: v for k, v in (value | changes).items() if v is not None}


def running_config(tmp_path: Path, sshd: SshServer, **seedbox: Any) -> Config:
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key,
        known_hosts=sshd.known_hosts, ssh_port=sshd.port, user=sshd.user,
    )  # fmt: skip
    raw["seedboxes"][0].update(seedbox)
    return parse_config(raw)


def steady(found: dict[str, Any]) -> dict[str, Any]:
    """The findings but free space, which other processes change between two tests."""
    return {k: v for k, v in found.items() if k != "free_space"}


async def failure(value: Any, config: Config, **kw: Any) -> ProbeError:
    with pytest.raises(ProbeError) as err:
        await probes.run("client", value, config, **kw)
    return err.value


async def test_transmission(
    tmp_path: Path, sshd: SshServer, daemon: Transmission, caplog: Any
) -> None:
    config = running_config(tmp_path, sshd, client=settings(daemon))
    found = await probes.run("client", settings(daemon), config)
    assert found["type"] == "transmission"
    assert found["version"].split()[0].count(".") >= 1  # e.g. "4.0.6 (38c164933e)"
    assert isinstance(found["free_space"], int) and found["free_space"] > 0
    assert (found["torrents"], found["active_downloads"]) == (0, 0)
    assert steady(await probes.run("client", {"id": "sb1"}, config)) == steady(found)

    wrong = "a-wrong-password"
    err = await failure(settings(daemon, password=wrong), config)
    assert (err.code, err.message) == (
        "auth_failed",
        "Transmission login failed (check username/password)",
    )
    assert wrong not in repr(err.detail) and wrong not in caplog.text

    err = await failure(
        settings(daemon, url=f"http://{LOOPBACK}:{free_port()}/transmission/rpc"), config
    )
    assert err.code == "unreachable", err.message


async def test_a_value_the_schema_refuses(tmp_path: Path, sshd: SshServer) -> None:
    config = running_config(tmp_path, sshd)
    err = await failure({"type": "utorrent", "url": "ftp://x"}, config)
    assert err.code == "invalid"
    assert err.detail["fields"] == {
        "type": "value must be one of ['deluge', 'qbittorrent', 'rtorrent', 'transmission']"
    }
    err = await failure({"type": "transmission", "url": "ftp://x"}, config)
    assert err.detail["errors"] == ["url: must be an http(s) URL"]
    err = await failure({"id": "sb1"}, config)
    assert (err.code, err.message) == ("not_found", "seedbox 'sb1' has no torrent client")
    err = await failure({"type": "rtorrent", "url": "scgi+ssh:///run/rt.sock"}, config)
    assert err.detail["fields"] == {
        "seedbox": "scgi+ssh:// goes through the seedbox's SSH link: give the seedbox's id, "
        "or its settings"
    }
    err = await failure(
        {"type": "rtorrent", "url": "scgi+ssh:///run/rt.sock", "seedbox": {"host": "h"}}, config
    )
    assert err.detail["errors"] == ["seedbox.user: required key not provided"]


async def test_rtorrent_through_the_seedbox_ssh_link(tmp_path: Path, sshd: SshServer) -> None:
    need("rtorrent")
    rt = RTorrent(tmp_path / "rt", unix=True)
    rt.start()
    try:
        client = {"type": "rtorrent", "url": f"scgi+ssh://{rt.socket}"}
        config = running_config(tmp_path, sshd, client=client)
        found = await probes.run("client", {"id": "sb1"}, config)
        assert found["type"] == "rtorrent" and found["version"]
        assert steady(await probes.run("client", {**client, "seedbox": "sb1"}, config)) == steady(
            found
        )
        seedbox = {"host": LOOPBACK, "port": sshd.port, "user": sshd.user,
                   "key": str(sshd.client_key)}  # fmt: skip
        err = await failure({**client, "seedbox": seedbox}, config)
        assert err.code == "host_key_unknown" and err.detail["host_key"] == sshd.host_public_key
        seedbox["host_key"] = sshd.host_public_key
        assert steady(await probes.run("client", {**client, "seedbox": seedbox}, config)) == steady(
            found
        )
        rt.stop()
        err = await failure({**client, "seedbox": seedbox}, config)
        assert err.code == "unreachable", err.message
    finally:
        rt.stop()
