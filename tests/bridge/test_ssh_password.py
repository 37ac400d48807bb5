"""Password logins and encrypted keys, per engine, against a real sshd that checks a
real (throwaway) user's password: the whole bridge lands a payload, and while it runs
every process on the machine is read for the secret (argv and environment) as are the
logs and what the bridge publishes. A wrong password fails as auth_failed, unseen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import LftpConfig, RsyncConfig, SeedboxConfig
from q4d_bridge.models import ItemState
from q4d_bridge.transfer.bandwidth import Bandwidth
from q4d_bridge.transfer.engines.base import TransferRequest
from q4d_bridge.transfer.engines.lftp import LftpEngine, build_script, connect_program, open_command
from q4d_bridge.transfer.engines.rsync import RsyncEngine, build_argv, remote_shell
from q4d_bridge.transfer.errors import ErrorCode, TransferError
from q4d_bridge.transfer.payload import RemoteEntry, RemoteFile
from q4d_bridge.transfer.remote import connect

from tests.bridge.test_e2e import Env, digest_tree, make_file
from tests.conftest import allow_loopback_sockets
from tests.helpers import sshuser
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import recording
from tests.helpers.services import Mosquitto, SshServer
from tests.helpers.sshuser import PasswordUser

pytestmark = pytest.mark.timeout(120)
MiB = 2**20
TOOLS = frozenset({"lftp", "ssh", "rsync", "sshpass"})
# what each engine runs while it fetches (sftp: nothing, asyncssh is in the bridge)
SEEN = {"lftp": {"lftp", "ssh"}, "rsync": {"rsync", "sshpass", "ssh"}, "sftp": set()}
ENGINES = pytest.mark.parametrize("engine", ["lftp", "rsync", "sftp"])


@pytest.fixture(scope="module")
def user() -> Iterator[PasswordUser]:
    if reason := sshuser.unavailable():
        pytest.skip(reason)
    with sshuser.password_user() as made:
        yield made


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """This module's own sshd, which also takes passwords."""
    allow_loopback_sockets()
    with SshServer(tmp_path_factory.mktemp("sshd-pw"), passwords=True) as server:
        yield server


class Watch:
    """Reads every process's argv and environment on the machine, 50 times a second,
    for the secret; notes which tools ran whose argv names one of `markers`."""

    def __init__(self, secret: str, markers: tuple[str, ...]) -> None:
        self.secret = secret.encode()
        self.markers = tuple(m.encode() for m in markers)
        self.leaks: list[str] = []
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _scan(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue  # gone meanwhile
            name = Path(argv.split(b"\0", 1)[0].decode(errors="replace")).name
            for where, data in (("argv", argv), ("environment", environ)):
                if self.secret in data:
                    self.leaks.append(f"{name} (pid {entry.name}): the secret is in its {where}")
            if name in TOOLS and any(m in argv for m in self.markers):
                self.seen.add(name)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._scan()

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@contextlib.asynccontextmanager
async def bridge_on(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, remote: Path, **seedbox: Any
) -> AsyncIterator[Env]:
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key,
        known_hosts=sshd.known_hosts, broker_port=mosquitto.port, ssh_port=sshd.port,
        remote_root=str(remote),
    )  # fmt: skip
    sb = raw["seedboxes"][0]
    del sb["key"]
    sb.update(seedbox)
    # ~2 s a payload: long enough to see each tool's processes
    raw["transfers"].update(bandwidth_limit=3 * MiB, max_attempts=1)
    bridge = Bridge(parse_config(raw))
    async with recording(mosquitto.port) as recorder:
        task = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(bridge.connected.wait(), 15)
            yield Env(bridge, recorder, mosquitto.port, remote, tmp_path / "library")
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 30)


def season(remote: Path) -> Path:
    """A folder of three files: lftp's mirror opens several SFTP sessions, each of
    which has to log in."""
    payload = remote / "Show.S01"
    for n in range(3):
        make_file(payload / f"e0{n}.mkv", 2 * MiB + n, seed=n)
    return payload


async def land(env: Env, payload: Path, secret: str, markers: tuple[str, ...]) -> Watch:
    with Watch(secret, markers) as watch:
        await env.complete(payload.name, "c" * 40, category="tv")
        await env.wait_settled(1)
    item = next(iter(env.bridge.lifecycle.items.values()))
    assert item.state is ItemState.DONE, item.last_error
    assert digest_tree(env.library / "tv" / payload.name) == digest_tree(payload)
    shown = b"".join(m.payload for m in env.recorder.messages)
    assert secret.encode() not in shown
    return watch


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    asyncssh.set_debug_level(2)
    return caplog


def test_the_watch_finds_a_secret_in_an_argv_and_an_environment(tmp_path: Path) -> None:
    """So that finding nothing means something."""
    secret = "s3cret, seen"
    with Watch(secret, (str(tmp_path),)) as watch:
        sleeper = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(0.5)", secret], env={"X": secret}
        )
        sleeper.wait(10)
    name = Path(sys.executable).name
    assert watch.leaks[:2] == [
        f"{name} (pid {sleeper.pid}): the secret is in its argv",
        f"{name} (pid {sleeper.pid}): the secret is in its environment",
    ]


@ENGINES
async def test_a_password_login_lands_the_payload_and_shows_the_password_nowhere(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    user: PasswordUser,
    engine: str,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    remote = user.home / f"downloads-{engine}"  # the user's to read, not the tmp_path's
    payload = season(remote)
    secret_file = tmp_path / "ssh.password"
    secret_file.write_text(user.password + "\n")
    offset = sshd.log_offset()
    async with bridge_on(
        tmp_path, mosquitto, sshd, remote, engine=engine, user=user.name,
        password_file=str(secret_file),
    ) as env:  # fmt: skip
        watch = await land(env, payload, user.password, (str(tmp_path), str(sshd.workdir)))
    assert watch.leaks == []
    assert watch.seen == SEEN[engine]
    log = sshd.log()[offset:]
    assert f"Accepted password for {user.name}" in log
    assert "Accepted publickey" not in log
    assert user.password not in debug_logs.text
    assert any(r.name.startswith("asyncssh") for r in debug_logs.records)  # logs were seen
    # the held link logged in too: it ran the hook's flush (no hook on this "seedbox")
    assert "seedbox sb1: no hook installed" in debug_logs.text


@ENGINES
@pytest.mark.filterwarnings("ignore:.*bcrypt.kdf.. called with only 16 round:UserWarning")
async def test_an_encrypted_key_is_opened_with_its_passphrase(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    engine: str,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    passphrase = 'open: "sesame", \\ $x'
    key_path = tmp_path / "id_encrypted"
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(key_path, passphrase=passphrase, rounds=16)  # OpenSSH's default
    key_path.chmod(0o600)  # ssh ignores a key others may read
    with sshd.authorized_keys.open("a") as keys:
        keys.write(key.export_public_key().decode())
    remote = tmp_path / "seedbox"
    payload = season(remote)
    offset = sshd.log_offset()
    async with bridge_on(
        tmp_path, mosquitto, sshd, remote, engine=engine, user=sshd.user, key=str(key_path),
        passphrase=passphrase,
    ) as env:  # fmt: skip
        watch = await land(env, payload, passphrase, (str(tmp_path), str(sshd.workdir)))
    assert watch.leaks == []
    assert watch.seen == SEEN[engine]
    assert f"Accepted publickey for {sshd.user}" in sshd.log()[offset:]
    assert passphrase not in debug_logs.text


@ENGINES
async def test_a_wrong_password_fails_as_auth_failed_and_is_not_shown(
    tmp_path: Path, sshd: SshServer, user: PasswordUser, engine: str,
    debug_logs: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    wrong = user.password + "-wrong"
    remote = user.home / "downloads-wrong"
    make_file(remote / "movie.mkv", 1000)
    seedbox = SeedboxConfig(
        id="sb1", name="sb1", host=sshd.host, port=sshd.port, user=user.name, key=None,
        password=wrong, known_hosts=str(sshd.known_hosts), remote_roots=(),
        max_concurrent=1, engine=engine,
    )  # fmt: skip
    request = TransferRequest(
        "i1", seedbox, str(remote / "movie.mkv"), tmp_path / "movie.mkv",
        RemoteEntry(False, (RemoteFile("", 1000),)),
    )  # fmt: skip
    with (
        Watch(wrong, (str(tmp_path), str(sshd.workdir))) as watch,
        pytest.raises(TransferError) as failure,
    ):
        if engine == "sftp":
            await connect(seedbox)
        elif engine == "lftp":
            lftp = LftpConfig(segments=2, parallel_files=2, max_packets_in_flight=16, binary="lftp")
            engine_ = LftpEngine(lftp, tmp_path / "scratch", bandwidth=Bandwidth(), slots=lambda: 1)
            await engine_.fetch(request, lambda _n: None)
        else:
            rsync = RsyncEngine(RsyncConfig("rsync"), bandwidth=Bandwidth(), slots=lambda: 1)
            await rsync.fetch(request, lambda _n: None)
    assert failure.value.code is ErrorCode.AUTH_FAILED, failure.value.message
    assert wrong not in failure.value.message
    assert watch.leaks == []
    assert not (tmp_path / "movie.mkv").exists()
    assert wrong not in debug_logs.text


def test_only_the_open_command_holds_the_secret(tmp_path: Path) -> None:
    """What is built without a network: lftp's script file and connect program, rsync's
    argv (its --rsh with sshpass) and their ssh options; only lftp's stdin has it."""
    secret = 'pw, "q" \\ $x'
    seedbox = SeedboxConfig(
        id="sb1", name="sb1", host="seed.example", port=2222, user="me", key=None,
        password=secret, known_hosts="/k/known_hosts", remote_roots=(), max_concurrent=1,
        engine="lftp",
    )  # fmt: skip
    request = TransferRequest(
        "i1", seedbox, "/r/a.mkv", tmp_path / "a.mkv", RemoteEntry(False, (RemoteFile("", 1),))
    )
    config = LftpConfig(segments=2, parallel_files=2, max_packets_in_flight=16, binary="lftp")
    script = build_script(config, request)
    argv = build_argv(RsyncConfig("rsync"), request, secret_fd=7)
    assert secret not in script and not any(secret in arg for arg in argv)
    assert (
        open_command(seedbox) == 'open -u "me,pw, \\"q\\" \\\\ $x" -p 2222 "sftp://seed.example"\n'
    )
    rsh = argv[argv.index("--rsh") + 1]
    assert rsh.startswith("'sshpass' '-d' '7' '-P' 'assword' 'ssh' ")
    for options in (connect_program(seedbox), rsh):
        assert "PubkeyAuthentication=no" in options and "BatchMode=no" in options
        assert "NumberOfPasswordPrompts=1" in options and "-i" not in options.split()
    with_key = SeedboxConfig(**{**asdict(seedbox), "key": "/k/id", "password": None,
                                "passphrase": secret})  # fmt: skip
    rsh = remote_shell(with_key, 9)
    assert rsh.startswith("'sshpass' '-d' '9' '-P' 'passphrase' 'ssh' ") and secret not in rsh
    assert "PreferredAuthentications=publickey" in rsh and "BatchMode=no" in rsh
    assert "BatchMode=yes" in remote_shell(
        SeedboxConfig(**{**asdict(with_key), "passphrase": None})
    )
