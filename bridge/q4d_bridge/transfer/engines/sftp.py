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
import hashlib
import logging
import os
import posixpath
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from ...config.model import SeedboxConfig, SftpConfig
from ..errors import ErrorCode, TransferError, local_error
from ..payload import RemoteEntry, RemoteFile, close_behind
from ..rates import Bandwidth
from ..remote import classify_ssh_error, connect, transfer_errors
from .base import ProgressCallback, TransferRequest

_LOGGER = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.5
JOURNAL_DIR = ".q4d-journal"


@dataclass(frozen=True, slots=True)
class Chunk:
    file: RemoteFile
    index: int
    offset: int
    length: int


def plan_chunks(files: tuple[RemoteFile, ...], chunk_size: int) -> Iterator[Chunk]:
    for remote_file in files:
        for index, offset in enumerate(range(0, remote_file.size, chunk_size)):
            yield Chunk(remote_file, index, offset, min(chunk_size, remote_file.size - offset))


class Journal:
    """Finished chunk indexes of one file, one per line, appended after the data write.

    A torn last line (kill -9 mid-append) is ignored: that chunk is fetched again."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> set[int]:
        try:
            lines = self.path.read_text(encoding="ascii", errors="replace").split("\n")
        except FileNotFoundError:
            return set()
        return {int(line) for line in lines[:-1] if line.isdigit()}

    def mark(self, index: int) -> None:
        with self.path.open("a", encoding="ascii") as handle:
            handle.write(f"{index}\n")


@dataclass(slots=True)
class _Connection:
    ssh: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient


class SftpEngine:
    name = "sftp"

    def __init__(self, config: SftpConfig, bandwidth: Bandwidth) -> None:
        self.config = config
        self.bandwidth = bandwidth
        self._idle: dict[str, list[_Connection]] = {}
        self._warming: dict[str, list[asyncio.Task[_Connection]]] = {}
        self._dropped: set[asyncssh.SSHClientConnection] = set()

    # --- connections ---------------------------------------------------------------

    def warm(self, seedbox: SeedboxConfig) -> None:
        """Start opening the connections a transfer will want, while the caller still
        stats the payload: an SSH handshake costs ~10 round trips."""
        warming = self._warming.setdefault(seedbox.id, [])
        have = len(self._idle.get(seedbox.id, [])) + len(warming)
        for _ in range(self.config.connections - have):
            warming.append(asyncio.create_task(self._open(seedbox)))

    async def wait_warm(self, seedbox: SeedboxConfig) -> None:
        """Wait until the connections warm() started are open (or failed)."""
        await asyncio.gather(*self._warming.get(seedbox.id, []), return_exceptions=True)

    async def _acquire(self, seedbox: SeedboxConfig) -> _Connection:
        idle = self._idle.setdefault(seedbox.id, [])
        while idle:
            conn = idle.pop()
            if not conn.ssh.is_closed():
                return conn
        warming = self._warming.setdefault(seedbox.id, [])
        while warming:
            task = warming.pop(0)
            try:
                conn = await asyncio.shield(task)
            except asyncio.CancelledError:
                # Our caller stopped; the connection being opened goes to the pool.
                task.add_done_callback(lambda done: self._adopt(seedbox, done))
                raise
            if not conn.ssh.is_closed():
                return conn
        return await self._open(seedbox)

    def _adopt(self, seedbox: SeedboxConfig, task: asyncio.Task[_Connection]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._release(seedbox, task.result(), healthy=True)

    async def _open(self, seedbox: SeedboxConfig) -> _Connection:
        ssh = await connect(seedbox, window=self.config.window)
        try:
            sftp = await ssh.start_sftp_client()
        except (OSError, asyncssh.Error) as err:
            ssh.close()
            raise classify_ssh_error(err) from err
        return _Connection(ssh, sftp)

    async def _acquire_many(self, seedbox: SeedboxConfig, count: int) -> list[_Connection]:
        """count connections, opened in parallel; on failure or cancellation the ones
        that open go back to the pool instead of leaking."""
        tasks = [asyncio.ensure_future(self._acquire(seedbox)) for _ in range(count)]
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()  # no effect on one that already finished
                task.add_done_callback(lambda done: self._adopt(seedbox, done))
            raise
        conns = [t.result() for t in tasks if t.exception() is None]
        failure = next((t.exception() for t in tasks if t.exception() is not None), None)
        if failure is not None:
            for conn in conns:
                self._release(seedbox, conn, healthy=True)
            raise failure
        return conns

    def _release(self, seedbox: SeedboxConfig, conn: _Connection, *, healthy: bool) -> None:
        idle = self._idle.setdefault(seedbox.id, [])
        if healthy and not conn.ssh.is_closed() and len(idle) < self.config.connections:
            idle.append(conn)
        else:
            conn.ssh.abort()
            self._dropped.add(conn.ssh)

    async def close(self) -> None:
        closing = list(self._dropped)
        for warming in self._warming.values():
            for result in await asyncio.gather(*warming, return_exceptions=True):
                if isinstance(result, _Connection):
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
        plan = _Plan()
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
        ready = await self._acquire_many(request.seedbox, min(self.config.connections, chunks))

        async def ticker() -> None:
            while True:
                await asyncio.sleep(PROGRESS_INTERVAL)
                on_progress(progress[0])

        tick = asyncio.create_task(ticker())
        healthy = False
        try:
            async with asyncio.TaskGroup() as group:
                for conn in ready:
                    reader = _ConnectionReader(
                        conn, request, self.config, self.bandwidth, plan, journals, progress
                    )
                    group.create_task(reader.run())
            healthy = True
        except* TransferError as group_err:
            raise group_err.exceptions[0] from None
        finally:
            tick.cancel()
            # Never await anything on a failed or cancelled connection: the server may
            # be frozen (that is why the watchdog fired). Drop it instead.
            for conn in ready:
                self._release(request.seedbox, conn, healthy=healthy)
        on_progress(progress[0])


class _Plan:
    """The chunks still to fetch, per file, shared by the connections. A connection
    claims whole files, so a folder of small files costs one open per file; once no
    file is unclaimed it helps with the others' (a single large file is read over
    every connection)."""

    def __init__(self) -> None:
        self.left: dict[str, deque[Chunk]] = {}
        self.unclaimed: deque[str] = deque()
        self.fresh: set[str] = set()  # no journal: created (or emptied) by the first opener

    def add(self, rel: str, chunks: deque[Chunk], *, fresh: bool) -> None:
        if chunks:
            self.left[rel] = chunks
            self.unclaimed.append(rel)
            if fresh:
                self.fresh.add(rel)

    def chunks_left(self) -> int:
        return sum(len(chunks) for chunks in self.left.values())

    def claim(self) -> str | None:
        return self.unclaimed.popleft() if self.unclaimed else None

    def busiest(self) -> str | None:
        """The claimed file with the most chunks left, if it has more than one: taking
        a file's last chunk saves its reader nothing and costs an open."""
        rel = max(self.left, key=lambda rel: len(self.left[rel]), default=None)
        return rel if rel is not None and len(self.left[rel]) > 1 else None


@dataclass(slots=True)
class _OpenFile:
    """A payload file open on one connection."""

    handle: asyncio.Future[asyncssh.SFTPClientFile]
    fd: int
    reading: int = 0  # chunks of it this connection is reading now


@dataclass(slots=True)
class _ChunkReads:
    chunk: Chunk
    blocks_left: int


class _ConnectionReader:
    """Keeps one connection's window of read requests full across chunk and file
    boundaries. A request slot that frees up is refilled at once, from a file this
    connection claimed or, when none is left, from another connection's, so a
    connection never waits for a chunk's last replies before asking for more. The next
    file is claimed and opened while a window's worth of data is still to be read, so
    its open round trip is hidden; a file is closed once no chunk of it is left."""

    def __init__(
        self,
        conn: _Connection,
        request: TransferRequest,
        config: SftpConfig,
        bandwidth: Bandwidth,
        plan: _Plan,
        journals: dict[str, Journal],
        progress: list[int],
    ) -> None:
        self.sftp = conn.sftp
        self.request = request
        largest = config.block_size or conn.sftp.limits.max_read_len
        # Equal blocks per chunk: a chunk cut at the server's limit would end in a
        # tiny request.
        self.block_size = -(-config.chunk_size // -(-config.chunk_size // largest))
        # Chunks to have claimed ahead so the next file's open is answered in time.
        self.chunks_ahead = -(-config.max_requests * self.block_size // config.chunk_size)
        self.slots = asyncio.Semaphore(config.max_requests)
        self.bandwidth = bandwidth
        self.plan = plan
        self.mine: list[str] = []
        self.journals = journals
        self.progress = progress
        self.files: dict[str, _OpenFile] = {}

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as reads:
                while True:
                    await self.slots.acquire()
                    chunk = self._take()
                    if chunk is None:
                        self.slots.release()
                        break
                    state = _ChunkReads(chunk, -(-chunk.length // self.block_size))
                    end = chunk.offset + chunk.length
                    for offset in range(chunk.offset, end, self.block_size):
                        if offset != chunk.offset:  # the first block has the slot taken above
                            await self.slots.acquire()
                        length = min(self.block_size, end - offset)
                        reads.create_task(self._read(state, offset, length))
            self._retire()
        except* TransferError as errors:
            raise errors.exceptions[0] from None
        finally:
            for entry in self.files.values():
                os.close(entry.fd)
                entry.handle.cancel()

    def _take(self) -> Chunk | None:
        self.mine = [rel for rel in self.mine if self.plan.left[rel]]
        if not self.mine:
            self._claim()
        rel = self.mine[0] if self.mine else self.plan.busiest()
        if rel is None:
            return None
        chunk = self.plan.left[rel].popleft()
        self._open(rel).reading += 1
        ahead = sum(len(self.plan.left[r]) for r in self.mine)
        while ahead < self.chunks_ahead and self._claim():
            ahead += len(self.plan.left[self.mine[-1]])
        self._retire()
        return chunk

    def _claim(self) -> bool:
        rel = self.plan.claim()
        if rel is None:
            return False
        self.mine.append(rel)
        self._open(rel)
        return True

    def _open(self, rel: str) -> _OpenFile:
        entry = self.files.get(rel)
        if entry is None:
            path = self.request.remote_path
            remote_path = posixpath.join(path, rel) if rel else path
            handle = asyncio.ensure_future(
                self.sftp.open(remote_path, "rb", block_size=self.block_size)
            )
            # A fresh file's content is unknown: the first connection to open it empties it.
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if rel in self.plan.fresh else 0)
            self.plan.fresh.discard(rel)
            try:
                fd = os.open(_local_path(self.request.target, rel), flags, 0o600)
            except OSError as err:
                handle.cancel()
                raise local_error(err) from err
            entry = self.files[rel] = _OpenFile(handle, fd)
        return entry

    def _retire(self) -> None:
        """Close the files no chunk is left of, once their reads here finished. Nothing
        waits for the server's reply: a read handle's close cannot lose data, and the
        round trip would delay the next read or the end of the transfer."""
        for rel, entry in list(self.files.items()):
            if entry.reading == 0 and not self.plan.left[rel]:
                del self.files[rel]
                os.close(entry.fd)
                close_behind(_close(entry.handle))

    async def _read(self, state: _ChunkReads, offset: int, length: int) -> None:
        chunk = state.chunk
        rel = chunk.file.rel
        entry = self.files[rel]
        try:
            with transfer_errors():
                handle = await entry.handle
                # Paid before asking: the limit then paces requests, not just the writes
                # of a window already in flight.
                await self.bandwidth.consume(length)
                while length:
                    data = await handle.read(length, offset)
                    if not isinstance(data, bytes) or not data:
                        raise TransferError(
                            ErrorCode.TRANSFER,
                            f"{rel or self.request.remote_path} changed on the seedbox "
                            f"during transfer (short read at {offset})",
                        )
                    os.pwrite(entry.fd, data, offset)
                    offset += len(data)
                    length -= len(data)
                    self.progress[0] += len(data)
        finally:
            self.slots.release()
        state.blocks_left -= 1
        if state.blocks_left == 0:
            self.journals[rel].mark(chunk.index)
            entry.reading -= 1
            self._retire()


async def _close(handle: asyncio.Future[asyncssh.SFTPClientFile]) -> None:
    await (await handle).close()


def _local_path(target: Path, rel: str) -> Path:
    return target / rel if rel else target


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
        local = _local_path(target, remote_file.rel)
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
