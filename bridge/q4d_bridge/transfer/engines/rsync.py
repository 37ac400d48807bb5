"""rsync engine: one rsync over SSH per payload, resumable, for seedboxes where rsync is
what users already trust.

Argv only. `--protect-args` sends the paths inside rsync's own protocol, so the remote
shell never parses a torrent name. `--inplace --append-verify` writes straight into the
staging file, so even after kill -9 the bytes on disk are kept and the next run appends
to them (a plain `--partial` keeps nothing when the receiver is SIGKILLed); the
whole-file checksum at the end catches a bad resume and re-sends that file.

When a rule excludes files, rsync is given the exact list of what to fetch instead
(`--files-from`, NUL-separated: any name, none parsed as a pattern), so rsync's own
filter syntax never sees a torrent name or an exclude pattern.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

from ...config.model import RsyncConfig, SeedboxConfig
from ..bandwidth import Bandwidth
from ..errors import ErrorCode
from ..payload import RemoteEntry
from .base import ProgressCallback, TransferRequest, allocated_bytes
from .process import (
    CONNECTION_LOST,
    SSH_FATAL,
    Patterns,
    launcher,
    login_secret,
    run_tool,
    secret_pipe,
    ssh_argv,
)

_LOGGER = logging.getLogger(__name__)

RSYNC_ERRORS: Patterns = (
    *SSH_FATAL,
    # The sender's messages about the source: link_stat / send_files / vanished.
    (
        re.compile(r'link_stat ".*" failed: no such file|file has vanished', re.I),
        ErrorCode.REMOTE_MISSING,
    ),
    (re.compile(r"permission denied|operation not permitted", re.I), ErrorCode.PERMISSION_DENIED),
    (re.compile(r"timeout in data send/receive|io timeout", re.I), ErrorCode.CONNECTION),
    *CONNECTION_LOST,
)
# "  1,234,567  45%  12.34MB/s  0:00:10" with --info=progress2 (separators vary by locale).
FILES_FROM = ".q4d-files-from"
_PROGRESS = re.compile(rb"^\s*(\d[\d,.']*)\s+\d+%")


def rsh_quote(value: str) -> str:
    """Quote one word for rsync's own splitting of its -e command (not a shell): inside
    single quotes everything is literal and a single quote is written twice."""
    return "'" + value.replace("'", "''") + "'"


def remote_shell(seedbox: SeedboxConfig, secret_fd: int | None = None) -> str:
    """ssh, or with a password or key passphrase `sshpass -d FD ssh`: sshpass answers
    ssh's prompt with what it reads from FD, a pipe rsync and it inherit (secret_pipe)."""
    argv = ssh_argv(seedbox)
    if secret_fd is not None:
        prompt = "assword" if seedbox.key is None else "passphrase"
        argv = ["sshpass", "-d", str(secret_fd), "-P", prompt, *argv]
    return " ".join(rsh_quote(arg) for arg in [*argv, "-p", str(seedbox.port)])


def remote_spec(seedbox: SeedboxConfig, path: str) -> str:
    host = f"[{seedbox.host}]" if ":" in seedbox.host else seedbox.host
    return f"{seedbox.user}@{host}:{path}"


def build_argv(
    config: RsyncConfig,
    request: TransferRequest,
    rate_limit: int = 0,
    files_from: Path | None = None,
    secret_fd: int | None = None,
) -> list[str]:
    """The argv; `files_from` is the file of fetch_list for a folder with excludes,
    `secret_fd` the inherited pipe with the seedbox's password or passphrase."""
    source, dest = request.remote_path, str(request.target)
    if request.remote.is_dir:
        source, dest = source.rstrip("/") + "/", dest + "/"  # the contents, into target
    # With a list, no --recursive: a listed folder is made, not copied with all it holds.
    walk = ["--recursive"] if files_from is None else [f"--files-from={files_from}", "--from0"]
    argv = [
        config.binary,
        *walk,
        "--times",
        "--inplace",
        "--partial",
        "--append-verify",
        "--protect-args",
        # No --links: a symlink in a torrent folder is skipped, as by every engine.
        # Staged files private and writable (resumable) whatever the seedbox's modes;
        # the bridge gives the landed payload its own modes.
        "--chmod=D700,F600",
        "--info=progress2",
        "--no-human-readable",
        "--rsh",
        remote_shell(request.seedbox, secret_fd),
    ]
    if rate_limit:
        argv.append(f"--bwlimit={max(1, -(-rate_limit // 1024))}")  # KiB/s, rounded up
    return [*argv, "--", remote_spec(request.seedbox, source), dest]


def fetch_list(remote: RemoteEntry) -> bytes:
    """What rsync fetches of a folder with excludes: every kept file and folder (empty
    ones too), relative to the payload, NUL-separated, bytes as listed."""
    names = [*remote.dirs, *(f.rel for f in remote.entries)]
    return b"".join(name.encode("utf-8", "surrogateescape") + b"\0" for name in names)


class ProgressParser:
    """Bytes done from rsync's --info=progress2 lines, which end in \\r while running."""

    def __init__(self) -> None:
        self.done = 0
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        *lines, self._pending = re.split(rb"[\r\n]", self._pending + chunk)
        for line in lines:
            if match := _PROGRESS.match(line):
                self.done = max(self.done, int(re.sub(rb"\D", b"", match.group(1))))


def discard_oversized(request: TransferRequest) -> list[Path]:
    """Delete staged files longer than the seedbox's copy: --append would skip them
    (the payload changed on the seedbox), so they start over."""
    removed = []
    for remote_file in request.remote.entries:
        local = request.target / remote_file.rel if remote_file.rel else request.target
        with contextlib.suppress(FileNotFoundError):
            if local.is_file() and local.stat().st_size > remote_file.size:
                local.unlink()
                removed.append(local)
    return removed


def already_complete(request: TransferRequest) -> int:
    """Bytes of files rsync will skip as complete (progress2 does not count them)."""
    total = 0
    for remote_file in request.remote.entries:
        local = request.target / remote_file.rel if remote_file.rel else request.target
        try:
            if local.stat().st_size >= remote_file.size:
                total += remote_file.size
        except OSError:
            continue
    return total


class RsyncEngine:
    name = "rsync"

    def __init__(
        self,
        config: RsyncConfig,
        *,
        bandwidth: Bandwidth,
        slots: Callable[[], int],
        nice: int = 0,
    ) -> None:
        self.config = config
        self.bandwidth = bandwidth
        self.slots = slots  # like lftp, each rsync gets limit ÷ max_concurrent
        self.nice = nice

    def warm(self, seedbox: SeedboxConfig) -> None:
        """Each run opens its own SSH connections: nothing to prepare ahead."""

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        request.target.parent.mkdir(parents=True, exist_ok=True)
        for path in await asyncio.to_thread(discard_oversized, request):
            _LOGGER.info("item %s: %s is longer than on the seedbox; fetching it again",
                         request.item_id, path.name)  # fmt: skip
        skipped = await asyncio.to_thread(already_complete, request)
        parser = ProgressParser()

        async def report() -> None:
            # progress2 speaks once a second; the bytes on disk fill in between.
            on_disk = await asyncio.to_thread(allocated_bytes, request.target)
            on_progress(max(skipped + parser.done, on_disk))

        files_from = None
        if request.remote.is_dir and (request.remote.excluded or request.remote.excluded_dirs):
            # Beside the payload in the item's private staging folder, never inside it.
            files_from = request.target.parent / FILES_FROM
            await asyncio.to_thread(files_from.write_bytes, fetch_list(request.remote))
        try:
            with (
                self.bandwidth.reserve(self.slots()) as share,  # 0 means unlimited
                secret_pipe(login_secret(request.seedbox)) as secret_fd,
            ):
                argv = build_argv(self.config, request, share, files_from, secret_fd)
                await run_tool(
                    [*launcher(self.nice), *argv],
                    tool="rsync",
                    item_id=request.item_id,
                    patterns=RSYNC_ERRORS,
                    on_tick=report,
                    on_output=parser.feed,
                    pass_fds=() if secret_fd is None else (secret_fd,),
                    nice=self.nice,
                )
        finally:
            if files_from is not None:
                files_from.unlink(missing_ok=True)
