"""`q4d-bridge route --dry-run`: where completions would go, from the config and the
stored tracker rules alone (no running bridge): for an event JSON, a path on a seedbox,
or every completed torrent of a seedbox's torrent client."""

from __future__ import annotations

import argparse
import asyncio
import json
import posixpath
import sys
from pathlib import Path
from typing import Any

from .config.model import Config, SeedboxConfig
from .intake.decode import Accepted, Rejected, accept
from .models import CompletionEvent
from .mqtt.codec import RejectedEvent
from .mqtt.events import parse_completed
from .persistence.tracker_rules import read_stored_tracker_rules
from .postprocess.cleanup import duration
from .postprocess.plan import CleanupPlan, Ownership
from .rules import Rule
from .tracker_rules import TrackerRule


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", required=True, help="change nothing")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--event", metavar="FILE", help="a v1 completion event (JSON; - for stdin)")
    what.add_argument("--path", help="the payload's path on the seedbox")
    what.add_argument("--client", metavar="SEEDBOX", help="every completed torrent of its client")
    p.add_argument("--seedbox", help="the seedbox of --path or --event")
    p.add_argument("--category")
    p.add_argument("--tag", action="append", default=[], help="a tag (repeat for more)")
    p.add_argument("--tracker", help="the tracker's URL or host")
    p.add_argument("--json", action="store_true", help="one JSON document, for scripts")


def route(config: Config, args: argparse.Namespace) -> int:
    """Exit 0 when every input could be routed (ignored counts), 1 if one was
    rejected, 2 for bad input."""
    try:
        events = _events(config, args)
    except (OSError, ValueError, RejectedEvent) as err:
        print(f"q4d-bridge route: {_reason(err)}", file=sys.stderr)
        return 2
    _with_tracker_rules(config)
    answers = [explain(config, event) for event in events]
    if args.json:
        print(json.dumps(answers, indent=2))
    else:
        for answer in answers:
            print("\n".join(describe(answer)))
        if not answers:
            print("no completed torrents")
    return 1 if any(a["outcome"] == "rejected" for a in answers) else 0


def _reason(err: Exception) -> str:
    return f"{err.reason}: {err.detail}" if isinstance(err, RejectedEvent) else str(err)


def _seedbox(config: Config, given: str | None) -> SeedboxConfig:
    if not config.seedboxes:
        raise ValueError("no seedbox is configured yet")
    if given is None and len(config.seedboxes) == 1:
        return next(iter(config.seedboxes.values()))
    if given is None:
        raise ValueError(f"--seedbox is required (one of {', '.join(config.seedboxes)})")
    if given not in config.seedboxes:
        raise ValueError(f"no seedbox {given!r} (known: {', '.join(config.seedboxes)})")
    return config.seedboxes[given]


def _events(config: Config, args: argparse.Namespace) -> list[CompletionEvent]:
    if args.event is not None:
        raw = sys.stdin.buffer.read() if args.event == "-" else Path(args.event).read_bytes()
        try:
            named = json.loads(raw).get("seedbox")
        except (ValueError, AttributeError):
            named = None  # parse_completed says what is wrong with it
        return [parse_completed(raw, _seedbox(config, args.seedbox or named).id)]
    if args.path is not None:
        return [
            CompletionEvent(
                event_id="dry-run", seedbox=_seedbox(config, args.seedbox).id, path=args.path,
                name=posixpath.basename(args.path.rstrip("/")), category=args.category,
                tags=tuple(args.tag), tracker=args.tracker,
            )
        ]  # fmt: skip
    return asyncio.run(client_events(config, _seedbox(config, args.client)))


async def client_events(config: Config, seedbox: SeedboxConfig) -> list[CompletionEvent]:
    """Every completed torrent of the seedbox's client as its completion event would say
    it (as reconciliation builds them, without its filters)."""
    if seedbox.client is None:
        raise ValueError(f"seedbox {seedbox.id} has no torrent client configured")
    # Imported here: the bridge's SSH link (rTorrent over scgi+ssh) and the adapters.
    from .clients import make_client  # noqa: PLC0415
    from .clients.base import ClientError  # noqa: PLC0415
    from .seedbox_parts import client_ssh_link  # noqa: PLC0415
    from .transfer.remote import SeedboxSession  # noqa: PLC0415

    session = SeedboxSession(seedbox)
    client = make_client(seedbox.client, ssh=client_ssh_link(session))
    try:
        torrents = await client.completed_torrents()
    except ClientError as err:
        raise ValueError(f"seedbox {seedbox.id}: {err}") from err
    finally:
        await client.close()
        await session.close()
    return [
        CompletionEvent(
            event_id=f"dry-run-{t.hash.lower()}", seedbox=seedbox.id, path=t.content_path,
            name=t.name, hash=t.hash.lower(), client=seedbox.client.type, category=t.category,
            tags=t.tags, tracker=t.tracker, size=t.size, completed_at=t.completed_at,
        )
        for t in sorted(torrents, key=lambda t: t.name)
    ]  # fmt: skip


def _with_tracker_rules(config: Config) -> None:
    """The bridge's stored tracker rules join the routing (after the file's)."""
    config.routing.tracker_rules.replace(read_stored_tracker_rules(config.data_dir))


def _conditions(rule: Rule | TrackerRule | None) -> list[str]:
    if isinstance(rule, TrackerRule):
        return [f"tracker host is {rule.tracker} or ends with .{rule.tracker}"]
    return [] if rule is None else [f"{c.field} {c.op} {c.value}" for c in rule.conditions]


def _ownership(ownership: Ownership) -> dict[str, Any]:
    return {
        "owner": ownership.owner,
        "group": ownership.group,
        "file_mode": None if ownership.file_mode is None else f"{ownership.file_mode:04o}",
        "dir_mode": None if ownership.dir_mode is None else f"{ownership.dir_mode:04o}",
    }


def _cleanup(cleanup: CleanupPlan | None) -> str | None:
    """The seedbox clean-up goal in words; None: the torrent stays on the seedbox."""
    if cleanup is None:
        return None
    data = "with its data" if cleanup.delete_data else "keeping its data"
    if cleanup.at_once:
        return f"remove at once, {data}"
    goals = []
    if cleanup.ratio is not None:
        goals.append(f"ratio {cleanup.ratio:g}")
    if cleanup.seeding_time is not None:
        goals.append(f"seeding time {duration(cleanup.seeding_time)}")  # as the clean-up says it
    first = " (whichever first)" if len(goals) > 1 else ""
    return f"remove at {' or '.join(goals)}{first}, {data}"


def explain(config: Config, event: CompletionEvent) -> dict[str, Any]:
    """What the bridge would do with this completion, as a JSON-able mapping."""
    answer: dict[str, Any] = {
        "seedbox": event.seedbox, "path": event.path, "name": event.name, "hash": event.hash,
        "category": event.category, "tags": list(event.tags), "tracker": event.tracker,
    }  # fmt: skip
    outcome = accept(event, seedboxes=config.seedboxes, routing=config.routing)
    if isinstance(outcome, Rejected):
        return {**answer, "outcome": "rejected", "reason": outcome.reason, "detail": outcome.detail}
    assert isinstance(outcome, Accepted)
    resolution = outcome.resolution
    answer.update(
        category=resolution.category,
        rule=config.routing.rule_name(resolution.rule),
        conditions=_conditions(resolution.rule),
        type_code=resolution.type_code,
    )
    if resolution.ignore:
        return {**answer, "outcome": "ignored"}
    post = resolution.post
    return {
        **answer,
        "outcome": "transfer",
        "destination": resolution.destination,
        "local_path": str(resolution.local_path),
        "engine": resolution.engine,
        "exclude": list(post.exclude),
        "ownership": _ownership(post.ownership),
        "steps": list(post.steps()),
        "seedbox_cleanup": _cleanup(post.cleanup),
    }


def describe(answer: dict[str, Any]) -> list[str]:
    """The human-readable lines of one answer of `explain`."""
    lines = [f"{answer['name']} ({answer['seedbox']}: {answer['path']})"]
    if answer["outcome"] == "rejected":
        return [*lines, f"  REJECTED ({answer['reason']}): {answer['detail']}"]
    matched = answer["rule"] + (
        f" ({'; '.join(answer['conditions'])})" if answer["conditions"] else ""
    )
    lines.append(f"  rule:        {matched}")
    if answer["category"] is not None:
        lines.append(f"  category:    {answer['category']}")
    if answer["outcome"] == "ignored":
        return [*lines, "  IGNORED: left on the seedbox (no transfer, no label)"]
    owner = {k: v for k, v in answer["ownership"].items() if v is not None}
    lines += [
        f"  destination: {answer['destination']} -> {answer['local_path']}",
        f"  engine:      {answer['engine']}",
        f"  exclude:     {', '.join(answer['exclude']) or '-'}",
        f"  ownership:   {', '.join(f'{k} {v}' for k, v in owner.items()) or '-'}",
        f"  steps:       landing{''.join(f', {s}' for s in answer['steps'])}",
        f"  cleanup:     {answer['seedbox_cleanup'] or 'none (it stays on the seedbox)'}",
    ]
    return lines
