"""`q4d-bridge tracker-rule add|list|remove`: the running bridge's tracker rules, over
MQTT (the bridge holds the store and applies a change to the next completion)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiomqtt

from .config.model import Config
from .mqtt.remote import RemoteError, call_bridge
from .mqtt.topics import Topics

TIMEOUT = 15.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("add", "list", "remove"))
    p.add_argument("tracker", nargs="?", help="a tracker domain (or URL): add and remove")
    effect = p.add_mutually_exclusive_group()
    effect.add_argument("--ignore", action="store_true", help="leave its torrents on the seedbox")
    effect.add_argument("--destination", help="send its torrents to this destination")
    p.add_argument("--category", help="route its torrents as if they had this category")


def _line(rule: dict[str, Any]) -> str:
    where = " (configuration file)" if rule.get("source") == "file" else ""
    if rule["ignore"]:
        return f"{rule['tracker']:<32} ignore (left on the seedbox){where}"
    parts = [f"destination {rule['destination']}"] if rule["destination"] else []
    parts += [f"category {rule['category']}"] if rule["category"] else []
    return f"{rule['tracker']:<32} {', '.join(parts)}{where}"


def tracker_rule(config: Config, args: argparse.Namespace) -> int:
    if args.action != "list" and not args.tracker:
        print(f"q4d-bridge tracker-rule {args.action}: give the tracker domain", file=sys.stderr)
        return 2
    op, request = "tracker_rules", {}
    if args.action == "add":
        op, request = "tracker_rule_add", {"tracker": args.tracker, "ignore": args.ignore}
        request.update(
            {k: getattr(args, k) for k in ("destination", "category") if getattr(args, k)}
        )
    elif args.action == "remove":
        op, request = "tracker_rule_remove", {"tracker": args.tracker}
    topics = Topics(config.broker.topic_prefix, config.bridge_id)
    try:
        result = asyncio.run(call_bridge(config.broker, topics, op, request, within=TIMEOUT))
    except RemoteError as err:
        print(f"q4d-bridge tracker-rule {args.action}: {err.code}: {err.message}", file=sys.stderr)
        return 1
    except (TimeoutError, OSError, aiomqtt.MqttError) as err:
        print(
            f"q4d-bridge tracker-rule {args.action}: cannot reach the bridge: "
            f"{err or type(err).__name__}",
            file=sys.stderr,
        )
        return 1
    if args.action == "add":
        print(f"{'replaced' if result['replaced'] else 'added'}: {_line(result['rule'])}")
    elif args.action == "remove":
        print(f"removed the rule for {result['removed']}")
    else:
        for rule in result["rules"]:
            print(_line(rule))
        if not result["rules"]:
            print("no tracker rules")
    return 0
