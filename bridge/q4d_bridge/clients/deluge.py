"""Deluge through its web UI's JSON-RPC (deluge-web, `POST …/json`, in deluge_rpc.py):
torrents, stats, labels, and adding and steering torrents.

Every operation first has the web UI logged in and connected to a daemon
(`DelugeRpc.attach`): deluge-web forgets both when either of them restarts.

Mapping onto the bridge's interface:

- A torrent's category is its Label-plugin label. Deluge has one label per torrent and
  no tags, and the plugin accepts only `[a-z0-9_-]`, so names are folded the way the
  seedbox's label daemon folds them: `q4d:DONE` is `q4d_done`, `TV Shows` `tv_shows`.
- Tags: only q4d's status labels have a Deluge form. Reading, a torrent labelled
  `q4d_done` (or Q4D classic's bare `done`) carries the tag `q4d:DONE` (`DONE`), so
  reconciliation knows it was handled. Writing, `add_tags` sets that label in place of
  the torrent's label, as q4d-labeld does, and `remove_tags` clears it if the torrent
  still has it; any other tag, or two status tags at once, is REFUSED.
- The Label plugin ships with Deluge but is off by default: the first call that has to
  write a label enables it (`core.enable_plugin`). Reading needs no plugin.
- `.torrent` export: neither deluge-web nor the daemon can hand out a torrent's
  metainfo, so it is REFUSED; the seedbox's `torrent_file` setting reads Deluge's own
  copy (`<config dir>/state/<hash>.torrent`) over SFTP instead.

Failures are ClientErrors of a kind (clients/base.py). An operation that cannot reach
Deluge (deluge-web or its daemon down) is tried again after 1, 2 and 4 s
(`retry.with_retries`), each attempt logging in and attaching anew: reads, labels,
pause and resume, a removal (a torrent already gone counts as removed on a retry), and
an add whose info-hash is known (a retry looks for the torrent before sending it
again). Not the stats the monitor polls: its next poll is the retry.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import posixpath
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..config.model import ClientConfig
from ..models import CLASSIC_LABELS, Label
from .base import ClientError, ClientErrorKind, ClientStats, NewTorrent, Torrent
from .deluge_rpc import DelugeRpc, UnknownMethod
from .metainfo import MetainfoError, parse_new_torrent
from .retry import with_retries

if TYPE_CHECKING:
    from .base import ManagedTorrentClient

_LOGGER = logging.getLogger(__name__)
PLUGIN_WAIT = 5.0  # how long a just-enabled Label plugin may take to offer label.*

LABEL_PLUGIN = "Label"
DOWNLOADING = "Downloading"
TORRENT_KEYS = [
    "name", "state", "is_finished", "label", "download_location", "total_wanted",
    "total_remaining", "completed_time", "tracker", "trackers", "ratio", "seeding_time",
]  # fmt: skip

# A torrent's `torrent_file` in the state folder; the hint in export's refusal.
STATE_TORRENT = "/home/<user>/.config/deluge/state/{hash}.torrent"


def deluge_label(name: str) -> str:
    """A name as the Label plugin holds it (as q4d-labeld writes it): `q4d:DONE` ->
    `q4d_done`."""
    return re.sub(r"[^a-z0-9_-]", "_", name.lower())


# q4d's status labels as tags (q4d-labeld's `q4d:DONE`, Q4D classic's bare `DONE`,
# `NOPE`), by their Deluge label.
_STATUS_NAMES = (*(label.value for label in Label), *CLASSIC_LABELS.values())
STATUS_TAGS = {deluge_label(tag): tag for name in _STATUS_NAMES for tag in (f"q4d:{name}", name)}


class DelugeClient:
    def __init__(
        self,
        config: ClientConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,  # between retries
    ) -> None:
        self.config = config
        self._rpc = DelugeRpc(config)
        self.url = self._rpc.url
        self.where = self._rpc.where
        self._sleep = sleep

    async def _retried[T](self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """An idempotent operation, retried while Deluge is unreachable. Each attempt
        attaches anew, so a restarted deluged is connected to again (and a deluge-web
        that forgot the session is logged in to again, as any request would)."""

        async def attempt() -> T:
            await self._rpc.attach()
            return await operation()

        return await with_retries(attempt, what=f"Deluge {what}", sleep=self._sleep)

    # --- reading ----------------------------------------------------------------------

    async def version(self) -> str:
        return str(await self._retried("version", lambda: self._rpc.daemon("daemon.get_version")))

    async def torrents(self) -> list[Torrent]:
        found = await self._retried(
            "torrent list", lambda: self._rpc.daemon("core.get_torrents_status", {}, TORRENT_KEYS)
        )
        return [torrent(h, status) for h, status in (found or {}).items()]

    async def completed_torrents(self) -> list[Torrent]:
        return [t for t in await self.torrents() if t.complete]

    async def stats(self) -> ClientStats:
        # Not retried: the monitor polls every seedbox in turn, and its next poll is the
        # retry; backing off here would hold up the other seedboxes' figures.
        await self._rpc.attach()
        free = await self._rpc.daemon("core.get_free_space")
        rates = await self._rpc.daemon(
            "core.get_session_status", ["payload_download_rate", "payload_upload_rate"]
        )
        states = await self._rpc.daemon("core.get_torrents_status", {}, ["state"]) or {}
        return ClientStats(
            # -1: the download folder does not exist
            free_space=free if isinstance(free, int) and free >= 0 else None,
            active_downloads=sum(1 for s in states.values() if s.get("state") == DOWNLOADING),
            download_rate=int(rates.get("payload_download_rate", 0)),
            upload_rate=int(rates.get("payload_upload_rate", 0)),
            torrents=len(states),
        )

    async def export_torrent(self, info_hash: str) -> bytes:
        """Refused at once, without asking Deluge: nothing a retry could change."""
        raise ClientError(
            "Deluge's web API cannot export a .torrent; set the seedbox's torrent_file "
            f"to Deluge's state folder, e.g. {STATE_TORRENT}",
            ClientErrorKind.REFUSED,
        )

    async def _labels_of(self, ids: list[str]) -> dict[str, str]:
        """The label of each of these torrents that Deluge has (`""`: none, or no
        Label plugin)."""
        found = await self._rpc.daemon("core.get_torrents_status", {"id": ids}, ["label"])
        return {h: str(status.get("label") or "") for h, status in (found or {}).items()}

    # --- labels (setting one twice is the same: retried) --------------------------------

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None:
        labels = {status_label(tag) for tag in tags}
        if len(labels) > 1:
            raise ClientError(
                f"Deluge holds one label per torrent; cannot add {', '.join(tags)} at once",
                ClientErrorKind.REFUSED,
            )
        if labels:
            await self._set_label(hashes, labels.pop())

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None:
        labels = {status_label(tag) for tag in tags}
        ids = torrent_ids(hashes)
        if not labels or not ids:
            return

        async def clear() -> None:
            found = await self._labels_of(ids)
            for info_hash, current in found.items():
                if current in labels:
                    await self._rpc.daemon("label.set_torrent", info_hash, "")
            _raise_missing(ids, found)

        await self._retried("remove tags", clear)

    async def set_category(self, hashes: list[str], category: str | None) -> None:
        await self._set_label(hashes, category_label(category))

    async def _set_label(self, hashes: list[str], label: str) -> None:
        if ids := torrent_ids(hashes):
            await self._retried("set label", lambda: self._apply_label(ids, label))

    async def _apply_label(self, ids: list[str], label: str) -> None:
        """Label the torrents (`""`: no label); those Deluge does not have, NOT_FOUND
        after the others are labelled."""
        found = await self._labels_of(ids)
        # Clearing needs no plugin when no torrent has a label (or there is no plugin).
        change = sorted(h for h, current in found.items() if current != label)
        if change:
            labels = await self._label_plugin()
            if label and label not in labels:
                try:
                    await self._rpc.daemon("label.add", label)
                except ClientError as err:
                    if "already exists" not in str(err):  # added meanwhile, or by a retry
                        raise
            for info_hash in change:
                await self._rpc.daemon("label.set_torrent", info_hash, label)
        _raise_missing(ids, found)

    async def _label_plugin(self) -> list[str]:
        """The labels there are, once the Label plugin is on (enabled if it is not)."""
        try:
            return list(await self._rpc.daemon("label.get_labels"))
        except UnknownMethod:
            pass
        if LABEL_PLUGIN not in (await self._rpc.daemon("core.get_enabled_plugins") or []):
            if LABEL_PLUGIN not in (await self._rpc.daemon("core.get_available_plugins") or []):
                raise ClientError(
                    "this Deluge has no Label plugin, which labels need", ClientErrorKind.REFUSED
                )
            if not await self._rpc.daemon("core.enable_plugin", LABEL_PLUGIN):
                raise ClientError(
                    "Deluge would not enable its Label plugin (Preferences > Plugins)",
                    ClientErrorKind.REFUSED,
                )
            _LOGGER.info("Deluge at %s: enabled its Label plugin for labels", self.where)
        deadline = time.monotonic() + PLUGIN_WAIT
        while True:
            try:
                return list(await self._rpc.daemon("label.get_labels"))
            except UnknownMethod:
                if time.monotonic() > deadline:
                    raise ClientError(
                        "Deluge's Label plugin is enabled, but deluge-web does not offer "
                        "it (restart deluge-web)",
                        ClientErrorKind.REFUSED,
                    ) from None
            await asyncio.sleep(0.2)

    # --- adding and steering ----------------------------------------------------------

    async def add(self, torrent: NewTorrent) -> None:
        """Add a magnet link or a .torrent file, labelled with its category. Retried
        while Deluge is unreachable only when the info-hash is known: a retry first
        looks for the torrent, so an add that did arrive is not sent again (Deluge would
        refuse it as already in session) and is labelled if it is not yet."""
        if (torrent.magnet is None) == (torrent.torrent_file is None):
            raise ClientError(
                "a new torrent needs exactly one of a magnet link or a .torrent file",
                ClientErrorKind.REFUSED,
            )
        label = category_label(torrent.category)  # refused before anything is added
        options: dict[str, Any] = {"add_paused": torrent.paused}
        if torrent.save_path:
            options["download_location"] = torrent.save_path
        ids = new_torrent_ids(torrent)
        sent = False

        async def attempt() -> None:
            nonlocal sent
            if sent and (there := list(await self._labels_of(ids))):
                added = there[0]  # the attempt before arrived, and its answer was lost
            else:
                sent = True
                added = await self._send(torrent, options)
            if label:
                try:
                    await self._apply_label([added], label)
                except ClientError as err:
                    # Added all the same; a transient failure stays one, so that a retry
                    # (which finds the torrent there) labels it.
                    kind = err.kind if err.transient else ClientErrorKind.REFUSED
                    raise ClientError(
                        f"Deluge added torrent {added} but did not label it: {err}", kind
                    ) from err

        if ids:
            await self._retried(f"add {ids[0]}", attempt)
        else:  # nothing to look for before sending it again: once
            await self._rpc.attach()
            await attempt()

    async def _send(self, torrent: NewTorrent, options: dict[str, Any]) -> str:
        """The add itself; Deluge's id for the torrent."""
        if torrent.magnet is not None:
            added = await self._rpc.daemon("core.add_torrent_magnet", torrent.magnet, options)
        else:
            assert torrent.torrent_file is not None
            filedump = base64.b64encode(torrent.torrent_file).decode("ascii")
            added = await self._rpc.daemon(
                "core.add_torrent_file", "q4d.torrent", filedump, options
            )
        if not isinstance(added, str) or not added:
            raise ClientError("Deluge did not add the torrent", ClientErrorKind.REFUSED)
        return added

    async def pause(self, hashes: list[str]) -> None:
        await self._each("pause", "core.pause_torrents", hashes)

    async def resume(self, hashes: list[str]) -> None:
        await self._each("resume", "core.resume_torrents", hashes)

    async def _each(self, what: str, method: str, hashes: list[str]) -> None:
        ids = torrent_ids(hashes)
        if not ids:  # Deluge's pause_torrents(None) would pause every torrent
            return

        async def apply() -> None:
            found = await self._labels_of(ids)
            if found:  # one unknown id would fail the whole call, midway
                await self._rpc.daemon(method, sorted(found))
            _raise_missing(ids, found)

        await self._retried(what, apply)

    async def remove(self, hashes: list[str], *, delete_data: bool) -> None:
        """Remove the torrents (and their data). A retry counts a torrent Deluge no
        longer has as removed: the attempt before may have removed it, and its answer
        been lost."""
        ids = torrent_ids(hashes)
        if not ids:
            return
        sent = False

        async def attempt() -> None:
            nonlocal sent
            retry, sent = sent, True
            failed = await self._rpc.daemon("core.remove_torrents", ids, delete_data) or []
            if failed and not retry:  # only torrents not in the session fail
                missing = ", ".join(str(f[0]) for f in failed)
                raise ClientError(f"Deluge has no torrent {missing}", ClientErrorKind.NOT_FOUND)

        await self._retried("remove", attempt)

    async def close(self) -> None:
        await self._rpc.close()


# --- helpers, also tested on their own -----------------------------------------------


def category_label(category: str | None) -> str:
    """The Deluge label for a category (`""`: none); REFUSED if nothing of it is left."""
    label = deluge_label(category) if category else ""
    if category and not label.strip("_-"):
        raise ClientError(f"{category!r} is no Deluge label", ClientErrorKind.REFUSED)
    return label


def new_torrent_ids(torrent: NewTorrent) -> list[str]:
    """The ids Deluge may list a new torrent under: its v1 hash, and its v2 hash cut to
    40 digits (where a libtorrent 2 Deluge lists a v2 or hybrid torrent); none if it
    cannot be read here (Deluge may still take it, or say why not)."""
    try:
        meta = parse_new_torrent(torrent)
    except MetainfoError:
        return []
    return [h for h in (meta.v1, meta.v2[:40] if meta.v2 else None) if h is not None]


def status_label(tag: str) -> str:
    """The Deluge label for one of q4d's status tags; REFUSED for any other tag."""
    label = deluge_label(tag)
    if label not in STATUS_TAGS:
        raise ClientError(
            f"Deluge has no tags, only one label per torrent; of tags, only q4d's status "
            f"labels (q4d:QUEUED, q4d:DONE, q4d:FAILED, …) map onto it, not {tag!r}",
            ClientErrorKind.REFUSED,
        )
    return label


def torrent_ids(hashes: Iterable[str]) -> list[str]:
    """Deluge's torrent ids: the lowercase info-hashes, each once."""
    return list(dict.fromkeys(h.lower() for h in hashes))


def _raise_missing(ids: list[str], found: Iterable[str]) -> None:
    missing = [h for h in ids if h not in set(found)]
    if missing:
        raise ClientError(f"Deluge has no torrent {', '.join(missing)}", ClientErrorKind.NOT_FOUND)


def torrent(info_hash: str, status: dict[str, Any]) -> Torrent:
    """A torrent from `core.get_torrents_status` (TORRENT_KEYS)."""
    label = str(status.get("label") or "")
    wanted = int(status.get("total_wanted") or 0)
    remaining = int(status.get("total_remaining") or 0)
    if status.get("is_finished"):
        progress = 1.0
    else:
        # Deluge's own `progress` is the current task's (a check's), and 100 in Error.
        done = (wanted - remaining) / wanted if wanted > 0 else 0.0
        progress = min(max(done, 0.0), 0.999)
    completed = status.get("completed_time")
    trackers = status.get("trackers") or []
    tracker = status.get("tracker") or (trackers[0].get("url") if trackers else None)
    location, name = str(status.get("download_location") or ""), str(status.get("name") or "")
    ratio, seeding = status.get("ratio"), status.get("seeding_time")
    return Torrent(
        hash=info_hash.lower(),
        name=name,
        state=str(status.get("state") or ""),
        progress=progress,
        category=label or None,
        tags=(STATUS_TAGS[label],) if label in STATUS_TAGS else (),
        # what Deluge's Execute plugin hands the seedbox hook: location and name
        content_path=posixpath.join(location, name) if location else name,
        size=wanted,
        completed_at=float(completed)
        if isinstance(completed, int | float) and completed > 0
        else None,
        tracker=tracker or None,
        # -1: nothing downloaded yet to divide by
        ratio=float(ratio) if isinstance(ratio, int | float) and ratio >= 0 else None,
        seeding_time=float(seeding) if isinstance(seeding, int | float) else None,
    )


if TYPE_CHECKING:  # mypy holds the adapter to the whole interface
    _MANAGED: type[ManagedTorrentClient] = DelugeClient
