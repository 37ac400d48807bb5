"""Config validation: mistakes are reported with their key path and reason."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from q4d_bridge.config.loader import ConfigError, load_config, parse_config

from tests.helpers.configs import errors_of


def test_valid_config_and_defaults(raw: dict[str, Any]) -> None:
    config = parse_config(raw)
    assert config.broker.client_id == "q4d-bridge-test"
    assert config.broker.topic_prefix == "q4d"
    assert config.broker.session_expiry == 7 * 86400
    assert config.routing.default_destination == "default"
    assert config.seedboxes["sb1"].engine == "sftp"  # auto
    assert config.transfers.lftp.segments == 4
    assert config.dispatch.size_estimate == 10 * 1024**3 and config.dispatch.download_weight == 2.0


def test_dispatch_settings(raw: dict[str, Any]) -> None:
    raw["seedboxes"][0]["client"] = {"type": "qbittorrent", "url": "http://127.0.0.1:1",
                                     "weight": "2.5", "min_free": "1TiB", "dispatch": False}  # fmt: skip
    raw["dispatch"] = {"size_estimate": "4GiB", "categories": ["music"], "watch_interval": "2s"}
    config = parse_config(raw)
    client = config.seedboxes["sb1"].client
    assert client is not None
    assert (client.dispatch.weight, client.dispatch.min_free, client.dispatch.enabled) == (
        2.5,
        1024**4,
        False,
    )
    assert client.dispatch.max_downloads == 50 and client.dispatch.save_path is None
    assert (config.dispatch.size_estimate, config.dispatch.categories) == (4 * 1024**3, ("music",))
    assert config.dispatch.watch_interval == 2.0


# A mistake made in a valid config, and the line check-config names it with (the
# runtime layer's tests make the seedbox and rule mistakes in an entry set from HA).
MISTAKES: list[tuple[Callable[[dict[str, Any]], Any], str]] = [
        (lambda r: r["broker"].update(port="eighty"), "broker.port: expected int"),
        (lambda r: r["broker"].update(port=70000), "broker.port: value must be at most 65535"),
        (lambda r: r["seedboxes"][0].pop("host"), "seedboxes[0].host: required key not provided"),
        (lambda r: r["seedboxes"][0].update(key="/nope/key"), "seedboxes[0].key: file not found: /nope/key"),
        (lambda r: r["seedboxes"][0].update(id="Bad ID"), "seedboxes[0].id: must be lowercase"),
        (lambda r: r.update(data_dir="relative/dir"), "data_dir: must be an absolute path"),
        (lambda r: r["rules"][0].update(destination="nowhere"), "rules[0].destination: 'nowhere' is not in destinations"),
        (lambda r: r["rules"][0].update(match=[{"field": "colour", "is": "x"}]), "rules[0].match[0]: field must be one of"),
        (lambda r: r["rules"][0].update(match=[{"field": "name", "regex": "(unclosed"}]), "invalid regular expression"),
        (lambda r: r.update(history_retention="a week"), "history_retention: expected a duration"),
        (lambda r: r["rules"][0].update(subdir="{category.x}"), "rules[0].subdir: unknown placeholder {category.x}"),
        (lambda r: r["rules"][0].update(subdir="{name}"), "rules[0].subdir: unknown placeholder {name}"),
        (lambda r: r["rules"][0].update(subdir="{category"), "rules[0].subdir: bad template"),
        (lambda r: r["rules"][0].update(subdir="./x"), "rules[0].subdir: subdir must be relative"),
        (lambda r: r["rules"][0].update(subdir="/abs"), "rules[0].subdir: subdir must be relative"),
        (lambda r: r.update(surprise=1), "surprise: extra keys not allowed"),
        (lambda r: r["type_codes"].update(X="missing"), "type_codes.X: 'missing' is not in destinations"),
        (lambda r: r["seedboxes"].append(dict(r["seedboxes"][0])), "seedboxes[1].id: duplicate seedbox id"),
        (lambda r: r["classic"].update(enabled=True, seedbox="ghost"), "classic.seedbox: 'ghost' is not a configured seedbox"),
        (lambda r: r["seedboxes"][0].pop("known_hosts"), "seedboxes[0].known_hosts: required (a file pinning the seedbox's host key), unless trust_on_first_use: true"),
        (lambda r: r["seedboxes"][0].update(known_hosts="/nope/kh"), "seedboxes[0].known_hosts: file not found: /nope/kh"),
        (lambda r: r["seedboxes"][0].update(engine="scp"), "seedboxes[0].engine: value must be one of"),
        (lambda r: r["transfers"].update(rsync={"binary": "/nope/rsync"}) or r["seedboxes"][0].update(engine="rsync"), "seedboxes[0].engine: rsync is not installed"),
        (lambda r: r["transfers"].update(rsync={"binary": "/nope/rsync"}) or r["rules"][0].update(engine="rsync"), "rules[0].engine: rsync is not installed"),
        (lambda r: r["rules"][0].update(engine="auto"), "rules[0].engine: value must be one of"),
        (lambda r: r["seedboxes"][0].update(torrent_file="/s/x.torrent"), "seedboxes[0].torrent_file: must contain {hash} or {HASH}"),
        (lambda r: r["seedboxes"][0].update(torrent_file="/s/{name}{hash}"), "seedboxes[0].torrent_file: only {hash} and {HASH}"),
        (lambda r: r["seedboxes"][0].update(client={"type": "utorrent", "url": "http://x"}), "seedboxes[0].client.type: value must be one of"),
        (lambda r: r["seedboxes"][0].update(client={"type": "qbittorrent", "url": "x:8080"}), "seedboxes[0].client.url: must be an http(s) URL"),
        (lambda r: r["seedboxes"][0].update(client={"type": "deluge", "url": "http://x:8112"}), "seedboxes[0].client.password: required for Deluge (deluge-web's password)"),
        (lambda r: r["seedboxes"][0].update(client={"type": "qbittorrent", "url": "scgi://127.0.0.1:5000"}), "seedboxes[0].client.url: must be an http(s) URL"),
        (lambda r: r["seedboxes"][0].update(client={"type": "rtorrent", "url": "127.0.0.1:5000"}), "seedboxes[0].client.url: must be an http(s) URL (an XML-RPC endpoint such as https://host/RPC2), or scgi://host:port or scgi:///path/to.sock for rTorrent's SCGI socket"),
        (lambda r: r["seedboxes"][0].update(client={"type": "rtorrent", "url": "scgi://127.0.0.1:nope"}), "seedboxes[0].client.url: invalid port in 'scgi://127.0.0.1:nope'"),
        (lambda r: r["seedboxes"][0].update(client={"type": "rtorrent", "url": "scgi://127.0.0.1:5000/RPC2"}), "seedboxes[0].client.url: expected scgi://host:port (port 5000 if left out), got"),
        (lambda r: r["seedboxes"][0].update(client={"type": "rtorrent", "url": "scgi://me@127.0.0.1:5000"}), "seedboxes[0].client.url: expected scgi://host:port"),
        (lambda r: r["seedboxes"][0].update(client={"type": "rtorrent", "url": "scgi://~/.rtorrent.sock"}), "seedboxes[0].client.url: expected scgi:///absolute/path/to.sock, got 'scgi://~/.rtorrent.sock' (~ is not expanded: write the whole path)"),
        (lambda r: r["seedboxes"][0].update(client={"type": "rtorrent", "url": "scgi:///"}), "seedboxes[0].client.url: expected scgi:///absolute/path/to.sock, got 'scgi:///'"),
        (lambda r: r["seedboxes"][0].update(client={"type": "rtorrent", "url": "scgi:///home/me/.rtorrent.sock", "username": "me"}), "seedboxes[0].client.username: SCGI has no login: username and password are for an http(s) url"),
        (lambda r: r["seedboxes"][0].update(client={"type": "qbittorrent", "url": "http://x", "password_file": "/nope/pw"}), "seedboxes[0].client.password_file: cannot read /nope/pw"),
        (lambda r: r["transfers"].update(max_repairs=-1), "transfers.max_repairs: value must be at least 0"),
        (lambda r: r["seedboxes"][0].update(client={"type": "qbittorrent", "url": "http://x", "weight": 101}), "seedboxes[0].client.weight: must be between 0 and 100"),
        (lambda r: r["seedboxes"][0].update(client={"type": "qbittorrent", "url": "http://x", "min_free": "lots"}), "seedboxes[0].client.min_free: expected a size like 256KiB or 8MiB, got 'lots'"),
        (lambda r: r["seedboxes"][0].update(client={"type": "qbittorrent", "url": "http://x", "max_downloads": 0}), "seedboxes[0].client.max_downloads: value must be at least 1"),
        (lambda r: r["seedboxes"][0].update(client={"type": "qbittorrent", "url": "http://x", "save_path": "downloads"}), "seedboxes[0].client.save_path: must be an absolute path"),
        (lambda r: r.update(dispatch={"disk_weight": -1}), "dispatch.disk_weight: value must be at least 0"),
        (lambda r: r.update(dispatch={"history": 0}), "dispatch.history: value must be at least 1"),
        (lambda r: r.update(dispatch={"categories": "tv"}), "dispatch.categories: expected a list"),
        (lambda r: r.update(dispatch={"weights": {}}), "dispatch.weights: extra keys not allowed"),
        (lambda r: r.update(seedboxes={}), "seedboxes: expected a list"),
]  # fmt: skip

# An empty configuration (seedboxes and destinations added from HA later) is valid, but
# not what names a destination or a seedbox that is not there. Apart from MISTAKES:
# these change the whole file, not one entry the runtime layer's tests could send.
EMPTY_MISTAKES: list[tuple[Callable[[dict[str, Any]], Any], str]] = [
        (lambda r: r.update(destinations={}, type_codes={}, rules=[], default_destination="tv"), "default_destination: 'tv' is not in destinations"),
        (lambda r: r.update(destinations={}, type_codes={}, rules=[{"match": [], "ignore": True}]), "rules[0].destination: required while no destination is configured"),
        (lambda r: r.update(seedboxes=[], classic={"enabled": True}), "classic.seedbox: classic mode needs a configured seedbox"),
        (lambda r: r.update(destinations={}, type_codes={}, rules=[], api={"enabled": True, "api_key": "k" * 32}), "api.enabled: needs a destination"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "expected"), MISTAKES + EMPTY_MISTAKES)
def test_mistakes_are_named(raw: dict[str, Any], mutate: Any, expected: str) -> None:
    mutate(raw)
    errors = errors_of(raw)
    assert any(expected in e for e in errors), errors


def test_rtorrent_takes_http_and_scgi_urls(raw: dict[str, Any]) -> None:
    urls = ["https://seedbox.example.com/RPC2", "http://10.0.0.5/RPC2", "scgi://127.0.0.1:5000",
            "scgi://seedbox.lan", "scgi:///home/me/.rtorrent.sock"]  # fmt: skip
    for url in urls:
        raw["seedboxes"][0]["client"] = {"type": "rtorrent", "url": url}
        client = parse_config(copy.deepcopy(raw)).seedboxes["sb1"].client
        assert client is not None and (client.type, client.url) == ("rtorrent", url)


def test_several_mistakes_reported_together(raw: dict[str, Any]) -> None:
    raw["broker"]["port"] = "x"
    del raw["seedboxes"][0]["user"]
    assert len(errors_of(raw)) == 2


def test_environment_overrides_and_secret_file(raw: dict[str, Any], tmp_path: Path) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret\n")
    env = {
        "Q4D_BROKER__HOST": "broker.lan",
        "Q4D_BROKER__PORT": "8883",
        "Q4D_BROKER__PASSWORD_FILE": str(secret),
        "Q4D_CLASSIC__ENABLED": "true",
        "UNRELATED": "x",
    }
    config = parse_config(raw, env)
    assert (config.broker.host, config.broker.port, config.broker.password) == (
        "broker.lan",
        8883,
        "s3cret",
    )
    assert config.classic.enabled
    assert "s3cret" not in repr(config)


def test_trust_on_first_use_and_torrent_sources(raw: dict[str, Any], tmp_path: Path) -> None:
    secret = tmp_path / "qbt_password"
    secret.write_text("qbt-s3cret\n")
    seedbox = raw["seedboxes"][0]
    del seedbox["known_hosts"]
    seedbox.update(
        trust_on_first_use=True,
        torrent_file="/home/me/.session/{HASH}.torrent",
        client={"type": "qbittorrent", "url": "http://127.0.0.1:8080", "username": "admin",
                "password_file": str(secret)},
    )  # fmt: skip
    config = parse_config(raw)
    sb = config.seedboxes["sb1"]
    # The first key seen is pinned inside the data directory.
    assert sb.known_hosts == str(tmp_path / "data" / "known_hosts" / "sb1")
    assert sb.trust_on_first_use and sb.torrent_file == "/home/me/.session/{HASH}.torrent"
    assert sb.client is not None and sb.client.password == "qbt-s3cret"
    assert "qbt-s3cret" not in repr(config)
    assert (config.transfers.verify, config.transfers.max_repairs) == (True, 2)


def test_env_override_type_errors_are_named(raw: dict[str, Any]) -> None:
    assert any("broker.port" in e for e in errors_of(raw, {"Q4D_BROKER__PORT": "many"}))


def test_types_config_file_errors(raw: dict[str, Any], tmp_path: Path) -> None:
    types = tmp_path / "Types.config"
    types.write_text("LABEL IS tv T\nLABEL MAYBE x Y\n")
    raw["types_config"] = str(types)
    assert any("Types.config:2: unknown conditional" in e for e in errors_of(raw))


def test_yaml_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bridge: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_the_broker_alone_is_a_valid_idle_configuration(tmp_path: Path) -> None:
    """An install configured from Home Assistant starts so: no seedbox, no destination,
    no rule; a completion then has nowhere to go (rules.resolve: no_destination)."""
    minimal = tmp_path / "bridge.yaml"
    minimal.write_text(
        "bridge: {id: home}\n"
        f"data_dir: {tmp_path / 'data'}\n"
        "broker: {host: 127.0.0.1, port: 1883}\n"
    )
    config = parse_config(yaml.safe_load(minimal.read_text()))
    assert config.seedboxes == {} and config.routing.destinations == {}
    assert config.routing.rules == () and config.routing.default_destination is None
    assert (config.classic.enabled, config.classic.seedbox) == (False, "")
    ok = subprocess.run(
        [sys.executable, "-m", "q4d_bridge.cli", "check-config", "--config", str(minimal)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [
        f"{minimal}: OK (bridge 'home', 0 seedbox(es), 0 destination(s), 0 rule(s))",
        "note: no seedbox yet: add one from Home Assistant",
        "note: no destination yet: completions are rejected (no_destination) until one is added",
    ]


def test_check_config_cli(raw: dict[str, Any], tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(raw))
    ok = subprocess.run(
        [sys.executable, "-m", "q4d_bridge.cli", "check-config", "--config", str(good)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    raw["broker"]["port"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    fail = subprocess.run(
        [sys.executable, "-m", "q4d_bridge.cli", "check-config", "--config", str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert fail.returncode == 1
    assert "broker.port: value must be at least 1" in fail.stderr


def test_example_config_is_valid(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "bridge" / "bridge.example.yaml"
    raw = yaml.safe_load(example.read_text())
    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("h")
    for sb in raw["seedboxes"]:
        sb["key"], sb["known_hosts"] = str(key), str(known)
    secret = tmp_path / "password"
    secret.write_text("pw")
    raw["broker"]["password_file"] = str(secret)
    config = parse_config(raw)
    assert config.bridge_id
