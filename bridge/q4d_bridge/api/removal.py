"""What `torrents/delete` does, by the configured policy (docs/arr.md#removal).

The torrent leaves the API's list at once. Its transfer home stops if it is still
coming. On the seedbox, `on_delete: remove` removes the torrent from its client (with
its data when the app asked for `deleteFiles=true` and `delete_seedbox_data` allows
it); `keep_seeding` leaves a finished torrent seeding there (an unfinished download is
removed either way: nothing of it is worth keeping). A removal the seedbox's client does
not answer is recorded first and tried again (backing off as transfers do) until the
client removes the torrent or says it is gone. The copy landed at home is deleted only
when the app asked for `deleteFiles=true` and `delete_home_copy` is on; after an import
that moved the files there is nothing left to delete anyway."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..config.model import ApiConfig
from ..dispatch.dispatcher import Dispatcher, DispatchError
from ..dispatch.requests import Request, RequestState
from ..lifecycle.controller import Controller
from ..models import FINISHED_STATES, Item, ItemState
from ..mqtt.commands import CommandError
from ..persistence.api_removals import ApiRemovals, PendingRemoval
from ..rules import UnsafePathError, ensure_inside
from .catalog import Catalog

_LOGGER = logging.getLogger(__name__)
FINISHED_THERE = frozenset({RequestState.COMPLETED, RequestState.LANDED})


class Removal:
    def __init__(
        self,
        settings: ApiConfig,
        catalog: Catalog,
        dispatcher: Dispatcher,
        controller: Controller,
        destinations: Callable[[], Iterable[Path]],  # as configured now (Bridge.apply)
        pending: ApiRemovals,
        retry: tuple[float, float],  # first delay, longest delay (transfers.retry_*)
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.controller = controller
        self.destinations = destinations
        self.pending = pending
        self.retry_initial, self.retry_max = retry
        self._wake = asyncio.Event()

    async def delete(self, keys: list[str], *, delete_files: bool) -> None:
        found = [(key, self.catalog.request_of(key), self.catalog.item_of(key)) for key in keys]
        self.catalog.removed(keys)
        for key, request, item in found:
            await self._delete(key, request, item, delete_files)

    async def _delete(
        self, key: str, request: Request | None, item: Item | None, delete_files: bool
    ) -> None:
        # A verifying payload is being moved into place and lands in a moment.
        if item is not None and item.state not in FINISHED_STATES | {ItemState.VERIFYING}:
            self.controller.cancel(item.id)
        finished = item is not None or (request is not None and request.state in FINISHED_THERE)
        if self.settings.on_delete == "remove" or not finished:
            if request is not None:
                await self._from_seedbox(key, request.seedbox, request.info_hash, delete_files)
            elif item is not None and item.hash:
                await self._from_seedbox(key, item.seedbox, item.hash, delete_files)
        landed = (item.local_path if item and item.state is ItemState.DONE else None) or (
            request.local_path if request is not None else None
        )
        if not (delete_files and self.settings.delete_home_copy and landed):
            return
        if await asyncio.to_thread(delete_landed, Path(landed), tuple(self.destinations())):
            _LOGGER.info("deleted the home copy of %s: %s", key, landed)

    async def _from_seedbox(
        self, key: str, seedbox: str, info_hash: str, delete_files: bool
    ) -> None:
        with_data = delete_files and self.settings.delete_seedbox_data
        # recorded before it is asked for: a bridge stopped now tries again at its start
        removal = PendingRemoval(key, seedbox, info_hash, with_data, next_at=time.time())
        self.pending.save(removal)
        await self._remove(removal)

    async def _remove(self, removal: PendingRemoval) -> None:
        try:
            await self.dispatcher.steer(
                "remove", removal.seedbox, removal.info_hash, delete_data=removal.delete_data
            )
        except DispatchError as err:
            if err.code == "client_error":
                self._later(removal, err.message)
                return
            # not there any more, or a seedbox q4d has no client for
        else:
            _LOGGER.info("removed %s from %s%s", removal.key, removal.seedbox,
                         " with its data" if removal.delete_data else "")  # fmt: skip
        self.pending.forget(removal.key)

    def _later(self, removal: PendingRemoval, error: str) -> None:
        delay = min(self.retry_max, self.retry_initial * 2**removal.attempts)
        self.pending.save(dataclasses.replace(
            removal, attempts=removal.attempts + 1, next_at=time.time() + delay,
            last_error=error,
        ))  # fmt: skip
        log = _LOGGER.warning if removal.attempts == 0 else _LOGGER.debug
        log("%s stays on %s for now (%s); trying again in %.0f s",
            removal.key, removal.seedbox, error, delay)  # fmt: skip
        self._wake.set()

    def restore(self, deleted: Mapping[str, Request], category: str | None) -> str | None:
        """A torrent the app deleted and grabs again while its seedbox still seeds it
        (keep_seeding): listed again, its home copy fetched again if it is gone. The key,
        or None when no such torrent is still on its seedbox."""
        for key, request in deleted.items():
            if not self._seeding(request):
                continue
            item = self.catalog.items.get(request.item_id) if request.item_id else None
            home_gone = item is not None and not Path(item.local_path).exists()
            if item is not None and item.state is ItemState.DONE and home_gone:
                try:
                    self.controller.retry(item.id, force=True)
                except CommandError as err:  # its seedbox or destination is gone
                    _LOGGER.warning("%s grabbed again, not fetched: %s", key, err)
                    return None
                _LOGGER.info("%s grabbed again: its home copy is gone, fetched again", key)
            self.catalog.restore(key, category)
            self.pending.forget(key)
            return key
        return None

    def _seeding(self, request: Request) -> bool:
        """On its seedbox's client at the last look (the add just refreshed it)."""
        status = self.dispatcher.monitor.status.get(request.seedbox)
        hashes = request.hashes
        return (
            any(not hashes.isdisjoint((t.hash, *t.aliases)) for t in (status.torrents or ()))
            if status is not None
            else False
        )

    async def run(self) -> None:
        """The removals left pending, each tried again when due; one the app grabbed
        again since is dropped (the torrent is wanted now)."""
        while True:
            self._wake.clear()
            for removal in self.pending.pending():
                if removal.next_at > time.time():
                    break
                if self.catalog.find(removal.key) is not None:
                    self.pending.forget(removal.key)
                    continue
                try:
                    await self._remove(removal)
                except Exception as err:  # a bug must not stop the API (or the bridge)
                    _LOGGER.exception("removing %s from %s failed", removal.key, removal.seedbox)
                    self._later(removal, f"{type(err).__name__}: {err}")
            soonest = min((r.next_at for r in self.pending.pending()), default=None)
            wait = self.retry_max if soonest is None else max(0.05, soonest - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)


def delete_landed(path: Path, roots: Iterable[Path]) -> bool:
    """Delete a landed payload, a file or a folder inside one of the destinations (never
    a destination itself, nor what a symlink planted there points to)."""
    for root in roots:
        try:
            ensure_inside(root, path)
        except UnsafePathError:
            continue
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            return False
        return True
    _LOGGER.warning("not deleting %s: it is outside every destination", path)
    return False
