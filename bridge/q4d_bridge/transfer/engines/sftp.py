"""Embedded SFTP engine on asyncssh: no external binary, built for long fat links.

One OpenSSH channel moves ~20 MB/s at 80 ms RTT because of its 2 MiB window, so the
engine spreads a payload over several SSH connections with large windows. Every file is
cut into fixed chunks; several readers per connection take chunks from a shared queue
and read each with many requests in flight, writing blocks at their offsets as they
arrive (out of order). A per-file journal records finished chunks after their bytes are
written, so a restart (even after kill -9) re-fetches at most the chunks that were in
flight: one per reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections import deque
from pathlib import Path

import asyncssh

from ...config.model import SeedboxConfig, SftpConfig
from ..bandwidth import Bandwidth, Flow
from ..errors import TransferError, local_error
from ..payload import RemoteEntry
from ..remote import classify_ssh_error, connect
from .base import ProgressCallback, TransferRequest
from .sftp_adapt import Adaptation, interval_for
from .sftp_reads import (
    Chunk,
    Connection,
    ConnectionReader,
    Journal,
    Plan,
    ReadMeter,
    local_path,
    plan_chunks,
)

_LOGGER = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.5
JOURNAL_DIR = ".q4d-journal"


class SftpEngine:
    name = "sftp"

    def __init__(self, config: SftpConfig, bandwidth: Bandwidth) -> None:
        self.config = config
        self.bandwidth = bandwidth
        # Pools and what was learned are keyed by the seedbox's whole configuration: once
        # a seedbox's settings change (Bridge.apply), its new attempts never get a
        # connection opened with the old ones, and what the old link taught is not
        # assumed of the new. `forget` lets the old key go when its last attempt ended.
        self._idle: dict[SeedboxConfig, list[Connection]] = {}
        self._warming: dict[SeedboxConfig, list[asyncio.Task[Connection]]] = {}
        self._dropped: set[asyncssh.SSHClientConnection] = set()
        # Per seedbox, what the last transfer's adaptation found: connections and
        # requests each. The next one starts there, and the pool keeps that many.
        self._learned: dict[SeedboxConfig, tuple[int, int]] = {}
        self.last_adaptation: dict[str, object] | None = None  # for bench/wan_engine.py

    # --- connections ---------------------------------------------------------------

    def warm(self, seedbox: SeedboxConfig) -> None:
        """Start opening the connections a transfer will want, while the caller still
        stats the payload: an SSH handshake costs ~10 round trips."""
        warming = self._warming.setdefault(seedbox, [])
        warming[:] = [task for task in warming if not _failed(task)]  # the link was down
        have = len(self._idle.get(seedbox, [])) + len(warming)
        for _ in range(self._connections(seedbox) - have):
            warming.append(asyncio.create_task(self._open(seedbox)))

    async def wait_warm(self, seedbox: SeedboxConfig) -> None:
        """Wait until the connections warm() started are open (or failed)."""
        await asyncio.gather(*self._warming.get(seedbox, []), return_exceptions=True)

    async def _acquire(self, seedbox: SeedboxConfig) -> Connection:
        idle = self._idle.setdefault(seedbox, [])
        while idle:
            conn = idle.pop()
            if not conn.ssh.is_closed():
                return conn
        warming = self._warming.setdefault(seedbox, [])
        while warming:
            task = warming.pop(0)
            try:
                conn = await asyncio.shield(task)
            except asyncio.CancelledError:
                # Our caller stopped; the connection being opened goes to the pool.
                task.add_done_callback(lambda done: self._adopt(seedbox, done))
                raise
            except TransferError:
                continue  # a warm-up that failed (the seedbox was down then): open anew
            if not conn.ssh.is_closed():
                return conn
        return await self._open(seedbox)

    def _adopt(self, seedbox: SeedboxConfig, task: asyncio.Task[Connection]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._release(seedbox, task.result(), healthy=True)

    async def _open(self, seedbox: SeedboxConfig) -> Connection:
        ssh = await connect(seedbox, window=self.config.window)
        try:
            sftp = await ssh.start_sftp_client()
        except (OSError, asyncssh.Error) as err:
            ssh.close()
            raise classify_ssh_error(err) from err
        return Connection(ssh, sftp)

    async def _opened(self, seedbox: SeedboxConfig, count: int) -> list[asyncio.Task[Connection]]:
        """count acquisitions run in parallel, all finished; if the caller is cancelled,
        what still opens goes to the pool."""
        tasks = [asyncio.ensure_future(self._acquire(seedbox)) for _ in range(count)]
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()  # no effect on one that already finished
                task.add_done_callback(lambda done: self._adopt(seedbox, done))
            raise
        return tasks

    async def _acquire_many(self, seedbox: SeedboxConfig, count: int) -> list[Connection]:
        """count connections, opened in parallel; on failure or cancellation the ones
        that open go back to the pool instead of leaking."""
        tasks = await self._opened(seedbox, count)
        conns = [t.result() for t in tasks if t.exception() is None]
        failure = next((t.exception() for t in tasks if t.exception() is not None), None)
        if failure is not None:
            for conn in conns:
                self._release(seedbox, conn, healthy=True)
            raise failure
        return conns

    def _release(self, seedbox: SeedboxConfig, conn: Connection, *, healthy: bool) -> None:
        idle = self._idle.setdefault(seedbox, [])
        if healthy and not conn.ssh.is_closed() and len(idle) < self._connections(seedbox):
            idle.append(conn)
        else:
            conn.ssh.abort()
            self._dropped.add(conn.ssh)

    def learned(self, seedbox: SeedboxConfig, adaptation: Adaptation) -> None:
        self.last_adaptation = adaptation.summary()
        # Never less than before: a payload of few chunks uses few connections, which
        # says nothing about the link.
        before = self._learned.get(seedbox, (self.config.connections, self.config.max_requests))
        found = (max(before[0], adaptation.connections), max(before[1], adaptation.requests))
        if found != before:
            _LOGGER.info(
                "seedbox %s: round trip %.0f ms; %d connections with %d reads in flight "
                "each carry the most", seedbox.id, adaptation.rtt * 1000, *found,
            )  # fmt: skip
        self._learned[seedbox] = found

    def _connections(self, seedbox: SeedboxConfig) -> int:
        return self._learned.get(seedbox, (self.config.connections, 0))[0]

    async def _acquire_some(self, seedbox: SeedboxConfig, count: int) -> list[Connection]:
        """Up to count more connections; a seedbox that refuses some (a limit on
        sessions per user) just gets fewer."""
        tasks = await self._opened(seedbox, count)
        failures = [t.exception() for t in tasks if t.exception() is not None]
        if failures:
            _LOGGER.info("seedbox %s: %d more connection(s) refused: %s",
                         seedbox.id, len(failures), failures[0])  # fmt: skip
        return [t.result() for t in tasks if t.exception() is None]

    async def forget(self, seedbox: SeedboxConfig) -> None:
        """A seedbox's former settings, once no attempt uses them: their pool closes."""
        closing = [conn.ssh for conn in self._idle.pop(seedbox, [])]
        for result in await asyncio.gather(*self._warming.pop(seedbox, []), return_exceptions=True):
            if isinstance(result, Connection):
                closing.append(result.ssh)
        self._learned.pop(seedbox, None)
        for ssh in closing:
            ssh.close()
        for ssh in closing:
            await ssh.wait_closed()

    async def close(self) -> None:
        closing = list(self._dropped)
        for warming in self._warming.values():
            for result in await asyncio.gather(*warming, return_exceptions=True):
                if isinstance(result, Connection):
                    result.ssh.close()
                    closing.append(result.ssh)
        for idle in self._idle.values():
            for conn in idle:
                conn.ssh.close()
                closing.append(conn.ssh)
        for ssh in closing:
            await ssh.wait_closed()
        self._idle.clear()
        self._warming.clear()
        self._dropped.clear()

    # --- transfer ------------------------------------------------------------------

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        remote = request.remote
        target = request.target
        journal_dir = target.parent / JOURNAL_DIR
        journals = {
            f.rel: Journal(
                journal_dir / hashlib.sha1(f.rel.encode(), usedforsecurity=False).hexdigest()
            )
            for f in remote.entries
        }
        try:
            finished_by_file = await asyncio.to_thread(
                _prepare, target, remote, journal_dir, journals
            )
        except OSError as err:
            raise local_error(err) from err
        plan = Plan()
        done_bytes = 0
        for remote_file, finished in zip(remote.entries, finished_by_file, strict=True):
            left = deque[Chunk]()
            for chunk in plan_chunks((remote_file,), self.config.chunk_size):
                if finished is not None and chunk.index in finished:
                    done_bytes += chunk.length
                else:
                    left.append(chunk)
            plan.add(remote_file.rel, left, fresh=finished is None)
        progress = [done_bytes]
        on_progress(done_bytes)
        chunks = plan.chunks_left()
        if not chunks:
            return
        seedbox = request.seedbox
        connections, requests = self._learned.get(
            seedbox, (self.config.connections, self.config.max_requests)
        )
        ready = await self._acquire_many(seedbox, min(connections, chunks))

        async def ticker() -> None:
            while True:
                await asyncio.sleep(PROGRESS_INTERVAL)
                on_progress(progress[0])

        tick = asyncio.create_task(ticker())
        transfer = _Transfer(self, request, plan, journals, progress, requests)
        try:
            async with asyncio.TaskGroup() as group:
                for conn in ready:
                    transfer.start(group, conn)
                group.create_task(transfer.adapt(group, remote.size))
            transfer.healthy = True
        except* TransferError as group_err:
            raise group_err.exceptions[0] from None
        finally:
            tick.cancel()
            # Never await anything on a failed or cancelled connection: the server may
            # be frozen (that is why the watchdog fired). Drop it instead.
            for conn in transfer.connections:
                self._release(seedbox, conn, healthy=transfer.healthy)
        on_progress(progress[0])


class _Transfer:
    """One fetch's readers, and the adaptation that may add to them."""

    def __init__(
        self,
        engine: SftpEngine,
        request: TransferRequest,
        plan: Plan,
        journals: dict[str, Journal],
        progress: list[int],
        requests: int,
    ) -> None:
        self.engine = engine
        self.request = request
        self.plan = plan
        self.journals = journals
        self.progress = progress
        self.requests = requests
        self.flow = Flow()
        self.meter = ReadMeter()
        self.readers: list[ConnectionReader] = []
        self.connections: list[Connection] = []
        self.running = 0
        self.finished = asyncio.Event()
        self.healthy = False

    def start(self, group: asyncio.TaskGroup, conn: Connection) -> None:
        reader = ConnectionReader(
            conn, self.request, self.engine.config, self.engine.bandwidth, self.flow,
            self.plan, self.journals, self.progress, self.meter, self.requests,
        )  # fmt: skip
        self.connections.append(conn)
        self.readers.append(reader)
        self.running += 1
        group.create_task(self._run(reader))

    async def _run(self, reader: ConnectionReader) -> None:
        try:
            await reader.run()
        finally:
            self.running -= 1
            if not self.running:
                self.finished.set()

    async def adapt(self, group: asyncio.TaskGroup, size: int) -> None:
        """Every interval, measure and let the adaptation decide; ends with the readers."""
        config, seedbox = self.engine.config, self.request.seedbox
        block = self.readers[0].block_size
        adaptation: Adaptation | None = None
        mark = (self.progress[0], time.monotonic())
        while not self.finished.is_set():
            rtt = self.meter.rtt if self.meter.rtt != float("inf") else 0.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_for(rtt)):
                    await self.finished.wait()
            if self.finished.is_set() or self.meter.rtt == float("inf"):
                continue
            rate = (self.progress[0] - mark[0]) / (time.monotonic() - mark[1])
            if adaptation is None:
                adaptation = Adaptation(
                    self.meter.rtt, len(self.readers), max(config.max_connections,
                    len(self.readers)), self.requests,
                    max(self.requests, config.window // block),
                )  # fmt: skip
            decision = adaptation.step(rate, self.meter.take_latency(), size - self.progress[0])
            if decision.requests:
                self.requests = decision.requests
                for reader in self.readers:
                    reader.widen(self.requests)
            if decision.add_connections:
                added = await self._open(decision.add_connections)
                if added is None:
                    break
                adaptation.opened(decision.add_connections, len(added))
                for conn in added:
                    self.start(group, conn)
            mark = (self.progress[0], time.monotonic())
        if adaptation is not None:
            self.engine.learned(seedbox, adaptation)

    async def _open(self, count: int) -> list[Connection] | None:
        """count more connections, or None if the readers finished first: the end of
        the transfer does not wait for handshakes (what opens goes to the pool)."""
        opening = asyncio.ensure_future(self.engine._acquire_some(self.request.seedbox, count))
        done = asyncio.ensure_future(self.finished.wait())
        try:
            await asyncio.wait({opening, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            if not opening.done():
                opening.cancel()
                await asyncio.wait({opening})
        return None if opening.cancelled() else opening.result()


def _prepare(
    target: Path, remote: RemoteEntry, journal_dir: Path, journals: dict[str, Journal]
) -> list[set[int] | None]:
    """Directories, empty files and files being resumed; per file, the chunk indexes
    already on disk (None: no journal, the readers create the file). Creating the
    others is left to the readers so the first requests go out sooner."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    if remote.is_dir:
        target.mkdir(parents=True, exist_ok=True)
        for rel in remote.dirs:
            (target / rel).mkdir(parents=True, exist_ok=True)
    journaled = {path.name for path in journal_dir.iterdir()}
    finished_by_file: list[set[int] | None] = []
    for remote_file in remote.entries:
        local = local_path(target, remote_file.rel)
        journal = journals[remote_file.rel]
        if journal.path.name in journaled:
            finished_by_file.append(_resume_file(local, remote_file.size, journal))
        else:
            finished_by_file.append(None)
            if remote_file.size == 0:
                local.write_bytes(b"")
    return finished_by_file


def _resume_file(local: Path, size: int, journal: Journal) -> set[int]:
    """The chunk indexes a journal lists; a local file longer than the remote one (it
    shrank) loses its stale tail."""
    finished = journal.load()
    fd = os.open(local, os.O_WRONLY | os.O_CREAT | (0 if finished else os.O_TRUNC), 0o600)
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return finished


def _failed(task: asyncio.Task[Connection]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
