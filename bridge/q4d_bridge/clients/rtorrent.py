"""rTorrent over XML-RPC (rtorrent_transport.py): its SCGI socket, a port or a Unix socket,
reached from here (`scgi://`) or on the seedbox through its SSH link (`scgi+ssh://`), or
a web server's XML-RPC endpoint (ruTorrent's `/RPC2`, with HTTP Basic auth).

Conventions, shared with the seedbox side (q4d-hook, q4d-labeld):
- category = `d.custom1`, ruTorrent's label (also Sonarr's and Radarr's category).
  ruTorrent writes it URL-encoded, so it is read URL-decoded; it is written as it is,
  except `%` (and a leading `$`) which are percent-encoded, so it reads back the same.
- tags = `d.custom=q4d`, the key q4d-labeld's tag mode writes (`q4d:DONE`), as a
  comma-separated list. Nothing else reads that key.

rTorrent's limits, answered with REFUSED: it cannot hand out a .torrent file over
XML-RPC (it keeps `<HASH>.torrent` in its session directory: the seedbox's
`torrent_file` setting reads it over SSH), and it never deletes a torrent's data.
SCGI is stateless and has no login: nothing to renew.

Failures are ClientErrors of a kind (clients/base.py). A request that cannot reach
rTorrent is tried again after 1, 2 and 4 s (`retry.with_retries`) where that is safe:
reads, categories and tags, pause and resume, a removal (a torrent already gone counts
as removed on a retry), and an add (its info-hash is always known here: a retry looks
for the torrent before loading it again). Not the stats the monitor polls: its next
poll is the retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import re
import xmlrpc.client
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.parsers.expat import ExpatError

from ..config.model import ClientConfig
from .base import ClientError, ClientErrorKind, ClientStats, NewTorrent, Torrent
from .metainfo import MetainfoError, parse_new_torrent
from .retry import with_retries
from .rtorrent_transport import SshLink, client_error, make_transport

LOAD_WAIT = 2.0  # how long a loaded torrent may take to show up in rTorrent's list
CUSTOM_KEY = "q4d"  # q4d-labeld's key (d.custom=q4d): the torrent's tags

_HASH = re.compile(r"^[0-9a-fA-F]{40}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What d.multicall2 reads of each torrent, in this order (see _torrent).
TORRENT_FIELDS = (
    "d.hash=", "d.name=", "d.state=", "d.is_active=", "d.complete=", "d.hashing=",
    "d.completed_bytes=", "d.size_bytes=", "d.custom1=", f"d.custom={CUSTOM_KEY}",
    "d.base_path=", "d.directory=", "d.is_multi_file=", "d.timestamp.finished=",
    "t.multicall=,t.url=,t.is_enabled=", "d.ratio=",
)  # fmt: skip
STATS_FIELDS = ("d.state=", "d.is_active=", "d.complete=", "d.is_open=", "d.directory=",
                "d.free_diskspace=")  # fmt: skip


def _fault(where: str, method: str, text: str) -> ClientError:
    if "info-hash" in text.lower():  # -501 "Could not find info-hash."
        return client_error(
            f"rTorrent at {where}: {method}: no such torrent", ClientErrorKind.NOT_FOUND
        )
    hint = " (an older rTorrent?)" if "not defined" in text else ""
    return client_error(f"rTorrent at {where}: {method}: {text}{hint}", ClientErrorKind.REFUSED)


class RtorrentClient:
    def __init__(
        self,
        config: ClientConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,  # between retries
        ssh: SshLink | None = None,  # the seedbox's SSH connection, for scgi+ssh:// urls
    ) -> None:
        self.config = config
        self._transport = make_transport(config, ssh)
        self._session_path: str | None = None
        self._sleep = sleep

    @property
    def where(self) -> str:
        return self._transport.where

    async def _retried[T](self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """An idempotent operation, retried while rTorrent is unreachable."""
        return await with_retries(operation, what=f"rTorrent {what}", sleep=self._sleep)

    async def _call(self, method: str, *params: Any) -> Any:
        body = xmlrpc.client.dumps(params, method, encoding="utf-8").encode("utf-8")
        answer = await self._transport.post(body)
        try:
            result, _ = xmlrpc.client.loads(answer, use_builtin_types=True)
        except xmlrpc.client.Fault as fault:
            raise _fault(self.where, method, fault.faultString) from None
        except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError) as err:
            raise client_error(
                f"rTorrent at {self.where}: {method}: not an XML-RPC answer ({err})",
                ClientErrorKind.REFUSED,
            ) from err
        return result[0] if result else None

    async def _multicall(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """The calls in one request; each answer is its result or a ClientError."""
        if not calls:
            return []
        answers = await self._call(
            "system.multicall", [{"methodName": m, "params": list(p)} for m, p in calls]
        )
        if not isinstance(answers, list) or len(answers) != len(calls):
            raise client_error(
                f"rTorrent at {self.where}: system.multicall: unexpected answer",
                ClientErrorKind.REFUSED,
            )
        results: list[Any] = []
        for (method, _), answer in zip(calls, answers, strict=True):
            if isinstance(answer, dict):
                text = str(answer.get("faultString", "fault"))
                results.append(_fault(self.where, method, text))
            else:
                results.append(answer[0] if answer else None)
        return results

    async def _each(self, hashes: list[str], *steps: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """Each step (method, extra params) on each torrent, in one request. Torrents
        rTorrent does not have are named in one NOT_FOUND, after the others are done."""
        targets = [_target(h) for h in hashes]
        calls = [(method, (t, *params)) for t in targets for method, params in steps]
        results = await self._multicall(calls)
        missing: list[str] = []
        for (_, (target, *_params)), result in zip(calls, results, strict=True):
            if isinstance(result, ClientError):
                if result.kind is not ClientErrorKind.NOT_FOUND:
                    raise result
                if target.lower() not in missing:
                    missing.append(target.lower())
        if missing:
            raise client_error(
                f"rTorrent at {self.where}: no such torrent: {', '.join(missing)}",
                ClientErrorKind.NOT_FOUND,
            )
        return results

    # --- TorrentClient ----------------------------------------------------------------

    async def version(self) -> str:
        return str(await self._retried("version", lambda: self._call("system.client_version")))

    async def torrents(self) -> list[Torrent]:
        rows = await self._retried(
            "torrent list", lambda: self._call("d.multicall2", "", "main", *TORRENT_FIELDS)
        )
        return [_torrent(row) for row in rows]

    async def completed_torrents(self) -> list[Torrent]:
        return [t for t in await self.torrents() if t.complete]

    async def stats(self) -> ClientStats:
        # Not retried: the monitor polls every seedbox in turn, and its next poll is the
        # retry; backing off here would hold up the other seedboxes' figures.
        down, up, default, rows = await self._multicall(
            [
                ("throttle.global_down.rate", ()),
                ("throttle.global_up.rate", ()),
                ("directory.default", ()),
                ("d.multicall2", ("", "main", *STATS_FIELDS)),
            ]
        )
        for answer in (down, up, default, rows):
            if isinstance(answer, ClientError):
                raise answer
        return ClientStats(
            free_space=_free_space(rows, str(default)),
            active_downloads=sum(
                1 for state, active, complete, *_ in rows if state and active and not complete
            ),
            download_rate=int(down),
            upload_rate=int(up),
            torrents=len(rows),
        )

    async def export_torrent(self, info_hash: str) -> bytes:
        """Never possible over XML-RPC: REFUSED, naming the session directory to read
        (one look-up for the hint, not retried: the answer is a refusal either way)."""
        _target(info_hash)
        if self._session_path is None:
            with contextlib.suppress(ClientError):
                self._session_path = str(await self._call("session.path")) or None
        where = (
            f"set this seedbox's torrent_file: "
            f"{posixpath.join(self._session_path, '{HASH}.torrent')}"
            if self._session_path
            else "set this seedbox's torrent_file to <session directory>/{HASH}.torrent"
        )
        raise client_error(
            f"rTorrent cannot hand out .torrent files over XML-RPC; it keeps them in its "
            f"session directory: {where}",
            ClientErrorKind.REFUSED,
        )

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None:
        await self._edit_tags(hashes, _tag_list(tags), add=True)

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None:
        await self._edit_tags(hashes, _tag_list(tags), add=False)

    async def _edit_tags(self, hashes: list[str], tags: list[str], *, add: bool) -> None:
        # Read, then written: a retry reads what the attempt before may have written.
        what = "add tags" if add else "remove tags"
        await self._retried(what, lambda: self._apply_tags(hashes, tags, add=add))

    async def _apply_tags(self, hashes: list[str], tags: list[str], *, add: bool) -> None:
        current = await self._each(hashes, ("d.custom", (CUSTOM_KEY,)))
        writes = []
        for info_hash, value in zip(hashes, current, strict=True):
            have = _split_tags(str(value))
            new = (
                [*have, *(t for t in tags if t not in have)]
                if add
                else [t for t in have if t not in tags]
            )
            if new != have:
                writes.append((info_hash, ",".join(new)))
        calls = [("d.custom.set", (_target(h), CUSTOM_KEY, v)) for h, v in writes]
        for result in await self._multicall(calls):
            if isinstance(result, ClientError):
                raise result

    # --- ManagedTorrentClient ---------------------------------------------------------

    async def add(self, torrent: NewTorrent) -> None:
        """load.raw_start / load.start (load.raw / load.normal when paused), with
        d.directory.set and d.custom1.set run by rTorrent as the torrent is created.
        Retried while rTorrent is unreachable: a retry first looks for the torrent, so
        an add that did arrive counts as added (and is not refused as already there)."""
        if (torrent.magnet is None) == (torrent.torrent_file is None):
            raise client_error("add: give exactly one of a magnet link or a .torrent file",
                         ClientErrorKind.REFUSED)  # fmt: skip
        commands = []
        if torrent.save_path is not None:
            commands.append(f"d.directory.set={_quoted(_save_path(torrent.save_path))}")
        if torrent.category:
            commands.append(f"d.custom1.set={_quoted(_label(torrent.category))}")
        info_hash = _new_torrent_hash(torrent)
        if torrent.torrent_file is not None:
            method = "load.raw" if torrent.paused else "load.raw_start"
            source: Any = xmlrpc.client.Binary(torrent.torrent_file)
        else:
            method = "load.normal" if torrent.paused else "load.start"
            source = torrent.magnet
        sent = False

        async def attempt() -> None:
            nonlocal sent
            if await self._has(info_hash):
                if sent:  # the attempt before arrived, and its answer was lost
                    return
                raise client_error(
                    f"rTorrent at {self.where}: torrent {info_hash.lower()} is already there",
                    ClientErrorKind.REFUSED,
                )
            sent = True
            await self._call(method, "", source, *commands)
            # rTorrent answers 0 whether or not it took the torrent: look for it.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LOAD_WAIT
            while not await self._has(info_hash):
                if loop.time() > deadline:
                    what = (
                        "magnet (no tracker in it, and DHT off?)" if torrent.magnet else ".torrent"
                    )
                    raise client_error(
                        f"rTorrent at {self.where}: did not take the {what} "
                        f"{info_hash.lower()}; its log says why",
                        ClientErrorKind.REFUSED,
                    )
                await asyncio.sleep(0.1)  # a poll, not a retry: the real clock

        await self._retried(f"add {info_hash.lower()}", attempt)

    async def _has(self, info_hash: str) -> bool:
        try:
            await self._call("d.hash", info_hash)
        except ClientError as err:
            if err.kind is ClientErrorKind.NOT_FOUND:
                return False
            raise
        return True

    async def pause(self, hashes: list[str]) -> None:
        """d.stop: stopped and kept stopped across restarts (ruTorrent's Stop)."""
        await self._retried("pause", lambda: self._each(hashes, ("d.stop", ())))

    async def resume(self, hashes: list[str]) -> None:
        """d.start, then d.resume: starts a stopped torrent and also one paused with
        d.pause (ruTorrent's Pause), which d.start alone leaves paused."""
        await self._retried("resume", lambda: self._each(hashes, ("d.start", ()), ("d.resume", ())))

    async def remove(self, hashes: list[str], *, delete_data: bool) -> None:
        """d.erase: the torrent leaves rTorrent, its data stays. rTorrent never deletes
        data itself, so delete_data=True is REFUSED before anything is removed. A retry
        counts a torrent rTorrent no longer has as removed: the attempt before may have
        erased it, and its answer been lost."""
        if delete_data:
            raise client_error(
                "rTorrent cannot delete a torrent's data over XML-RPC: remove the torrent "
                "without delete_data, and delete its files over the seedbox's SSH link",
                ClientErrorKind.REFUSED,
            )
        sent = False

        async def attempt() -> None:
            nonlocal sent
            retry, sent = sent, True
            try:
                await self._each(hashes, ("d.erase", ()))
            except ClientError as err:
                if not (retry and err.kind is ClientErrorKind.NOT_FOUND):
                    raise

        await self._retried("remove", attempt)

    async def set_category(self, hashes: list[str], category: str | None) -> None:
        value = _label(category) if category else ""
        await self._retried("set category", lambda: self._each(hashes, ("d.custom1.set", (value,))))

    async def close(self) -> None:
        await self._transport.close()


# --- mapping --------------------------------------------------------------------------


def _torrent(row: list[Any]) -> Torrent:
    (info_hash, name, state, active, complete, hashing, done, size, custom1, tags, base_path,
     directory, multi_file, finished, trackers, ratio) = row  # fmt: skip
    if hashing:
        status = "checking"
    elif not state:
        status = "stopped"
    elif not active:
        status = "paused"
    else:
        status = "seeding" if complete else "downloading"
    content = base_path or (directory if multi_file else posixpath.join(directory, name))
    return Torrent(
        hash=str(info_hash).lower(),
        name=name,
        state=status,
        progress=1.0 if complete else (done / size if size else 0.0),
        category=unquote(custom1) or None,
        tags=tuple(_split_tags(tags)),
        content_path=content,
        size=size,
        completed_at=float(finished) if finished else None,
        tracker=_tracker_host(trackers),
        ratio=ratio / 1000,  # in thousandths; rTorrent keeps no seeding time
    )


def _tracker_host(trackers: list[list[Any]]) -> str | None:
    """The first enabled tracker's host: its URL often carries a passkey (like the hook's)."""
    for url, enabled, *_ in trackers:
        if enabled:
            host = urlsplit(str(url)).hostname
            if host and not str(url).startswith("dht://"):
                return host
    return None


def _free_space(rows: list[list[Any]], default: str) -> int | None:
    """rTorrent has no call for a folder's free space, only d.free_diskspace of a torrent
    whose files are open: those under directory.default first, else any open one."""
    default = default.rstrip("/")
    open_ = [(str(row[4]), int(row[5])) for row in rows if row[3]]
    under = [s for d, s in open_ if d == default or d.startswith(default + "/")]
    chosen = under or [space for _, space in open_]
    return min(chosen) if chosen else None


def _split_tags(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _tag_list(tags: list[str]) -> list[str]:
    out = [tag.strip() for tag in tags]
    for tag in out:
        if not tag or "," in tag or _CONTROL.search(tag):
            raise client_error(
                f"tag {tag!r}: empty, or with a comma or control character",
                ClientErrorKind.REFUSED,
            )
    return out


def _target(info_hash: str) -> str:
    """rTorrent's spelling of an info-hash: 40 uppercase hex digits."""
    if not _HASH.fullmatch(info_hash):
        raise client_error(f"no such torrent: {info_hash!r} is not an info-hash",
                     ClientErrorKind.NOT_FOUND)  # fmt: skip
    return info_hash.upper()


def _label(category: str) -> str:
    """The category as d.custom1 holds it: read back URL-decoded (ruTorrent's way), so
    `%` is encoded; a leading `$` too, which rTorrent would run as a command."""
    if _CONTROL.search(category):
        raise client_error(f"category {category!r}: control characters", ClientErrorKind.REFUSED)
    encoded = category.replace("%", "%25")
    return "%24" + encoded[1:] if encoded.startswith("$") else encoded


def _save_path(path: str) -> str:
    if not path.startswith("/") or _CONTROL.search(path):
        raise client_error(
            f"save path {path!r}: must be an absolute path without control characters",
            ClientErrorKind.REFUSED,
        )
    return path


def _quoted(value: str) -> str:
    """A value in an rTorrent command (`d.custom1.set="…"`): quoted, with `\\` and `"`
    escaped, so commas and semicolons stay in it. Values starting with `$` are never
    passed (rTorrent runs those as commands, quoted or not)."""
    if value.startswith("$"):
        raise client_error(f"{value!r}: would run as an rTorrent command", ClientErrorKind.REFUSED)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _new_torrent_hash(torrent: NewTorrent) -> str:
    """The v1 info-hash rTorrent will list the torrent under, uppercase. parse_magnet
    takes only `magnet:?` links: rTorrent's load.* would also fetch URLs and read
    local files."""
    try:
        meta = parse_new_torrent(torrent)
    except MetainfoError as err:
        raise client_error(f"add: {err}", ClientErrorKind.REFUSED) from err
    if meta.v1 is None:  # rTorrent knows BitTorrent v1 only
        what = "magnet link" if meta.kind == "magnet" else ".torrent"
        raise client_error(f"add: the {what} has no v1 info-hash (v2 only), which rTorrent "
                           "cannot load", ClientErrorKind.REFUSED)  # fmt: skip
    return meta.v1.upper()
