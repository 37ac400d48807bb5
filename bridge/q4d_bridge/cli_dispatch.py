"""`q4d-bridge add` and `q4d-bridge clients`: asked of the running bridge over MQTT."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from pathlib import Path
from typing import Any

import aiomqtt

from .clients.metainfo import MAX_TORRENT_FILE
from .config.model import Config
from .dispatch.scoring import human_size
from .mqtt.remote import RemoteError, call_bridge
from .mqtt.topics import Topics

TIMEOUT = 60.0  # an add may wait out a client's retries (1 + 2 + 4 s) and a .torrent fetch


def _ask(config: Config, op: str, args: dict[str, Any]) -> Any:
    topics = Topics(config.broker.topic_prefix, config.bridge_id)
    return asyncio.run(call_bridge(config.broker, topics, op, args, within=TIMEOUT))


def _torrent_args(what: str) -> dict[str, Any]:
    """A magnet link, an http(s) URL of a .torrent, or a .torrent file's path."""
    if what.startswith("magnet:"):
        return {"magnet": what}
    if what.startswith(("http://", "https://")):
        return {"url": what}
    path = Path(what)
    if not path.is_file():
        raise ValueError(f"{what}: not a magnet link, an http(s) URL or a .torrent file")
    if path.stat().st_size > MAX_TORRENT_FILE:
        raise ValueError(f"{what}: larger than {human_size(MAX_TORRENT_FILE)}, not a .torrent")
    return {"torrent": base64.b64encode(path.read_bytes()).decode("ascii")}


def add(config: Config, args: argparse.Namespace) -> int:
    try:
        request = _torrent_args(args.torrent)
    except (OSError, ValueError) as err:
        print(f"q4d-bridge add: {err}", file=sys.stderr)
        return 2
    for key in ("category", "seedbox"):
        if getattr(args, key):
            request[key] = getattr(args, key)
    request.update(source="cli", paused=args.paused, dry_run=args.dry_run)
    try:
        result = _ask(config, "add", request)
    except RemoteError as err:
        print(f"q4d-bridge add: refused ({err.code}): {err.message}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError, aiomqtt.MqttError) as err:
        print(
            f"q4d-bridge add: cannot reach the bridge: {err or type(err).__name__}", file=sys.stderr
        )
        return 1
    decision = result["decision"]
    _print_scores(decision["clients"])
    name = decision["name"] or decision["info_hash"]
    if args.dry_run:
        print(f"dry run: {name} would go to {decision['chosen']}")
    else:
        request_id = result["request"]["id"]
        print(f"added {name} to {decision['chosen']} (request {request_id})")
    return 0


def clients(config: Config, _args: argparse.Namespace) -> int:
    try:
        result = _ask(config, "clients", {})
    except RemoteError as err:
        print(f"q4d-bridge clients: {err.code}: {err.message}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError, aiomqtt.MqttError) as err:
        print(
            f"q4d-bridge clients: cannot reach the bridge: {err or type(err).__name__}",
            file=sys.stderr,
        )
        return 1
    _print_scores(result["clients"])
    return 0


def _print_scores(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        reach = {True: "up", False: "DOWN", None: "-"}[row.get("reachable")]
        free = "-" if row.get("free_space") is None else human_size(row["free_space"])
        score = "-" if row.get("score") is None else f"{row['score']:.2f}"
        kind = f"{row.get('type') or '-'} {row.get('version') or ''}".strip()
        downloads = row.get("active_downloads")
        print(
            f"{row['seedbox']:<12} {kind:<22} {reach:<5} free {free:>10}  "
            f"downloads {'-' if downloads is None else downloads:>3}  "
            f"score {score:>8}  {row.get('reason')}"
        )
