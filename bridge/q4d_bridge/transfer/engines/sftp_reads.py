"""The SFTP engine's reading side: a payload planned as chunks, claimed by connections
(whole files first, then helping with others), each connection keeping its window of
read requests full across chunk and file boundaries, and a per-file journal of finished
chunks for resuming."""

from __future__ import annotations

import asyncio
import errno
import os
import posixpath
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from ...config.model import SftpConfig
from ..bandwidth import Bandwidth, Flow
from ..errors import ErrorCode, TransferError, local_error
from ..payload import RemoteFile, close_behind
from ..remote import transfer_errors
from .base import TransferRequest

# Files one connection may have open ahead of its reads: each holds a local file
# descriptor (the bridge raises its soft limit) and a handle on the seedbox's
# sftp-server (whose 1024 descriptors are per connection).
FILES_AHEAD = 32


@dataclass(slots=True)
class Connection:
    ssh: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient


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


class Plan:
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
class ReadMeter:
    """What the transfer's reads observe, for its adaptation: the quickest open (a
    small request: about one round trip) and the latency of reads."""

    rtt: float = float("inf")
    latency_sum: float = 0.0
    reads: int = 0

    def take_latency(self) -> float:
        """The mean read latency since the last call (0.0 if nothing was read)."""
        mean = self.latency_sum / self.reads if self.reads else 0.0
        self.latency_sum, self.reads = 0.0, 0
        return mean


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


class ConnectionReader:
    """Keeps one connection's window of read requests full across chunk and file
    boundaries. A request slot that frees up is refilled at once, from a file this
    connection claimed or, when none is left, from another connection's, so a
    connection never waits for a chunk's last replies before asking for more. The next
    file is claimed and opened while a window's worth of data is still to be read, so
    its open round trip is hidden; a file is closed once no chunk of it is left."""

    def __init__(
        self,
        conn: Connection,
        request: TransferRequest,
        config: SftpConfig,
        bandwidth: Bandwidth,
        flow: Flow,
        plan: Plan,
        journals: dict[str, Journal],
        progress: list[int],
        meter: ReadMeter,
        requests: int,
    ) -> None:
        self.sftp = conn.sftp
        self.request = request
        largest = config.block_size or conn.sftp.limits.max_read_len
        # Equal blocks per chunk: a chunk cut at the server's limit would end in a
        # tiny request.
        self.block_size = -(-config.chunk_size // -(-config.chunk_size // largest))
        self.chunk_size = config.chunk_size
        self.requests = requests
        self.slots = asyncio.Semaphore(requests)
        self.bandwidth = bandwidth
        self.flow = flow  # the whole transfer's, over every connection
        self.plan = plan
        self.mine: list[str] = []
        self.journals = journals
        self.progress = progress
        self.files: dict[str, _OpenFile] = {}
        self.meter = meter

    @property
    def chunks_ahead(self) -> int:
        """Chunks to have claimed ahead so the next file's open is answered in time:
        a window's worth of bytes, and for small files (a chunk, one read each) a
        request's worth each, so the window stays full of them, up to FILES_AHEAD."""
        by_bytes = -(-self.requests * self.block_size // self.chunk_size)
        return max(by_bytes, min(self.requests, FILES_AHEAD))

    def widen(self, requests: int) -> None:
        """Keep up to `requests` reads in flight from now on."""
        for _ in range(requests - self.requests):
            self.slots.release()
        self.requests = max(self.requests, requests)

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
            handle.add_done_callback(self._timed(time.monotonic()))
            # A fresh file's content is unknown: the first connection to open it empties it.
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if rel in self.plan.fresh else 0)
            self.plan.fresh.discard(rel)
            try:
                fd = os.open(local_path(self.request.target, rel), flags, 0o600)
            except OSError as err:
                handle.cancel()
                raise local_error(err) from err
            entry = self.files[rel] = _OpenFile(handle, fd)
        return entry

    def _timed(self, started: float) -> Callable[[object], None]:
        def opened(_handle: object) -> None:
            self.meter.rtt = min(self.meter.rtt, time.monotonic() - started)

        return opened

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
        booked = False
        try:
            with transfer_errors():
                handle = await entry.handle
                # Granted before asking: the limit then paces requests, not just the
                # writes of a window already in flight.
                await self.bandwidth.take(self.flow, length)
                booked = True
                while length:
                    asked = time.monotonic()
                    data = await handle.read(length, offset)
                    self.meter.latency_sum += time.monotonic() - asked
                    self.meter.reads += 1
                    if not isinstance(data, bytes) or not data:
                        raise TransferError(
                            ErrorCode.TRANSFER,
                            f"{rel or self.request.remote_path} changed on the seedbox "
                            f"during transfer (short read at {offset})",
                        )
                    _write_all(entry.fd, data, offset)
                    if self.request.on_written is not None:
                        self.request.on_written(rel, offset, data)
                    offset += len(data)
                    length -= len(data)
                    self.progress[0] += len(data)
        finally:
            if booked and length:  # stopped before its data came: the others may use it
                self.bandwidth.give_back(length)
            self.slots.release()
        state.blocks_left -= 1
        if state.blocks_left == 0:
            self.journals[rel].mark(chunk.index)
            entry.reading -= 1
            self._retire()


async def _close(handle: asyncio.Future[asyncssh.SFTPClientFile]) -> None:
    await (await handle).close()


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite until every byte is written: a short write (a full disk) must not pass
    for a whole block, since the piece hash was taken from the bytes in memory."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if not written:
            raise OSError(errno.ENOSPC, "no byte written")
        offset += written
        view = view[written:]


def local_path(target: Path, rel: str) -> Path:
    return target / rel if rel else target
