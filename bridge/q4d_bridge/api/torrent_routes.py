"""qBittorrent's `torrents/*` endpoints, as Sonarr, Radarr and Prowlarr call them
(docs/arr.md): adding goes to the dispatcher (the best seedbox), the lists come from
the catalog, deleting follows the removal policy. As in qBittorrent, calls that take
`hashes` skip the ones they do not know, and `all` means every torrent."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from ..clients.metainfo import Metainfo, MetainfoError, parse_magnet, parse_torrent_file
from ..dispatch.dispatcher import AddRequest, Dispatcher, DispatchError
from . import states
from .catalog import Catalog
from .categories import BadCategory, Categories, check_category
from .forms import Form, read_form
from .removal import Removal

_LOGGER = logging.getLogger(__name__)
PREFIX = "/api/v2/torrents/"
MAX_FILES = 10000  # files listed for one torrent
# Accepted and left alone: the queue at home is q4d's, and the seedbox seeds by its own
# rules.
HARMLESS = ("topPrio", "bottomPrio", "increasePrio", "decreasePrio", "setForceStart",
            "setShareLimits")  # fmt: skip


class TorrentRoutes:
    def __init__(
        self,
        catalog: Catalog,
        categories: Categories,
        removal: Removal,
        dispatcher: Dispatcher,
    ) -> None:
        self.catalog = catalog
        self.categories = categories
        self.removal = removal
        self.dispatcher = dispatcher

    def routes(self) -> list[web.RouteDef]:
        reads = {
            "info": self.info,
            "properties": self.properties,
            "files": self.files,
            "categories": self.list_categories,
        }
        writes = {
            "add": self.add,
            "createCategory": self.create_category,
            "setCategory": self.set_category,
            "addTags": self.add_tags,
            "delete": self.delete,
            **dict.fromkeys(HARMLESS, self.accepted),
        }
        return [
            *(web.get(PREFIX + name, handler) for name, handler in reads.items()),
            *(web.post(PREFIX + name, handler) for name, handler in reads.items()),
            *(web.post(PREFIX + name, handler) for name, handler in writes.items()),
        ]

    # --- reading -----------------------------------------------------------------------

    async def info(self, request: web.Request) -> web.Response:
        form = await read_form(request)
        torrents = self.catalog.torrents(form.get("category"))  # "": those without one
        tag = form.get("tag")
        if tag is not None:
            torrents = [t for t in torrents if (tag in t.tags if tag else not t.tags)]
        if form.get("hashes") is not None:
            wanted = self._keys(form)
            torrents = [t for t in torrents if t.hash in wanted]
        if (kind := form.get("filter")) is not None:
            torrents = [t for t in torrents if states.matches_filter(t, kind)]
        rows = [states.info(t) for t in torrents]
        if (key := form.get("sort")) is not None:
            rows = states.sort_rows(rows, key, reverse=form.flag("reverse") is True)
        offset, limit = _number(form, "offset", 0), _number(form, "limit", 0)
        if offset < 0:
            offset = max(0, len(rows) + offset)
        rows = rows[offset : offset + limit if limit > 0 else None]
        return web.json_response(rows)

    async def properties(self, request: web.Request) -> web.Response:
        return web.json_response(states.properties(await self._one(request)))

    async def files(self, request: web.Request) -> web.Response:
        t = await self._one(request)
        return web.json_response(await asyncio.to_thread(_files, t))

    async def list_categories(self, request: web.Request) -> web.Response:
        return web.json_response(self.categories.listing())

    # --- changing ------------------------------------------------------------------------

    async def add(self, request: web.Request) -> web.Response:
        form = await read_form(request)
        urls = [line.strip() for value in form.all("urls") for line in value.splitlines()]
        # (what the log calls it, the URL or magnet, the .torrent's bytes)
        sources: list[tuple[str, str | None, bytes | None]] = [
            (_shown(u), u, None) for u in urls if u
        ]
        sources += [(f"{u.filename!r}", None, u.data) for u in form.files]
        if not sources:
            raise web.HTTPBadRequest(text="give urls or torrents")
        category = form.get("category") or None
        if category is not None:
            try:
                self.categories.create(category)  # as qBittorrent creates a new one
            except BadCategory as err:
                _LOGGER.info("torrents/add refused: %s", err)
                return web.Response(text="Fails.")
        stopped = form.flag("stopped")  # API 2.11; `paused` before
        paused = form.flag("paused") if stopped is None else stopped
        added: list[str] = []
        invalid = 0
        for label, url, data in sources:
            try:
                added.append(await self._add(url, data, category, paused is True))
            except DispatchError as err:
                invalid += err.code == "invalid_torrent"
                _LOGGER.info("torrents/add %s refused: %s (%s)", label, err.message, err.code)
        tags = _list(form.get("tags"))
        if added and tags:
            self.catalog.add_tags(added, tags)
        if added:
            return web.Response(text="Ok.")
        if form.files and invalid == len(sources):
            raise web.HTTPUnsupportedMediaType(text="Torrent file is not valid.")
        return web.Response(text="Fails.")

    async def _add(self, url: str | None, data: bytes | None, category: str | None,
                   paused: bool) -> str:  # fmt: skip
        magnet = url if url is not None and url.startswith("magnet:") else None
        wanted = AddRequest(
            magnet=magnet,
            url=url if magnet is None else None,
            torrent_file=data,
            category=category,
            paused=paused,
            source="api",
        )
        try:
            result = await self.dispatcher.add(wanted)
        except DispatchError as err:
            if err.code != "duplicate" or (meta := _meta(magnet, data)) is None:
                raise
            # Added already (the app retried, or another app has it): the app finds it
            # by its hash, as after a first add.
            if (key := self._listed(meta)) is not None:
                return key
            # The app deleted it before and grabs it again (a search that picked the
            # same release): what it deleted no longer counts, a seedbox holding it does.
            deleted = self.catalog.deleted(meta.hashes)
            if not deleted:
                raise
            _LOGGER.info("torrents/add: %s was deleted by the app; adding it again", meta.name)
            forgotten = frozenset(r.id for r in deleted.values())
            try:
                result = await self.dispatcher.add(dataclasses.replace(wanted, forgotten=forgotten))
            except DispatchError as still:
                # kept seeding on its seedbox: listed again rather than added twice
                if still.code == "duplicate" and (key := self.removal.restore(deleted, category)):
                    return key
                raise
        request = result["request"]
        return str(request["v1"] or request["v2"] or request["info_hash"])

    def _listed(self, meta: Metainfo) -> str | None:
        return next((k for h in sorted(meta.hashes) if (k := self.catalog.find(h))), None)

    async def create_category(self, request: web.Request) -> web.Response:
        form = await read_form(request)  # savePath is ignored: rules place torrents
        try:
            self.categories.create(_required(form, "category"))
        except BadCategory as err:
            raise web.HTTPConflict(text=f"Incorrect category name: {err}") from None
        return web.Response()

    async def set_category(self, request: web.Request) -> web.Response:
        form = await read_form(request)
        category = _required(form, "category")
        if category:
            try:
                check_category(category)
            except BadCategory:
                raise web.HTTPConflict(text="Incorrect category name") from None
            if category not in self.categories.names():
                raise web.HTTPConflict(text="Incorrect category name")
        self.catalog.set_category(self._keys(form), category)
        return web.Response()

    async def add_tags(self, request: web.Request) -> web.Response:
        form = await read_form(request)
        self.catalog.add_tags(self._keys(form), _list(form.get("tags")))
        return web.Response()

    async def delete(self, request: web.Request) -> web.Response:
        form = await read_form(request)
        # Sonarr leaves deleteFiles out when it keeps the data (qBittorrent requires it).
        delete_files = form.flag("deleteFiles") is True
        keys = sorted(self._keys(form))
        if keys:
            await self.removal.delete(keys, delete_files=delete_files)
        return web.Response()

    async def accepted(self, request: web.Request) -> web.Response:
        await read_form(request)
        return web.Response()

    # --- helpers -----------------------------------------------------------------------

    def _keys(self, form: Form) -> set[str]:
        wanted = form.hashes()
        if wanted is None:
            return {t.hash for t in self.catalog.torrents()}
        return {key for h in wanted if (key := self.catalog.find(h)) is not None}

    async def _one(self, request: web.Request) -> states.TorrentView:
        form = await read_form(request)
        key = self.catalog.find(_required(form, "hash"))
        found = self.catalog.get(key) if key is not None else None
        if found is None:
            raise web.HTTPNotFound(text="Not Found")
        return found


def _required(form: Form, name: str) -> str:
    value = form.get(name)
    if value is None:
        raise web.HTTPBadRequest(text=f"{name}: missing")
    return value


def _number(form: Form, name: str, default: int) -> int:
    value = form.get(name)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected a number") from None


def _shown(url: str) -> str:
    """How the log names a magnet or a .torrent URL: never its trackers, query or path,
    where private trackers put the passkey."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
    except ValueError:  # not even a URL
        return "an unreadable URL (not logged)"
    if not parts.scheme:
        return "a URL without a scheme (not logged)"
    if parts.scheme.lower() == "magnet":
        fields = parse_qs(parts.query)
        name = fields.get("dn", [""])[0][:100]
        return f"magnet {fields.get('xt', ['?'])[0][:80]}" + (f" {name!r}" if name else "")
    return f"{parts.scheme[:10]}://{host[:100]}/… (path and query not logged)"


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            yield Path(folder) / name


def _files(t: states.TorrentView) -> list[dict[str, Any]]:
    """`torrents/files`: what landed at home, else the torrent as one entry (q4d reads
    no file list from the seedbox). Names are relative to save_path, `/`-separated."""
    landed = Path(t.content_path)
    found: list[tuple[str, int]] = []
    if t.state == "pausedUP" and landed.is_dir():
        for path in itertools.islice(_walk(landed), MAX_FILES):
            found.append((path.relative_to(landed.parent).as_posix(), path.stat().st_size))
    elif t.state == "pausedUP" and landed.is_file():
        found.append((landed.name, landed.stat().st_size))
    if not found:
        found.append((t.name, t.size))
    return [
        {
            "index": i,
            "name": name,
            "size": size,
            "progress": t.progress,
            "priority": 1,
            "is_seed": t.progress >= 1,
            "piece_range": [0, 0],
            "availability": -1,
        }
        for i, (name, size) in enumerate(found)
    ]


def _meta(magnet: str | None, data: bytes | None) -> Metainfo | None:
    """What a magnet or .torrent file says, or None (a URL, or what does not parse)."""
    try:
        if magnet is not None:
            return parse_magnet(magnet)
        return parse_torrent_file(data) if data is not None else None
    except MetainfoError:
        return None
