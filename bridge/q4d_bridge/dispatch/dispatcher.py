"""Adding a torrent: read and validate it, refuse a duplicate, score every seedbox's
client, record the decision and the request, then add it to the chosen client. One
add at a time, so each decision sees the torrents the one before it placed."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..clients.base import (
    ClientError,
    ClientErrorKind,
    ManagedTorrentClient,
    NewTorrent,
    TorrentClient,
)
from ..clients.metainfo import Metainfo, MetainfoError
from ..clients.monitor import ClientMonitor
from ..config.model import Config
from ..models import Item
from ..persistence.requests import DispatchRecords
from .duplicates import Known, find_duplicate, normalise_name
from .requests import Request, RequestState, new_request_id
from .scoring import ClientSnapshot, Reason, Score, choose, score_client
from .sources import Source, from_base64, from_magnet, from_torrent_file, from_url
from .tracker import RequestTracker

_LOGGER = logging.getLogger(__name__)


class DispatchError(Exception):
    """An add or a torrent command refused: `code` for programs, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AddRequest:
    magnet: str | None = None
    url: str | None = None
    torrent: str | None = None  # base64 of the .torrent file
    torrent_file: bytes | None = None  # the .torrent file itself (the HTTP API's uploads)
    category: str | None = None
    seedbox: str | None = None
    paused: bool = False
    size: int | None = None  # the caller's estimate, for a magnet
    source: str = "mqtt"
    # Requests whose torrent its app deleted (the HTTP API): neither they nor their
    # queue items make this add a duplicate, so the app can grab that release again.
    forgotten: frozenset[str] = frozenset()


class Dispatcher:
    def __init__(
        self,
        config: Config,
        clients: Mapping[str, TorrentClient],
        monitor: ClientMonitor,
        records: DispatchRecords,
        tracker: RequestTracker,
        items: Mapping[str, Item],
    ) -> None:
        self.config = config
        self.settings = config.dispatch
        self._clients = clients  # the bridge's live mapping (Bridge.apply changes it)
        self.monitor = monitor
        self.records = records
        self.tracker = tracker
        self.items = items
        self._lock = asyncio.Lock()
        self._adding: set[str] = set()  # request ids whose add is in flight
        # categories created through the HTTP API (torrents/createCategory), accepted
        # besides those the configuration names
        self.extra_categories: set[str] = set()

    @property
    def clients(self) -> dict[str, ManagedTorrentClient]:
        """The seedboxes' clients that can take torrents, as configured now."""
        return {
            sb: client
            for sb, client in self._clients.items()
            if isinstance(client, ManagedTorrentClient)
        }

    def busy(self, request_id: str) -> bool:
        return request_id in self._adding

    # --- scores ------------------------------------------------------------------------

    def snapshot(self, seedbox: str) -> ClientSnapshot | None:
        config = self.config.seedboxes[seedbox].client
        status = self.monitor.status.get(seedbox)
        if config is None or status is None:
            return None
        stats = status.stats
        pending = 0
        for torrent in status.torrents or ():
            if not torrent.complete:
                # a magnet still fetching its metadata has no size yet: count the estimate
                left = torrent.size * (1 - torrent.progress) if torrent.size else None
                pending += int(left if left is not None else self.settings.size_estimate)
        return ClientSnapshot(
            seedbox=seedbox,
            reachable=bool(status.reachable) and stats is not None,
            error=status.error,
            free_space=stats.free_space if stats else None,
            active_downloads=stats.active_downloads if stats else 0,
            download_rate=stats.download_rate if stats else 0,
            pending_bytes=pending,
            settings=config.dispatch,
        )

    def score(self, seedbox: str, size: int | None = None) -> Score:
        return self._scored(seedbox, size)[1]

    def _scored(self, seedbox: str, size: int | None) -> tuple[ClientSnapshot | None, Score]:
        snapshot = self.snapshot(seedbox)
        if snapshot is None:
            return None, Score(
                seedbox, None, Reason.NO_CLIENT, "no torrent client configured", None
            )
        size = self.settings.size_estimate if size is None else size
        return snapshot, score_client(snapshot, self.settings, size)

    def client_view(
        self,
        seedbox: str,
        size: int | None = None,
        scored: tuple[ClientSnapshot | None, Score] | None = None,
    ) -> dict[str, Any]:
        """One client as the `clients` command and decisions show it."""
        seedbox_config = self.config.seedboxes[seedbox]
        status = self.monitor.status.get(seedbox)
        snapshot, score = scored or self._scored(seedbox, size)
        dispatch = seedbox_config.client.dispatch if seedbox_config.client else None
        return {
            "seedbox": seedbox,
            "name": seedbox_config.name,
            **(status.as_dict() if status else {"type": None, "version": None, "reachable": None}),
            "pending_bytes": snapshot.pending_bytes if snapshot else None,
            "dispatch": bool(dispatch and dispatch.enabled),
            "weight": dispatch.weight if dispatch else None,
            "min_free": dispatch.min_free if dispatch else None,
            "max_downloads": dispatch.max_downloads if dispatch else None,
            **score.as_dict(),
        }

    async def clients_report(self) -> dict[str, Any]:
        await self.monitor.refresh(self.clients)
        return {"clients": [self.client_view(sb) for sb in self.config.seedboxes]}

    # --- adding ------------------------------------------------------------------------

    async def add(self, wanted: AddRequest, *, dry_run: bool = False) -> dict[str, Any]:
        source = await self._read(wanted)
        self._check_category(wanted.category)
        if wanted.seedbox is not None and wanted.seedbox not in self.clients:
            known = ", ".join(sorted(self.clients)) or "none"
            raise DispatchError(
                "unknown_seedbox",
                f"{wanted.seedbox!r} is not a seedbox with a torrent client (known: {known})",
            )
        async with self._lock:
            return await self._decide_and_add(wanted, source, dry_run)

    async def _decide_and_add(
        self, wanted: AddRequest, source: Source, dry_run: bool
    ) -> dict[str, Any]:
        meta = source.meta
        await self.monitor.refresh(self.clients)
        size = meta.size or wanted.size or self.settings.size_estimate
        candidates = [wanted.seedbox] if wanted.seedbox else list(self.clients)
        scored = {sb: self._scored(sb, size) for sb in self.config.seedboxes}
        scores = [scored[sb][1] for sb in candidates]
        chosen = choose(scores)
        decision: dict[str, Any] = {
            "id": secrets.token_hex(8),
            "at": time.time(),
            "dry_run": dry_run,
            "source": wanted.source,
            "name": meta.name,
            "info_hash": meta.client_hash,
            "size": size,
            "size_estimated": meta.size is None and wanted.size is None,
            "category": wanted.category,
            "requested_seedbox": wanted.seedbox,
            "clients": [self.client_view(sb, size, scored[sb]) for sb in self.config.seedboxes],
            "chosen": chosen.seedbox if chosen else None,
            "outcome": "dry_run" if dry_run else "added",
            "error": None,
            "request_id": None,
        }
        duplicate = find_duplicate(meta, self._known(meta, wanted.forgotten))
        refusal: DispatchError | None = None
        if duplicate is not None:
            refusal = DispatchError("duplicate", duplicate.message)
        elif chosen is None:
            reasons = "; ".join(f"{s.seedbox}: {s.detail}" for s in scores) or "no clients"
            refusal = DispatchError("no_eligible_client", f"no client can take it ({reasons})")
        if refusal is not None:
            decision["chosen"] = None
            decision["outcome"] = refusal.code
            decision["error"] = {"code": refusal.code, "message": refusal.message}
            if not dry_run:
                self.records.record(decision, keep=self.settings.history, outcome=refusal.code)
                _LOGGER.info("add %r refused: %s", meta.name, refusal.message)
            raise refusal
        assert chosen is not None
        if dry_run:
            return {"decision": decision}
        request = self._request(wanted, source, chosen.seedbox, decision)
        decision["request_id"] = request.id
        self.records.record(decision, request, keep=self.settings.history)
        self.tracker.track(request)
        await self._send(request, decision)
        return {"request": request.as_dict(), "decision": decision}

    def _request(
        self, wanted: AddRequest, source: Source, seedbox: str, decision: dict[str, Any]
    ) -> Request:
        now = decision["at"]
        meta = source.meta
        return Request(
            id=new_request_id(),
            created_at=now,
            updated_at=now,
            source=wanted.source,
            category=wanted.category,
            name=meta.name,
            info_hash=meta.client_hash,
            v1=meta.v1,
            v2=meta.v2,
            seedbox=seedbox,
            size=meta.size or wanted.size,
            state=RequestState.REQUESTED,
            decision_id=decision["id"],
            paused=wanted.paused,
            magnet=source.magnet,
            torrent_file=source.torrent_file,
        )

    async def _send(self, request: Request, decision: dict[str, Any]) -> None:
        """Add the recorded request to its client; the outcome is recorded either way."""
        client = self.clients[request.seedbox]
        config = self.config.seedboxes[request.seedbox].client
        torrent = NewTorrent(
            magnet=request.magnet,
            torrent_file=request.torrent_file,
            category=request.category,
            save_path=config.dispatch.save_path if config else None,
            paused=request.paused,
        )
        self._adding.add(request.id)
        try:
            await client.add(torrent)
        except ClientError as err:
            request.fail("client_error", f"{request.seedbox}: {err}", time.time())
            request.magnet = request.torrent_file = None  # a new add brings its own
            decision["outcome"] = "failed"
            decision["error"] = {"code": "client_error", "message": request.error_message}
            self.records.record(decision, request, keep=self.settings.history, outcome="failed")
            self.tracker.track(request)
            raise DispatchError("client_error", request.error_message or str(err)) from err
        finally:
            self._adding.discard(request.id)
        request.state, request.updated_at = RequestState.ADDED, time.time()
        request.magnet = request.torrent_file = None  # the client has it now
        self.records.save(request, outcome="added")
        self.tracker.track(request)
        self.tracker.nudge()
        _LOGGER.info("added %r to %s (request %s)", request.name, request.seedbox, request.id)

    async def recover(self) -> None:
        """Requests a crash caught between recording and the client's answer: added
        again (the adapters find a torrent that did arrive instead of adding it twice)."""
        for request in list(self.tracker.active.values()):
            if request.state is not RequestState.REQUESTED or request.seedbox not in self.clients:
                continue
            if request.magnet is None and request.torrent_file is None:
                continue
            decision = next(
                (
                    d
                    for d in self.records.decisions(self.settings.history)
                    if d["id"] == request.decision_id
                ),
                {"id": request.decision_id, "at": request.created_at, "outcome": "added"},
            )
            try:
                await self._send(request, decision)
            except DispatchError as err:
                _LOGGER.warning("request %s: adding again failed: %s", request.id, err.message)

    # --- reading the input -------------------------------------------------------------

    async def _read(self, wanted: AddRequest) -> Source:
        given = [
            x
            for x in (wanted.magnet, wanted.url, wanted.torrent, wanted.torrent_file)
            if x is not None
        ]
        if len(given) != 1:
            raise DispatchError(
                "invalid_torrent", "give exactly one of magnet, url or torrent (base64)"
            )
        try:
            if wanted.magnet is not None:
                return from_magnet(wanted.magnet)
            if wanted.torrent is not None:
                return from_base64(wanted.torrent)
            if wanted.torrent_file is not None:
                return from_torrent_file(wanted.torrent_file)
            assert wanted.url is not None
            return await from_url(wanted.url, within=self.settings.fetch_timeout)
        except MetainfoError as err:
            raise DispatchError("invalid_torrent", str(err)) from err

    def _check_category(self, category: str | None) -> None:
        known = self.known_categories()
        if category is None or known is None or category in known:
            return
        if category in self.extra_categories:
            return
        raise DispatchError(
            "unknown_category",
            f"unknown category {category!r}: the rules route {', '.join(sorted(known))}"
            " (or list it under dispatch.categories)",
        )

    def known_categories(self) -> frozenset[str] | None:
        """The categories the rules route by name and dispatch.categories; None when
        neither names any (every category is then accepted)."""
        named = {
            str(c.value)
            for rule in self.config.routing.rules
            for c in rule.conditions
            if c.field == "category" and c.op == "is"
        }
        named.update(self.settings.categories)
        return frozenset(named) or None

    # --- duplicates --------------------------------------------------------------------

    def _known(self, meta: Metainfo, forgotten: frozenset[str]) -> list[Known]:
        """What q4d has with one of this torrent's hashes or its release name: on the
        clients and in the queue (held in memory), and among the requests (looked up),
        less the `forgotten` requests and their items."""
        hashes = meta.hashes
        key = normalise_name(meta.name) if meta.name else None

        def same(names: tuple[str, ...], name: str | None) -> bool:
            return not hashes.isdisjoint(names) or (
                key is not None and name is not None and normalise_name(name) == key
            )

        known: list[Known] = []
        for seedbox, status in self.monitor.status.items():
            for t in status.torrents or ():
                if same((t.hash, *t.aliases), t.name):
                    state = f"{round(100 * t.progress)} % downloaded ({t.state})"
                    where = f"{seedbox}'s {status.type}"
                    known.append(Known((t.hash, *t.aliases), t.name, where, state))
        for request in self.records.matching(hashes, meta.name):
            if request.id in forgotten:
                continue
            where = f"request {request.id} on {request.seedbox}"
            known.append(Known(tuple(request.hashes), request.name, where, request.state.value))
        for item in self.items.values():
            if item.request_id in forgotten:
                continue
            if same((item.hash,) if item.hash else (), item.name):
                where = f"the queue (item {item.id} from {item.seedbox})"
                known.append(
                    Known((item.hash,) if item.hash else (), item.name, where, item.state.value)
                )
        return known

    # --- steering torrents on a client ------------------------------------------------------

    async def steer(
        self, op: str, seedbox: str, info_hash: str, *, delete_data: bool = False
    ) -> None:
        client = self.clients.get(seedbox)
        if client is None:
            raise DispatchError(
                "unknown_seedbox", f"{seedbox!r} is not a seedbox with a torrent client"
            )
        try:
            if op == "pause":
                await client.pause([info_hash])
            elif op == "resume":
                await client.resume([info_hash])
            else:
                await client.remove([info_hash], delete_data=delete_data)
        except ClientError as err:
            code = "not_found" if err.kind is ClientErrorKind.NOT_FOUND else "client_error"
            raise DispatchError(code, f"{seedbox}: {err}") from err
