"""LFTP engine: segmented SFTP download (`pget -n` / `mirror --use-pget-n`), resumable.

lftp runs from an argv list with its script in a 0600 file (`lftp -f`), so neither the
torrent name nor anything else reaches a shell or the process list. The script's `open`
comes on lftp's stdin instead (`source /dev/stdin`): it holds the password or key
passphrase lftp types at ssh's prompt, which is thus written to no file. Inside the script,
every operand goes through `lftp_quote`, the quoting of lftp's own command language.
Files a rule excludes never reach the script either: mirror reads them from a file of
exact-path regexes (`--exclude-rx-from`), one escaped path per line, which lftp does
not parse as commands.
Measured behaviour this relies on: tests/helpers/lftp_findings.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path

from ...config.model import LftpConfig, SeedboxConfig
from ..bandwidth import Bandwidth
from ..errors import ErrorCode, TransferError
from ..excludes import outermost
from ..payload import RemoteEntry
from .base import ProgressCallback, TransferRequest, allocated_bytes
from .process import (
    CONNECTION_LOST,
    SSH_FATAL,
    Patterns,
    launcher,
    login_secret,
    run_tool,
    ssh_argv,
)

_LOGGER = logging.getLogger(__name__)
_LFTP_SPECIAL = re.compile(r'(["\\])')
_RX_SPECIAL = re.compile(r"([.\[\]()*+?{}|^$\\])")

# Most specific first: lftp and ssh wrap each other's messages.
LFTP_ERRORS: Patterns = (
    *SSH_FATAL,
    # lftp prints "Access failed: No such file (PATH)" for the remote side only.
    (re.compile(r"access failed: no such file \(", re.I), ErrorCode.REMOTE_MISSING),
    (re.compile(r"permission denied|access denied", re.I), ErrorCode.PERMISSION_DENIED),
    *CONNECTION_LOST,
)


def lftp_quote(value: str) -> str:
    """Quote one operand for lftp's command language: a single literal argument.

    Callers refuse control characters beforehand (rules.check_remote_path), so a
    newline can never end the command early.
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("control characters cannot be quoted for lftp")
    return '"' + _LFTP_SPECIAL.sub(r"\\\1", value) + '"'


def connect_program(seedbox: SeedboxConfig) -> str:
    """The ssh command lftp runs for SFTP (with `sh -c`, hence shlex)."""
    return shlex.join(ssh_argv(seedbox))


def open_command(seedbox: SeedboxConfig) -> str:
    """lftp's `open`, fed on its stdin. `user,` with nothing after the comma: no prompt
    is expected (key login); else lftp answers ssh's one prompt with what follows."""
    login = f"{seedbox.user},{login_secret(seedbox) or ''}"
    target = lftp_quote("sftp://" + seedbox.host)
    return f"open -u {lftp_quote(login)} -p {seedbox.port} {target}\n"


def build_script(
    config: LftpConfig, request: TransferRequest, rate_limit: int = 0, excludes: Path | None = None
) -> str:
    """The script; `excludes` is the file of exclude_regexes for a folder payload."""
    sb = request.seedbox
    lines = [
        "set cmd:fail-exit yes",
        "set cmd:interactive no",
        "set net:max-retries 2",
        "set net:reconnect-interval-base 2",
        "set net:reconnect-interval-max 10",
        "set net:timeout 60",
        # Sparse files let progress be read from allocated blocks.
        "set file:use-fallocate no",
        "set xfer:clobber yes",
        # Resume state saved every second, so a crash re-fetches at most ~1 s of data.
        "set pget:save-status 1s",
        f"set sftp:max-packets-in-flight {config.max_packets_in_flight}",
        f"set net:limit-total-rate {rate_limit}:0",
        # Cap the credit lftp saves up (e.g. during the SSH handshake) to 1/16 s of rate,
        # or its first burst overshoots the limit (1/4 s: by 6 % over 2 s).
        f"set net:limit-total-max {max(65536, rate_limit // 16) if rate_limit else 0}",
        f"set sftp:connect-program {lftp_quote(connect_program(sb))}",
        "source /dev/stdin",  # open_command
    ]
    remote, local = lftp_quote(request.remote_path), lftp_quote(str(request.target))
    if request.remote.is_dir:
        # --no-symlinks: a link in a torrent folder is skipped, as by every engine.
        # --no-perms: the seedbox's modes are never copied (the bridge sets its own).
        excluding = ""
        if excludes is not None:
            # Set, lftp's default exclude regex would also drop `.in.*` and `.nfs*` files
            # the moment any exclude option is given (measured with lftp 4.9.2).
            lines.append('set mirror:exclude-regex ""')
            excluding = f"--exclude-rx-from={lftp_quote(str(excludes))} "
        lines.append(
            f"mirror -c --no-symlinks --no-perms --parallel={config.parallel_files} "
            f"--use-pget-n={config.segments} {excluding}{remote} {local}"
        )
    else:
        lines.append(f"pget -c -n {config.segments} {remote} -o {local}")
    return "\n".join(lines) + "\n"


def exclude_regexes(remote: RemoteEntry) -> bytes:
    """mirror's exclude list: lftp matches each POSIX extended regex against the path
    inside the payload, a folder's with a `/` appended. Every special character is
    escaped, so each line is one exact path: `^folder/` (the folder and all in it) or
    `^file$`. Bytes as listed (surrogateescape), so any name matches itself."""
    folders, files = outermost(remote)
    lines = [f"^{_rx_escape(d)}/" for d in folders] + [f"^{_rx_escape(f)}$" for f in files]
    return "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")


def _rx_escape(rel: str) -> str:
    if "\n" in rel:
        # A line of the list cannot hold it, and a wildcard there could drop another file.
        raise TransferError(
            ErrorCode.TRANSFER,
            f"lftp cannot exclude {rel!r} (a newline in its name); use the sftp engine",
        )
    return _RX_SPECIAL.sub(r"\\\1", rel)


PGET_STATUS_SUFFIX = ".lftp-pget-status"


def discard_unresumable(target: Path) -> list[Path]:
    """Delete partial files that `pget -c` would resume wrongly.

    pget writes segments out of order; without its status file, `-c` resumes from the
    file size and leaves the holes in place (exit 0). A file with fewer allocated bytes
    than its size and no status file is such a partial: it starts over instead.
    """
    files = [target] if target.is_file() else list(target.rglob("*")) if target.is_dir() else []
    removed = []
    for path in files:
        if not path.is_file() or path.name.endswith(PGET_STATUS_SUFFIX):
            continue
        if path.with_name(path.name + PGET_STATUS_SUFFIX).exists():
            continue
        st = path.stat()
        if st.st_blocks * 512 < st.st_size:
            path.unlink()
            removed.append(path)
    return removed


def _private_file(folder: Path, suffix: str, data: bytes) -> Path:
    fd, name = tempfile.mkstemp(prefix="lftp-", suffix=suffix, dir=folder)  # 0600
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return Path(name)


class LftpEngine:
    name = "lftp"

    def __init__(
        self,
        config: LftpConfig,
        scratch_dir: Path,
        *,
        bandwidth: Bandwidth,
        slots: Callable[[], int],
        nice: int = 0,
    ) -> None:
        self.config = config
        self.scratch_dir = scratch_dir
        self.bandwidth = bandwidth
        self.slots = slots  # lftp limits one process: each gets limit ÷ max_concurrent
        self.nice = nice

    def warm(self, seedbox: SeedboxConfig) -> None:
        """Each run opens its own SSH connections: nothing to prepare ahead."""

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        request.target.parent.mkdir(parents=True, exist_ok=True)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        for path in await asyncio.to_thread(discard_unresumable, request.target):
            _LOGGER.info(
                "item %s: %s cannot be resumed safely; fetching it again",
                request.item_id,
                path.name,
            )
        excludes = None
        if request.remote.is_dir and (request.remote.excluded or request.remote.excluded_dirs):
            excludes = _private_file(self.scratch_dir, ".rx", exclude_regexes(request.remote))
        fd, script_name = tempfile.mkstemp(prefix="lftp-", suffix=".lftp", dir=self.scratch_dir)
        script = Path(script_name)
        try:
            with self.bandwidth.reserve(self.slots()) as share:  # 0 means unlimited
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(build_script(self.config, request, share, excludes))
                await self._run(script, request, on_progress)
        finally:
            script.unlink(missing_ok=True)
            if excludes is not None:
                excludes.unlink(missing_ok=True)

    async def _run(
        self, script: Path, request: TransferRequest, on_progress: ProgressCallback
    ) -> None:
        async def report() -> None:
            on_progress(await asyncio.to_thread(allocated_bytes, request.target))

        await run_tool(
            [*launcher(self.nice), self.config.binary, "--norc", "-f", str(script)],
            tool="lftp",
            item_id=request.item_id,
            patterns=LFTP_ERRORS,
            on_tick=report,
            stdin_data=open_command(request.seedbox).encode(),
            nice=self.nice,
        )
