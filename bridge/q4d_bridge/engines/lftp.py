"""LFTP engine: segmented SFTP download (`pget -n` / `mirror --use-pget-n`), resumable.

lftp runs from an argv list with its script in a 0600 file (`lftp -f`), so neither the
torrent name nor anything else reaches a shell or the process list. Inside the script,
every operand goes through `lftp_quote`, the quoting of lftp's own command language.
Measured behaviour this relies on: tests/helpers/lftp_findings.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..config import LftpConfig, SeedboxConfig
from .base import (
    Bandwidth,
    ErrorCode,
    ProgressCallback,
    TransferError,
    TransferRequest,
    allocated_bytes,
)

_LOGGER = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.5
STDERR_LIMIT = 64 * 1024
_LFTP_SPECIAL = re.compile(r'(["\\])')

# Most specific first: lftp and ssh wrap each other's messages.
_STDERR_CODES: tuple[tuple[re.Pattern[str], ErrorCode], ...] = (
    (
        re.compile(r"host key verification failed|REMOTE HOST IDENTIFICATION", re.I),
        ErrorCode.HOST_KEY_MISMATCH,
    ),
    (
        re.compile(r"permission denied \(publickey|login incorrect|authentication failed", re.I),
        ErrorCode.AUTH_FAILED,
    ),
    (re.compile(r"no space left on device|disk quota exceeded", re.I), ErrorCode.NO_SPACE),
    # lftp prints "Access failed: No such file (PATH)" for the remote side only.
    (re.compile(r"access failed: no such file \(", re.I), ErrorCode.REMOTE_MISSING),
    (re.compile(r"permission denied|access denied", re.I), ErrorCode.PERMISSION_DENIED),
    (
        re.compile(
            r"max-retries exceeded|connection refused|not connected|timed out|"
            r"could not resolve|network is unreachable|peer closed",
            re.I,
        ),
        ErrorCode.CONNECTION,
    ),
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
    """The ssh command lftp runs for SFTP; host keys are checked, never auto-accepted.

    lftp runs it with `sh -c`, hence shlex; ssh splits UserKnownHostsFile on spaces
    itself, hence the inner double quotes.
    """
    argv = [
        "ssh", "-F", "/dev/null", "-a", "-x",
        "-i", seedbox.key,
        "-o", "IdentitiesOnly=yes",
        "-o", f'UserKnownHostsFile="{seedbox.known_hosts}"',
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
        "-o", "ConnectTimeout=20",
    ]  # fmt: skip
    return shlex.join(argv)


def build_script(config: LftpConfig, request: TransferRequest, rate_limit: int = 0) -> str:
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
        # Cap the credit lftp saves up (e.g. during the SSH handshake) to 1/4 s of rate,
        # or its first burst overshoots the limit.
        f"set net:limit-total-max {max(65536, rate_limit // 4) if rate_limit else 0}",
        f"set sftp:connect-program {lftp_quote(connect_program(sb))}",
        f"open -u {lftp_quote(sb.user + ',')} -p {sb.port} {lftp_quote('sftp://' + sb.host)}",
    ]
    remote, local = lftp_quote(request.remote_path), lftp_quote(str(request.target))
    if request.remote.is_dir:
        # --no-symlinks: a link in a torrent folder must not land as a link in the library.
        lines.append(
            f"mirror -c --no-symlinks --parallel={config.parallel_files} "
            f"--use-pget-n={config.segments} {remote} {local}"
        )
    else:
        lines.append(f"pget -c -n {config.segments} {remote} -o {local}")
    return "\n".join(lines) + "\n"


def launcher(nice: int) -> list[str]:
    """Argv prefix for lftp. setpriv: if the bridge is killed, lftp goes too, so a
    restarted bridge never has two writers on one staging file. nice: on a busy box the
    bridge's intake and scheduling stay responsive while bulk SSH crypto waits its turn.
    (Both as exec wrappers, not preexec_fn, which would force a slow full fork.)"""
    prefix = []
    setpriv = shutil.which("setpriv")
    if setpriv:
        prefix += [setpriv, "--pdeathsig", "KILL", "--"]
    if nice:
        prefix += ["nice", "-n", str(nice)]
    return prefix


async def _tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Read a stream to EOF, keeping its last `limit` bytes (the error is at the end)."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-limit:]
    return kept


def classify_stderr(stderr: str) -> ErrorCode:
    for pattern, code in _STDERR_CODES:
        if pattern.search(stderr):
            return code
    return ErrorCode.TRANSFER


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
        self.slots = slots  # lftp limits one process: each gets an equal share of the total
        self.nice = nice

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        request.target.parent.mkdir(parents=True, exist_ok=True)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        for path in await asyncio.to_thread(discard_unresumable, request.target):
            _LOGGER.info(
                "item %s: %s cannot be resumed safely; fetching it again",
                request.item_id,
                path.name,
            )
        fd, script_name = tempfile.mkstemp(prefix="lftp-", suffix=".lftp", dir=self.scratch_dir)
        script = Path(script_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                rate = self.bandwidth.rate
                share = max(1, rate // max(1, self.slots())) if rate else 0  # 0 means unlimited
                handle.write(build_script(self.config, request, share))
            await self._run(script, request, on_progress)
        finally:
            script.unlink(missing_ok=True)

    async def _run(
        self, script: Path, request: TransferRequest, on_progress: ProgressCallback
    ) -> None:
        proc = await asyncio.create_subprocess_exec(
            *launcher(self.nice),
            self.config.binary,
            "--norc",
            "-f",
            str(script),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Own session: Ctrl-C in the bridge's terminal must not kill lftp mid-write;
            # the bridge cancels it itself, and the death signal covers kill -9.
            start_new_session=True,
        )
        assert proc.stderr is not None
        stderr_task = asyncio.create_task(_tail(proc.stderr, STDERR_LIMIT))
        try:
            while True:
                try:
                    await asyncio.wait_for(proc.wait(), PROGRESS_INTERVAL)
                    break
                except TimeoutError:
                    on_progress(await asyncio.to_thread(allocated_bytes, request.target))
        except asyncio.CancelledError:
            # The whole group: lftp's ssh children hold the stderr pipe open too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            stderr_task.cancel()
            raise
        stderr = (await stderr_task).decode("utf-8", "replace")
        on_progress(await asyncio.to_thread(allocated_bytes, request.target))
        if proc.returncode != 0:
            code = classify_stderr(stderr)
            detail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            _LOGGER.warning(
                "lftp failed for item %s (exit %s, %s): %s",
                request.item_id, proc.returncode, code.value, detail,
            )  # fmt: skip
            raise TransferError(code, f"lftp exit {proc.returncode}: {detail}"[:500])
