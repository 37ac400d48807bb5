"""The hand-off to a home torrent client: it takes the landed payload over and seeds it.

1. The item's .torrent (`torrent_for`, from the seedbox) is added to the home client
   stopped, with the landed payload's parent folder as its save path; the torrent's
   name must be the payload's (for a folder, the torrent's root folder).
2. The client rechecks it; the step waits (polling with backoff, each check bounded by
   the client's `recheck_timeout`) until it is done checking.
3. Short of 100 %, the pieces the client lacks are fetched again from the seedbox, by
   byte range (`repair`, transfer/verify's ranges), and it rechecks; at most
   `max_repairs` times, then the step fails naming what is still missing.
4. At 100 % it gets its category and tags and is started; only then, if the plan says
   so, is the torrent removed from the seedbox's client.

Idempotent: run again (after a crash, a retry), a torrent the home client has already
is rechecked and confirmed, and one gone from the seedbox counts as removed. Nothing
here deletes the home copy: a failure leaves the payload where it landed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from ..clients.base import ClientError
from ..clients.home import HomeClient, HomeTorrent, make_home_client
from ..config.model import HomeClientConfig
from ..transfer.errors import TransferError
from ..transfer.verify import Range, TorrentError, TorrentInfo, piece_ranges
from .base import Landed, StepError
from .cleanup import SeedboxClients, remove_from_seedbox
from .plan import HandoffPlan

_LOGGER = logging.getLogger(__name__)
MAX_REPAIRS = 2
POLL_FIRST, POLL_FACTOR, POLL_MAX = 0.2, 1.5, 10.0  # seconds between looks at a recheck

TorrentFor = Callable[[Landed], Awaitable[bytes | None]]
# Fetches byte ranges of the landed payload again from the seedbox, in place (such as
# SeedboxSession.fetch_ranges); a TransferError says why it could not.
Repair = Callable[[Landed, Sequence[Range]], Awaitable[object]]


class Handoff:
    name = "handoff"

    def __init__(
        self,
        home_clients: Mapping[str, HomeClientConfig],
        *,
        torrent_for: TorrentFor,  # the item's .torrent, None when it cannot be had
        repair: Repair,  # fetch these byte ranges of the payload again from the seedbox
        seedbox_client: SeedboxClients,
        max_repairs: int = MAX_REPAIRS,
        make_client: Callable[[HomeClientConfig], HomeClient] = make_home_client,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.home_clients = home_clients
        self.torrent_for = torrent_for
        self.repair = repair
        self.seedbox_client = seedbox_client
        self.max_repairs = max_repairs
        self.make_client = make_client
        self.sleep = sleep
        self.clock = clock

    async def run(self, landed: Landed) -> str:
        plan = landed.plan.handoff
        if plan is None:
            return "no hand-off in the plan"
        config = self.home_clients.get(plan.client)
        if config is None:
            raise StepError(f"no home client {plan.client!r} under home_clients")
        data = await self.torrent_for(landed)
        if data is None:
            raise StepError(
                f"no .torrent for {landed.name}: the hand-off needs the seedbox client's "
                "export (qBittorrent) or seedboxes[].torrent_file"
            )
        torrent = _layout(landed, data)
        client = self.make_client(config)
        where = f"home {client.kind}"
        try:
            info_hash = await client.add_stopped(data, str(landed.path.parent))
            repairs = await self._confirm(client, where, landed, info_hash, torrent, config)
            await client.label(info_hash, plan.category, list(plan.tags))
            await client.start(info_hash)
        except ClientError as err:
            raise StepError(f"{where}: {err}", transient=err.transient) from err
        finally:
            await client.close()
        detail = f"{where} checked it 100 %" + (f" after {_repairs(repairs)}" if repairs else "")
        return detail + await self._seedbox_removal(landed, plan)

    async def _confirm(
        self,
        client: HomeClient,
        where: str,
        landed: Landed,
        info_hash: str,
        torrent: TorrentInfo | None,
        config: HomeClientConfig,
    ) -> int:
        """Recheck, and repair, until 100 %; the number of repairs it took."""
        repairs = 0
        while True:
            status = await self._recheck(client, where, info_hash, config.recheck_timeout)
            if status.progress >= 1.0:
                return repairs
            missing = await client.missing_pieces(info_hash)
            total = len(torrent.pieces) if torrent is not None else None
            counted = f"{len(missing)} of {total if total is not None else '?'} pieces"
            if not missing:
                raise StepError(f"{where}: at {status.progress:.1%} with no piece missing")
            if torrent is None:
                raise StepError(
                    f"{where}: {counted} missing, and no v1 piece layout to repair them by"
                )
            if repairs == self.max_repairs:
                raise StepError(f"{where}: {counted} still missing after {_repairs(repairs)}")
            repairs += 1
            _LOGGER.info("%s: %s: %s missing, repair %d", where, landed.name, counted, repairs)
            try:
                await self.repair(landed, piece_ranges(torrent, missing))
            except TransferError as err:
                raise StepError(
                    f"{where}: {counted} missing; repairing them from the seedbox failed: "
                    f"{err.message}",
                    transient=not err.permanent,
                ) from err

    async def _recheck(
        self, client: HomeClient, where: str, info_hash: str, limit: float
    ) -> HomeTorrent:
        """Recheck and wait until the client is done checking. A check already under
        way (the client's own on loading or adding it) is waited out first: qBittorrent
        may leave a recheck asked for meanwhile queued for good. A status that is not
        checking counts once the check was seen, or `settle` seconds on: until then it
        may still be the one from before the recheck."""
        started = self.clock()
        await self._checked(client, where, info_hash, started, limit, recheck=False)
        await client.recheck(info_hash)
        return await self._checked(client, where, info_hash, self.clock(), limit, recheck=True)

    async def _checked(
        self,
        client: HomeClient,
        where: str,
        info_hash: str,
        started: float,
        limit: float,
        *,
        recheck: bool,
    ) -> HomeTorrent:
        seen, pause = not recheck, POLL_FIRST
        while True:
            await self.sleep(pause)
            pause = min(pause * POLL_FACTOR, POLL_MAX)
            status = await client.status(info_hash)
            if status is None:
                raise StepError(f"{where}: torrent {info_hash} was removed there", transient=True)
            if status.error is not None:
                raise StepError(f"{where}: torrent {info_hash}: {status.error}")
            elapsed = self.clock() - started
            if status.checking:
                seen = True
            elif seen or elapsed >= client.settle:
                return status
            if elapsed > limit:
                raise StepError(
                    f"{where}: the recheck of torrent {info_hash} did not finish in "
                    f"{limit:.0f} s (recheck_timeout): {status.state}, {status.progress:.0%}",
                    transient=True,
                )

    async def _seedbox_removal(self, landed: Landed, plan: HandoffPlan) -> str:
        if not plan.remove_from_seedbox:
            return ""
        if landed.hash is None:
            raise StepError("no info-hash to find the torrent on the seedbox by")
        removed = await remove_from_seedbox(
            self.seedbox_client(landed.seedbox),
            landed.seedbox,
            landed.hash,
            delete_data=plan.delete_seedbox_data,
        )
        if not removed:
            return "; gone from the seedbox already"
        return "; removed from the seedbox" + (" with its data" if plan.delete_seedbox_data else "")


def _repairs(count: int) -> str:
    return f"{count} repair" + ("" if count == 1 else "s")


def _layout(landed: Landed, data: bytes) -> TorrentInfo | None:
    """The torrent's v1 layout (None for a v2-only torrent: no repairs then), checked
    against what landed: the home client looks for the torrent's name in the save path."""
    try:
        torrent = TorrentInfo.from_bytes(data)
    except TorrentError:
        return None
    if torrent.name != landed.path.name:
        raise StepError(
            f"the torrent's name is {torrent.name!r} but the payload landed as "
            f"{landed.path.name!r}: the home client would not find it"
        )
    if torrent.is_dir != landed.path.is_dir():
        kind = "a folder" if torrent.is_dir else "a single file"
        raise StepError(f"the torrent is {kind}, and {landed.path} is not")
    return torrent
