"""The rule tools: `route --dry-run` for an event, a path and a real qBittorrent's
completed torrents; `check --permissions` (ok, a destination the bridge's user cannot
write, a chown it may not do); tracker rules over MQTT and the CLI, applied to the next
completion and kept across a restart."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from q4d_bridge import cli, cli_route
from q4d_bridge.clients.base import NewTorrent
from q4d_bridge.clients.qbittorrent import QbittorrentClient
from q4d_bridge.config.loader import parse_config
from q4d_bridge.mqtt.remote import RemoteError, call_bridge
from q4d_bridge.mqtt.topics import Topics
from q4d_bridge.postprocess.plan import CleanupPlan

from tests.bridge.test_client_qbittorrent import config as client_config
from tests.bridge.test_client_qbittorrent import listed, payload
from tests.bridge.test_e2e import running_bridge
from tests.helpers.configs import bridge_config
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(90)
BRIDGE = str(Path(__file__).parents[2] / "bridge")
DROP_ROOT = """
import os, sys
from q4d_bridge import cli
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
sys.exit(cli.main(sys.argv[1:]))
"""
RULES = [
    {"ignore": True, "match": [{"field": "category", "is": "keep-remote"}]},
    {"destination": "tv", "match": [{"field": "category", "is": "tv"}], "owner": 1000,
     "group": 1000, "exclude": ["*.nfo"], "extract": True,
     "seedbox_cleanup": {"ratio": 2.0}},
]  # fmt: skip


def write_config(tmp_path: Path, **overrides: Any) -> Path:
    for name in ("key", "known_hosts"):
        (tmp_path / name).write_text(name)
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=tmp_path / "key",
        known_hosts=tmp_path / "known_hosts", remote_root="/srv/dl", rules=RULES, **overrides,
    )  # fmt: skip
    raw["seedboxes"][0]["engine"] = "sftp"
    parse_config(json.loads(json.dumps(raw)))  # valid, or the test is wrong
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def squeezed(out: str) -> list[str]:
    """The lines printed, with their columns' padding squeezed to one space."""
    return [" ".join(line.split()) for line in out.splitlines()]


# --- route --dry-run ------------------------------------------------------------------


def test_route_an_event_file_and_a_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    event = {"v": 1, "event_id": "e1", "path": "/srv/dl/Show.S01E01", "category": "tv"}
    (tmp_path / "event.json").write_text(json.dumps(event))
    code, out, _ = run_cli(["route", "-c", str(config), "--dry-run", "--event",
                            str(tmp_path / "event.json")], capsys)  # fmt: skip
    assert code == 0
    assert "rule:        rules[1] (category is tv)" in out
    assert f"destination: tv -> {tmp_path / 'library/tv/Show.S01E01'}" in out
    assert "steps:       landing, extract" in out and "exclude:     *.nfo" in out
    assert (
        "owner 1000, group 1000" in out
        and "cleanup: remove at ratio 2, with its data" in squeezed(out)
    )

    # a seeding time as the clean-up says it (its reasons: `seeding time 7d 2h ≥ 7d`)
    both = CleanupPlan(ratio=2, seeding_time=7 * 86400 + 7200, delete_data=False)
    assert cli_route._cleanup(both) == (
        "remove at ratio 2 or seeding time 7d 2h (whichever first), keeping its data"
    )

    code, out, _ = run_cli(["route", "-c", str(config), "--dry-run", "--json", "--path",
                            "/srv/dl/Film", "--category", "keep-remote"], capsys)  # fmt: skip
    (answer,) = json.loads(out)
    assert (code, answer["outcome"], answer["rule"]) == (0, "ignored", "rules[0]")
    code, out, _ = run_cli(["route", "-c", str(config), "--dry-run", "--json", "--path",
                            "/elsewhere/Film"], capsys)  # fmt: skip
    (answer,) = json.loads(out)
    assert (code, answer["outcome"], answer["reason"]) == (1, "rejected", "unsafe_path")
    code, out, _ = run_cli(["route", "-c", str(config), "--dry-run", "--path", "/srv/dl/X",
                            "--seedbox", "nope"], capsys)  # fmt: skip
    assert code == 2


def test_route_reports_config_errors_as_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("bridge: {id: x}\n")
    code, _, err = run_cli(["route", "-c", str(path), "--dry-run", "--path", "/x"], capsys)
    assert code == 1 and f"invalid configuration in {path}" in err


async def test_route_every_completed_torrent_of_a_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with QBittorrent(tmp_path / "qbt") as qbt:
        client = QbittorrentClient(client_config(qbt.url, qbt.username, qbt.password))
        try:
            for name, category, seed in (("Show.S01E01.mkv", "tv", 1), ("Film.mkv", None, 2)):
                data, info_hash, torrent = payload(tmp_path, name, seed)
                await client.add(NewTorrent(torrent_file=torrent, category=category,
                                            save_path=str(data)))  # fmt: skip
                await listed(client, info_hash, lambda t: t.complete)
        finally:
            await client.close()
        config = write_config(tmp_path)
        raw = yaml.safe_load(config.read_text())
        raw["seedboxes"][0].update(
            remote_roots=[str(tmp_path / "data")],
            client={"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                    "password": qbt.password},
        )  # fmt: skip
        config.write_text(yaml.safe_dump(raw))
        argv = ["route", "-c", str(config), "--dry-run", "--json", "--client", "sb1"]
        code, out, err = await asyncio.to_thread(run_cli, argv, capsys)
    assert code == 0, err
    answers = {a["name"]: a for a in json.loads(out)}
    assert answers["Show.S01E01.mkv"]["destination"] == "tv"
    assert answers["Show.S01E01.mkv"]["rule"] == "rules[1]"
    assert (answers["Film.mkv"]["destination"], answers["Film.mkv"]["rule"]) == (
        "default", "default"
    )  # fmt: skip


# --- check --permissions --------------------------------------------------------------


def test_check_permissions_ok_as_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    code, out, _ = run_cli(["check", "-c", str(config), "--permissions"], capsys)
    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) == 3 and all(": ok (" in line for line in lines)
    assert "chown 1000:1000" in next(line for line in lines if line.startswith("tv:"))
    assert not (tmp_path / "library").exists()  # created for the probe, then removed


def test_check_permissions_as_a_user_who_may_not(tmp_path: Path) -> None:
    """A child process that drops root (after its imports, which live under /root): it
    cannot write to a root-owned destination, and cannot give a file to another user."""
    if os.getuid() != 0:
        pytest.skip("needs root to drop privileges")
    # pytest's own temporary folders are root's alone: this one is open to `nobody`
    workdir = Path(tempfile.mkdtemp(prefix="q4d-check-"))
    try:
        workdir.chmod(0o755)
        config = write_config(workdir)
        library = workdir / "library"
        (library / "tv").mkdir(parents=True)
        (library / "movies").mkdir()
        library.chmod(0o777)
        (library / "tv").chmod(0o777)
        (library / "movies").chmod(0o755)  # root's: not writable by nobody
        result = subprocess.run(
            [sys.executable, "-c", DROP_ROOT, "check", "-c", str(config), "--permissions"],
            capture_output=True, text=True, timeout=30, check=False,
            env={**os.environ, "PYTHONPATH": BRIDGE},
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        lines = result.stdout.splitlines()
        assert (
            f"movies: cannot create a folder in {library / 'movies'} (permission denied): "
            "give the bridge's user write access to it (or its parent)"
        ) in lines
        assert (
            "tv: cannot chown to 1000:1000 (operation not permitted): "
            "run the bridge as root or drop owner:"
        ) in lines
        assert any(line.startswith("default: ok (") for line in lines), lines
        # one line per problem, and no "ok" for a destination that has one
        assert not any(line.startswith(("tv: ok", "movies: ok")) for line in lines), lines
        assert len(lines) == 3, lines
        assert list((library / "tv").iterdir()) == []  # the probe removed
    finally:
        shutil.rmtree(workdir)


def test_check_permissions_free_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["transfers"]["min_free_space"] = 2**62
    config.write_text(yaml.safe_dump(raw))
    code, out, _ = run_cli(["check", "-c", str(config), "--permissions"], capsys)
    assert code == 1 and "below transfers.min_free_space" in out


# --- tracker rules ----------------------------------------------------------------------


async def test_tracker_rules_over_mqtt_and_the_cli_live_and_kept(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cli").mkdir()
    cli_config = str(write_config(tmp_path / "cli", broker_port=mosquitto.port))

    async def cli_says(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(run_cli, ["tracker-rule", "-c", cli_config, *argv], capsys)

    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=RULES) as env:
        topics = Topics("q4d", "test")
        broker = env.bridge.config.broker

        async def ask(op: str, args: dict[str, Any]) -> Any:
            return await call_bridge(broker, topics, op, args, within=15)

        code, out, _ = await cli_says("add", "Tracker.Example.org", "--ignore")
        assert (code, squeezed(out)) == (
            0,
            ["added: tracker.example.org ignore (left on the seedbox)"],
        )
        added = await ask(
            "tracker_rule_add",
            {"tracker": "https://films.example.net/announce/passkey", "destination": "movies",
             "category": "films"},
        )  # fmt: skip
        assert added["rule"] == {"tracker": "films.example.net", "category": "films",
                                 "destination": "movies", "ignore": False,
                                 "source": "runtime"}  # fmt: skip
        assert added["replaced"] is False and len(added["rules"]) == 2
        with pytest.raises(RemoteError) as refused:
            await ask("tracker_rule_add", {"tracker": "x.org", "destination": "nope"})
        assert refused.value.code == "not_found"
        with pytest.raises(RemoteError) as refused:
            await ask("tracker_rule_add", {"tracker": "x.org", "ignore": True, "category": "c"})
        assert refused.value.code == "invalid_args"
        code, _, err = await cli_says("remove", "unknown.org")
        assert code == 1 and "not_found: no tracker rule for unknown.org" in err

        # applied to the next completions: a subdomain's tracker, and a category set
        await env.complete("Film.mkv", "ab" * 20, event_id="t1", category="tv",
                           tracker="https://a.tracker.example.org:443/announce")  # fmt: skip
        await env.complete("Film2.mkv", "cd" * 20, event_id="t2", category="tv",
                           tracker="films.example.net")  # fmt: skip
        (ignored,) = await env.recorder.wait_for(lambda: env.recorder.events("ignored"), 15)
        assert ignored["rule"] == "tracker tracker.example.org"
        (queued,) = await env.recorder.wait_for(lambda: env.recorder.events("queued"), 15)
        assert (queued["item"]["destination"], queued["item"]["category"]) == ("movies", "films")

        code, out, _ = await cli_says("list")
        assert code == 0 and squeezed(out) == [
            "tracker.example.org ignore (left on the seedbox)",
            "films.example.net destination movies, category films",
        ]
        assert (await cli_says("remove", "tracker.example.org"))[0] == 0
        assert [r["tracker"] for r in (await ask("tracker_rules", {}))["rules"]] == [
            "films.example.net"
        ]
    # kept across a restart, and in force at once
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=RULES) as env:
        assert [r.tracker for r in env.bridge.config.routing.tracker_rules.rules] == [
            "films.example.net"
        ]
        code, out, _ = await cli_says("list")
        assert code == 0 and out.startswith("films.example.net")
