"""Embedded SFTP engine on asyncssh: no external binary, built for long fat links.

One OpenSSH channel moves ~20 MB/s at 80 ms RTT because of its 2 MiB window, so the
engine spreads a payload over several SSH connections with large windows. Every file is
cut into fixed chunks; workers (one per connection) take chunks from a shared queue and
read each with many requests in flight, writing blocks at their offsets as they arrive
(out of order). A per-file journal records finished chunks after their bytes are
written, so a restart (even after kill -9) re-fetches at most the chunks that were in
flight: one per connection.
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
        self._dropped: set[asyncssh.SSHClientConnection] = set()

    # --- connections ---------------------------------------------------------------

    async def _acquire(self, seedbox: SeedboxConfig) -> _Connection:
        idle = self._idle.setdefault(seedbox.id, [])
        while idle:
            conn = idle.pop()
            if not conn.ssh.is_closed():
                return conn
        ssh = await connect(seedbox, window=self.config.window)
        try:
            sftp = await ssh.start_sftp_client()
        except (OSError, asyncssh.Error) as err:
            ssh.close()
            raise classify_ssh_error(err) from err
        return _Connection(ssh, sftp)

    def _release(self, seedbox: SeedboxConfig, conn: _Connection, *, healthy: bool) -> None:
        idle = self._idle.setdefault(seedbox.id, [])
        if healthy and not conn.ssh.is_closed() and len(idle) < self.config.connections:
            idle.append(conn)
        else:
            conn.ssh.abort()
            self._dropped.add(conn.ssh)

    async def close(self) -> None:
        closing = list(self._dropped)
        for idle in self._idle.values():
            for conn in idle:
                conn.ssh.close()
                closing.append(conn.ssh)
        for ssh in closing:
            await ssh.wait_closed()
        self._idle.clear()
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
        journals: dict[str, Journal] = {}
        for remote_file in remote.entries:
            name = hashlib.sha1(remote_file.rel.encode(), usedforsecurity=False).hexdigest()
            journal = Journal(journal_dir / name)
            journals[remote_file.rel] = journal
            local = _local_path(target, remote_file.rel)
            try:
                finished = await asyncio.to_thread(_prepare_file, local, remote_file.size, journal)
            except OSError as err:
                raise local_error(err) from err
            for chunk in plan_chunks((remote_file,), self.config.chunk_size):
                if chunk.index in finished:
                    done_bytes += chunk.length
                else:
                    pending.put_nowait(chunk)
        progress = [done_bytes]
        on_progress(done_bytes)
        workers = min(self.config.connections, pending.qsize())
        if workers == 0:
            return

        async def ticker() -> None:
            while True:
                await asyncio.sleep(PROGRESS_INTERVAL)
                on_progress(progress[0])

        tick = asyncio.create_task(ticker())
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._worker(request, pending, journals, progress))
        except* TransferError as group_err:
            raise group_err.exceptions[0] from None
        finally:
            tick.cancel()
        on_progress(progress[0])

    async def _worker(
        self,
        request: TransferRequest,
        pending: asyncio.Queue[Chunk],
        journals: dict[str, Journal],
        progress: list[int],
    ) -> None:
        conn = await self._acquire(request.seedbox)
        healthy = False
        handles: dict[str, asyncssh.SFTPClientFile] = {}
        fds: dict[str, int] = {}
        try:
            with transfer_errors():
                while True:
                    try:
                        chunk = pending.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    rel = chunk.file.rel
                    if rel not in handles:
                        remote_path = (
                            posixpath.join(request.remote_path, rel) if rel else request.remote_path
                        )
                        handles[rel] = await conn.sftp.open(
                            remote_path,
                            "rb",
                            block_size=self.config.block_size or -1,  # 0: the server's limit
                            max_requests=self.config.max_requests,
                        )
                        fds[rel] = os.open(_local_path(request.target, rel), os.O_WRONLY)
                    received = 0
                    async for offset, data in await handles[rel].read_parallel(
                        chunk.length, chunk.offset
                    ):
                        os.pwrite(fds[rel], data, offset)
                        received += len(data)
                        progress[0] += len(data)
                        await self.bandwidth.consume(len(data))
                    if received != chunk.length:
                        raise TransferError(
                            ErrorCode.TRANSFER,
                            f"{rel or request.remote_path} changed on the seedbox during transfer "
                            f"(short read at {chunk.offset})",
                        )
                    journals[rel].mark(chunk.index)
                for handle in handles.values():
                    await handle.close()
                healthy = True
        finally:
            for fd in fds.values():
                os.close(fd)
            # Never await anything on a failed or cancelled connection: the server may
            # be frozen (that is why the watchdog fired). Drop it instead.
            self._release(request.seedbox, conn, healthy=healthy)


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
