"""A torrent client at home that takes over a landed payload (postprocess/handoff.py):
the .torrent added stopped, with the landed payload's parent folder as its save path;
a forced recheck; its progress and the pieces it lacks; then its category and tags, and
a start, so that it seeds what it checked.

qBittorrent and Transmission, on the seedbox adapters (their sessions, retries and
error kinds). The torrent stays stopped until the hand-off has confirmed 100 %: a
started torrent that lacks pieces would fetch them from its swarm into the library.
Nothing here deletes anything.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aioqbt.api.torrents import AddFormBuilder
from aioqbt.api.types import ContentLayout, PieceState
from aioqbt.client import APIClient

from ..config.model import ClientConfig, HomeClientConfig
from .base import ClientError, ClientErrorKind, NewTorrent
from .metainfo import MetainfoError, parse_new_torrent
from .qbittorrent import ADDED_WAIT, QbittorrentClient, _present, torrent_id
from .transmission import STATUS, TransmissionClient

Sleep = Callable[[float], Awaitable[None]]
QBT_CHECKING = frozenset({"checkingUP", "checkingDL", "checkingResumeData", "moving"})
QBT_FAILED = frozenset({"error", "missingFiles"})
TR_CHECKING = (1, 2)  # check_wait, checking


@dataclass(frozen=True, slots=True)
class HomeTorrent:
    hash: str
    state: str  # the client's own word for it, for messages
    checking: bool  # waiting for its check, or being checked
    progress: float  # 0.0 .. 1.0 of what it wants
    error: str | None  # the client's own error (files missing, disk), if any


class HomeClient(Protocol):
    kind: str  # for messages: "qBittorrent", "Transmission"
    # How long a recheck may take to show in what the client reports: until then a
    # torrent that is not checking may still show the figures from before it.
    settle: float

    def hash_of(self, torrent_file: bytes) -> str:
        """The hash the client lists the torrent under; REFUSED if it cannot take it."""
        ...

    async def add_stopped(self, torrent_file: bytes, save_path: str) -> str:
        """Add it stopped, its files in save_path as the torrent lays them out; one it
        has already is left as it is. Returns its hash."""
        ...

    async def status(self, info_hash: str) -> HomeTorrent | None: ...

    async def recheck(self, info_hash: str) -> None: ...

    async def missing_pieces(self, info_hash: str) -> list[int]: ...

    async def label(self, info_hash: str, category: str | None, tags: list[str]) -> None: ...

    async def start(self, info_hash: str) -> None: ...

    async def close(self) -> None: ...


def make_home_client(config: HomeClientConfig, *, sleep: Sleep = asyncio.sleep) -> HomeClient:
    client = ClientConfig(
        type=config.type,
        url=config.url,
        username=config.username,
        password=config.password,
        verify_tls=config.verify_tls,
    )
    if config.type == "qbittorrent":
        return HomeQbittorrent(client, sleep=sleep)
    if config.type == "transmission":
        return HomeTransmission(client, sleep=sleep)
    raise ValueError(f"no home adapter for torrent client {config.type!r}")


class HomeQbittorrent(QbittorrentClient):
    kind = "qBittorrent"
    settle = 3.0  # it refreshes torrents' status every 1.5 s

    def hash_of(self, torrent_file: bytes) -> str:
        info_hash = torrent_id(NewTorrent(torrent_file=torrent_file))
        if info_hash is None:
            raise ClientError("not a .torrent file qBittorrent could take", ClientErrorKind.REFUSED)
        return info_hash

    async def add_stopped(self, torrent_file: bytes, save_path: str) -> str:
        info_hash = self.hash_of(torrent_file)

        async def attempt(api: APIClient) -> None:
            if await _present(api, [info_hash]):
                return
            form = (
                AddFormBuilder.with_client(api)
                .include_file(torrent_file, "q4d.torrent")
                .savepath(save_path)
                # The files where they landed, whatever the client's defaults: no
                # category path, no subfolder of its own, no separate incomplete folder.
                .auto_tmm(False)
                .content_layout(ContentLayout.ORIGINAL)
                .use_download_path(False)
                .stopped(True)
                .build()
            )
            await api.torrents.add(form)
            # It is listed once loaded; a retry that found it missing would add it twice.
            for pause in ADDED_WAIT:
                if await _present(api, [info_hash]):
                    return
                await asyncio.sleep(pause)
            raise ClientError(f"qBittorrent did not list torrent {info_hash} after adding it")

        await self._retried(f"add {info_hash}", attempt)
        return info_hash

    async def status(self, info_hash: str) -> HomeTorrent | None:
        infos = await self._retried(
            f"torrent {info_hash}", lambda api: api.torrents.info(hashes=[info_hash])
        )
        if not infos:
            return None
        info = infos[0]
        state = str(info.state)
        return HomeTorrent(
            hash=info_hash,
            state=state,
            checking=state in QBT_CHECKING,
            progress=info.progress,
            error=state if state in QBT_FAILED else None,
        )

    async def recheck(self, info_hash: str) -> None:
        await self._retried("recheck", lambda api: api.torrents.recheck([info_hash]))

    async def missing_pieces(self, info_hash: str) -> list[int]:
        states = await self._retried(
            f"piece states of {info_hash}", lambda api: api.torrents.piece_states(info_hash)
        )
        return [i for i, state in enumerate(states) if state != PieceState.DOWNLOADED]

    async def label(self, info_hash: str, category: str | None, tags: list[str]) -> None:
        if category:
            await self.set_category([info_hash], category)
        if tags:
            await self.add_tags([info_hash], tags)

    async def start(self, info_hash: str) -> None:
        await self.resume([info_hash])


class HomeTransmission(TransmissionClient):
    kind = "Transmission"
    settle = 1.0  # it queues a verify at once; one more look makes sure

    def hash_of(self, torrent_file: bytes) -> str:
        try:
            v1 = parse_new_torrent(NewTorrent(torrent_file=torrent_file)).v1
        except MetainfoError as err:
            raise ClientError(f"not a .torrent file: {err}", ClientErrorKind.REFUSED) from err
        if v1 is None:
            raise ClientError(
                "Transmission takes v1 and hybrid torrents, not v2-only ones",
                ClientErrorKind.REFUSED,
            )
        return v1

    async def add_stopped(self, torrent_file: bytes, save_path: str) -> str:
        # Transmission lays a torrent out as it is (its name as the root folder), and
        # answers an add of a torrent it has with that torrent.
        await self.add(NewTorrent(torrent_file=torrent_file, save_path=save_path, paused=True))
        return self.hash_of(torrent_file)

    async def status(self, info_hash: str) -> HomeTorrent | None:
        fields = ["hashString", "status", "percentDone", "error", "errorString"]
        answer = await self._rpc.call("torrent-get", {"ids": [info_hash], "fields": fields})
        found = answer.get("torrents") or []
        if not found:
            return None
        torrent = found[0]
        status = torrent.get("status")
        return HomeTorrent(
            hash=info_hash,
            state=STATUS[status] if isinstance(status, int) and 0 <= status < len(STATUS) else "?",
            checking=status in TR_CHECKING,
            progress=float(torrent.get("percentDone") or 0.0),
            # 3: a local error (files missing, disk); 1 and 2 are tracker warnings
            error=str(torrent.get("errorString")) if torrent.get("error") == 3 else None,
        )

    async def recheck(self, info_hash: str) -> None:
        await self._act("torrent-verify", [info_hash])

    async def missing_pieces(self, info_hash: str) -> list[int]:
        found = await self._existing([info_hash], ["hashString", "pieces", "pieceCount"])
        torrent = found[info_hash]
        try:
            bits = base64.b64decode(str(torrent.get("pieces") or ""), validate=True)
        except binascii.Error as err:
            raise ClientError(
                f"Transmission sent no piece bitfield: {err}", ClientErrorKind.REFUSED
            ) from err
        count = int(torrent.get("pieceCount") or 0)
        # the first piece in the highest bit of the first byte
        return [
            i for i in range(count) if i >= len(bits) * 8 or not bits[i // 8] >> (7 - i % 8) & 1
        ]

    async def label(self, info_hash: str, category: str | None, tags: list[str]) -> None:
        if category:
            await self.set_category([info_hash], category)
        if tags:
            await self.add_tags([info_hash], tags)

    async def start(self, info_hash: str) -> None:
        await self.resume([info_hash])
