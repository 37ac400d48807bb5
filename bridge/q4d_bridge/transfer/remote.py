"""SSH sessions to seedboxes (asyncssh): payload inspection, .torrent reads, ranged repairs,
host-key pinning and error classification.

One connection per seedbox is kept open and reused, so a new item costs one SFTP round
trip, not an SSH handshake. Host keys are always checked against the pinned file; with
trust_on_first_use the first key seen is written there once and pinned from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import posixpath
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncssh

from ..config.model import SeedboxConfig
from . import payload
from .errors import ErrorCode, TransferError, local_error
from .payload import RemoteEntry
from .verify import Range

_LOGGER = logging.getLogger(__name__)
CONNECT_TIMEOUT = 20.0
RECONNECT_MAX = 60.0
# AES-GCM first: with AES-NI it costs a fraction of chacha20-poly1305 per byte, and bulk
# decryption is most of the bridge's CPU; the rest of the defaults stay as fallbacks.
PREFERRED_CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    *(
        alg.decode()
        for alg in asyncssh.encryption.get_default_encryption_algs()
        if alg not in (b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com")
    ),
]
FLUSH_TIMEOUT = 120.0
_PIN_LOCKS: dict[str, asyncio.Lock] = {}


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


@contextlib.contextmanager
def transfer_errors() -> Iterator[None]:
    """Errors while moving data over SFTP, as TransferErrors: the remote file gone, the
    connection lost, or a local write failing (each with its own reason code)."""
    try:
        yield
    except asyncssh.SFTPNoSuchFile as err:
        raise TransferError(ErrorCode.REMOTE_MISSING, f"remote file vanished: {err}") from err
    except (OSError, asyncssh.Error) as err:
        if isinstance(err, OSError) and not isinstance(err, ConnectionError):
            raise local_error(err) from err
        raise classify_ssh_error(err) from err


def known_hosts_line(host: str, port: int, public_key: str) -> str:
    """A known_hosts line as OpenSSH writes it: `[host]:port` unless the port is 22."""
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {public_key}\n"


def public_key_line(key: asyncssh.SSHKey) -> str:
    """`ssh-ed25519 AAAA…`: the key's type and base64, as ssh-keyscan prints it (no
    comment), the form a known_hosts line and Home Assistant's confirmation take."""
    kind, data = key.export_public_key("openssh").decode().split()[:2]
    return f"{kind} {data}"


async def pin_host_key(seedbox: SeedboxConfig) -> None:
    """Trust on first use, only when configured: write the key the server shows now to
    the known_hosts file, which every later connection (ours, lftp's, rsync's) checks."""
    path = Path(seedbox.known_hosts)
    if not seedbox.trust_on_first_use or path.exists():
        return
    async with _PIN_LOCKS.setdefault(seedbox.id, asyncio.Lock()):
        if path.exists():
            return
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(seedbox.host, seedbox.port), CONNECT_TIMEOUT
            )
        except (OSError, asyncssh.Error, TimeoutError) as err:
            raise classify_ssh_error(err) from err
        if key is None:
            raise TransferError(ErrorCode.CONNECTION, "the seedbox showed no host key")
        line = known_hosts_line(seedbox.host, seedbox.port, public_key_line(key))
        try:
            await asyncio.to_thread(_write_private, path, line)
        except OSError as err:
            raise local_error(err) from err
        _LOGGER.warning(
            "seedbox %s: trusting host key %s on first use; pinned in %s",
            seedbox.id, key.get_fingerprint("sha256"), path,
        )  # fmt: skip


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".known_hosts-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def connect_options(seedbox: SeedboxConfig) -> dict[str, Any]:
    """What every connection to the seedbox gives asyncssh.connect besides host and port:
    the pinned host keys, the configured key or password only (no agent, no ~/.ssh keys
    or config), keepalives and the preferred ciphers."""
    options: dict[str, Any] = {
        "username": seedbox.user,
        "known_hosts": seedbox.known_hosts,
        "agent_path": None,
        "config": None,
        "keepalive_interval": 15,
        "keepalive_count_max": 4,
        "encryption_algs": PREFERRED_CIPHERS,
    }
    if seedbox.key is None:
        # None, not []: asyncssh would load ~/.ssh's keys for an empty list
        options.update(client_keys=None, password=seedbox.password)
    else:
        options.update(client_keys=[seedbox.key], passphrase=seedbox.passphrase)
    return options


async def connect(
    seedbox: SeedboxConfig, *, window: int | None = None
) -> asyncssh.SSHClientConnection:
    """An SSH connection with connect_options; errors come back classified."""
    await pin_host_key(seedbox)
    options = connect_options(seedbox)
    if window is not None:
        options["window"] = window
    try:
        return await asyncio.wait_for(
            asyncssh.connect(seedbox.host, port=seedbox.port, **options), CONNECT_TIMEOUT
        )
    except (OSError, asyncssh.Error, TimeoutError) as err:
        raise classify_ssh_error(err) from err
    # an unreadable key, or a wrong passphrase (KeyEncryptionError for an OpenSSH key)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as err:
        raise TransferError(ErrorCode.AUTH_FAILED, f"cannot use key {seedbox.key}: {err}") from err


class SeedboxSession:
    def __init__(
        self, seedbox: SeedboxConfig, *, on_link_change: Callable[[], None] = lambda: None
    ) -> None:
        """on_link_change: called when the held link comes up, drops or fails to connect
        (the bridge republishes its state, which shows `link_status`)."""
        self.seedbox = seedbox
        self.on_link_change = on_link_change
        self.connected = False
        self.link_error: str | None = None
        self.link_checked_at: float | None = None
        self._keeping = False
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

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The seedbox's one connection, reconnected if it dropped, for channels opened
        elsewhere (the torrent client's SCGI socket, `scgi+ssh://`). A failure to connect
        raises a TransferError."""
        return await self._connection()

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        """One SFTP session per seedbox, reused: a stat costs one round trip."""
        conn = await self._connection()
        async with self._sftp_lock:
            if self._sftp is None or self._sftp_conn is not conn:
                self._sftp = await conn.start_sftp_client()
                self._sftp_conn = conn
            return self._sftp

    async def _with_sftp[T](self, operation: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        """Run an SFTP operation on the shared session; a stale one is replaced once."""
        for attempt in (1, 2):
            try:
                return await operation(await self._sftp_client())
            except TransferError:
                raise
            except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPPermissionDenied) as err:
                raise classify_ssh_error(err) from err
            except (OSError, asyncssh.Error) as err:
                await self.close()
                if attempt == 2:
                    raise classify_ssh_error(err) from err
        raise AssertionError("unreachable")

    async def inspect_payload(self, path: str, roots: Sequence[str]) -> RemoteEntry:
        """The payload resolved, held to the roots and listed (see payload.py)."""
        return await self._with_sftp(lambda sftp: payload.inspect(sftp, path, roots))

    async def read_file(self, path: str, limit: int) -> bytes:
        """A small remote file (a .torrent), refusing anything over limit bytes."""

        async def read(sftp: asyncssh.SFTPClient) -> bytes:
            async with sftp.open(path, "rb") as handle:
                data = await handle.read(limit + 1)
            return data if isinstance(data, bytes) else data.encode()

        data = await self._with_sftp(read)
        if len(data) > limit:
            raise TransferError(ErrorCode.TRANSFER, f"{path} is larger than {limit} bytes")
        return data

    async def fetch_ranges(
        self,
        remote_path: str,
        target: Path,
        ranges: Sequence[Range],
        on_data: Callable[[int], None] = lambda _n: None,
    ) -> int:
        """Re-fetch byte ranges of a landed payload in place (repairing bad pieces);
        returns the bytes written. on_data sees each block (progress for the watchdog)."""

        async def fetch(sftp: asyncssh.SFTPClient) -> int:
            written = 0
            for rel, group in itertools.groupby(ranges, key=lambda r: r.rel):
                source = posixpath.join(remote_path, rel) if rel else remote_path
                with transfer_errors():
                    fd = os.open(target / rel if rel else target, os.O_WRONLY)
                    try:
                        async with sftp.open(source, "rb") as handle:
                            for rng in group:
                                async for offset, data in await handle.read_parallel(
                                    rng.length, rng.offset
                                ):
                                    os.pwrite(fd, data, offset)
                                    written += len(data)
                                    on_data(len(data))
                    finally:
                        os.close(fd)
            return written

        return await self._with_sftp(fetch)

    async def keep_connected(self, broker: tuple[str, int], subscribed: asyncio.Event) -> None:
        """Hold the SSH connection open for its side jobs, reconnecting with backoff:
        the broker forward for the hook, and the hook's outbox flush on every connect
        (only once the bridge is subscribed: on a first start the broker would otherwise
        accept and drop the flushed events, and the outbox would delete them)."""
        delay = 1.0
        self._keeping = True
        while True:
            try:
                conn = await self._connection()
                await self._on_connect(conn, broker, subscribed)
                delay = 1.0
                self._link(connected=True, error=None)
                await conn.wait_closed()
                _LOGGER.warning("seedbox %s: SSH connection closed; reconnecting", self.seedbox.id)
                self._link(connected=False, error=self.link_error)
            except TransferError as err:
                if self.connected or delay == 1.0:
                    _LOGGER.warning("seedbox %s: %s", self.seedbox.id, err.message)
                self._link(connected=False, error=f"{err.code.value}: {err.message}")
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX, delay * 2)

    def _link(self, *, connected: bool, error: str | None) -> None:
        """The link came up, dropped or failed to connect: record it, tell the observer."""
        self.connected, self.link_error, self.link_checked_at = connected, error, time.time()
        self.on_link_change()

    def link_status(self) -> dict[str, Any] | None:
        """The held SSH link, for the state (None when no link is held)."""
        if not self._keeping:
            return None
        return {
            "connected": self.connected,
            "error": self.link_error,
            "checked_at": self.link_checked_at,
        }

    async def _on_connect(
        self, conn: asyncssh.SSHClientConnection, broker: tuple[str, int], subscribed: asyncio.Event
    ) -> None:
        sb = self.seedbox
        if sb.broker_forward_port is not None:
            try:
                await conn.forward_remote_port("127.0.0.1", sb.broker_forward_port, *broker)
            except (OSError, asyncssh.Error) as err:
                _LOGGER.error(
                    "seedbox %s: cannot forward its port %d to the broker: %s",
                    sb.id, sb.broker_forward_port, err,
                )  # fmt: skip
        if sb.hook_flush:
            await subscribed.wait()
            try:
                result = await asyncio.wait_for(conn.run(sb.hook_flush, check=False), FLUSH_TIMEOUT)
            except (OSError, asyncssh.Error, TimeoutError) as err:
                _LOGGER.warning("seedbox %s: outbox flush failed: %s", sb.id, err)
                return
            if result.exit_status == 127:
                _LOGGER.debug("seedbox %s: no hook installed (%s)", sb.id, sb.hook_flush)
            elif result.exit_status != 0:
                tail = str(result.stderr or "").strip().splitlines()[-1:]
                _LOGGER.warning(
                    "seedbox %s: outbox flush exited %s: %s",
                    sb.id, result.exit_status, tail[0] if tail else "",
                )  # fmt: skip

    async def close(self) -> None:
        async with self._lock:
            self._sftp = self._sftp_conn = None
            if self._conn is not None:
                self._conn.close()
                await self._conn.wait_closed()
                self._conn = None
