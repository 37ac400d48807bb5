"""Deluge through its web UI's JSON-RPC (deluge-web, `POST …/json`): torrents, stats,
labels, and adding and steering torrents.

deluge-web holds two things for us: a login session (a cookie; `auth.login` with the
web password, again when it expires) and a connection to a daemon, which it loses when
either of them restarts. Every operation first asks `web.connected` and, if needed,
connects the web UI to the first daemon its connection manager reports online: a call
to the daemon through a web UI without one hangs until the request times out.

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
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import posixpath
import re
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..config.model import ClientConfig
from ..models import CLASSIC_LABELS, Label
from .base import ClientError, ClientErrorKind, ClientStats, NewTorrent, Torrent

_LOGGER = logging.getLogger(__name__)
REQUEST_TIMEOUT = 30.0
PLUGIN_WAIT = 5.0  # how long a just-enabled Label plugin may take to offer label.*

# deluge-web's JSON-RPC error codes
NOT_AUTHENTICATED = 1
UNKNOWN_METHOD = 2

LABEL_PLUGIN = "Label"
DOWNLOADING = "Downloading"
TORRENT_KEYS = [
    "name", "state", "is_finished", "label", "download_location", "total_wanted",
    "total_remaining", "completed_time", "tracker", "trackers",
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


class _UnknownMethod(ClientError):
    """deluge-web offers no such method: no daemon behind it, or a plugin not enabled."""


class DelugeClient:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.url = json_url(config.url)
        # for messages: a proxy's credentials in the url stay out of logs
        self.where = without_credentials(self.url)
        self._http: aiohttp.ClientSession | None = None
        self._logged_in = False
        self._ids = itertools.count(1)
        self._attaching = asyncio.Lock()

    # --- JSON-RPC ---------------------------------------------------------------------

    async def _post(self, method: str, params: list[Any]) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                # Seedboxes are often addressed by IP; the default jar drops cookies
                # from IP hosts, and with them the session.
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            )
        body = {"method": method, "params": params, "id": next(self._ids)}
        try:
            async with self._http.post(self.url, json=body, ssl=self.config.verify_tls) as answer:
                status, text = answer.status, await answer.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            reason = f"{type(err).__name__}: {err}".rstrip(": ")
            raise ClientError(f"Deluge unreachable at {self.where}: {reason}") from err
        if status >= 500:
            raise ClientError(f"Deluge web at {self.where}: HTTP {status}")
        if status in (401, 403):  # deluge-web says 200; a proxy in front of it may not
            raise ClientError(f"Deluge web at {self.where}: HTTP {status}", ClientErrorKind.AUTH)
        try:
            data = answer_json(status, text)
        except ValueError as err:
            raise ClientError(
                f"Deluge web at {self.where}: {err} (is the url deluge-web's /json?)",
                ClientErrorKind.REFUSED,
            ) from None
        return data

    async def _call(self, method: str, *params: Any) -> Any:
        data = await self._post(method, list(params))
        if _code(data) == NOT_AUTHENTICATED:  # no session yet, or it expired
            await self._login()
            data = await self._post(method, list(params))
        error = data.get("error")
        if not error:
            return data.get("result")
        raise rpc_error(method, error)

    async def _login(self) -> None:
        answer = await self._post("auth.login", [self.config.password or ""])
        if answer.get("result") is not True:
            raise ClientError(
                "Deluge web refused the login (check the client's password)",
                ClientErrorKind.AUTH,
            )
        self._logged_in = True

    async def _attach(self) -> None:
        """Logged in, and the web UI connected to a daemon."""
        async with self._attaching:
            if await self._call("web.connected"):
                return
            hosts = await self._call("web.get_hosts") or []
            if not hosts:
                raise ClientError(
                    "Deluge web has no daemon in its connection manager (add one in the "
                    "web UI: Connection Manager)",
                    ClientErrorKind.REFUSED,
                )
            for host in hosts:
                status = await self._call("web.get_host_status", host[0]) or []
                if {"Online", "Connected"} & {str(field) for field in status}:
                    break
            else:
                where = ", ".join(f"{h[1]}:{h[2]}" for h in hosts)
                raise ClientError(f"Deluge web: its daemon is not running ({where})")
            try:
                await self._call("web.connect", host[0])
            except ClientError as err:
                raise ClientError(f"Deluge web could not connect to its daemon: {err}") from err
            _LOGGER.info(
                "Deluge web at %s: connected it to its daemon %s:%s", self.where, *host[1:3]
            )

    async def _daemon(self, method: str, *params: Any) -> Any:
        """A daemon method (core.*, label.*, daemon.*)."""
        try:
            return await self._call(method, *params)
        except _UnknownMethod as err:
            if method.startswith("label."):
                raise
            # the web UI lost its daemon since _attach asked
            raise ClientError(f"Deluge web is not connected to its daemon ({method})") from err

    # --- reading ----------------------------------------------------------------------

    async def version(self) -> str:
        await self._attach()
        return str(await self._daemon("daemon.get_version"))

    async def torrents(self) -> list[Torrent]:
        await self._attach()
        found = await self._daemon("core.get_torrents_status", {}, TORRENT_KEYS)
        return [torrent(h, status) for h, status in (found or {}).items()]

    async def completed_torrents(self) -> list[Torrent]:
        return [t for t in await self.torrents() if t.complete]

    async def stats(self) -> ClientStats:
        await self._attach()
        free = await self._daemon("core.get_free_space")
        rates = await self._daemon(
            "core.get_session_status", ["payload_download_rate", "payload_upload_rate"]
        )
        states = await self._daemon("core.get_torrents_status", {}, ["state"]) or {}
        return ClientStats(
            # -1: the download folder does not exist
            free_space=free if isinstance(free, int) and free >= 0 else None,
            active_downloads=sum(1 for s in states.values() if s.get("state") == DOWNLOADING),
            download_rate=int(rates.get("payload_download_rate", 0)),
            upload_rate=int(rates.get("payload_upload_rate", 0)),
            torrents=len(states),
        )

    async def export_torrent(self, info_hash: str) -> bytes:
        raise ClientError(
            "Deluge's web API cannot export a .torrent; set the seedbox's torrent_file "
            f"to Deluge's state folder, e.g. {STATE_TORRENT}",
            ClientErrorKind.REFUSED,
        )

    async def _labels_of(self, ids: list[str]) -> dict[str, str]:
        """The label of each of these torrents that Deluge has (`""`: none, or no
        Label plugin)."""
        found = await self._daemon("core.get_torrents_status", {"id": ids}, ["label"])
        return {h: str(status.get("label") or "") for h, status in (found or {}).items()}

    # --- labels -----------------------------------------------------------------------

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
        await self._attach()
        found = await self._labels_of(ids)
        for info_hash, current in found.items():
            if current in labels:
                await self._daemon("label.set_torrent", info_hash, "")
        _raise_missing(ids, found)

    async def set_category(self, hashes: list[str], category: str | None) -> None:
        label = deluge_label(category) if category else ""
        if category and not label.strip("_-"):
            raise ClientError(f"{category!r} is no Deluge label", ClientErrorKind.REFUSED)
        await self._set_label(hashes, label)

    async def _set_label(self, hashes: list[str], label: str) -> None:
        """Label the torrents (`""`: no label); those Deluge does not have, NOT_FOUND
        after the others are labelled."""
        ids = torrent_ids(hashes)
        if not ids:
            return
        await self._attach()
        found = await self._labels_of(ids)
        # Clearing needs no plugin when no torrent has a label (or there is no plugin).
        change = sorted(h for h, current in found.items() if current != label)
        if change:
            labels = await self._label_plugin()
            if label and label not in labels:
                try:
                    await self._daemon("label.add", label)
                except ClientError as err:
                    if "already exists" not in str(err):  # added meanwhile
                        raise
            for info_hash in change:
                await self._daemon("label.set_torrent", info_hash, label)
        _raise_missing(ids, found)

    async def _label_plugin(self) -> list[str]:
        """The labels there are, once the Label plugin is on (enabled if it is not)."""
        try:
            return list(await self._daemon("label.get_labels"))
        except _UnknownMethod:
            pass
        if LABEL_PLUGIN not in (await self._daemon("core.get_enabled_plugins") or []):
            if LABEL_PLUGIN not in (await self._daemon("core.get_available_plugins") or []):
                raise ClientError(
                    "this Deluge has no Label plugin, which labels need", ClientErrorKind.REFUSED
                )
            if not await self._daemon("core.enable_plugin", LABEL_PLUGIN):
                raise ClientError(
                    "Deluge would not enable its Label plugin (Preferences > Plugins)",
                    ClientErrorKind.REFUSED,
                )
            _LOGGER.info("Deluge at %s: enabled its Label plugin for labels", self.where)
        deadline = time.monotonic() + PLUGIN_WAIT
        while True:
            try:
                return list(await self._daemon("label.get_labels"))
            except _UnknownMethod:
                if time.monotonic() > deadline:
                    raise ClientError(
                        "Deluge's Label plugin is enabled, but deluge-web does not offer "
                        "it (restart deluge-web)",
                        ClientErrorKind.REFUSED,
                    ) from None
            await asyncio.sleep(0.2)

    # --- adding and steering ----------------------------------------------------------

    async def add(self, torrent: NewTorrent) -> None:
        if (torrent.magnet is None) == (torrent.torrent_file is None):
            raise ClientError(
                "a new torrent needs exactly one of a magnet link or a .torrent file",
                ClientErrorKind.REFUSED,
            )
        options: dict[str, Any] = {"add_paused": torrent.paused}
        if torrent.save_path:
            options["download_location"] = torrent.save_path
        await self._attach()
        if torrent.magnet is not None:
            added = await self._daemon("core.add_torrent_magnet", torrent.magnet, options)
        else:
            assert torrent.torrent_file is not None
            filedump = base64.b64encode(torrent.torrent_file).decode("ascii")
            added = await self._daemon("core.add_torrent_file", "q4d.torrent", filedump, options)
        if not isinstance(added, str) or not added:
            raise ClientError("Deluge did not add the torrent", ClientErrorKind.REFUSED)
        if torrent.category:
            try:
                await self.set_category([added], torrent.category)
            except ClientError as err:
                # Added all the same: trying the add again would only find it there.
                raise ClientError(
                    f"Deluge added torrent {added} but did not label it: {err}",
                    ClientErrorKind.REFUSED,
                ) from err

    async def pause(self, hashes: list[str]) -> None:
        await self._each("core.pause_torrents", hashes)

    async def resume(self, hashes: list[str]) -> None:
        await self._each("core.resume_torrents", hashes)

    async def _each(self, method: str, hashes: list[str]) -> None:
        ids = torrent_ids(hashes)
        if not ids:  # Deluge's pause_torrents(None) would pause every torrent
            return
        await self._attach()
        found = await self._labels_of(ids)
        if found:  # one unknown id would fail the whole call, midway
            await self._daemon(method, sorted(found))
        _raise_missing(ids, found)

    async def remove(self, hashes: list[str], *, delete_data: bool) -> None:
        ids = torrent_ids(hashes)
        if not ids:
            return
        await self._attach()
        failed = await self._daemon("core.remove_torrents", ids, delete_data) or []
        if failed:  # only torrents not in the session fail
            missing = ", ".join(str(f[0]) for f in failed)
            raise ClientError(f"Deluge has no torrent {missing}", ClientErrorKind.NOT_FOUND)

    async def close(self) -> None:
        if self._http is not None:
            # Ends the web session; the web UI stays connected to its daemon for others.
            if self._logged_in:
                with contextlib.suppress(ClientError):
                    await self._post("auth.delete_session", [])
                self._logged_in = False
            await self._http.close()
            self._http = None


# --- helpers, also tested on their own -----------------------------------------------


def json_url(url: str) -> str:
    """deluge-web's JSON-RPC endpoint: the url as given if it ends in /json, else with
    /json appended (`http://10.0.0.5:8112`, `https://box.example.com/deluge/`)."""
    base = url.rstrip("/")
    return base if base.endswith("/json") else base + "/json"


def without_credentials(url: str) -> str:
    """The url without a `user:password@` (basic auth for a proxy in front)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def answer_json(status: int, body: bytes) -> dict[str, Any]:
    """The JSON-RPC answer in a 200 response; ValueError naming what came instead."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status != 200 or not isinstance(data, dict) or "error" not in data:
        text = body[:120].decode("utf-8", "replace").strip()
        raise ValueError(f"HTTP {status}, not a JSON-RPC answer: {text!r}")
    return data


def _code(data: dict[str, Any]) -> int | None:
    error = data.get("error")
    return error.get("code") if isinstance(error, dict) else None


# Deluge wraps a daemon's exception in a Twisted Failure repr with a traceback:
# `Failure: [Failure instance: Traceback …: <class 'deluge.error.X'>: message\n…`.
_FAILURE = re.compile(r"<class '(?:[\w]+\.)*(\w+)'>: ([^\n]*)")
_NOT_FOUND = ("InvalidTorrentError",)
_UNREACHABLE = ("ConnectionDone", "ConnectionLost", "ConnectionRefusedError", "TimeoutError")


def rpc_error(method: str, error: Any) -> ClientError:
    """The ClientError for a JSON-RPC error object."""
    if not isinstance(error, dict):
        return ClientError(f"Deluge {method}: {error!r}", ClientErrorKind.REFUSED)
    code, message = error.get("code"), str(error.get("message") or "")
    if code == NOT_AUTHENTICATED:
        return ClientError(f"Deluge {method}: not authenticated", ClientErrorKind.AUTH)
    if code == UNKNOWN_METHOD:
        return _UnknownMethod(f"Deluge web has no method {method}", ClientErrorKind.REFUSED)
    wrapped = _FAILURE.search(message)
    kind_name, reason = (
        wrapped.groups() if wrapped else ("", message.strip().split("\n", 1)[0] or "error")
    )
    if kind_name in _NOT_FOUND or reason == "Unknown Torrent":
        kind = ClientErrorKind.NOT_FOUND
    elif kind_name in _UNREACHABLE:
        kind = ClientErrorKind.UNREACHABLE
    else:
        kind = ClientErrorKind.REFUSED
    return ClientError(f"Deluge {method}: {reason}", kind)


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
    )
