"""The categories the qBittorrent API shows and takes. They are q4d's: those the rules
route by name (`category is tv`) and `dispatch.categories`, and those an *arr app
created (`createCategory`, or an add naming a new one, as qBittorrent creates it),
kept in the store. Each shows the home folder its torrents land under as `savePath`."""

from __future__ import annotations

from typing import Any

from ..dispatch.dispatcher import Dispatcher
from ..persistence.store import Store
from ..rules import UnsafePathError, check_name
from .catalog import Catalog

SETTING = "api_categories"
MAX_NAME = 200


class BadCategory(ValueError):
    """A name that cannot be a category: a path (`../x`), control characters, too long."""


def check_category(name: str) -> str:
    """A category becomes a folder name (`subdir: "{category}"`): one plain name only."""
    try:
        check_name(name)
    except UnsafePathError as err:
        raise BadCategory(f"incorrect category name {name!r}: {err}") from None
    if "\\" in name or name != name.strip() or len(name) > MAX_NAME:
        raise BadCategory(f"incorrect category name {name!r}")
    return name


class Categories:
    def __init__(self, store: Store, dispatcher: Dispatcher, catalog: Catalog) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.catalog = catalog
        self.created: set[str] = set(store.get_setting(SETTING, []))
        dispatcher.extra_categories |= self.created

    def names(self) -> set[str]:
        return set(self.dispatcher.known_categories() or ()) | self.created

    def listing(self) -> dict[str, dict[str, Any]]:
        """`torrents/categories`: `{}` when there are none, as qBittorrent answers."""
        return {
            name: {"name": name, "savePath": str(self.catalog.category_root(name))}
            for name in sorted(self.names())
        }

    def create(self, name: str) -> None:
        """Idempotent: a category that exists stays as it is."""
        check_category(name)
        if name in self.names():
            return
        self.created.add(name)
        self.dispatcher.extra_categories.add(name)
        self.store.set_setting(SETTING, sorted(self.created))
