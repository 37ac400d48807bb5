"""Running an external transfer tool (lftp, rsync): argv only, no shell, killed with
its whole process group, its stderr tail classified into a reason code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...config.model import SeedboxConfig
from ..errors import ErrorCode, TransferError

_LOGGER = logging.getLogger(__name__)
TICK_INTERVAL = 0.5
TOOL_NAMES = frozenset({"rsync", "lftp"})
STDERR_LIMIT = 64 * 1024

Patterns = Sequence[tuple[re.Pattern[str], ErrorCode]]

# What ssh itself prints, whichever tool runs it. Host-key and auth failures first:
# the tools wrap ssh's message in their own "connection closed" complaints.
SSH_FATAL: Patterns = (
    (
        re.compile(r"host key verification failed|REMOTE HOST IDENTIFICATION", re.I),
        ErrorCode.HOST_KEY_MISMATCH,
    ),
    (
        re.compile(
            r"permission denied \((publickey|password|keyboard)|login incorrect|"
            r"authentication failed|password required|incorrect passphrase",
            re.I,
        ),
        ErrorCode.AUTH_FAILED,
    ),
    (re.compile(r"no space left on device|disk quota exceeded", re.I), ErrorCode.NO_SPACE),
)
CONNECTION_LOST: Patterns = (
    (
        re.compile(
            r"max-retries exceeded|connection refused|not connected|timed out|"
            r"could not resolve|network is unreachable|peer closed|connection reset|"
            r"connection unexpectedly closed|broken pipe|connection closed",
            re.I,
        ),
        ErrorCode.CONNECTION,
    ),
)


def login_secret(seedbox: SeedboxConfig) -> str | None:
    """What ssh will prompt for: the password, or the key's passphrase (never both)."""
    return seedbox.password if seedbox.key is None else seedbox.passphrase


def ssh_argv(seedbox: SeedboxConfig) -> list[str]:
    """OpenSSH client argv for a seedbox: the pinned host key is checked, never
    auto-accepted; only the configured key or password, no agent, no ~/.ssh/config.
    A prompt (for the password or the key's passphrase) is answered on ssh's terminal
    by lftp or sshpass; without one, BatchMode forbids prompts."""
    if seedbox.key is None:
        login = [
            "-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password,keyboard-interactive",
            "-o", "NumberOfPasswordPrompts=1",
        ]  # fmt: skip
    else:
        login = ["-i", seedbox.key, "-o", "IdentitiesOnly=yes",
                 "-o", "PreferredAuthentications=publickey"]  # fmt: skip
    return [
        "ssh", "-F", "/dev/null", "-a", "-x",
        *login,
        # ssh splits this option's value on whitespace unless it is double-quoted
        "-o", f'UserKnownHostsFile="{seedbox.known_hosts}"',
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"BatchMode={'no' if login_secret(seedbox) else 'yes'}",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
        "-o", "ConnectTimeout=20",
    ]  # fmt: skip


@contextlib.contextmanager
def secret_pipe(secret: str | None) -> Iterator[int | None]:
    """A pipe's read end holding secret and a newline, for a child to inherit (sshpass
    -d): the secret reaches no argv, no environment and no file. None without one."""
    if secret is None:
        yield None
        return
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as writer:  # far below the pipe's buffer size
            writer.write(secret.encode() + b"\n")
        yield read_end
    finally:
        os.close(read_end)


def classify_stderr(stderr: str, patterns: Patterns) -> ErrorCode:
    for pattern, code in patterns:
        if pattern.search(stderr):
            return code
    return ErrorCode.TRANSFER


def launcher(nice: int) -> list[str]:
    """Argv prefix for a tool. setpriv: if the bridge is killed, the tool goes too, so a
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


def lower_session_priority(pid: int, nice: int) -> None:
    """With autogroup scheduling (on in most distributions' kernels) a new session is
    its own scheduling group, weighed against the bridge's as an equal whatever the
    nice of the processes inside: the tool's `nice -n` alone leaves the bridge half a
    core. The group's own nice is what counts, so it gets the same value."""
    if nice:
        with contextlib.suppress(OSError):  # no autogroup support: `nice -n` is enough
            Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")


def kill_leftover_writers(staging_dirs: Iterable[Path], timeout: float = 5.0) -> list[int]:
    """SIGKILL processes of an earlier, killed bridge that still write into these
    staging directories, and wait for them to go. The death signal reaches only the
    tool's first process; an rsync receiver is a fork of it and keeps writing until
    its stream ends, and the restarted transfer must not have a second writer."""
    prefixes = tuple(f"{d}{os.sep}" for d in staging_dirs)
    if not prefixes:
        return []
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue  # only our own tools; never another user's process
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode(errors="replace")).name not in TOOL_NAMES:
            continue  # e.g. a shell or pager that merely names a staged file
        if any(arg.decode(errors="replace").startswith(prefixes) for arg in argv[1:]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    deadline = time.monotonic() + timeout
    while killed and time.monotonic() < deadline and any(running(pid) for pid in killed):
        time.sleep(0.05)
    return killed


def running(pid: int) -> bool:
    """Whether pid is a live process (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def _tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Read a stream to EOF, keeping its last `limit` bytes (the error is at the end)."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-limit:]
    return kept


async def _pump(stream: asyncio.StreamReader, on_output: Callable[[bytes], None]) -> None:
    while chunk := await stream.read(65536):
        on_output(chunk)


async def run_tool(
    argv: list[str],
    *,
    tool: str,
    item_id: str,
    patterns: Patterns,
    on_tick: Callable[[], Awaitable[None]],
    on_output: Callable[[bytes], None] | None = None,
    env: dict[str, str] | None = None,
    stdin_data: bytes | None = None,
    pass_fds: Sequence[int] = (),
    nice: int = 0,
) -> None:
    """Run a tool to completion, calling on_tick twice a second; a non-zero exit raises
    a classified TransferError. Cancelling kills the tool's whole process group.
    stdin_data is written to its stdin, which is then closed (else stdin is empty);
    pass_fds are inherited (a secret_pipe)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL if stdin_data is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE if on_output else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        pass_fds=pass_fds,
        # Own session: Ctrl-C in the bridge's terminal must not kill the tool mid-write;
        # the bridge cancels it itself, and the death signal covers kill -9.
        start_new_session=True,
    )
    lower_session_priority(proc.pid, nice)
    if stdin_data is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin_data)
        # A tool that exits first (refusing its argv) leaves the error to its status.
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
    assert proc.stderr is not None
    stderr_tail = asyncio.create_task(_tail(proc.stderr, STDERR_LIMIT))
    readers: list[asyncio.Task[Any]] = [stderr_tail]
    if on_output:
        assert proc.stdout is not None
        readers.append(asyncio.create_task(_pump(proc.stdout, on_output)))
    try:
        while True:
            try:
                await asyncio.wait_for(proc.wait(), TICK_INTERVAL)
                break
            except TimeoutError:
                await on_tick()
        await asyncio.gather(*readers[1:])
    except asyncio.CancelledError:
        # The whole group: the tool's ssh children hold the pipes open too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        for reader in readers:
            reader.cancel()
        raise
    stderr = (await stderr_tail).decode("utf-8", "replace")
    await on_tick()
    if proc.returncode != 0:
        code = classify_stderr(stderr, patterns)
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        _LOGGER.warning(
            "%s failed for item %s (exit %s, %s): %s",
            tool, item_id, proc.returncode, code.value, detail,
        )  # fmt: skip
        raise TransferError(code, f"{tool} exit {proc.returncode}: {detail}"[:500])
