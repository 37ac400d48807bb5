"""LFTP engine pieces that need no network: quoting, script, error classes, resume safety."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from q4d_bridge.config.model import LftpConfig, SeedboxConfig
from q4d_bridge.transfer.engines.base import TransferRequest
from q4d_bridge.transfer.engines.lftp import (
    LFTP_ERRORS,
    build_script,
    connect_program,
    discard_unresumable,
    lftp_quote,
    open_command,
)
from q4d_bridge.transfer.engines.process import classify_stderr
from q4d_bridge.transfer.errors import ErrorCode
from q4d_bridge.transfer.payload import RemoteEntry, RemoteFile

SEEDBOX = SeedboxConfig(
    id="sb1", name="sb1", host="seed.example", port=2222, user="me",
    key="/keys/my key", known_hosts="/keys/known hosts", remote_roots=(),
    max_concurrent=1, engine="lftp",
)  # fmt: skip


def test_quote_escapes_only_quote_and_backslash() -> None:
    assert lftp_quote('a"b\\c $(x) `y` !z;') == '"a\\"b\\\\c $(x) `y` !z;"'
    for bad in ("new\nline", "nul\0", "cr\r", "del\x7f"):
        with pytest.raises(ValueError, match="control characters"):
            lftp_quote(bad)


def test_connect_program_pins_host_keys_and_survives_spaces() -> None:
    argv = shlex.split(connect_program(SEEDBOX))
    assert argv[:2] == ["ssh", "-F"]
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert 'UserKnownHostsFile="/keys/known hosts"' in argv
    assert argv[argv.index("-i") + 1] == "/keys/my key"


def test_script_uses_pget_for_files_and_mirror_for_dirs(tmp_path: Path) -> None:
    config = LftpConfig(segments=6, parallel_files=3, max_packets_in_flight=64, binary="lftp")
    file_req = TransferRequest(
        "i", SEEDBOX, "/r/a b.mkv", tmp_path / "a b.mkv", RemoteEntry(False, (RemoteFile("", 1),))
    )
    script = build_script(config, file_req)
    assert f'pget -c -n 6 "/r/a b.mkv" -o "{tmp_path}/a b.mkv"' in script
    assert "set sftp:max-packets-in-flight 64" in script
    # the open command, which may hold a password, comes on stdin (open_command)
    assert "\nsource /dev/stdin\n" in script and "open " not in script
    assert open_command(SEEDBOX) == 'open -u "me," -p 2222 "sftp://seed.example"\n'
    dir_req = TransferRequest(
        "i", SEEDBOX, "/r/d", tmp_path / "d", RemoteEntry(True, (RemoteFile("x", 1),))
    )
    assert (
        f'mirror -c --no-symlinks --no-perms --parallel=3 --use-pget-n=6 "/r/d" "{tmp_path}/d"'
        in build_script(config, dir_req)
    )


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        ("Fatal error: Host key verification failed.", ErrorCode.HOST_KEY_MISMATCH),
        (
            "Fatal error: max-retries exceeded (me@h: Permission denied (publickey).)",
            ErrorCode.AUTH_FAILED,
        ),
        ("pget: Access failed: No such file (/r/x.mkv)", ErrorCode.REMOTE_MISSING),
        ("mirror: Access failed: Permission denied (/r/d)", ErrorCode.PERMISSION_DENIED),
        ("/lib/x: No such file or directory", ErrorCode.TRANSFER),
        ("write error: No space left on device", ErrorCode.NO_SPACE),
        (
            "max-retries exceeded (connect to host h port 22: Connection refused)",
            ErrorCode.CONNECTION,
        ),
        ("something else entirely", ErrorCode.TRANSFER),
    ],
)
def test_stderr_classification(stderr: str, code: ErrorCode) -> None:
    assert classify_stderr(stderr, LFTP_ERRORS) is code


def test_discard_unresumable(tmp_path: Path) -> None:
    holes = tmp_path / "holes.bin"  # segments written out of order, status file lost
    with holes.open("wb") as f:
        f.seek(8 * 1024 * 1024)
        f.write(b"x" * 4096)
    resumable = tmp_path / "resumable.bin"
    with resumable.open("wb") as f:
        f.seek(8 * 1024 * 1024)
        f.write(b"x")
    (tmp_path / "resumable.bin.lftp-pget-status").write_text("size=...")
    whole = tmp_path / "whole.bin"
    whole.write_bytes(os.urandom(100_000))
    assert discard_unresumable(tmp_path) == [holes]
    assert resumable.exists() and whole.exists()
    assert discard_unresumable(tmp_path / "missing") == []
