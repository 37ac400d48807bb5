"""q4d-labeld against real torrent clients: qbittorrent-nox (tags, category) and
transmission-daemon (labels), through a real mosquitto: persistent session, broker
restart, torrent client down, bad messages, unknown torrents, SIGTERM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from q4d_seedbox.clients import ClientError, UnknownTorrent, make_client
from q4d_seedbox.config import LabelsConfig
from q4d_seedbox.labeld import parse_label

from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto
from tests.seedbox.support import (
    LABEL,
    LabelDaemonProcess,
    QbtApi,
    Seedbox,
    Transmission,
    TransmissionRpc,
    publish,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def label(info_hash: str, value: str) -> bytes:
    return json.dumps({"v": 1, "hash": info_hash, "label": value, "mode": "tag"}).encode()


@pytest.fixture
def qbt(tmp_path: Path) -> Iterator[QBittorrent]:
    with QBittorrent(tmp_path / "qbt") as client:
        yield client


def labeld_for(seedbox: Seedbox, **labels: object) -> LabelDaemonProcess:
    seedbox.labels = {k: str(v) for k, v in labels.items()}
    return LabelDaemonProcess(seedbox.config)


def test_qbittorrent_tags_replace_only_q4d_tags(
    seedbox: Seedbox, qbt: QBittorrent, torrent: tuple[Path, bytes, str]
) -> None:
    data, raw, h = torrent
    api = QbtApi(qbt.url, qbt.username, qbt.password)
    api.add(raw, data.parent, tags="hd", category="tv-sonarr")
    wait_until(lambda: api.info(h), 15, "the torrent in qBittorrent")
    pw = seedbox.root / "qbt.pw"
    pw.write_text(qbt.password)
    pw.chmod(0o600)
    daemon = labeld_for(
        seedbox, client="qbittorrent", url=qbt.url, username=qbt.username, password_file=pw
    ).start()
    try:
        publish(seedbox.port, LABEL, label(h, "QUEUED"))
        wait_until(lambda: api.tags(h) == {"hd", "q4d:QUEUED"}, 15, "the QUEUED tag")
        # A restarted qBittorrent forgets the daemon's session: it must log in again.
        qbt.stop()
        qbt.start()
        api = QbtApi(qbt.url, qbt.username, qbt.password)
        publish(seedbox.port, LABEL, label(h, "DONE"))
        wait_until(lambda: api.tags(h) == {"hd", "q4d:DONE"}, 15, "DONE replacing QUEUED")
        assert api.info(h)["category"] == "tv-sonarr"  # what Sonarr/Radarr track stays
    finally:
        assert daemon.stop() == 0
    assert "stopped" in daemon.output()
    assert qbt.password not in daemon.output()


def test_a_label_for_an_unknown_torrent_is_not_logged_as_applied(
    seedbox: Seedbox, qbt: QBittorrent, torrent: tuple[Path, bytes, str]
) -> None:
    """qBittorrent's addTags answers 200 for a hash it does not have."""
    data, raw, h = torrent
    api = QbtApi(qbt.url, qbt.username, qbt.password)
    api.add(raw, data.parent)
    wait_until(lambda: api.info(h), 15, "the torrent in qBittorrent")
    daemon = labeld_for(
        seedbox, client="qbittorrent", url=qbt.url, username=qbt.username, password=qbt.password
    ).start()
    unknown = "f" * 40
    try:
        publish(seedbox.port, LABEL, label(unknown, "DONE"))
        publish(seedbox.port, LABEL, label(h, "DONE"))  # the unknown one does not block it
        wait_until(lambda: api.tags(h) == {"q4d:DONE"}, 15, "the DONE tag")
    finally:
        assert daemon.stop() == 0
    output = daemon.output()
    assert (
        f"WARNING {unknown} DONE not applied: unknown torrent "
        "(qBittorrent has no torrent with this hash)"
    ) in output
    assert f"{unknown} labelled" not in output
    assert f"{h} labelled q4d:DONE" in output


@pytest.mark.parametrize("mode", ["tag", "category"])
def test_http_clients_refuse_unknown_torrents(
    qbt: QBittorrent, transmission: Transmission, mode: str
) -> None:
    clients = [("qbittorrent", qbt.url, qbt.username, qbt.password)]
    if mode == "tag":  # Transmission has labels only
        clients.append(
            ("transmission", transmission.url, transmission.username, transmission.password)
        )
    for client, url, user, password in clients:
        cfg = LabelsConfig(client=client, url=url, mode=mode, username=user, password=password)
        with pytest.raises(UnknownTorrent, match=r"^unknown torrent \(") as unknown:
            make_client(cfg).apply("f" * 40, "DONE")
        assert not unknown.value.retry


def test_wrong_credentials_are_retryable_errors(
    qbt: QBittorrent, transmission: Transmission
) -> None:
    for client, url in (("qbittorrent", qbt.url), ("transmission", transmission.url)):
        cfg = LabelsConfig(client=client, url=url, mode="tag", username="admin", password="wrong")
        with pytest.raises(ClientError, match="refused the login") as refused:
            make_client(cfg).apply("a" * 40, "DONE")
        assert refused.value.retry  # fixing the config and restarting delivers the label


def test_a_banned_ip_is_reported_and_retryable(qbt: QBittorrent) -> None:
    cfg = LabelsConfig(
        client="qbittorrent", url=qbt.url, mode="tag", username="admin", password="wrong"
    )
    messages = []
    for _ in range(8):  # qBittorrent bans an IP after 5 failed logins by default
        with pytest.raises(ClientError) as refused:
            make_client(cfg).apply("a" * 40, "DONE")
        assert refused.value.retry
        messages.append(str(refused.value))
    assert "this IP is banned for a while" in messages[-1]


def test_qbittorrent_category_mode_from_classic_labels(
    seedbox: Seedbox, qbt: QBittorrent, torrent: tuple[Path, bytes, str]
) -> None:
    data, raw, h = torrent
    api = QbtApi(qbt.url, qbt.username, qbt.password)
    api.add(raw, data.parent, category="tv-sonarr")
    wait_until(lambda: api.info(h), 15, "the torrent in qBittorrent")
    daemon = labeld_for(
        seedbox,
        client="qbittorrent",
        url=qbt.url,
        username=qbt.username,
        password=qbt.password,
        mode="category",
        subscribe_classic="true",
    ).start()
    try:
        publish(seedbox.port, "Label", f"{h.upper()}\tNOPE".encode())
        wait_until(lambda: api.info(h)["category"] == "q4d:FAILED", 15, "the FAILED category")
        publish(seedbox.port, "Label", f"{h}\tDONE\n".encode())
        wait_until(lambda: api.info(h)["category"] == "q4d:DONE", 15, "the DONE category")
    finally:
        assert daemon.stop() == 0


def _transmission_torrent(
    daemon: Transmission, raw: bytes, data: Path, labels: list[str]
) -> tuple[TransmissionRpc, str]:
    import base64

    rpc = TransmissionRpc(daemon)
    added = rpc(
        "torrent-add", metainfo=base64.b64encode(raw).decode(), **{"download-dir": str(data.parent)}
    )
    h: str = added["torrent-added"]["hashString"]
    rpc("torrent-set", ids=[h], labels=labels)
    return rpc, h


def _labels(rpc: TransmissionRpc, h: str) -> list[str]:
    found = rpc("torrent-get", ids=[h], fields=["labels"])["torrents"]
    return list(found[0]["labels"]) if found else []


def _transmission_labeld(seedbox: Seedbox, daemon: Transmission) -> LabelDaemonProcess:
    return labeld_for(
        seedbox,
        client="transmission",
        url=daemon.url,
        username=daemon.username,
        password=daemon.password,
    )


def test_transmission_labels_and_a_persistent_session(
    seedbox: Seedbox, transmission: Transmission, torrent: tuple[Path, bytes, str]
) -> None:
    data, raw, _ = torrent
    rpc, h = _transmission_torrent(transmission, raw, data, ["tv", "hd"])
    daemon = _transmission_labeld(seedbox, transmission).start()
    publish(seedbox.port, LABEL, label(h, "QUEUED"))
    wait_until(lambda: _labels(rpc, h) == ["tv", "hd", "q4d:QUEUED"], 15, "the QUEUED label")
    assert daemon.stop() == 0

    # Published while the daemon is down: the broker keeps it in the daemon's session.
    publish(seedbox.port, LABEL, label(h, "DONE"))
    daemon.start()
    try:
        wait_until(lambda: _labels(rpc, h) == ["tv", "hd", "q4d:DONE"], 15, "DONE after restart")
        assert "session kept: True" in daemon.output()
    finally:
        assert daemon.stop() == 0


def test_survives_a_broker_restart(
    seedbox: Seedbox,
    mosquitto: Mosquitto,
    transmission: Transmission,
    torrent: tuple[Path, bytes, str],
) -> None:
    data, raw, _ = torrent
    rpc, h = _transmission_torrent(transmission, raw, data, [])
    daemon = _transmission_labeld(seedbox, transmission).start()
    try:
        mosquitto.stop()
        wait_until(lambda: "broker connection lost" in daemon.output(), 15, "the daemon to notice")
        assert daemon.proc is not None and daemon.proc.poll() is None
        mosquitto.start()
        wait_until(lambda: daemon.output().count("listening on") >= 2, 30, "a reconnect")
        publish(seedbox.port, LABEL, label(h, "DONE"))
        wait_until(lambda: _labels(rpc, h) == ["q4d:DONE"], 15, "DONE after the broker restart")
    finally:
        assert daemon.stop() == 0


def test_retries_while_the_torrent_client_is_down_and_skips_bad_messages(
    seedbox: Seedbox, transmission: Transmission, torrent: tuple[Path, bytes, str]
) -> None:
    data, raw, _ = torrent
    rpc, h = _transmission_torrent(transmission, raw, data, ["keep"])
    daemon = _transmission_labeld(seedbox, transmission).start()
    try:
        publish(seedbox.port, LABEL, b"not json")
        publish(seedbox.port, LABEL, label("f" * 40, "DONE"))  # no such torrent
        wait_until(
            lambda: "not applied: unknown torrent (Transmission" in daemon.output(),
            15,
            "unknown torrent",
        )
        transmission.stop()
        publish(seedbox.port, LABEL, label(h, "FAILED"))
        wait_until(lambda: "retrying in" in daemon.output(), 15, "a retry")
        transmission.start()
        wait_until(
            lambda: _labels(rpc, h) == ["keep", "q4d:FAILED"],
            30,
            "FAILED once Transmission is back",
        )
        assert "ignoring a message" in daemon.output()
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("payload", "classic", "expected"),
    [
        (label("A" * 40, "DONE"), False, ("a" * 40, "DONE")),
        (b"%s\tNOPE" % (b"b" * 40), True, ("b" * 40, "FAILED")),
        (b"%s\tQUEUED\n" % (b"c" * 40), True, ("c" * 40, "QUEUED")),
    ],
)
def test_parse_label(payload: bytes, classic: bool, expected: tuple[str, str]) -> None:
    assert parse_label(payload, classic) == expected


@pytest.mark.parametrize(
    ("payload", "classic"),
    [
        (b'{"v": 1.0, "hash": "' + b"a" * 40 + b'", "label": "DONE"}', False),
        (b'{"v": 1, "hash": "abc", "label": "DONE"}', False),
        (label("a" * 40, "NOPE"), False),
        (b"[1]", False),
        (b'{"v": 1, "hash": "' + b"a" * 40 + b'\\n", "label": "DONE"}', False),
        (b"a" * 40 + b"\tFAILED", True),  # classic speaks NOPE
        (b"a" * 40, True),
    ],
)
def test_parse_label_refuses(payload: bytes, classic: bool) -> None:
    with pytest.raises(ValueError):
        parse_label(payload, classic)


def test_labeld_needs_a_labels_section(seedbox: Seedbox) -> None:
    import subprocess
    import sys

    from tests.seedbox.support import LABELD

    done = subprocess.run(
        [sys.executable, str(LABELD), "--config", str(seedbox.config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "no [labels] section" in done.stderr


def test_a_refused_subscription_is_logged(
    seedbox: Seedbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Mosquitto grants any subscription and filters at delivery; other brokers answer a
    denied one with a failing SUBACK reason code, which must not read as 'listening'."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode
    from q4d_seedbox.config import load
    from q4d_seedbox.labeld import LabelDaemon

    seedbox.labels = {"client": "transmission", "subscribe_classic": "true"}
    cfg = load(seedbox.config)
    assert cfg.labels is not None
    daemon = LabelDaemon(cfg, make_client(cfg.labels))
    granted = ReasonCode(PacketTypes.SUBACK, identifier=1)
    denied = ReasonCode(PacketTypes.SUBACK, identifier=0x87)
    with caplog.at_level("INFO", logger="q4d_seedbox"):
        daemon._on_subscribe(daemon.mqtt, None, 1, [granted, denied], None)
    assert "refused the subscription to Label (Not authorized)" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="q4d_seedbox"):
        daemon._on_subscribe(daemon.mqtt, None, 2, [granted, granted], None)
    assert "listening on q4d/seedbox/sb1/label, Label" in caplog.text
