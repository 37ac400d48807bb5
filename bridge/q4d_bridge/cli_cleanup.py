"""`q4d-bridge cleanup [--now]`: the seedbox torrents whose clean-up goal (ratio,
seeding time) is reached, asked of the running bridge over MQTT; a dry run unless
--now, which removes them at once instead of at the bridge's next look."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiomqtt

from .config.model import Config
from .mqtt.remote import RemoteError, call_bridge
from .mqtt.topics import Topics

TIMEOUT = 60.0  # every seedbox's client is asked for its torrents


def add_arguments(p: argparse.ArgumentParser) -> None:
    when = p.add_mutually_exclusive_group()
    when.add_argument("--dry-run", action="store_true", help="only list (the default)")
    when.add_argument("--now", action="store_true", help="remove them now")


def cleanup(config: Config, args: argparse.Namespace) -> int:
    topics = Topics(config.broker.topic_prefix, config.bridge_id)
    request = {"dry_run": not args.now}
    try:
        result = asyncio.run(
            call_bridge(config.broker, topics, "seedbox_cleanup", request, within=TIMEOUT)
        )
    except RemoteError as err:
        print(f"q4d-bridge cleanup: {err.code}: {err.message}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError, aiomqtt.MqttError) as err:
        print(f"q4d-bridge cleanup: cannot reach the bridge: {err or type(err).__name__}",
              file=sys.stderr)  # fmt: skip
        return 1
    torrents = result["torrents"]
    for t in torrents:
        print(f"{t['seedbox']}: {t['name']} ({t['reason']}): {_outcome(t, result['dry_run'])}")
    if not torrents:
        print("nothing has reached its clean-up goal")
    return 1 if any(t["error"] for t in torrents) else 0


def _outcome(torrent: dict[str, Any], dry_run: bool) -> str:
    if torrent["error"]:
        return f"error: {torrent['error']}"
    if dry_run:
        return "would be removed"
    return "removed" if torrent["removed"] else "gone from the seedbox already"
