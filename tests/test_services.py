"""The throwaway services in tests/helpers/services.py actually work."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import allow_loopback_sockets
from tests.helpers.services import Mosquitto, SshServer, free_port


@pytest.fixture(autouse=True)
def _loopback_sockets() -> None:
    allow_loopback_sockets()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535


def test_mosquitto_pub_sub_round_trip(mosquitto: Mosquitto) -> None:
    topic = "q4d/test/roundtrip"
    common = ["-h", mosquitto.host, "-p", str(mosquitto.port), "-t", topic]
    sub = subprocess.Popen(
        ["mosquitto_sub", *common, "-C", "1", "-W", "10", "-q", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = ""
        # Publish until the subscriber (which may not be subscribed yet) gets it.
        deadline = time.monotonic() + 10
        for _ in range(100):
            subprocess.run(
                ["mosquitto_pub", *common, "-m", "hello q4d", "-q", "1"],
                check=True,
                stdin=subprocess.DEVNULL,
                timeout=10,
            )
            try:
                out, _err = sub.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    break
        assert sub.returncode == 0, mosquitto.log()
        assert out.strip() == "hello q4d"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait(timeout=5)


def test_mosquitto_restart_keeps_retained(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, persistent=True) as broker:
        common = ["-h", broker.host, "-p", str(broker.port), "-t", "q4d/retained"]
        subprocess.run(
            ["mosquitto_pub", *common, "-r", "-q", "1", "-m", "kept"],
            check=True,
            stdin=subprocess.DEVNULL,
            timeout=10,
        )
        port = broker.port
        broker.restart()
        assert broker.port == port
        result = subprocess.run(
            ["mosquitto_sub", *common, "-C", "1", "-W", "10"],
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 0, broker.log()
        assert result.stdout.strip() == "kept"


def _ssh(server: SshServer, known_hosts: Path) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", "-i", str(server.client_key), "-p", str(server.port)]
    argv += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    argv += ["-o", "BatchMode=yes", f"{server.user}@{server.host}", "true"]
    return subprocess.run(
        argv,
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_sshd_accepts_pinned_host_key(sshd: SshServer) -> None:
    result = _ssh(sshd, sshd.known_hosts)
    assert result.returncode == 0, result.stderr + sshd.log()


def test_sshd_rejected_with_wrong_known_hosts(sshd: SshServer) -> None:
    result = _ssh(sshd, sshd.wrong_known_hosts)
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr
    assert "Host key verification failed" in result.stderr


def test_ssh_command_helper(sshd: SshServer) -> None:
    result = subprocess.run(
        sshd.ssh_command("echo", "ok"),
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert sshd.host_public_key.startswith("ssh-ed25519 AAAA")
    assert sshd.known_hosts.read_text().startswith(f"[127.0.0.1]:{sshd.port} ")


def test_sshd_workdir_with_spaces_and_quotes(tmp_path: Path) -> None:
    with SshServer(tmp_path / "dir with 'spaces' $(x)") as server:
        result = subprocess.run(
            server.ssh_command("true"),
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr + server.log()
        wrong = subprocess.run(
            server.ssh_command("true", known_hosts=server.wrong_known_hosts),
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert wrong.returncode == 255
        assert "Host key verification failed" in wrong.stderr
    assert not server.running
