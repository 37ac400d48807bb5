"""The test of a seedbox's torrent client: the adapter the bridge would use (clients/),
asked for its stats (which logs in) and its version, through the seedbox's SSH link for
rTorrent's `scgi+ssh://`. Nothing is added or changed on the client."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import asyncssh
import voluptuous as vol

from ..clients import make_client
from ..clients.base import ClientError, ClientErrorKind, ManagedTorrentClient
from ..clients.rtorrent_transport import SshLink
from ..config.loader import client_config, read_secret_keys
from ..config.model import ClientConfig, Config
from ..config.schema import CLIENT_SCHEMA
from .base import ProbeError, foreign_secret_files, invalid, reference, relative, schema_lines
from .ssh import WHERE, SshTarget, open_connection, ssh_target

CODES = {
    ClientErrorKind.AUTH: "auth_failed",
    ClientErrorKind.UNREACHABLE: "unreachable",
    # it answered, but not as the client type said it would (or too old a version)
    ClientErrorKind.REFUSED: "unsupported",
    ClientErrorKind.NOT_FOUND: "unsupported",
}
SEEDBOX_KEY = "seedbox"  # in a client value: the seedbox whose SSH link reaches the client


@dataclass(frozen=True, slots=True)
class ClientTarget:
    """A torrent client to test, and the seedbox whose SSH link reaches it (None: the
    client is reached directly)."""

    client: ClientConfig
    ssh: SshTarget | None


def _over_ssh(client: ClientConfig) -> bool:
    return client.url.startswith("scgi+ssh://")


def client_target(value: dict[str, Any], config: Config) -> ClientTarget:
    """The client a `config_test` value gives (a seedbox's `client` mapping) or names
    (`{"id": <seedbox>}`: that seedbox's client in the running configuration). A client
    over SSH also needs `seedbox` in the value: a seedbox id, or a seedbox's settings."""
    ident = reference(value)
    if ident is not None:
        target = ssh_target(value, config)
        if target.seedbox.client is None:
            raise ProbeError("not_found", f"seedbox {ident!r} has no torrent client")
        client = target.seedbox.client
        return ClientTarget(client, target if _over_ssh(client) else None)
    raw = copy.deepcopy(value)
    seedbox = raw.pop(SEEDBOX_KEY, None)
    errors: list[str] = []
    if foreign := foreign_secret_files(raw, ("password",), config.data_dir):
        raise invalid(foreign)
    read_secret_keys(WHERE, raw, ("password",), errors)
    try:
        data = CLIENT_SCHEMA(raw)
    except vol.Invalid as err:
        raise invalid([*relative(errors, WHERE), *schema_lines(err)]) from None
    if errors:
        raise invalid(relative(errors, WHERE))
    client = client_config(data)
    if not _over_ssh(client):
        return ClientTarget(client, None)
    if not isinstance(seedbox, str | dict):
        raise invalid(
            [
                f"{SEEDBOX_KEY}: scgi+ssh:// goes through the seedbox's SSH link: give the "
                "seedbox's id, or its settings"
            ]
        )
    try:
        link = ssh_target({"id": seedbox} if isinstance(seedbox, str) else seedbox, config)
    except ProbeError as err:
        if err.code != "invalid":
            raise
        raise invalid(f"{SEEDBOX_KEY}.{line}" for line in err.detail["errors"]) from None
    return ClientTarget(client, link)


async def probe_client(target: ClientTarget) -> dict[str, Any]:
    """Stats (free space, torrents) and version, as the bridge's monitor reads them."""
    async with contextlib.AsyncExitStack() as stack:
        link: SshLink | None = None
        if target.ssh is not None:
            link = _held(await stack.enter_async_context(await open_connection(target.ssh)))
        adapter = make_client(target.client, ssh=link)
        stack.push_async_callback(adapter.close)
        try:
            stats = await adapter.stats()
            version = await adapter.version() if isinstance(adapter, ManagedTorrentClient) else None
        except ClientError as err:
            raise ProbeError(CODES[err.kind], str(err), type=target.client.type) from None
    return {
        "type": target.client.type,
        "version": version,
        "free_space": stats.free_space,
        "torrents": stats.torrents,
        "active_downloads": stats.active_downloads,
    }


def _held(conn: asyncssh.SSHClientConnection) -> SshLink:
    """The probe's own connection as the adapter takes its SSH link."""

    async def link() -> asyncssh.SSHClientConnection:
        return conn

    return link
