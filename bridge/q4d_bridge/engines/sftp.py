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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from ..config import SeedboxConfig, SftpConfig
from ..remote import classify_ssh_error, connect, transfer_errors
from .base import (
    Bandwidth,
    ErrorCode,
    ProgressCallback,
    RemoteFile,
    TransferError,
    TransferRequest,
    local_error,
)

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
        try:
            await asyncio.to_thread(_prepare_tree, target, remote.is_dir, remote.dirs, journal_dir)
        except OSError as err:
            raise local_error(err) from err
        pending: asyncio.Queue[Chunk] = asyncio.Queue()
        done_bytes = 0
        journals = {
            f.rel: Journal(
                journal_dir / hashlib.sha1(f.rel.encode(), usedforsecurity=False).hexdigest()
            )
            for f in remote.entries
        }
        try:
            finished_by_file = await asyncio.to_thread(
                lambda: [
                    _prepare_file(_local_path(target, f.rel), f.size, journals[f.rel])
                    for f in remote.entries
                ]
            )
        except OSError as err:
            raise local_error(err) from err
        for remote_file, finished in zip(remote.entries, finished_by_file, strict=True):
            for chunk in plan_chunks((remote_file,), self.config.chunk_size):
                if chunk.index in finished:
                    done_bytes += chunk.length
                else:
                    pending.put_nowait(chunk)
        progress = [done_bytes]
        on_progress(done_bytes)
        streams = min(self.config.connections * self.config.streams, pending.qsize())
        if streams == 0:
            return
        ready = await self._acquire_many(request.seedbox, min(self.config.connections, streams))

        async def ticker() -> None:
            while True:
                await asyncio.sleep(PROGRESS_INTERVAL)
                on_progress(progress[0])

        tick = asyncio.create_task(ticker())
        healthy = False
        try:
            async with asyncio.TaskGroup() as group:
                for n in range(streams):
                    conn = ready[n % len(ready)]
                    group.create_task(self._stream(conn, request, pending, journals, progress))
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

    async def _stream(
        self,
        conn: _Connection,
        request: TransferRequest,
        pending: asyncio.Queue[Chunk],
        journals: dict[str, Journal],
        progress: list[int],
    ) -> None:
        """One of several chunk readers sharing a connection: while one chunk's last
        replies drain, the others keep the connection's window full. The next chunk's
        file is opened while this one is read, so a folder of small files does not pay
        an open round trip (queued behind the data in flight) per file."""
        max_requests = max(4, self.config.max_requests // self.config.streams)
        opening: dict[str, asyncio.Task[asyncssh.SFTPClientFile]] = {}
        closing: list[asyncio.Task[None]] = []
        fds: dict[str, int] = {}

        def take() -> Chunk | None:
            try:
                chunk = pending.get_nowait()
            except asyncio.QueueEmpty:
                return None
            rel = chunk.file.rel
            if rel not in opening:
                remote_path = (
                    posixpath.join(request.remote_path, rel) if rel else request.remote_path
                )
                opening[rel] = asyncio.ensure_future(
                    conn.sftp.open(
                        remote_path,
                        "rb",
                        block_size=self.config.block_size or -1,  # 0: the server's limit
                        max_requests=max_requests,
                    )
                )
            return chunk

        try:
            with transfer_errors():
                chunk = take()
                while chunk is not None:
                    following = take()
                    rel = chunk.file.rel
                    handle = await opening[rel]
                    if rel not in fds:
                        fds[rel] = os.open(_local_path(request.target, rel), os.O_WRONLY)
                    received = 0
                    async for offset, data in await handle.read_parallel(
                        chunk.length, chunk.offset
                    ):
                        os.pwrite(fds[rel], data, offset)
                        received += len(data)
                        progress[0] += len(data)
                        await self.bandwidth.consume(len(data))
                    if received != chunk.length:
                        raise TransferError(
                            ErrorCode.TRANSFER,
                            f"{rel or request.remote_path} changed on the seedbox during "
                            f"transfer (short read at {chunk.offset})",
                        )
                    journals[rel].mark(chunk.index)
                    if following is None or following.file.rel != rel:
                        # Closing costs a round trip: let it run behind the next read.
                        closing.append(asyncio.ensure_future(handle.close()))
                        del opening[rel]
                        os.close(fds.pop(rel))
                    chunk = following
                await asyncio.gather(*closing)
        finally:
            for fd in fds.values():
                os.close(fd)
            for task in (*opening.values(), *closing):
                task.cancel()
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: a failure here was already reported


def _local_path(target: Path, rel: str) -> Path:
    return target / rel if rel else target


def _prepare_tree(target: Path, is_dir: bool, dirs: tuple[str, ...], journal_dir: Path) -> None:
    journal_dir.mkdir(parents=True, exist_ok=True)
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
        for rel in dirs:
            (target / rel).mkdir(parents=True, exist_ok=True)


def _prepare_file(local: Path, size: int, journal: Journal) -> set[int]:
    """Open the local file for resume; without a journal its content is unknown, so it
    starts empty. Returns the chunk indexes already on disk."""
    finished = journal.load()
    flags = os.O_WRONLY | os.O_CREAT | (0 if finished else os.O_TRUNC)
    fd = os.open(local, flags, 0o644)
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)  # the remote file shrank: drop the stale tail
    finally:
        os.close(fd)
    return finished
