"""Throwaway loopback services for tests and benchmarks.

Stdlib only.  Everything listens on 127.0.0.1 and every process started here
is stopped by PID (``stop()`` / context-manager exit).

* :class:`Mosquitto` -- an MQTT broker (``mosquitto`` binary).
* :class:`SshServer` -- an OpenSSH ``sshd`` with SFTP, pubkey auth only, a
  generated host key, a generated client key and ready-made known_hosts files.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

LOOPBACK = "127.0.0.1"
# The announce URL of test and demo torrents: a closed port on loopback, so a client
# that announces looks nothing up and reaches nothing beyond this machine.
OFFLINE_TRACKER = "http://127.0.0.1:9/announce"
# What docs/configuration.md#broker-settings asks of Mosquitto (the demo's broker runs
# with them, persistent): every event queued for an absent bridge is kept, and small
# messages are not held back by Nagle's algorithm.
Q4D_BROKER_SETTINGS = (
    "max_queued_messages 100000",
    "max_queued_bytes 0",
    "autosave_interval 60",
    "set_tcp_nodelay true",
)
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for_port(
    proc: subprocess.Popen[bytes], host: str, port: int, timeout: float
) -> str | None:
    """Wait until ``host:port`` accepts TCP.  Return None or a failure reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            return f"process exited with code {rc}"
        if _port_open(host, port):
            return None
        time.sleep(0.05)
    return f"port {host}:{port} not accepting connections after {timeout:.0f} s"


def _stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, wait, then SIGKILL -- only this one PID."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        pass


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _which(name: str, *fallbacks: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"{name} not found (install the Debian package)")


def _cfg_path(path: Path) -> str:
    """A path as one sshd_config token (double-quoted; spaces allowed)."""
    text = str(path)
    if any(c in text for c in '"\\%\n'):
        raise ValueError(f"path not usable in sshd_config: {text!r}")
    return f'"{text}"'


class _Service:
    """Common start/stop/context-manager plumbing."""

    host: str
    port: int
    log_path: Path
    _proc: subprocess.Popen[bytes] | None
    _log: IO[bytes] | None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def _name(self) -> str:
        return type(self).__name__

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self) -> None:
        if self.running:
            raise RuntimeError(f"{self._name()} already running")
        self._log = self.log_path.open("ab")  # closed in stop()
        self._proc = subprocess.Popen(
            self._argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        failure = _wait_for_port(self._proc, self.host, self.port, START_TIMEOUT)
        if failure is not None:
            self.stop()
            raise RuntimeError(
                f"{self._name()} failed to start: {failure}\n"
                f"--- {self.log_path} ---\n{_read_log(self.log_path)}"
            )

    def stop(self) -> None:
        _stop_process(self._proc)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Mosquitto(_Service):
    """A mosquitto broker on 127.0.0.1 with anonymous access."""

    def __init__(
        self, workdir: Path, *, persistent: bool = False, extra_config: tuple[str, ...] = ()
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.extra_config = extra_config
        self.host = LOOPBACK
        self.port = free_port()
        self.binary = _which("mosquitto", "/usr/sbin/mosquitto")
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.persistence_dir = self.workdir / "persist"
        self._proc = None
        self._log = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "log_dest stdout",
            "log_type all",
        ]
        if self.persistent:
            self.persistence_dir.mkdir(parents=True, exist_ok=True)
            self.persistence_dir.chmod(0o777)
            lines += [
                "persistence true",
                # trailing slash: mosquitto concatenates the file name
                f"persistence_location {self.persistence_dir}/",
            ]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            # As root mosquitto drops to user "mosquitto", which cannot enter
            # pytest's 0700 tmp dirs; "user root" keeps it from dropping.
            lines.append("user root")
        # Extra lines go first: settings like per_listener_settings must precede the rest.
        lines = [*self.extra_config, *lines]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config_path.chmod(0o644)

    def _argv(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def start(self) -> None:
        self._spawn()

    def restart(self) -> None:
        """Stop and start again on the same port (persistence is kept)."""
        self.stop()
        self.start()

    def crash_and_restart(self) -> None:
        """SIGKILL (no goodbye to any client), then start again on the same port."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT)
        self.stop()
        self.start()

    def log(self) -> str:
        return _read_log(self.log_path)


class SshServer(_Service):
    """An OpenSSH sshd on 127.0.0.1: pubkey auth for the current user, SFTP.

    Attributes useful to clients: ``host``, ``port``, ``user``, ``client_key``
    (private key path), ``known_hosts`` (pins the real host key),
    ``wrong_known_hosts`` (pins a different key), ``host_public_key``.
    """

    def __init__(self, workdir: Path, *, host: str = LOOPBACK, passwords: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        # sshd checks passwords of system users only (/etc/shadow; UsePAM no):
        # tests/helpers/sshuser.py makes a throwaway one.
        self.passwords = passwords
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.binary = _which("sshd", "/usr/sbin/sshd")
        self._keygen = _which("ssh-keygen", "/usr/bin/ssh-keygen")
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.client_key = self.workdir / "id_ed25519"
        self.other_host_key = self.workdir / "other_host_ed25519_key"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.known_hosts = self.workdir / "known_hosts"
        self.wrong_known_hosts = self.workdir / "wrong_known_hosts"
        self.config_path = self.workdir / "sshd_config"
        self.pid_file = self.workdir / "sshd.pid"
        self.log_path = self.workdir / "sshd.log"
        self._proc = None
        self._log = None

        for key in (self.host_key, self.client_key, self.other_host_key):
            self._generate_key(key)
        self.host_public_key = self._public(self.host_key)
        self.authorized_keys.write_text(self._public(self.client_key) + "\n")
        self.authorized_keys.chmod(0o600)
        self.known_hosts.write_text(self._known_hosts_line(self.host_public_key))
        self.wrong_known_hosts.write_text(self._known_hosts_line(self._public(self.other_host_key)))
        self._penalties_supported = True
        self._write_config()

    def _generate_key(self, path: Path) -> None:
        for stale in (path, path.with_name(path.name + ".pub")):
            stale.unlink(missing_ok=True)
        subprocess.run(
            [self._keygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )

    @staticmethod
    def _public(private_key: Path) -> str:
        """``ssh-ed25519 AAAA...`` (type and base64, no comment)."""
        fields = private_key.with_name(private_key.name + ".pub").read_text().split()
        return f"{fields[0]} {fields[1]}"

    def _known_hosts_line(self, public_key: str) -> str:
        return f"[{self.host}]:{self.port} {public_key}\n"

    def _write_config(self) -> None:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {_cfg_path(self.host_key)}",
            f"PidFile {_cfg_path(self.pid_file)}",
            f"AuthorizedKeysFile {_cfg_path(self.authorized_keys)}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            f"PasswordAuthentication {'yes' if self.passwords else 'no'}",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            # internal-sftp: no login shell (and no ~/.bashrc) between sshd and SFTP.
            "Subsystem sftp internal-sftp",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "LogLevel VERBOSE",
        ]
        if self._penalties_supported:
            # OpenSSH >= 9.8 throttles sources that fail auth; tests fail auth
            # on purpose, so switch it off where the option exists.
            lines.append("PerSourcePenalties no")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _argv(self) -> list[str]:
        return [self.binary, "-D", "-f", str(self.config_path), "-E", str(self.log_path)]

    def _check_config(self) -> None:
        for _ in range(2):
            result = subprocess.run(
                [self.binary, "-t", "-f", str(self.config_path)],
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if result.returncode == 0:
                return
            output = result.stdout + result.stderr
            if self._penalties_supported and "PerSourcePenalties" in output:
                self._penalties_supported = False
                self._write_config()
                continue
            raise RuntimeError(f"sshd -t rejected {self.config_path}:\n{output}")
        raise RuntimeError(f"sshd -t rejected {self.config_path}")

    def start(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self._check_config()
        self._spawn()

    def ssh_options(self, *, known_hosts: Path | None = None) -> list[str]:
        """Options for ``ssh``/``sftp`` that never prompt and pin the host key."""
        return [
            "-F", "/dev/null",
            "-i", str(self.client_key),
            "-o", "IdentitiesOnly=yes",
            # ssh splits this option's value on whitespace unless double-quoted
            "-o", f'UserKnownHostsFile="{known_hosts or self.known_hosts}"',
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
        ]  # fmt: skip

    def ssh_command(self, *remote: str, known_hosts: Path | None = None) -> list[str]:
        """Full ``ssh`` argv running ``remote`` on this server."""
        return [
            "ssh",
            *self.ssh_options(known_hosts=known_hosts),
            "-p", str(self.port),
            f"{self.user}@{self.host}",
            *remote,
        ]  # fmt: skip

    def log(self) -> str:
        return _read_log(self.log_path)

    def session_pids(self, name: str | None = None) -> list[int]:
        """PIDs below the listening sshd (its per-connection children and their
        subsystems), optionally only those whose command line contains name."""
        listener = self.pid
        parents: dict[int, int] = {}
        cmdlines: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmdlines[int(entry.name)] = cmd
        found = []
        for pid in parents:
            ancestor = parents.get(pid)
            for _ in range(64):
                if ancestor in (None, 0, 1) or ancestor == listener:
                    break
                ancestor = parents.get(ancestor)
            if ancestor == listener and (name is None or name in cmdlines[pid]):
                found.append(pid)
        return found

    def log_offset(self) -> int:
        return len(self.log())

    def bytes_sent_since(self, offset: int) -> int:
        """Bytes sshd sent on connections closed since offset (its "Transferred: sent N"
        line per connection, SSH framing included)."""
        total = 0
        for line in self.log()[offset:].splitlines():
            if "Transferred: sent " in line:
                total += int(line.split("Transferred: sent ", 1)[1].split(",")[0])
        return total
