"""The seedbox INI config: defaults, per-client label modes, secrets, errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from q4d_seedbox.config import ConfigError, config_path, load

from tests.seedbox.support import write_config

MQTT = {"host": "broker.example", "seedbox_id": "sb1"}


def config(tmp_path: Path, **sections: Mapping[str, object]) -> Path:
    return write_config(tmp_path / "seedbox.conf", {"mqtt": MQTT, **sections})


def test_defaults(tmp_path: Path) -> None:
    cfg = load(config(tmp_path))
    assert (cfg.mqtt.port, cfg.mqtt.topic_prefix, cfg.mqtt.tls, cfg.mqtt.client_id) == (
        1883,
        "q4d",
        False,
        "q4d-labeld-sb1",
    )
    assert cfg.mqtt.completed_topic == "q4d/seedbox/sb1/completed"
    assert cfg.mqtt.label_topic == "q4d/seedbox/sb1/label"
    assert cfg.hook.outbox == Path.home() / ".local/state/q4d/outbox"
    assert cfg.hook.log_file == Path.home() / ".local/state/q4d/hook.log"
    assert (cfg.hook.timeout, cfg.hook.classic, cfg.hook.down_topic, cfg.hook.types_config) == (
        5.0,
        False,
        "Down",
        None,
    )
    assert cfg.labels is None
    assert cfg.warnings == ()


def test_tls_port_prefix_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE", str(tmp_path / "state"))
    cfg = load(
        config(
            tmp_path,
            mqtt={**MQTT, "tls": "yes", "topic_prefix": "/home/q4d/", "ca_certs": "~/ca.pem"},
            hook={"outbox": "$STATE/outbox", "log_file": "none", "timeout": "2.5", "classic": "on"},
        )
    )
    assert (cfg.mqtt.port, cfg.mqtt.tls, cfg.mqtt.topic_prefix) == (8883, True, "home/q4d")
    assert cfg.mqtt.ca_certs == str(Path.home() / "ca.pem")
    assert cfg.hook.outbox == tmp_path / "state" / "outbox"
    assert (cfg.hook.log_file, cfg.hook.timeout, cfg.hook.classic) == (None, 2.5, True)


@pytest.mark.parametrize(
    ("client", "mode", "url"),
    [
        ("qbittorrent", "tag", "http://127.0.0.1:8080"),
        ("transmission", "tag", "http://127.0.0.1:9091/transmission/rpc"),
        ("deluge", "category", "http://127.0.0.1:8112/json"),  # one label per torrent
    ],
)
def test_label_client_defaults(tmp_path: Path, client: str, mode: str, url: str) -> None:
    labels = load(config(tmp_path, labels={"client": client})).labels
    assert labels is not None
    assert (labels.mode, labels.url, labels.label_name("DONE")) == (mode, url, "q4d:DONE")


def test_empty_label_prefix_gives_q4d_names(tmp_path: Path) -> None:
    labels = load(config(tmp_path, labels={"client": "qbittorrent", "label_prefix": ""})).labels
    assert labels is not None and labels.label_name("DONE") == "DONE"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"client": "utorrent"}, "client must be one of"),
        ({"client": "deluge", "mode": "tag"}, "Deluge has one label per torrent"),
        ({"client": "transmission", "mode": "category"}, "Transmission labels are tags"),
        ({"client": "rtorrent"}, "url is required for rtorrent"),
        ({"client": "qbittorrent", "url": "scgi://127.0.0.1:5000"}, "must start with http"),
        ({"client": "rtorrent", "url": "file:///etc/passwd"}, "or scgi://"),
        ({"client": "qbittorrent", "label_prefix": "a,b"}, "must not contain ','"),
        ({"client": "qbittorrent", "password": "x", "password_file": "/x"}, "not both"),
        (
            {"client": "qbittorrent", "password_file": "/nonexistent/pw"},
            "cannot read /nonexistent/pw",
        ),
        ({"client": "qbittorrent", "timeout": "0"}, "timeout must be greater than 0"),
    ],
)
def test_label_config_errors(tmp_path: Path, labels: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(config(tmp_path, labels=labels))


def test_rtorrent_scgi(tmp_path: Path) -> None:
    labels = load(
        config(tmp_path, labels={"client": "rtorrent", "url": "scgi:///home/me/.rtorrent.sock"})
    ).labels
    assert labels is not None and (labels.mode, labels.url) == (
        "tag",
        "scgi:///home/me/.rtorrent.sock",
    )


def test_errors_are_collected_and_name_keys_not_values(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.conf",
        {
            "mqtt": {
                "port": "99999",
                "seedbox_id": "SB 1",
                "password": "hunter2",
                "topic_prefix": "a/#",
            }
        },
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    for part in (
        "host is required",
        "port must be between",
        "seedbox_id must be",
        "topic_prefix must be",
    ):
        assert part in text
    assert "hunter2" not in text


def test_passwords_stay_out_of_repr_and_loose_files_are_warned(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\nignored\n")
    pw.chmod(0o600)
    path = config(
        tmp_path,
        mqtt={**MQTT, "username": "me", "password": "inline-secret"},
        labels={"client": "qbittorrent", "password_file": pw},
    )
    path.chmod(0o644)
    cfg = load(path)
    assert cfg.mqtt.password == "inline-secret"
    assert cfg.labels is not None and cfg.labels.password == "from-file"
    assert "inline-secret" not in repr(cfg) and "from-file" not in repr(cfg)
    assert cfg.warnings == (
        f"{path} holds a password and is readable by group/others; chmod 600 it",
    )


def test_missing_file_and_path_choice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load(tmp_path / "nope.conf")
    assert config_path("/x.conf", {"Q4D_SEEDBOX_CONFIG": "/y.conf"}) == Path("/x.conf")
    assert config_path(None, {"Q4D_SEEDBOX_CONFIG": "/y.conf"}) == Path("/y.conf")
    assert config_path(None, {}) == Path.home() / ".config/q4d/seedbox.conf"
