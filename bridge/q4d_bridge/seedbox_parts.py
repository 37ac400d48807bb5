"""The bridge's per-seedbox parts, kept in the mappings every component was given at
construction (the runner's sessions, the scheduler's breakers and limits, the clients
the monitor polls…), and the one place a seedbox is added, replaced or removed in them.

Changes are synchronous, so no component ever sees a seedbox with half its parts; the
seedbox's configuration goes in last and out first, so intake accepts its completions
only while every part exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

from .clients import make_client
from .clients.base import ClientError, ClientErrorKind, TorrentClient
from .clients.rtorrent_transport import SshLink
from .config.model import SeedboxConfig, TransfersConfig
from .lifecycle.policy import Breaker
from .transfer.errors import ErrorCode, TransferError
from .transfer.remote import SeedboxSession
from .transfer.torrents import TorrentSource


def client_ssh_link(session: SeedboxSession) -> SshLink:
    """The seedbox's SSH connection as its torrent client's adapter takes it (rTorrent's
    `scgi+ssh://`): a failure to connect is the client's, `auth` when retrying cannot
    help (a login or host key refused), else `unreachable`, retried like any other."""

    async def connection() -> asyncssh.SSHClientConnection:
        try:
            return await session.connection()
        except TransferError as err:
            login = err.code in (ErrorCode.AUTH_FAILED, ErrorCode.HOST_KEY_MISMATCH)
            kind = ClientErrorKind.AUTH if login else ClientErrorKind.UNREACHABLE
            raise ClientError(f"{err.code.value}: {err.message}", kind) from err

    return connection


@dataclass(frozen=True, slots=True)
class SeedboxParts:
    """What the bridge runs for one seedbox, all built from its configuration."""

    config: SeedboxConfig
    session: SeedboxSession
    client: TorrentClient | None
    torrents: TorrentSource

    async def close(self) -> None:
        await self.session.close()
        if self.client is not None:
            await self.client.close()


class SeedboxRegistry:
    def __init__(
        self,
        seedboxes: dict[str, SeedboxConfig],
        transfers: TransfersConfig,
        *,
        on_link_change: Callable[[], None],
    ) -> None:
        """seedboxes: the running configuration's own mapping, which intake, the runner
        and the rest read; it changes here, with the parts."""
        self.seedboxes = seedboxes
        self.sessions: dict[str, SeedboxSession] = {}
        self.clients: dict[str, TorrentClient] = {}
        self.torrents: dict[str, TorrentSource] = {}
        self.breakers: dict[str, Breaker] = {}
        self.limits: dict[str, int] = {}  # the scheduler's per-seedbox limits
        self.ids: list[str] = []  # the retained status lists them
        self._transfers = transfers
        self._on_link_change = on_link_change
        for seedbox in list(seedboxes.values()):
            self.put(seedbox)

    def parts(self, seedbox_id: str) -> SeedboxParts:
        return SeedboxParts(
            self.seedboxes[seedbox_id],
            self.sessions[seedbox_id],
            self.clients.get(seedbox_id),
            self.torrents[seedbox_id],
        )

    def put(self, seedbox: SeedboxConfig) -> SeedboxParts | None:
        """Add a seedbox, or give it new parts built from new settings; returns the parts
        replaced, which the caller closes once nothing uses them (a running attempt)."""
        sb_id = seedbox.id
        old = self.parts(sb_id) if sb_id in self.sessions else None
        session = SeedboxSession(seedbox, on_link_change=self._on_link_change)
        client = (
            make_client(seedbox.client, ssh=client_ssh_link(session)) if seedbox.client else None
        )
        self.sessions[sb_id] = session
        if client is None:
            self.clients.pop(sb_id, None)
        else:
            self.clients[sb_id] = client
        self.torrents[sb_id] = TorrentSource(seedbox, session, client)
        # New settings, a fresh count: a breaker opened by a wrong password must not
        # hold back the corrected one.
        transfers = self._transfers
        self.breakers[sb_id] = Breaker(transfers.breaker_failures, transfers.breaker_cooldown)
        self.limits[sb_id] = seedbox.max_concurrent
        if sb_id not in self.ids:
            self.ids.append(sb_id)
        self.seedboxes[sb_id] = seedbox  # last: its completions are accepted from here on
        return old

    def drop(self, seedbox_id: str) -> SeedboxParts:
        """Remove a seedbox; returns its parts, for the caller to close."""
        old = self.parts(seedbox_id)
        del self.seedboxes[seedbox_id]  # first: nothing more of it is accepted
        del self.sessions[seedbox_id], self.torrents[seedbox_id]
        del self.breakers[seedbox_id], self.limits[seedbox_id]
        self.clients.pop(seedbox_id, None)
        self.ids.remove(seedbox_id)
        return old
