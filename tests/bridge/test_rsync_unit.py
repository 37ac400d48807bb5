"""rsync engine pieces: argv, quoting for rsync's own -e splitting (checked against the
real rsync), progress2 parsing, error classes."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from q4d_bridge.config.model import RsyncConfig, SeedboxConfig
from q4d_bridge.transfer.engines.base import TransferRequest
from q4d_bridge.transfer.engines.process import classify_stderr, kill_leftover_writers
from q4d_bridge.transfer.engines.rsync import (
    RSYNC_ERRORS,
    ProgressParser,
    already_complete,
    build_argv,
    discard_oversized,
    remote_shell,
)
from q4d_bridge.transfer.errors import ErrorCode
from q4d_bridge.transfer.payload import RemoteEntry, RemoteFile

SEEDBOX = SeedboxConfig(
    id="sb1", name="sb1", host="seed.example", port=2222, user="me",
    key="/keys/my 'key'", known_hosts='/keys/known "hosts"', remote_roots=(),
    max_concurrent=1, engine="rsync",
)  # fmt: skip
NAME = "Show 'S01' $(reboot) `x` ; & | \"q\".mkv"


def request(target: Path, *, is_dir: bool = False) -> TransferRequest:
    entries = (
        (RemoteFile("a.mkv", 10), RemoteFile("b/c.srt", 5)) if is_dir else (RemoteFile("", 7),)
    )
    return TransferRequest("item1", SEEDBOX, f"/data/{NAME}", target, RemoteEntry(is_dir, entries))


def test_argv_file_and_directory(tmp_path: Path) -> None:
    argv = build_argv(RsyncConfig("rsync"), request(tmp_path / NAME), rate_limit=1000)
    assert argv[0] == "rsync"
    assert {"--inplace", "--partial", "--append-verify", "--protect-args"} <= set(argv)
    assert "--links" not in argv and "-l" not in argv  # symlinks are never recreated
    assert "--bwlimit=1" in argv  # KiB/s, rounded up so a small limit is not "unlimited"
    assert argv[-3:] == ["--", f"me@seed.example:/data/{NAME}", str(tmp_path / NAME)]
    argv = build_argv(RsyncConfig("rsync"), request(tmp_path / "d", is_dir=True))
    assert argv[-2:] == [f"me@seed.example:/data/{NAME}/", f"{tmp_path / 'd'}/"]
    assert not any(a.startswith("--bwlimit") for a in argv)
    v6 = dataclasses.replace(SEEDBOX, host="::1")
    assert build_argv(RsyncConfig("rsync"), dataclasses.replace(request(tmp_path), seedbox=v6))[
        -2
    ].startswith("me@[::1]:")


def test_remote_shell_survives_rsyncs_own_splitting(tmp_path: Path) -> None:
    """Run the real rsync with our -e string and a fake ssh that records its argv."""
    record = tmp_path / "argv.json"
    fake_ssh = tmp_path / "fake ssh"
    fake_ssh.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    fake_ssh.chmod(0o755)
    rsh = remote_shell(SEEDBOX).replace("'ssh'", "'" + str(fake_ssh).replace("'", "''") + "'", 1)
    subprocess.run(
        ["rsync", "--protect-args", "--rsh", rsh, "--", "me@seed.example:/x", str(tmp_path / "y")],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    argv = json.loads(record.read_text())
    assert argv[argv.index("-i") + 1] == "/keys/my 'key'"
    assert 'UserKnownHostsFile="/keys/known "hosts""' in argv
    assert argv[argv.index("-p") + 1] == "2222"
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv


def test_progress_parser_reads_carriage_return_lines() -> None:
    parser = ProgressParser()
    parser.feed(b"\r          32768   0%    0.00kB/s    0:00:00  \r     21,528")
    assert parser.done == 32768
    parser.feed(b",576  43%   19.54MB/s    0:00:01  \r")
    assert parser.done == 21528576
    parser.feed(b'skipping non-regular file "link"\n     5.000.000 100%  1MB/s  0:00:05 (xfr#1)\n')
    assert parser.done == 21528576  # never goes backwards


def test_already_complete_counts_files_rsync_will_skip(tmp_path: Path) -> None:
    target = tmp_path / "d"
    (target / "b").mkdir(parents=True)
    (target / "a.mkv").write_bytes(b"x" * 10)
    (target / "b" / "c.srt").write_bytes(b"x" * 2)  # partial: rsync counts it itself
    assert already_complete(request(target, is_dir=True)) == 10


@pytest.mark.parametrize(
    ("stderr", "code"),
    [
        ("Host key verification failed.\nrsync: connection unexpectedly closed", ErrorCode.HOST_KEY_MISMATCH),
        ("me@h: Permission denied (publickey).\nrsync: connection unexpectedly closed", ErrorCode.AUTH_FAILED),
        ('rsync: [sender] link_stat "/d/x.mkv" failed: No such file or directory (2)', ErrorCode.REMOTE_MISSING),
        ('file has vanished: "/d/x/e01.mkv"', ErrorCode.REMOTE_MISSING),
        ('rsync: [sender] send_files failed to open "/d/x": Permission denied (13)', ErrorCode.PERMISSION_DENIED),
        ('rsync: [receiver] write failed on "/l/x": No space left on device (28)', ErrorCode.NO_SPACE),
        ("rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]", ErrorCode.CONNECTION),
        ("ssh: connect to host h port 22: Connection refused", ErrorCode.CONNECTION),
        ("something else entirely", ErrorCode.TRANSFER),
    ],
)  # fmt: skip
def test_stderr_classification(stderr: str, code: ErrorCode) -> None:
    assert classify_stderr(stderr, RSYNC_ERRORS) is code


def test_discard_oversized_restarts_files_that_shrank_on_the_seedbox(tmp_path: Path) -> None:
    target = tmp_path / "d"
    (target / "b").mkdir(parents=True)
    (target / "a.mkv").write_bytes(b"x" * 12)  # the seedbox has 10 bytes now
    (target / "b" / "c.srt").write_bytes(b"x" * 5)
    assert discard_oversized(request(target, is_dir=True)) == [target / "a.mkv"]
    assert (target / "b" / "c.srt").exists()


def test_leftover_writers_are_killed_and_nothing_else(tmp_path: Path) -> None:
    """An rsync still writing into staging after its bridge died is stopped; a process
    that merely names a staged file is left alone."""
    stage = tmp_path / ".q4d-partial" / "item1"
    stage.mkdir(parents=True)
    source = tmp_path / "source.bin"
    source.write_bytes(b"\0" * (4 * 2**20))
    writer = subprocess.Popen(
        ["rsync", "--bwlimit=64", str(source), str(stage / "payload.bin")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", str(stage / "payload.bin")]
    )
    try:
        deadline = time.monotonic() + 10
        while not list(stage.glob("*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = kill_leftover_writers([stage])
        assert writer.pid in killed and bystander.pid not in killed
        assert writer.wait(5) == -signal.SIGKILL
        assert bystander.poll() is None
    finally:
        for proc in (writer, bystander):
            proc.kill()
            proc.wait(5)
