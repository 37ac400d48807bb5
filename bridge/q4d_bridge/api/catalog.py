"""The torrents the qBittorrent API lists: every add request (from the API, Home
Assistant, the command line or MQTT) and every queue item a seedbox reported without
one, each under the hash the *arr apps compute for it, less those deleted through the
API. Kept in memory and told of every change (the request records' and the lifecycle's
observers), so that a list costs no database read and a new add shows at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..dispatch.requests import Request
from ..models import Item
from ..persistence.api_marks import ApiMark, ApiMarks
from ..persistence.requests import DispatchRecords
from ..rules import Routing, category_destination, destination_root
from .states import TorrentView, view


def request_key(request: Request) -> str:
    """What Sonarr and Radarr compute from the magnet or .torrent (MonoTorrent's
    V1OrV2): the v1 hash if there is one, else the whole v2 hash."""
    return request.v1 or request.v2 or request.info_hash


class Catalog:
    def __init__(
        self,
        records: DispatchRecords,
        items: Mapping[str, Item],
        marks: ApiMarks,
        routing: Routing,
    ) -> None:
        self.items = items
        self.routing = routing
        self._marks_store = marks
        self.marks = marks.load()
        self._requests: dict[str, Request] = {}  # by key: the newest request for it
        self._aliases: dict[str, str] = {}  # every hash a request is known by → its key
        self._items: dict[str, str] = {}  # key → id of an item with no request
        self._roots: dict[str | None, str] = {}  # category → its home folder
        # what _roots was worked out from: the routing's rules and destinations, which
        # Bridge.apply rebinds (never changes in place) when the configuration changes
        self._roots_rules, self._roots_destinations = routing.rules, routing.destinations
        for request in reversed(records.requests()):  # oldest first: the newest stays
            self.request_saved(request)
        for item in items.values():
            self.item_changed(item)
        records.observers.append(self.request_saved)

    # --- told of changes -------------------------------------------------------------

    def request_saved(self, request: Request) -> None:
        key = request_key(request)
        mark = self.marks.get(key)
        if mark is not None and mark.removed_at is not None:
            if request.created_at <= mark.removed_at:
                return  # deleted through the API
            del self.marks[key]  # added again since: a new torrent
            self._marks_store.forget(key)
        current = self._requests.get(key)
        if current is None or current.id == request.id or current.created_at <= request.created_at:
            self._requests[key] = request
            for alias in request.hashes | {key}:
                self._aliases[alias] = key

    def item_changed(self, item: Item) -> None:
        """A Lifecycle observer: items the seedbox reported on its own (no request)."""
        if item.request_id is None and item.hash:
            self._items[item.hash.lower()] = item.id

    # --- reading -----------------------------------------------------------------------

    def find(self, info_hash: str) -> str | None:
        """The key of a listed torrent known by this hash (any case, v1, v2 or v2 cut
        to 40 digits), or None."""
        wanted = info_hash.lower()
        key = self._aliases.get(wanted)
        if key is not None and self._visible_request(key) is not None:
            return key
        if self._item_only(wanted) is not None:
            return wanted
        return None

    def get(self, key: str) -> TorrentView | None:
        request = self._visible_request(key)
        if request is not None:
            item = self.items.get(request.item_id) if request.item_id else None
            return self._view(key, request, item)
        item = self._item_only(key)
        return None if item is None else self._view(key, None, item)

    def torrents(self, category: str | None = None) -> list[TorrentView]:
        """Every listed torrent, or those of one category ("": those without one)."""
        found: list[tuple[str, Request | None, Item | None]] = [
            (key, r, self.items.get(r.item_id) if r.item_id else None)
            for key, r in self._requests.items()
            if not self._removed(key, r.created_at)
        ]
        for key in list(self._items):
            item = self._item_only(key)
            if item is not None:
                found.append((key, None, item))
        return [
            self._view(key, request, item)
            for key, request, item in found
            if category is None or self._category(key, request, item) == category
        ]

    def category_root(self, category: str | None) -> Path:
        """The home folder torrents of this category land under."""
        return destination_root(self.routing, category_destination(self.routing, category or None))

    # --- the API's own changes -----------------------------------------------------------

    def set_category(self, keys: Iterable[str], category: str) -> None:
        def change(mark: ApiMark) -> None:
            mark.category = category

        self._mark(keys, change)

    def add_tags(self, keys: Iterable[str], tags: Iterable[str]) -> None:
        wanted = tuple(tags)

        def change(mark: ApiMark) -> None:
            mark.tags = tuple(dict.fromkeys(mark.tags + wanted))

        self._mark(keys, change)

    def removed(self, keys: Iterable[str]) -> None:
        now = time.time()

        def change(mark: ApiMark) -> None:
            mark.removed_at = now

        self._mark(keys, change)

    def deleted(self, hashes: Iterable[str]) -> dict[str, Request]:
        """The requests for these hashes that an app deleted (not added again since), by
        their key."""
        found = {}
        for info_hash in hashes:
            key = self._aliases.get(info_hash.lower())
            if key is not None and self._removed(key, self._requests[key].created_at):
                found[key] = self._requests[key]
        return found

    def restore(self, key: str, category: str | None) -> None:
        """Listed again, as the app adds it now: the delete undone, in the category of
        this add (None: the torrent's own), the tags of the last time dropped."""

        def change(mark: ApiMark) -> None:
            mark.removed_at, mark.category, mark.tags = None, category, ()

        self._mark([key], change)

    def request_of(self, key: str) -> Request | None:
        return self._visible_request(key)

    def item_of(self, key: str) -> Item | None:
        request = self._visible_request(key)
        if request is not None:
            return self.items.get(request.item_id) if request.item_id else None
        return self._item_only(key)

    # --- inside ------------------------------------------------------------------------

    def _mark(self, keys: Iterable[str], change: Callable[[ApiMark], None]) -> None:
        changed = []
        for key in keys:
            mark = self.marks.setdefault(key, ApiMark(key))
            change(mark)
            changed.append(mark)
        self._marks_store.save(changed)

    def _removed(self, key: str, since: float) -> bool:
        mark = self.marks.get(key)
        return mark is not None and mark.removed_at is not None and mark.removed_at >= since

    def _visible_request(self, key: str) -> Request | None:
        request = self._requests.get(key)
        if request is None or self._removed(key, request.created_at):
            return None
        return request

    def _item_only(self, key: str) -> Item | None:
        item_id = self._items.get(key)
        item = self.items.get(item_id) if item_id else None
        if item is None:
            self._items.pop(key, None)  # pruned from the history
            return None
        if key in self._requests or self._removed(key, item.received_at):
            return None
        return item

    def _category(self, key: str, request: Request | None, item: Item | None) -> str:
        mark = self.marks.get(key)
        if mark is not None and mark.category is not None:
            return mark.category
        return (request.category if request else item.category if item else None) or ""

    def _root(self, category: str | None) -> str:
        # a string, not a Path: joined once per torrent on every list (pathlib is slow)
        routing = self.routing
        if routing.rules is not self._roots_rules or (
            routing.destinations is not self._roots_destinations
        ):
            self._roots.clear()  # a new configuration: a category may land elsewhere now
            self._roots_rules, self._roots_destinations = routing.rules, routing.destinations
        root = self._roots.get(category)
        if root is None:
            root = self._roots[category] = str(self.category_root(category))
        return root

    def _view(self, key: str, request: Request | None, item: Item | None) -> TorrentView:
        mark = self.marks.get(key)
        tags = (item.tags if item else ()) + (mark.tags if mark is not None else ())
        return view(
            key,
            request,
            item,
            category=self._category(key, request, item),
            tags=tuple(dict.fromkeys(tags)),
            root=self._root(request.category if request else item.category if item else None),
        )
