"""kill -9 and broker restarts: every event processed exactly once, transfers resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
from collections import Counter
from pathlib import Path

import aiomqtt
import pytest
from q4d_bridge.config.loader import parse_config
from q4d_bridge.models import ItemState

from tests.bridge.test_e2e import make_file
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import Recorder, publish, recording
from tests.helpers.proxy import CountingProxy
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(240)


def event(remote: Path, name: str, n: int) -> tuple[str, bytes]:
    payload = {"v": 1, "event_id": f"ev-{n}", "path": str(remote / name), "hash": f"{n:040x}"}
    return "q4d/seedbox/sb1/completed", json.dumps(payload).encode()


def online_count(rec: Recorder) -> int:
    return sum(
        1 for m in rec.on("q4d/bridge/test/status") if m.payload and m.json()["state"] == "online"
    )


async def test_sigkill_with_events_published_while_down(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    remote, library = tmp_path / "seedbox", tmp_path / "library"
    make_file(remote / "big.bin", 600_000_000, seed=7)
    for n in range(60):
        make_file(remote / f"small-{n:02}.mkv", 20_000 + n, seed=n)
    config = bridge_config(
        tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user, remote_root=str(remote),
    )  # fmt: skip
    config["transfers"]["max_concurrent"] = 2
    bridge = BridgeProcess(tmp_path / "proc", config)
    scratch = str(tmp_path / "data" / "scratch")
    async with recording(mosquitto.port) as rec:
        bridge.start()
        try:
            await rec.wait_for(lambda: online_count(rec) >= 1, 20, "bridge online")
            await publish(mosquitto.port, [event(remote, "big.bin", 0)])
            await publish(
                mosquitto.port, [event(remote, f"small-{n:02}.mkv", n) for n in range(1, 10)]
            )
            await rec.wait_for(lambda: rec.events("started"), 20, "a transfer started")
            await asyncio.sleep(0.3)
            bridge.kill()
            await asyncio.sleep(0.5)
            assert bridge.children_alive(scratch) == [], "lftp outlived the killed bridge"

            # 50 completions while the bridge is down: the broker holds them for its session
            await publish(
                mosquitto.port, [event(remote, f"small-{n:02}.mkv", n) for n in range(10, 60)]
            )
            # and redeliveries of events the bridge had already stored
            await publish(
                mosquitto.port, [event(remote, f"small-{n:02}.mkv", n) for n in range(1, 5)]
            )
            bridge.start()
            await rec.wait_for(lambda: online_count(rec) >= 2, 20, "bridge back online")
            await rec.wait_for(
                lambda: len({e["item"]["id"] for e in rec.events("completed")}) >= 60,
                180,
                "60 completed items",
            )
        finally:
            bridge.stop()

    db = sqlite3.connect(tmp_path / "data" / "q4d.sqlite3")
    rows = db.execute("SELECT remote_path, state, hash FROM items").fetchall()
    assert len(rows) == 60
    assert len({r[0] for r in rows}) == 60
    assert {r[1] for r in rows} == {"done"}

    # The outbox is at least once: a row sent just before the kill goes again after the
    # restart, byte for byte (same "at"). Distinct events: one per item, never two.
    def distinct(kind: str) -> Counter[str]:
        unique = {json.dumps(e, sort_keys=True): e for e in rec.events(kind)}
        return Counter(e["item"]["id"] for e in unique.values())

    queued = distinct("queued")
    assert set(queued.values()) == {1}, "an event was turned into an item twice"
    completed = distinct("completed")
    assert len(completed) == 60 and set(completed.values()) == {1}
    assert (library / "other" / "big.bin").read_bytes() == (remote / "big.bin").read_bytes()
    for n in range(1, 60):
        name = f"small-{n:02}.mkv"
        assert (library / "other" / name).read_bytes() == (remote / name).read_bytes()
    assert "resuming" in bridge.log()


async def test_broker_restart(tmp_path: Path, sshd: SshServer) -> None:
    remote, library = tmp_path / "seedbox", tmp_path / "library"
    with Mosquitto(tmp_path / "mosq", persistent=True) as broker:
        config = bridge_config(
            tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
            broker_port=broker.port, ssh_port=sshd.port, user=sshd.user, remote_root=str(remote),
        )  # fmt: skip
        make_file(remote / "one.mkv", 1000)
        make_file(remote / "two.mkv", 2000)
        bridge = BridgeProcess(tmp_path / "proc", config)
        with bridge:
            async with recording(broker.port) as rec:
                await rec.wait_for(lambda: online_count(rec) >= 1, 20, "bridge online")
                await publish(broker.port, [event(remote, "one.mkv", 1)])
                await rec.wait_for(lambda: rec.events("completed"), 20, "first completion")
            broker.restart()
            async with recording(broker.port) as rec:
                # retained status comes back once the bridge has reconnected
                await rec.wait_for(lambda: online_count(rec) >= 1, 60, "bridge reconnected")
            # Crashes mid-burst: the bridge's socket dies while it reads and writes.
            for crash in range(3):
                burst = asyncio.ensure_future(publish(broker.port, commands(crash, 300)))
                await asyncio.sleep(0.05)
                broker.crash_and_restart()
                with contextlib.suppress(aiomqtt.MqttError):
                    await burst
                async with recording(broker.port) as rec:
                    await rec.wait_for(lambda: online_count(rec) >= 1, 60, "bridge reconnected")
            async with recording(broker.port) as rec:
                await publish(broker.port, [event(remote, "two.mkv", 2)])
                await rec.wait_for(lambda: rec.events("completed"), 30, "completion after restart")
                # SIGTERM: a clean exit that leaves "offline" retained (not the will)
                assert bridge.stop() == 0
                await rec.wait_for(
                    lambda: rec.on("q4d/bridge/test/status")[-1].json()["state"] == "offline",
                    10,
                    "offline status",
                )
        assert (library / "other" / "two.mkv").stat().st_size == 2000
    # An expected reconnect is one warning, with no error or traceback.
    log = bridge.log()
    assert [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line] == []
    assert log.count("MQTT connection lost") == 4


def commands(batch: int, count: int) -> list[tuple[str, bytes]]:
    return [
        ("q4d/bridge/test/command", json.dumps({"id": f"{batch}-{n}", "op": "get_queue"}).encode())
        for n in range(count)
    ]


def test_status_cli_reads_the_queue(tmp_path: Path) -> None:
    import subprocess
    import sys

    from q4d_bridge.models import CompletionEvent
    from q4d_bridge.persistence.store import Store
    from q4d_bridge.rules import Resolution

    key, known = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("h")
    config = bridge_config(tmp_path / "data", tmp_path / "lib", key=key, known_hosts=known)
    bridge = BridgeProcess(tmp_path / "proc", config)  # only writes the config file here
    argv = [sys.executable, "-m", "q4d_bridge.cli", "status", "--config", str(bridge.config_path)]
    empty = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "no queue yet" in empty.stdout

    store = Store(tmp_path / "data" / "q4d.sqlite3")
    for n, name in enumerate(("Film.mkv", "Show.S01")):
        ev = CompletionEvent(
            event_id=f"e{n}", seedbox="sb1", path=f"/r/{name}", name=name, size=2048
        )
        store.admit([(ev, Resolution(None, "default", Path("/l"), Path("/l") / name))])
    film = next(i for i in store.items() if i.name == "Film.mkv")
    film.state, film.bytes_done, film.last_error, film.error_code = (
        ItemState.WAITING, 1024, "connection reset", "connection",
    )  # fmt: skip
    store.save(film, "waiting")
    store.set_setting("paused", True)
    store.close()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert "queue PAUSED" in out
    assert "waiting" in out and " 50.0%" in out and "connection: connection reset" in out
    assert "queued" in out and "Show.S01" in out


async def test_bridge_over_tls_with_password(tmp_path: Path, sshd: SshServer) -> None:
    """A real TLS listener with a private CA and a password file; secrets stay out of logs."""
    import subprocess

    certs = tmp_path / "certs"
    certs.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=certs, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=q4d test CA",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")  # fmt: skip
    passwords = tmp_path / "passwd"
    passwords.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "q4d", "s3cret-pw"], check=True)
    passwords.chmod(0o644)
    from tests.helpers.services import free_port

    tls_port = free_port()
    extra = (
        "per_listener_settings true",
        f"listener {tls_port} 127.0.0.1",
        f"cafile {certs / 'ca.pem'}",
        f"certfile {certs / 'server.pem'}",
        f"keyfile {certs / 'server.key'}",
        "allow_anonymous false",
        f"password_file {passwords}",
    )
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret-pw\n")
    with Mosquitto(tmp_path / "mosq", extra_config=extra) as broker:
        config = bridge_config(
            tmp_path / "data", tmp_path / "library", key=sshd.client_key,
            known_hosts=sshd.known_hosts, broker_port=tls_port, ssh_port=sshd.port, user=sshd.user,
        )  # fmt: skip
        config["broker"].update(
            username="q4d", password_file=str(secret), tls={"ca_certs": str(certs / "ca.pem")}
        )
        config["log_level"] = "DEBUG"
        bridge = BridgeProcess(tmp_path / "proc", config)
        with bridge:
            async with recording(broker.port) as rec:  # the plain listener, anonymous
                await rec.wait_for(lambda: online_count(rec) >= 1, 20, "bridge online over TLS")
        assert "s3cret-pw" not in bridge.log()


def resumable_bytes(stage: Path, payload: Path, chunk_size: int) -> int:
    """Bytes of a killed transfer the engine will keep: journaled SFTP chunks, the
    ranges lftp's pget status file records as done, or (rsync) the whole file."""
    journals = list((stage / ".q4d-journal").glob("*"))
    if journals:
        indexes = {int(n) for n in journals[0].read_text().split("\n")[:-1] if n.isdigit()}
        size = payload.stat().st_size
        return sum(min(chunk_size, size - i * chunk_size) for i in indexes)
    status = payload.with_name(payload.name + ".lftp-pget-status")
    if not status.exists():
        return payload.stat().st_size
    fields = dict(line.split("=", 1) for line in status.read_text().split() if "=" in line)
    done, start, n = 0, 0, 0
    while f"{n}.pos" in fields:
        done += int(fields[f"{n}.pos"]) - start
        start = int(fields[f"{n}.limit"])
        n += 1
    return done


async def sessions_closed(sshd: SshServer) -> None:
    """Wait until sshd has logged every connection's byte count."""
    for _ in range(100):
        if not sshd.session_pids():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"SSH sessions still open: {sshd.session_pids()}")


@pytest.mark.parametrize("engine", ["lftp", "sftp", "rsync"])
async def test_resume_after_sigkill_refetches_little(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """Kill -9 mid-transfer; the restarted bridge continues from the bytes on disk and
    re-fetches at most what was in flight."""
    remote, library = tmp_path / "seedbox", tmp_path / "library"
    size = 240 * 1024 * 1024
    chunk = 2**20  # transfers.sftp.chunk_size
    make_file(remote / "film.mkv", size, seed=11)
    # The bridge reaches sshd through a relay that counts what the seedbox sends.
    proxy = CountingProxy(sshd.port)
    await proxy.__aenter__()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {sshd.host_public_key}\n")
    config = bridge_config(
        tmp_path / "data", library, key=sshd.client_key, known_hosts=known_hosts,
        broker_port=mosquitto.port, ssh_port=proxy.port, user=sshd.user, remote_root=str(remote),
    )  # fmt: skip
    config["seedboxes"][0]["engine"] = engine
    config["transfers"].update(max_concurrent=1, bandwidth_limit="40MiB")
    bridge = BridgeProcess(tmp_path / "proc", config)

    def progress(rec: Recorder) -> int:
        items = [m.json() for m in rec.on("q4d/bridge/test/item/") if m.payload]
        return max((i["bytes_done"] for i in items), default=0)

    async with proxy, recording(mosquitto.port) as rec:
        bridge.start()
        try:
            await rec.wait_for(lambda: online_count(rec) >= 1, 20, "bridge online")
            await publish(mosquitto.port, [event(remote, "film.mkv", 1)])
            await rec.wait_for(lambda: progress(rec) >= size * 0.4, 60, "40% transferred")
            bridge.kill()
            (stage,) = (library / "other" / ".q4d-partial").iterdir()
            partial = stage / "film.mkv"
            on_disk = partial.stat().st_blocks * 512
            kept = resumable_bytes(stage, partial, chunk)
            bridge.start()
            await rec.wait_for(lambda: rec.events("completed"), 90, "completion after restart")
        finally:
            bridge.stop()
    # Everything the seedbox sent in both runs, SSH framing and stat sessions included.
    resent = proxy.downstream - size
    landed = library / "other" / "film.mkv"
    assert landed.read_bytes() == (remote / "film.mkv").read_bytes()
    wasted = on_disk - kept
    print(f"{engine}: {on_disk / 2**20:.1f} MiB on disk at kill -9, {kept / 2**20:.1f} MiB kept, "
          f"{wasted / 2**20:.1f} MiB discarded; the seedbox sent {resent / 2**20:.1f} MiB "
          "more than the file")  # fmt: skip
    assert kept >= size * 0.2  # it resumed: most of what had landed was kept
    if engine == "rsync":
        # --inplace --append-verify: every byte on disk is kept, only the rest is sent.
        bound = 8 * chunk
    elif engine == "sftp":
        # At most the chunks each connection had reads in flight for: its window of
        # max_requests reads (1 MiB chunks are 5 of OpenSSH's 255 KiB reads), rounded
        # out to whole chunks at both ends.
        sftp = parse_config(config).transfers.sftp
        bound = sftp.connections * (math.ceil(sftp.max_requests / 5) + 1) * chunk
    else:
        # lftp saves its pget status every second (pget:save-status 1s): at most one
        # second of data at the 40 MiB/s limit is fetched again, plus what was in flight
        # on its 4 connections (64 packets of 32 KiB each) when the bridge died.
        bound = 40 * 2**20 + 4 * 64 * 32 * 1024
    # resent also holds SSH/SFTP framing of the whole transfer: allow 1% of the file.
    resend_bound = bound + size // 100
    if engine == "lftp":
        # Measured over repeated runs: ~15 MiB more than the file in most, but in about
        # one in four lftp's `pget -c` reads up to ~55 MiB again although its status
        # file kept what was on disk (lftp's own doing; older bridge versions show it
        # too). Allow one more second of data for it: still a fraction of the 240 MiB.
        resend_bound += 40 * 2**20
    assert wasted <= bound and resent <= resend_bound
