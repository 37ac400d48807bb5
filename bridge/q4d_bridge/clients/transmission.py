"""Transmission through its RPC (`POST …/transmission/rpc`, in transmission_rpc.py):
torrents, stats, labels, and adding and steering torrents.

Mapping onto the bridge's interface:

- **Names.** The classic method and field names (`torrent-get`, `hashString`): they
  serve Transmission 2.80 to 4.x; 4.1 (rpc-version 18) renamed them to snake_case and
  still accepts these.
- **Category and tags.** Transmission has labels only (3.00 and newer, rpc-version 16).
  A torrent's category is its first label and its tags are all its labels: what the
  seedbox hook sends for `TR_TORRENT_LABELS`, so that a torrent found by
  reconciliation is routed as its completion event would have been. `add_tags`
  appends labels, `set_category` puts the category first (the labels that were there
  stay), `set_category(None)` drops the first label.
- **.torrent export.** The RPC cannot send a .torrent file: `torrent-get` names it
  (`torrentFile`, a path on the seedbox), and the bridge reads the seedbox only over
  SSH. `export_torrent` is refused with that path in the message;
  `seedboxes[].torrent_file` reads it over SFTP.
- **Empty lists.** Transmission reads an empty or missing `ids` as "every torrent", so
  a call naming no torrent sends nothing, and every id sent is a checked v1 info-hash.

Failures are ClientErrors of a kind (`base.ClientErrorKind`); a request that cannot
reach the client is tried again after 1, 2 and 4 s (`retry.with_retries`), except the
stats the monitor polls: its next poll is the retry.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config.model import ClientConfig
from .base import ClientError, ClientErrorKind, ClientStats, NewTorrent, Torrent
from .transmission_rpc import TransmissionRpc

if TYPE_CHECKING:
    from .base import ManagedTorrentClient

LABELS_RPC_VERSION = 16  # Transmission 3.00
# tr_torrent_activity, the `status` field
STATUS = ("stopped", "check_wait", "checking", "download_wait", "downloading", "seed_wait",
          "seeding")  # fmt: skip
DOWNLOADING = 4
TORRENT_FIELDS = ["hashString", "name", "status", "percentDone", "labels", "downloadDir",
                  "sizeWhenDone", "doneDate", "addedDate", "trackers", "uploadRatio",
                  "secondsSeeding"]  # fmt: skip
# Transmission writes a name with these characters (or leading or trailing blanks,
# or a trailing dot) differently on disk than `name` says: such a torrent's content
# path comes from its file list.
_RENAMED_ON_DISK = re.compile(r'[<>:"\\|?*\x00-\x1f]|^\s|\s$|\.$')
_V1_HASH = re.compile(r"^[0-9a-f]{40}$")


class TransmissionClient:
    def __init__(
        self, config: ClientConfig, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self._rpc = TransmissionRpc(config, sleep=sleep)
        # (session id, version, rpc-version): asked again in a new session, which may be
        # a restarted, even upgraded, daemon
        self._version: tuple[str, str, int] | None = None

    async def version(self) -> str:
        """Transmission's version, e.g. `4.0.6 (38c164933e)`."""
        return (await self._session_version())[0]

    async def _session_version(self) -> tuple[str, int]:
        if self._version is None or self._version[0] != self._rpc.session_id:
            got = await self._rpc.call("session-get", {"fields": ["version", "rpc-version"]})
            rpc = got.get("rpc-version")
            self._version = (
                self._rpc.session_id,
                str(got.get("version", "")),
                rpc if isinstance(rpc, int) else 0,
            )
        return self._version[1:]

    async def torrents(self) -> list[Torrent]:
        found = (await self._rpc.call("torrent-get", {"fields": TORRENT_FIELDS})).get("torrents")
        listed = [t for t in found or [] if isinstance(t, dict) and t.get("hashString")]
        renamed = [
            t["hashString"] for t in listed if _RENAMED_ON_DISK.search(str(t.get("name") or ""))
        ]
        on_disk: dict[str, str] = {}
        if renamed:
            files = await self._rpc.call(
                "torrent-get", {"ids": renamed, "fields": ["hashString", "files"]}
            )
            for entry in files.get("torrents") or []:
                if entry.get("hashString") and entry.get("files"):
                    on_disk[entry["hashString"]] = str(entry["files"][0]["name"]).split("/")[0]
        return [_torrent(t, on_disk.get(t["hashString"])) for t in listed]

    async def completed_torrents(self) -> list[Torrent]:
        return [t for t in await self.torrents() if t.complete]

    async def stats(self) -> ClientStats:
        # Not retried: the monitor polls every seedbox in turn, and its next poll is the
        # retry; backing off here would hold up the other seedboxes' figures.
        session = await self._rpc.call(
            "session-get", {"fields": ["download-dir", "download-dir-free-space"]}, retried=False
        )
        figures = await self._rpc.call("session-stats", retried=False)
        statuses = (await self._rpc.call("torrent-get", {"fields": ["status"]}, retried=False)).get(
            "torrents"
        ) or []
        return ClientStats(
            free_space=await self._free_space(session),
            active_downloads=sum(1 for t in statuses if t.get("status") == DOWNLOADING),
            download_rate=int(figures.get("downloadSpeed") or 0),
            upload_rate=int(figures.get("uploadSpeed") or 0),
            torrents=int(figures.get("torrentCount") or len(statuses)),
        )

    async def _free_space(self, session: dict[str, Any]) -> int | None:
        """Free bytes in the download folder (`free-space`, 2.80+), else the session's
        `download-dir-free-space` (deprecated since 4.0)."""
        size: object = None
        directory = session.get("download-dir")
        if isinstance(directory, str) and directory:
            try:
                answer = await self._rpc.call("free-space", {"path": directory}, retried=False)
                size = answer.get("size-bytes")
            except ClientError as err:
                if err.kind is not ClientErrorKind.REFUSED:
                    raise
        if not isinstance(size, int) or size < 0:
            size = session.get("download-dir-free-space")
        return size if isinstance(size, int) and size >= 0 else None

    async def export_torrent(self, info_hash: str) -> bytes:
        """Refused: the RPC names the .torrent file but cannot send it. The refusal says
        where it is on the seedbox (one quick look-up, without retries)."""
        (wanted,) = _hashes([info_hash])
        try:
            answer = await self._rpc.request(
                "torrent-get", {"ids": [wanted], "fields": ["torrentFile"]}
            )
        except ClientError as err:
            raise ClientError(
                "Transmission's RPC cannot send .torrent files (set seedboxes[].torrent_file "
                f"to read them over SSH); and {err}",
                ClientErrorKind.REFUSED,
            ) from err
        found = answer.get("torrents") or []
        if not found:
            raise ClientError(f"Transmission has no torrent {wanted}", ClientErrorKind.NOT_FOUND)
        path = str(found[0].get("torrentFile") or "")
        folder, _, file = path.rpartition("/")
        hint = f" (e.g. {folder}/{{hash}}.torrent)" if file == f"{wanted}.torrent" else ""
        raise ClientError(
            f"Transmission's RPC cannot send .torrent files; this one is {path} on the "
            f"seedbox: set seedboxes[].torrent_file{hint} to read it over SSH",
            ClientErrorKind.REFUSED,
        )

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None:
        new = _labels(tags)
        if not new:
            return
        await self._relabel(hashes, lambda have: have + [t for t in new if t not in have])

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None:
        gone = set(_labels(tags))
        if not gone:
            return
        await self._relabel(hashes, lambda have: [t for t in have if t not in gone])

    async def set_category(self, hashes: list[str], category: str | None) -> None:
        first = _labels([category or ""])
        await self._relabel(
            hashes,
            lambda have: (first + [t for t in have if t not in first]) if first else have[1:],
        )

    async def _relabel(self, hashes: list[str], change: Callable[[list[str]], list[str]]) -> None:
        """Each torrent's labels through `change`; `torrent-set labels` replaces the list,
        so it is read first. Nothing changes if one of the torrents is missing."""
        current = await self._existing(hashes, ["hashString", "labels"], labels=True)
        for info_hash, torrent in current.items():
            have = [str(label) for label in torrent.get("labels") or []]
            wanted = change(have)
            if wanted != have:
                await self._rpc.call("torrent-set", {"ids": [info_hash], "labels": wanted})

    async def _existing(
        self, hashes: Iterable[str], fields: list[str], *, labels: bool = False
    ) -> dict[str, dict[str, Any]]:
        """The torrents asked for, by info-hash; NOT_FOUND naming any the client lacks."""
        wanted = _hashes(hashes)
        if not wanted:
            return {}
        if labels:
            await self._need_labels()
        answer = await self._rpc.call("torrent-get", {"ids": wanted, "fields": fields})
        found = {
            str(t["hashString"]).lower(): t
            for t in answer.get("torrents") or []
            if isinstance(t, dict) and t.get("hashString")
        }
        missing = [h for h in wanted if h not in found]
        if missing:
            raise ClientError(
                f"Transmission has no torrent {', '.join(missing)}", ClientErrorKind.NOT_FOUND
            )
        return found

    async def _need_labels(self) -> None:
        version, rpc = await self._session_version()
        if rpc < LABELS_RPC_VERSION:
            raise ClientError(
                f"Transmission {version} has no labels (categories and tags need "
                "Transmission 3.00 or newer)",
                ClientErrorKind.REFUSED,
            )

    async def add(self, torrent: NewTorrent) -> None:
        """Adds a magnet link or a .torrent file. With a category it is added paused,
        labelled, then started (unless `paused`): Transmission before 4.0 takes no labels
        in `torrent-add`, and a torrent whose data is there already could complete, and
        run the hook, before it had its category. A torrent the client has already is
        not an error: it gets the category (and is started unless `paused`)."""
        if (torrent.magnet is None) == (torrent.torrent_file is None):
            raise ClientError(
                "a torrent to add is a magnet link or a .torrent file, exactly one",
                ClientErrorKind.REFUSED,
            )
        arguments: dict[str, Any] = {"paused": torrent.paused}
        if torrent.magnet is not None:
            # `filename` also takes a URL or a path on the seedbox: only magnets here.
            if not torrent.magnet.startswith("magnet:?"):
                raise ClientError(
                    "not a magnet link (it starts with magnet:?)", ClientErrorKind.REFUSED
                )
            arguments["filename"] = torrent.magnet
        else:
            assert torrent.torrent_file is not None
            arguments["metainfo"] = base64.b64encode(torrent.torrent_file).decode("ascii")
        if torrent.save_path:
            arguments["download-dir"] = torrent.save_path
        category = _labels([torrent.category or ""])
        if category:
            await self._need_labels()
            arguments["paused"] = True
        added = await self._rpc.call("torrent-add", arguments)
        entry = added.get("torrent-added") or added.get("torrent-duplicate")
        if not isinstance(entry, dict) or not entry.get("hashString"):
            raise ClientError(
                "Transmission did not say which torrent it added", ClientErrorKind.REFUSED
            )
        if category:
            info_hash = str(entry["hashString"]).lower()
            await self.set_category([info_hash], category[0])
            if not torrent.paused:
                await self._rpc.call("torrent-start", {"ids": [info_hash]})

    async def pause(self, hashes: list[str]) -> None:
        await self._act("torrent-stop", hashes)

    async def resume(self, hashes: list[str]) -> None:
        await self._act("torrent-start", hashes)

    async def remove(self, hashes: list[str], *, delete_data: bool) -> None:
        await self._act("torrent-remove", hashes, {"delete-local-data": delete_data})

    async def _act(
        self, method: str, hashes: list[str], arguments: dict[str, Any] | None = None
    ) -> None:
        found = await self._existing(hashes, ["hashString"])
        if found:
            await self._rpc.call(method, {"ids": list(found), **(arguments or {})})

    async def close(self) -> None:
        await self._rpc.close()


def _hashes(hashes: Iterable[str]) -> list[str]:
    """Lowercase v1 info-hashes, each once; anything else is refused (Transmission would
    read other strings as ids of its own, like `recently-active`)."""
    wanted: list[str] = []
    for value in hashes:
        info_hash = value.strip().lower()
        if not _V1_HASH.fullmatch(info_hash):
            raise ClientError(f"not a v1 info-hash: {value!r}", ClientErrorKind.REFUSED)
        if info_hash not in wanted:
            wanted.append(info_hash)
    return wanted


def _labels(names: Iterable[str]) -> list[str]:
    """Labels as Transmission keeps them: trimmed, not empty, each once, no commas."""
    labels: list[str] = []
    for name in names:
        label = name.strip()
        if "," in label:
            raise ClientError(
                f"Transmission labels cannot contain ',': {label!r}", ClientErrorKind.REFUSED
            )
        if label and label not in labels:
            labels.append(label)
    return labels


def _torrent(info: dict[str, Any], on_disk: str | None) -> Torrent:
    name = str(info.get("name") or info["hashString"])
    labels = tuple(str(label).strip() for label in info.get("labels") or [] if str(label).strip())
    size = int(info.get("sizeWhenDone") or 0)
    # No metadata yet (a magnet) means nothing to be complete with.
    progress = float(info.get("percentDone") or 0.0) if size > 0 else 0.0
    # doneDate stays 0 for a torrent whose data was there when it was added (checked,
    # never downloaded): it has been complete since it was added.
    done, added = int(info.get("doneDate") or 0), int(info.get("addedDate") or 0)
    completed = done if done > 0 else added if progress >= 1.0 and added > 0 else None
    status = info.get("status")
    directory = str(info.get("downloadDir") or "").rstrip("/")
    ratio = info.get("uploadRatio")  # -1: nothing downloaded or uploaded, -2: infinite
    seeding = info.get("secondsSeeding")
    return Torrent(
        hash=str(info["hashString"]).lower(),
        name=name,
        state=STATUS[status]
        if isinstance(status, int) and 0 <= status < len(STATUS)
        else "unknown",
        progress=progress,
        category=labels[0] if labels else None,
        tags=labels,
        content_path=f"{directory}/{on_disk or name}",
        size=size,
        completed_at=float(completed) if completed is not None else None,
        tracker=_tracker(info.get("trackers") or []),
        ratio=float(ratio) if isinstance(ratio, int | float) and ratio >= 0 else None,
        seeding_time=float(seeding) if isinstance(seeding, int | float) else None,
    )


def _tracker(trackers: list[dict[str, Any]]) -> str | None:
    """The first tracker's host: an announce URL often carries a passkey."""
    ordered = sorted(
        (t for t in trackers if isinstance(t, dict) and t.get("announce")),
        key=lambda t: int(t.get("tier") or 0),
    )
    return (urlsplit(str(ordered[0]["announce"])).hostname or None) if ordered else None


if TYPE_CHECKING:
    _MANAGED: type[ManagedTorrentClient] = TransmissionClient
