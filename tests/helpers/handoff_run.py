"""A hand-off in a process of its own, for a test to SIGKILL mid-step:

    python -m tests.helpers.handoff_run '<json: home, seedbox, torrent, landed, hash>'

Home and seedbox are qBittorrent WebUIs ({url, username, password}); the repair is a
copy from the seedbox's data (tests/helpers/handoff.CopyRanges)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from q4d_bridge.clients.qbittorrent import QbittorrentClient
from q4d_bridge.config.model import ClientConfig, HomeClientConfig
from q4d_bridge.postprocess.base import Landed
from q4d_bridge.postprocess.handoff import Handoff
from q4d_bridge.postprocess.plan import HandoffPlan, PostPlan

from tests.helpers.handoff import CopyRanges


async def main(args: dict[str, Any]) -> None:
    seedbox = QbittorrentClient(ClientConfig("qbittorrent", **args["seedbox"], verify_tls=True))
    torrent = Path(args["torrent"]).read_bytes()
    landed = Path(args["landed"])

    async def torrent_for(_landed: Landed) -> bytes:
        return torrent

    step = Handoff(
        {"home": HomeClientConfig("qbittorrent", **args["home"])},
        torrent_for=torrent_for,
        repair=CopyRanges(Path(args["seedbox_copy"])),
        seedbox_client=lambda _sb: seedbox,
    )
    plan = PostPlan(handoff=HandoffPlan(client="home", remove_from_seedbox=True))
    try:
        print(await step.run(Landed("k1", landed.name, args["hash"], "sb1", None, landed,
                                    landed.parent, plan)))  # fmt: skip
    finally:
        await seedbox.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
