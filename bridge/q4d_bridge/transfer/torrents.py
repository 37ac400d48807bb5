"""Where a payload's .torrent comes from: the torrent client's API (qBittorrent
`torrents/export`; Transmission, Deluge and rTorrent refuse, naming where their own
copy is) or a configured path on the seedbox (a client's session folder). A .torrent
that cannot be had, or that is not the payload's, means no piece check: the size check
still stands, and the reason is logged."""

from __future__ import annotations

import logging
import re

from ..clients.base import ClientError, ClientErrorKind, TorrentClient
from ..config.model import SeedboxConfig
from .errors import TransferError
from .remote import SeedboxSession
from .verify import TorrentError, TorrentInfo

_LOGGER = logging.getLogger(__name__)
MAX_TORRENT_BYTES = 32 * 1024 * 1024
_V1_HASH = re.compile(r"^[0-9a-fA-F]{40}$")


class TorrentSource:
    def __init__(
        self, seedbox: SeedboxConfig, session: SeedboxSession, client: TorrentClient | None
    ) -> None:
        self.seedbox = seedbox
        self.session = session
        self.client = client

    @property
    def configured(self) -> bool:
        return self.client is not None or self.seedbox.torrent_file is not None

    async def metainfo(self, info_hash: str | None) -> bytes | None:
        """The torrent's .torrent file as the seedbox has it; None when it cannot be had."""
        if not self.configured or info_hash is None or not _V1_HASH.fullmatch(info_hash):
            return None  # no v1 info-hash: nothing to look up or to check against
        return await self._fetch(info_hash)

    async def info(self, info_hash: str | None) -> TorrentInfo | None:
        data = await self.metainfo(info_hash)
        if data is None or info_hash is None:
            return None
        try:
            torrent = TorrentInfo.from_bytes(data)
        except TorrentError as err:
            _LOGGER.warning("torrent %s: unusable .torrent (%s); size check only", info_hash, err)
            return None
        if torrent.info_hash != info_hash.lower():
            _LOGGER.warning(
                "torrent %s: the .torrent found has info-hash %s; size check only",
                info_hash, torrent.info_hash,
            )  # fmt: skip
            return None
        return torrent

    async def _fetch(self, info_hash: str) -> bytes | None:
        if self.client is not None:
            try:
                return await self.client.export_torrent(info_hash.lower())
            except ClientError as err:
                # A client that cannot export at all (Deluge, rTorrent) says so each time; with
                # torrent_file set, that is expected and not worth a warning.
                has_file = self.seedbox.torrent_file is not None
                expected = err.kind is ClientErrorKind.REFUSED and has_file
                level = logging.DEBUG if expected else logging.WARNING
                _LOGGER.log(level, "torrent %s: export failed: %s", info_hash, err)
        if self.seedbox.torrent_file is not None:
            path = self.seedbox.torrent_file.format(hash=info_hash.lower(), HASH=info_hash.upper())
            try:
                return await self.session.read_file(path, MAX_TORRENT_BYTES)
            except TransferError as err:
                _LOGGER.warning("torrent %s: cannot read %s: %s", info_hash, path, err.message)
        return None
