"""SSH sessions to seedboxes (asyncssh): payload stat and error classification.

One connection per seedbox is kept open and reused, so a new item costs one SFTP round
trip, not an SSH handshake. Host keys are always checked against the pinned file.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import stat
from typing import Any

import asyncssh

from .config import SeedboxConfig
from .engines.base import ErrorCode, RemoteEntry, RemoteFile, TransferError

_LOGGER = logging.getLogger(__name__)
CONNECT_TIMEOUT = 20.0
MAX_TREE_FILES = 100_000


def classify_ssh_error(err: BaseException) -> TransferError:
    if isinstance(err, asyncssh.HostKeyNotVerifiable):
        return TransferError(ErrorCode.HOST_KEY_MISMATCH, f"host key not verifiable: {err}")
    if isinstance(err, asyncssh.PermissionDenied):
        return TransferError(ErrorCode.AUTH_FAILED, f"authentication failed: {err}")
    if isinstance(err, asyncssh.SFTPNoSuchFile):
        return TransferError(ErrorCode.REMOTE_MISSING, f"remote path missing: {err}")
    if isinstance(err, asyncssh.SFTPPermissionDenied):
        return TransferError(ErrorCode.PERMISSION_DENIED, f"permission denied: {err}")
    if isinstance(err, TimeoutError):
        return TransferError(ErrorCode.CONNECTION, "SSH connection timed out")
    return TransferError(ErrorCode.CONNECTION, f"{type(err).__name__}: {err}")


async def connect(
    seedbox: SeedboxConfig, *, window: int | None = None
) -> asyncssh.SSHClientConnection:
    """An SSH connection with the pinned host key, the configured key only (no agent, no
    ~/.ssh/config), and keepalives; errors come back classified."""
    options: dict[str, Any] = {}
    if window is not None:
        options["window"] = window
    try:
        return await asyncio.wait_for(
            asyncssh.connect(
                seedbox.host,
                port=seedbox.port,
                username=seedbox.user,
                client_keys=[seedbox.key],
                known_hosts=seedbox.known_hosts,
                agent_path=None,
                config=None,
                keepalive_interval=15,
                keepalive_count_max=4,
                **options,
            ),
            CONNECT_TIMEOUT,
        )
    except (OSError, asyncssh.Error, TimeoutError) as err:
        raise classify_ssh_error(err) from err


class SeedboxSession:
    def __init__(self, seedbox: SeedboxConfig) -> None:
        self.seedbox = seedbox
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self._sftp_lock = asyncio.Lock()

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await connect(self.seedbox)
            return self._conn

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        """One SFTP session per seedbox, reused: a stat costs one round trip."""
        conn = await self._connection()
        async with self._sftp_lock:
            if self._sftp is None or self._sftp_conn is not conn:
                self._sftp = await conn.start_sftp_client()
                self._sftp_conn = conn
            return self._sftp

    async def stat_payload(self, path: str) -> RemoteEntry:
        """Size and shape of a payload; a stale connection is replaced once."""
        for attempt in (1, 2):
            try:
                sftp = await self._sftp_client()
                return await _stat_tree(sftp, path)
            except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPPermissionDenied) as err:
                raise classify_ssh_error(err) from err
            except (OSError, asyncssh.Error) as err:
                await self.close()
                if attempt == 2:
                    raise classify_ssh_error(err) from err
        raise AssertionError("unreachable")

    async def close(self) -> None:
        async with self._lock:
            self._sftp = self._sftp_conn = None
            if self._conn is not None:
                self._conn.close()
                await self._conn.wait_closed()
                self._conn = None


async def _stat_tree(sftp: asyncssh.SFTPClient, path: str) -> RemoteEntry:
    attrs = await sftp.stat(path)
    if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY and not stat.S_ISDIR(attrs.permissions or 0):
        return RemoteEntry(is_dir=False, entries=(RemoteFile("", attrs.size or 0),))
    files: list[RemoteFile] = []
    dirs: list[str] = []
    pending = [""]
    while pending:
        current = pending.pop()
        for entry in await sftp.readdir(posixpath.join(path, current) if current else path):
            name = entry.filename
            if isinstance(name, bytes):
                name = name.decode("utf-8", "surrogateescape")
            if name in (".", ".."):
                continue
            rel = posixpath.join(current, name) if current else name
            if entry.attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                dirs.append(rel)
                pending.append(rel)
            elif entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR:
                files.append(RemoteFile(rel, entry.attrs.size or 0))
                if len(files) > MAX_TREE_FILES:
                    raise TransferError(ErrorCode.TRANSFER, f"more than {MAX_TREE_FILES} files")
    return RemoteEntry(
        is_dir=True, entries=tuple(sorted(files, key=lambda f: f.rel)), dirs=tuple(sorted(dirs))
    )
