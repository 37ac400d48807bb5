"""The hook as torrent clients run it: a subprocess with their arguments (or environment),
against a real mosquitto. Outbox first, PUBACK before delete, bounded time."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from q4d_seedbox.outbox import Outbox

from tests.helpers.services import Mosquitto, free_port
from tests.seedbox.support import (
    COMPLETED,
    HOOK_DELUGE,
    SEQUENCE,
    Seedbox,
    Subscriber,
    info_hash,
    write_config,
)

pytestmark = pytest.mark.timeout(120)
H = info_hash("show")


def payload_file(tmp_path: Path, name: str, size: int = 1000) -> Path:
    path = tmp_path / "downloads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_qbittorrent_arguments(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe(COMPLETED)
    data = payload_file(tmp_path, "Show.S01E01.mkv", 4321)
    done = seedbox.hook_run(
        "qbittorrent", H, "Show.S01E01.mkv", str(data), "tv-sonarr", "hd,new", "9999",
        "https://tracker.example.org/PASSKEY123/announce",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [message] = sub.wait_count(COMPLETED, 1)
    event = message.json()
    assert event.pop("completed_at") == pytest.approx(time.time(), abs=30)
    assert event.pop("event_id").startswith(f"qbittorrent-{H}-")
    assert re.fullmatch(r"[0-9a-f]{16}", event.pop("stream"))
    assert event.pop("seq") == 1
    assert event == {
        "v": 1,
        "seedbox": "sb1",
        "client": "qbittorrent",
        "hash": H,
        "name": "Show.S01E01.mkv",
        "path": str(data),
        "category": "tv-sonarr",
        "tags": ["hd", "new"],
        "tracker": "tracker.example.org",
        "size": 4321,  # measured on disk, not the client's figure
    }
    assert b"PASSKEY123" not in message.payload
    assert seedbox.pending() == []
    assert "queued qbittorrent-" in (seedbox.root / "hook.log").read_text()


def test_rtorrent_arguments(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe(COMPLETED)
    data = tmp_path / "downloads" / "Season 1"
    (data / "sub").mkdir(parents=True)
    (data / "a.mkv").write_bytes(b"a" * 300)
    (data / "sub" / "b.nfo").write_bytes(b"b" * 20)
    done = seedbox.hook_run("rtorrent", H.upper(), "Season 1", str(data), "TV%20Shows", "320")
    assert done.returncode == 0, done.stderr
    event = sub.wait_count(COMPLETED, 1)[0].json()
    assert (event["client"], event["hash"], event["category"], event["size"], event["path"]) == (
        "rtorrent",
        H,
        "TV Shows",
        320,
        str(data),
    )


def test_deluge_execute_plugin_wrapper(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe(COMPLETED)
    data = payload_file(tmp_path, "Movie.2020.mkv", 77)
    # The Execute plugin runs one executable with exactly these three arguments.
    done = seedbox.hook_run(H, "Movie.2020.mkv", str(data.parent), program=HOOK_DELUGE)
    assert done.returncode == 0, done.stderr
    event = sub.wait_count(COMPLETED, 1)[0].json()
    assert (event["client"], event["path"], event["size"]) == ("deluge", str(data), 77)


def test_transmission_environment_without_arguments(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe(COMPLETED)
    data = payload_file(tmp_path, "Album", 5)
    env = {
        "TR_TORRENT_HASH": H,
        "TR_TORRENT_NAME": "Album",
        "TR_TORRENT_DIR": str(data.parent),
        "TR_TORRENT_LABELS": "music,flac",
        "TR_TORRENT_ID": "3",
        "TR_APP_VERSION": "3.00",
    }
    done = seedbox.hook_run(env=env)
    assert done.returncode == 0, done.stderr
    event = sub.wait_count(COMPLETED, 1)[0].json()
    assert (event["client"], event["path"], event["category"], event["tags"]) == (
        "transmission",
        str(data),
        "music",
        ["music", "flac"],
    )


HOSTILE = [
    'quote"double',
    "quote'single",
    "new\nline",
    "$(touch pwned)",
    "`touch pwned`",
    "semi;colon && pipe | amp &",
    "--config=/etc/passwd",
    "-rf",
    "tab\there",
    "back\\slash",
    "Amélie ☃ 日本語 🎬",
    "%N %F %% percent",
    "x" * 251 + ".mkv",  # 255 bytes: the longest name a filesystem takes
    "é" * 127 + "x",  # 255 bytes of UTF-8
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_names_travel_intact(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path, name: str
) -> None:
    seedbox.hook["classic"] = "true"
    sub = subscribe(COMPLETED, "Down")
    data = payload_file(tmp_path, name, 3)
    assert len(data.name.encode()) <= 255
    done = seedbox.hook_run("qbittorrent", H, name, str(data), "cat", "", "", "")
    assert done.returncode == 0, done.stderr
    event = sub.wait_count(COMPLETED, 1)[0].json()
    assert event["name"] == name
    assert event["path"] == str(data)
    assert event["size"] == 3  # found on disk by that exact name
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    if any(ch in name for ch in "\t\n"):
        # Q4D's Down line cannot carry these; only the v1 event goes out.
        time.sleep(0.5)
        assert sub.on("Down") == []
    else:
        [down] = sub.wait_count("Down", 1)
        assert down.payload == f"{data}\t{H}\t\n".encode()


def test_broker_down_then_flush_delivers_exactly_once(
    seedbox: Seedbox, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    mosquitto.stop()
    data = payload_file(tmp_path, "Show", 10)
    started = time.monotonic()
    done = seedbox.hook_run("qbittorrent", H, "Show", str(data))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 3 + 2  # the timeout, plus interpreter start
    [waiting] = seedbox.pending()
    topic, _, body = waiting.read_bytes().partition(b"\n")
    assert topic == COMPLETED.encode()
    assert json.loads(body)["path"] == str(data)
    assert waiting.stat().st_mode & 0o777 == 0o600

    mosquitto.start()
    sub = Subscriber(mosquitto.port, COMPLETED)
    try:
        flushed = seedbox.hook_run("flush")
        assert flushed.returncode == 0, flushed.stderr
        assert flushed.stdout.strip() == "sent 1, 0 left"
        [message] = sub.wait_count(COMPLETED, 1)
        assert message.payload == body
        assert seedbox.hook_run("flush").stdout.strip() == "sent 0, 0 left"
        time.sleep(1)
        assert len(sub.on(COMPLETED)) == 1
    finally:
        sub.close()
    assert seedbox.pending() == []


def test_a_corrupt_outbox_file_is_set_aside(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    seedbox.outbox.mkdir(parents=True)
    junk = seedbox.outbox / f"{0:020d}-0000000001-0000.msg"  # sorts first
    junk.write_bytes(b"no topic line")
    sub = subscribe(COMPLETED)
    assert seedbox.hook_run("qbittorrent", H, "Show", str(tmp_path)).returncode == 0
    assert len(sub.wait_count(COMPLETED, 1)) == 1
    flushed = seedbox.hook_run("flush")
    assert flushed.returncode == 0
    assert [p.name for p in seedbox.outbox.iterdir() if not p.name.startswith(".")] == [
        junk.name + ".bad"
    ]
    assert "is not an outbox message" in (seedbox.root / "hook.log").read_text()


def test_flush_reports_what_is_left_when_the_broker_is_down(
    seedbox: Seedbox, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    mosquitto.stop()
    for n in range(2):
        assert (
            seedbox.hook_run("qbittorrent", info_hash(str(n)), "x", str(tmp_path)).returncode == 0
        )
    flushed = seedbox.hook_run("flush")
    assert flushed.returncode == 1
    assert flushed.stdout.startswith("sent 0, 2 left: cannot connect")


def test_the_hook_is_bounded_by_its_timeout_against_a_silent_broker(
    seedbox: Seedbox, tmp_path: Path
) -> None:
    # Accepts TCP and never answers: no CONNACK ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        seedbox.mqtt["port"] = silent.getsockname()[1]
        seedbox.hook["timeout"] = 1.5
        started = time.monotonic()
        done = seedbox.hook_run("qbittorrent", H, "Show", str(tmp_path / "Show"))
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 1.5 + 2.0
    assert "timed out waiting for CONNACK" in done.stderr
    assert len(seedbox.pending()) == 1


def test_a_refused_publish_stays_in_the_outbox(tmp_path: Path) -> None:
    """MQTT 5 PUBACK reason codes: an ACL denial is not mistaken for delivery."""
    acl = tmp_path / "acl"
    acl.write_text("user nobody\ntopic read #\n")
    with Mosquitto(tmp_path / "broker", extra_config=(f"acl_file {acl}",)) as broker:
        root = tmp_path / "sb"
        root.mkdir()
        sb = Seedbox(
            root=root,
            port=broker.port,
            mqtt={"host": "127.0.0.1", "port": broker.port, "seedbox_id": "sb1"},
            hook={"outbox": root / "outbox", "log_file": "none", "timeout": 3},
        )
        done = sb.hook_run("qbittorrent", H, "Show", str(tmp_path / "Show"))
    assert done.returncode == 0, done.stderr
    assert "Not authorized" in done.stderr
    assert len(sb.pending()) == 1


def test_outbox_that_cannot_be_written_fails_the_hook(seedbox: Seedbox, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    seedbox.hook["outbox"] = blocker / "outbox"
    done = seedbox.hook_run("qbittorrent", H, "Show", str(tmp_path / "Show"))
    assert done.returncode == 1
    assert "cannot write the outbox" in done.stderr and "NOT saved" in done.stderr


def test_wiring_mistakes_exit_2_and_say_why(seedbox: Seedbox) -> None:
    done = seedbox.hook_run("qbittorrent", H, "only-two")
    assert done.returncode == 2
    assert 'expected "%I" "%N" "%F"' in done.stderr
    assert seedbox.hook_run("bogus").returncode == 2
    assert seedbox.hook_run().returncode == 2  # no command and no TR_* environment


def test_second_flush_exits_at_once_while_one_is_running(
    seedbox: Seedbox, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    mosquitto.stop()
    assert seedbox.hook_run("qbittorrent", H, "Show", str(tmp_path)).returncode == 0
    mosquitto.start()
    with Outbox(seedbox.outbox).locked(wait=0) as got:
        assert got
        started = time.monotonic()
        second = seedbox.hook_run("flush")
        assert time.monotonic() - started < 3
    assert second.returncode == 0
    assert "another sender" in second.stdout
    assert len(seedbox.pending()) == 1  # left for the flush that holds the lock


def test_concurrent_completions_and_flushes_deliver_each_event_once(
    seedbox: Seedbox, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    seedbox.hook["timeout"] = 10
    mosquitto.stop()
    backlog = [info_hash(f"old{n}") for n in range(5)]
    for h in backlog:
        assert seedbox.hook_run("qbittorrent", h, "old", str(tmp_path)).returncode == 0
    assert len(seedbox.pending()) == 5
    mosquitto.start()
    sub = Subscriber(mosquitto.port, COMPLETED)
    fresh = [info_hash(f"new{n}") for n in range(12)]
    procs: list[subprocess.Popen[str]] = []
    try:
        for n, h in enumerate(fresh):
            procs.append(seedbox.hook_start("qbittorrent", h, f"new{n}", str(tmp_path)))
            if n % 4 == 0:
                procs.append(seedbox.hook_start("flush"))
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode in (0, 1), err
        # Anything a hook left behind (it gave up waiting for the lock) goes now.
        assert seedbox.hook_run("flush").returncode == 0
        messages = sub.wait_count(COMPLETED, len(backlog) + len(fresh), timeout=30)
        time.sleep(1)
        hashes = [m.json()["hash"] for m in sub.on(COMPLETED)]
    finally:
        sub.close()
    assert sorted(hashes) == sorted(backlog + fresh)  # each exactly once
    assert [m.json()["hash"] for m in messages[:5]] == backlog  # the backlog first, in order
    assert seedbox.pending() == []
    # One numbered sequence, sent in the order of its numbers, its last number retained.
    events = [m.json() for m in sub.on(COMPLETED)]
    assert len({e["stream"] for e in events}) == 1
    assert [e["seq"] for e in events] == list(range(1, len(backlog) + len(fresh) + 1))
    late = Subscriber(mosquitto.port, SEQUENCE)
    try:
        [mark] = late.wait_count(SEQUENCE, 1)
    finally:
        late.close()
    assert mark.json() == {"v": 1, "stream": events[0]["stream"], "seq": len(events)}


def test_the_sequence_continues_across_runs_and_restarts_with_a_new_counter(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribe(COMPLETED)
    for n in range(2):
        assert (
            seedbox.hook_run("qbittorrent", info_hash(str(n)), "x", str(tmp_path)).returncode == 0
        )
    (seedbox.outbox / ".sequence").unlink()  # a reinstall, or a lost home directory
    assert seedbox.hook_run("qbittorrent", info_hash("2"), "x", str(tmp_path)).returncode == 0
    events = [m.json() for m in sub.wait_count(COMPLETED, 3)]
    assert [e["seq"] for e in events] == [1, 2, 1]
    assert events[0]["stream"] == events[1]["stream"] != events[2]["stream"]


def test_types_config_sets_the_type(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    types = tmp_path / "Types.config"
    types.write_text("LABEL IS sonarr T\nKEY CONTAINS eopardy J T\n")
    seedbox.hook["types_config"] = types
    sub = subscribe(COMPLETED)
    for name, category in (("Jeopardy.S40", "sonarr"), ("Show", "sonarr"), ("Film", "radarr")):
        assert seedbox.hook_run("qbittorrent", H, name, f"/dl/{name}", category).returncode == 0
    assert [m.json()["type"] for m in sub.wait_count(COMPLETED, 3)] == ["J", "T", "V"]


def test_a_broken_types_config_still_sends_the_event(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    types = tmp_path / "Types.config"
    types.write_text("LABEL IS\n")
    seedbox.hook["types_config"] = types
    sub = subscribe(COMPLETED)
    done = seedbox.hook_run("qbittorrent", H, "Show", "/dl/Show", "sonarr")
    assert done.returncode == 0
    assert "expected FIELD CONDITIONAL VALUE TYPE" in done.stderr
    assert "type" not in sub.wait_count(COMPLETED, 1)[0].json()


def test_test_command_checks_without_publishing(
    seedbox: Seedbox, mosquitto: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    types = seedbox.root / "Types.config"
    types.write_text("LABEL IS sonarr T\n")
    seedbox.hook["types_config"] = types
    sub = subscribe("#")
    ok = seedbox.hook_run("test")
    assert ok.returncode == 0, ok.stdout
    assert "ok   broker 127.0.0.1" in ok.stdout and "FAIL" not in ok.stdout
    assert f"ok   types_config {types}: 1 rule(s)" in ok.stdout
    time.sleep(0.5)
    assert sub.messages == []
    mosquitto.stop()
    types.write_text("LABEL IS\n")
    down = seedbox.hook_run("test")
    assert down.returncode == 1
    assert "FAIL broker" in down.stdout
    assert "FAIL types_config" in down.stdout


def test_secrets_are_never_printed_and_loose_permissions_warned(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    secret = "s3cr3t-Do-Not-Print"
    pw_file = tmp_path / "mqtt.pw"
    pw_file.write_text(secret + "\n")
    pw_file.chmod(0o644)
    root = tmp_path / "sb"
    root.mkdir()
    sb = Seedbox(
        root=root,
        port=mosquitto.port,
        mqtt={
            "host": "127.0.0.1",
            "port": mosquitto.port,
            "seedbox_id": "sb1",
            "username": "me",
            "password_file": pw_file,
        },
        hook={"outbox": root / "outbox", "log_file": root / "hook.log", "timeout": 2},
    )
    done = sb.hook_run("test")
    flushed = sb.hook_run("flush")
    assert "readable by group/others" in done.stderr
    for output in (done.stdout, done.stderr, flushed.stdout, flushed.stderr):
        assert secret not in output
    assert secret not in (root / "hook.log").read_text()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.conf", {"mqtt": {"port": "x", "seedbox_id": "Bad Id"}})
    done = subprocess.run(
        [sys.executable, "-m", "q4d_seedbox.hook", "--config", str(config), "flush"],
        cwd=Path(__file__).resolve().parents[2] / "seedbox",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    for part in ("[mqtt] host is required", "[mqtt] port must be an integer", "seedbox_id must be"):
        assert part in done.stderr


def test_a_hook_waits_for_a_running_flush_and_then_sends(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    """A sender holding the lock briefly (as a flush does) delays a hook, not loses it."""
    sub = subscribe(COMPLETED)
    release = threading.Event()

    def hold() -> None:
        with Outbox(seedbox.outbox).locked(wait=0):
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        proc = seedbox.hook_start("qbittorrent", H, "Show", str(tmp_path))
        time.sleep(1)
        assert sub.on(COMPLETED) == []
    finally:
        release.set()
        holder.join()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(sub.wait_count(COMPLETED, 1)) == 1


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca,
            "-days",
            "1",
            "-subj",
            "/CN=q4d test CA",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "1",
            "-extfile",
            ext,
        ],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True, timeout=60)
    return ca, cert, key


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    tls_port = free_port()
    listener = (
        f"listener {tls_port} 127.0.0.1",
        f"cafile {ca}",
        f"certfile {cert}",
        f"keyfile {key}",
    )
    with Mosquitto(tmp_path / "broker", extra_config=listener) as broker:
        sub = Subscriber(broker.port, COMPLETED)
        root = tmp_path / "sb"
        root.mkdir()
        sb = Seedbox(
            root=root,
            port=tls_port,
            mqtt={"host": "127.0.0.1", "port": tls_port, "seedbox_id": "sb1", "tls": "true"},
            hook={"outbox": root / "outbox", "log_file": "none", "timeout": 3},
        )
        try:
            # The system CAs do not know this broker's certificate: nothing is sent.
            untrusted = sb.hook_run("qbittorrent", H, "Show", str(tmp_path / "Show"))
            assert untrusted.returncode == 0
            assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
            assert len(sb.pending()) == 1
            sb.mqtt["ca_certs"] = ca
            assert sb.hook_run("flush").returncode == 0
            assert len(sub.wait_count(COMPLETED, 1)) == 1
        finally:
            sub.close()
    assert sb.pending() == []


def test_command_line_edges(seedbox: Seedbox) -> None:
    assert (
        seedbox.hook_run("--help")
        .stdout.lstrip()
        .startswith("q4d-hook [--config FILE] qbittorrent")
    )
    assert seedbox.hook_run("--version").stdout.startswith("q4d-hook ")
    assert seedbox.hook_run("--config").returncode == 2  # the option needs its value
    assert seedbox.hook_run(f"--config={seedbox.config}", "test").returncode == 0
    tr_env = {"TR_TORRENT_NAME": "x", "TR_TORRENT_DIR": "/dl"}
    assert seedbox.hook_run("transmission", "extra", env=tr_env).returncode == 2


def test_a_stuck_sequence_lock_never_holds_the_hook_up(
    seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    """Another process holding the sequence (hung, or stopped mid-write): the hook waits
    only its timeout, then sends the event unnumbered rather than not at all."""
    sub = subscribe(COMPLETED)
    seedbox.outbox.mkdir(parents=True)
    fd = os.open(seedbox.outbox / ".sequence.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        done = seedbox.hook_run("qbittorrent", H, "Show", str(tmp_path))
        took = time.monotonic() - started
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert took < 3 + 2  # the timeout, plus interpreter start
    event = sub.wait_count(COMPLETED, 1)[0].json()
    assert "seq" not in event and "stream" not in event
    assert "goes unnumbered" in (seedbox.root / "hook.log").read_text()
