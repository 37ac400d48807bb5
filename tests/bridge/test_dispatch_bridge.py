"""Dispatch through the running bridge, over MQTT and from the CLI, with a real
qBittorrent as the seedbox's client: a request followed from the add to the library
(in the queue before its item exists, linked to the item by info-hash, `landed` with the
library path), the decision history, the clients with their scores in the state, and
pause/resume/remove of a torrent on the client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bridge.test_e2e import Env, digest_tree, running_bridge
from tests.bridge.test_nodes import command
from tests.helpers.configs import bridge_config
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer
from tests.helpers.torrents import random_file, torrent_of

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]


def retained(env: Env, item_id: str) -> list[dict[str, Any] | None]:
    """What the bridge published on the item's retained topic, in order (None: retracted)."""
    return [
        json.loads(m.payload) if m.payload else None
        for m in env.recorder.on(f"q4d/bridge/test/item/{item_id}")
    ]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bridge")}
    return subprocess.run(
        [sys.executable, "-m", "q4d_bridge.cli", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=90, env=env, check=False,
    )  # fmt: skip


async def test_a_request_from_the_add_to_the_library(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    remote = tmp_path / "seedbox"
    payload = random_file(remote / "Landed.Film.2024.mkv", 3 * 2**20, seed=7)
    raw = torrent_of(payload)
    torrent = base64.b64encode(raw).decode()
    with QBittorrent(tmp_path / "qbt") as qbt:
        # the payload is where qBittorrent saves it: it checks the data and completes
        client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                  "password": qbt.password, "poll_interval": 1, "min_free": 0,
                  "save_path": str(remote)}  # fmt: skip
        seedbox = {"client": client, "reconcile": {"interval": 0}}
        async with running_bridge(
            tmp_path, mosquitto, sshd, engine="sftp", seedbox=seedbox,
            dispatch={"watch_interval": 1},
        ) as env:  # fmt: skip
            preview = await command(env, "preview", torrent=torrent, category="movies")
            assert preview["ok"] and preview["result"]["decision"]["chosen"] == "sb1"
            assert (await command(env, "requests"))["result"]["requests"] == []

            added = await command(env, "add", torrent=torrent, category="movies", source="ha")
            assert added["ok"], added
            request = added["result"]["request"]
            assert (request["source"], request["seedbox"], request["state"]) == (
                "ha",
                "sb1",
                "added",
            )
            info_hash = request["info_hash"]

            # the client finishes it: the request is "downloading" in the queue until the
            # hook's completion event makes it an item
            shown = await env.recorder.wait_for(
                lambda: [p for p in retained(env, request["id"]) if p and p["progress"] == 100.0],
                60, "the request at 100 % on the seedbox",
            )  # fmt: skip
            assert shown[-1]["state"] == "downloading" and shown[-1]["request_id"] == request["id"]
            assert retained(env, request["id"])[0]["state"] == "requested"

            await env.complete("Landed.Film.2024.mkv", info_hash, category="movies")
            await env.wait_settled(1)
            (item,) = env.bridge.lifecycle.items.values()
            assert item.request_id == request["id"]
            assert retained(env, request["id"])[-1] is None  # the item stands in for it now
            requests = (await command(env, "requests"))["result"]["requests"]
            (done,) = requests
            library_path = env.library / "movies" / "Landed.Film.2024.mkv"
            assert (done["state"], done["item_id"], done["local_path"]) == (
                "landed", item.id, str(library_path)
            )  # fmt: skip
            assert digest_tree(library_path) == digest_tree(payload)
            item_payload = retained(env, item.id)[-1]
            assert item_payload is not None and item_payload["request_id"] == request["id"]

            (decision,) = (await command(env, "decisions"))["result"]["decisions"]
            assert (decision["outcome"], decision["request_id"]) == ("added", request["id"])
            assert decision["clients"][0]["type"] == "qbittorrent"

            state = env.bridge.state().as_dict()
            node = state["seedboxes"]["sb1"]["client"]
            assert node["type"] == "qbittorrent" and re.match(r"v?\d+\.\d+", node["version"])
            assert node["dispatch"]["enabled"] and node["dispatch"]["reason_code"] == "eligible"
            assert isinstance(node["dispatch"]["score"], float)
            assert state["counts"]["requested"] == state["counts"]["downloading"] == 0

            again = await command(env, "add", torrent=torrent)
            assert again["error"]["code"] == "duplicate"

            for op in ("torrent_pause", "torrent_resume"):
                answer = await command(env, op, seedbox="sb1", hash=info_hash)
                assert answer["result"] == {"seedbox": "sb1", "hash": info_hash}
            missing = await command(env, "torrent_pause", seedbox="sb1", hash="f" * 40)
            assert missing["error"]["code"] == "not_found"
            removed = await command(env, "torrent_remove", seedbox="sb1", hash=info_hash)
            assert removed["result"]["delete_data"] is False
            assert payload.exists()  # without delete_data the seedbox keeps the files
            bad = await command(env, "torrent_remove", seedbox="sb1", hash="xyz")
            assert bad["error"]["code"] == "invalid_args"


async def test_cli_add_and_clients(tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer) -> None:
    with QBittorrent(tmp_path / "qbt") as qbt:
        client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                  "password": qbt.password, "min_free": 0}  # fmt: skip
        async with running_bridge(tmp_path, mosquitto, sshd, seedbox={"client": client}) as env:
            raw = bridge_config(
                tmp_path / "cli-data", tmp_path / "library", key=sshd.client_key,
                known_hosts=sshd.known_hosts, broker_port=mosquitto.port,
            )  # fmt: skip
            config = tmp_path / "cli.yaml"
            config.write_text(yaml.safe_dump(raw))
            payload = random_file(tmp_path / "made" / "Cli.Show.S01E01.mkv", 100_000, seed=3)
            torrent_file = tmp_path / "Cli.Show.S01E01.torrent"
            torrent_file.write_bytes(torrent_of(payload))

            dry = await asyncio.to_thread(cli, config, "add", str(torrent_file), "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert "dry run: Cli.Show.S01E01.mkv would go to sb1" in dry.stdout
            assert re.search(r"qbittorrent \d+\.\d+", dry.stdout) and "eligible" in dry.stdout

            added = await asyncio.to_thread(
                cli, config, "add", str(torrent_file), "--category", "tv", "--paused"
            )
            assert added.returncode == 0, added.stderr
            assert "added Cli.Show.S01E01.mkv to sb1 (request " in added.stdout
            (request,) = (await command(env, "requests"))["result"]["requests"]
            assert (request["source"], request["category"], request["paused"]) == (
                "cli",
                "tv",
                True,
            )

            twice = await asyncio.to_thread(cli, config, "add", str(torrent_file))
            assert twice.returncode == 1 and "refused (duplicate)" in twice.stderr
            unknown = await asyncio.to_thread(
                cli, config, "add", "magnet:?xt=urn:btih:" + "1" * 40, "--category", "nope"
            )
            assert unknown.returncode == 1 and "unknown_category" in unknown.stderr
            missing = await asyncio.to_thread(cli, config, "add", str(tmp_path / "none.torrent"))
            assert missing.returncode == 2 and "not a magnet link" in missing.stderr

            listed = await asyncio.to_thread(cli, config, "clients")
            assert listed.returncode == 0, listed.stderr
            assert listed.stdout.startswith("sb1") and "up" in listed.stdout

        # the bridge stopped (its status says offline): a clear error, not a wait
        gone = await asyncio.to_thread(cli, config, "clients")
        assert gone.returncode == 1 and "bridge test is offline" in gone.stderr
