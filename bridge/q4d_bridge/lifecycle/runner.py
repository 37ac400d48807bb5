"""Runs the attempts the scheduler starts, one task per item, each under the stall
watchdog, and turns how an attempt ended into the item's next state."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..config.model import Config
from ..models import ACTIVE_STATES, Item, ItemState
from ..transfer.engines.base import Engine
from ..transfer.errors import ErrorCode, TransferError
from ..transfer.landing import Modes, discard_staging
from ..transfer.payload import RemoteEntry
from ..transfer.pipeline import DiskFree, Job, Landed, run_transfer
from ..transfer.rates import RateMeter
from ..transfer.remote import SeedboxSession
from ..transfer.torrents import TorrentSource
from ..transfer.watchdog import with_watchdog
from .machine import Lifecycle
from .policy import after_failure
from .post import PostRunner
from .scheduler import Scheduler

_LOGGER = logging.getLogger(__name__)
# Why a running attempt is stopped from outside.
REQUEUE = "requeue"  # back to the queue, resuming later (pause, a new rate limit)
CANCEL = "cancel"  # the item is cancelled and its staging deleted
UNCONFIGURED = "unconfigured"  # its seedbox or destination left the configuration (live.py)


class AttemptReporter:
    """What one attempt reports, applied to its item; also the watchdog's sign of life."""

    def __init__(self, lifecycle: Lifecycle, item: Item) -> None:
        self.lifecycle = lifecycle
        self.item = item
        self.meter = RateMeter(item.size)
        self.last_activity = time.monotonic()

    def phase(self, state: ItemState, remote: RemoteEntry) -> None:
        self.last_activity = time.monotonic()
        self.meter.total = remote.size
        skipped = remote.skipped if state is ItemState.TRANSFERRING else ()
        self.lifecycle.phase(self.item, state, remote.size, skipped)

    def progress(self, done: int) -> None:
        if done != self.item.bytes_done:
            self.last_activity = time.monotonic()
        self.meter.update(done)
        self.lifecycle.progress(self.item, done, self.meter.rate, self.meter.eta(done))

    def heartbeat(self) -> None:  # called from the hashing thread while verifying
        self.last_activity = time.monotonic()


class Runner:
    def __init__(
        self,
        config: Config,
        lifecycle: Lifecycle,
        scheduler: Scheduler,
        *,
        sessions: Mapping[str, SeedboxSession],
        engines: Mapping[str, Engine],
        torrents: Mapping[str, TorrentSource],
        modes: Modes,
        disk_free: DiskFree,
        landed: Callable[[], None],
        post: PostRunner,
    ) -> None:
        self.config = config
        self.lifecycle = lifecycle
        self.scheduler = scheduler
        self.sessions = sessions
        self.engines = dict(engines)
        self.torrents = torrents
        self.modes = modes
        self.disk_free = disk_free
        self.landed = landed  # a payload landed: free space changed
        self.post = post
        self.running: dict[str, asyncio.Task[None]] = {}
        self._stop_reason: dict[str, str] = {}
        self._rng = random.Random()  # noqa: S311 - retry jitter, not cryptography

    def engine_of(self, item: Item) -> str:
        return item.engine or self.config.seedboxes[item.seedbox].engine

    def launch(self, item: Item) -> None:
        task = asyncio.create_task(self._attempt(item), name=f"transfer-{item.id}")
        self.running[item.id] = task
        task.add_done_callback(lambda done: self._ended(item, done))

    def cancel(self, item: Item) -> None:
        """Cancel an item: a running attempt is stopped (and cancels it as it ends);
        otherwise it is cancelled now. Its staging files go either way."""
        if not self.interrupt(item.id, CANCEL):
            self._cancelled(item)

    def interrupt(self, item_id: str, reason: str) -> bool:
        """Stop a running attempt (REQUEUE or CANCEL); False if none is running."""
        task = self.running.get(item_id)
        if task is None or task.done():
            return False
        self._stop_reason[item_id] = reason
        task.cancel()
        return True

    async def stop(self) -> None:
        """Bridge shutdown: a payload being verified and moved finishes (a moment); the
        rest stop and resume from staging on the next start."""
        for item_id, task in self.running.items():
            if self.lifecycle.items[item_id].state is not ItemState.VERIFYING:
                task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def _attempt(self, item: Item) -> None:
        if not self.config.serves(item):
            # Its seedbox or destination left while it waited (a configuration applied
            # live took it away during an attempt that then failed and was requeued).
            self.lifecycle.unconfigured(item)
            return
        reporter = AttemptReporter(self.lifecycle, item)
        transfers = self.config.transfers
        try:
            landed = await with_watchdog(
                self._transfer(item, reporter),
                stall_timeout=transfers.stall_timeout,
                last_activity=lambda: reporter.last_activity,
            )
        except asyncio.CancelledError:
            reason = self._stop_reason.pop(item.id, None)
            if reason is None:
                raise  # bridge shutdown: the item resumes on the next start
            self._stopped(item, reason)
        except TransferError as err:
            self._failed(item, err)
        except Exception as err:
            _LOGGER.exception("transfer of %s crashed", item.id)
            self._failed(item, TransferError(ErrorCode.TRANSFER, f"{type(err).__name__}: {err}"))
        else:
            self._done(item, landed)

    async def _transfer(self, item: Item, reporter: AttemptReporter) -> Landed:
        seedbox = self.config.seedboxes[item.seedbox]
        transfers = self.config.transfers
        source = self.torrents[item.seedbox]
        job = Job(
            item_id=item.id,
            seedbox=seedbox,
            remote_path=item.remote_path,
            root=self.config.routing.destinations[item.destination],
            final_path=Path(item.local_path),
            min_free_space=transfers.min_free_space,
            max_repairs=transfers.max_repairs,
            stream_verify=transfers.stream_verify,
            modes=self.modes,
            plan=item.plan,
        )
        return await run_transfer(
            job,
            session=self.sessions[item.seedbox],
            engine=self.engines[self.engine_of(item)],
            reporter=reporter,
            torrent=(lambda: source.info(item.hash)) if transfers.verify else None,
            disk_free=self.disk_free,
        )

    def _ended(self, item: Item, task: asyncio.Task[None]) -> None:
        """Runs however the task ended, even when it was cancelled before its first step
        (then _attempt never saw the stop reason, so it is applied here)."""
        self.running.pop(item.id, None)
        reason = self._stop_reason.pop(item.id, None)
        if reason is not None and task.cancelled() and item.state in ACTIVE_STATES:
            self._stopped(item, reason)
        self.scheduler.wake()

    def _done(self, item: Item, landed: Landed) -> None:
        self.landed()
        self.scheduler.succeeded(item.seedbox)
        detail = {
            "bytes": landed.size,
            "verified": landed.verified,
            "repaired_pieces": landed.repaired_pieces,
            "skipped": list(landed.skipped),
        }
        if not item.plan.steps():
            self.lifecycle.done(
                item, landed.size, detail, verified=landed.verified,
                repaired_pieces=landed.repaired_pieces, skipped=list(landed.skipped),
            )  # fmt: skip
            return
        self.lifecycle.landed(
            item, landed.size, detail, verified=landed.verified,
            repaired_pieces=landed.repaired_pieces, skipped=list(landed.skipped),
        )  # fmt: skip
        self.post.launch(item)

    def _failed(self, item: Item, err: TransferError) -> None:
        now = time.time()
        outcome = after_failure(item, err, self.config.transfers, now, self._rng)
        if outcome.counts_for_breaker:
            self.scheduler.failed(item.seedbox, now)
        if outcome.retry_at is None and item.refetch and Path(item.local_path).exists():
            self.lifecycle.refetch_failed(item, err)
            return
        if outcome.retry_at is None:
            self.lifecycle.failed(item, err)
            return
        self.lifecycle.waiting(item, err, outcome.retry_at, attempt_spent=outcome.attempt_spent)
        if outcome.attempt_spent:
            _LOGGER.warning(
                "attempt %d of %s failed (%s); retrying in %.1fs",
                item.attempts, item.id, err.message, outcome.retry_at - now,
            )  # fmt: skip
        else:
            _LOGGER.warning("%s waits for space: %s", item.id, err.message)

    def _stopped(self, item: Item, reason: str) -> None:
        if reason == CANCEL:
            self._cancelled(item)
            return
        if reason == UNCONFIGURED:  # as at start-up: failed, its staging kept
            self.lifecycle.unconfigured(item)
            return
        self.lifecycle.requeued(
            item, "paused" if item.paused or self.scheduler.paused else "requeued"
        )

    def _cancelled(self, item: Item) -> None:
        self.lifecycle.cancelled(item)
        root = self.config.routing.destinations.get(item.destination)
        if root is not None:  # an item whose destination left the config has none
            discard_staging(root, item.id)
