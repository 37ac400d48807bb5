"""Run one q4d transfer engine once, as the bridge would, and print its timing as JSON.

bench/wan.py starts this inside the "home" namespace (`ip netns exec`). The config goes
through q4d_bridge.config (tests/helpers/configs.py's valid dict, seedbox address and
`--option section.key=value` overrides applied first), so every setting not overridden
is the bridge's real default; the engine is built the way the bridge builds it, and the
transfer is q4d_bridge.transfer.pipeline.run_transfer with a real SeedboxSession: stat, fetch
into staging, size check, atomic publish.

Run: ip netns exec NS .venv/bin/python bench/wan_engine.py --engine lftp --host A ...
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.models import ItemState
from q4d_bridge.transfer.bandwidth import Bandwidth
from q4d_bridge.transfer.engines.base import Engine
from q4d_bridge.transfer.engines.lftp import LftpEngine
from q4d_bridge.transfer.engines.sftp import SftpEngine
from q4d_bridge.transfer.payload import RemoteEntry
from q4d_bridge.transfer.pipeline import Job, run_transfer
from q4d_bridge.transfer.remote import SeedboxSession

from tests.helpers.configs import bridge_config


def rsync_available() -> bool:
    """The rsync engine is new; the benchmark runs with or without it."""
    try:
        importlib.import_module("q4d_bridge.transfer.engines.rsync")
    except ImportError:
        return False
    return True


def build_config(args: argparse.Namespace) -> Config:
    raw = bridge_config(
        args.work / "data", args.work / "library", key=args.key, known_hosts=args.known_hosts,
        ssh_port=args.port, user=args.user,
    )  # fmt: skip
    raw["seedboxes"][0]["host"] = args.host
    raw["transfers"]["min_free_space"] = 0
    for option in args.option:
        key, _, value = option.partition("=")
        section, _, name = key.partition(".")
        if not name or not value:
            raise SystemExit(f"--option wants section.key=value, got {option!r}")
        raw["transfers"].setdefault(section, {})[name] = yaml.safe_load(value)
    return parse_config(raw)


def build_engine(name: str, config: Config) -> Engine:
    transfers = config.transfers
    if name == "lftp":
        return LftpEngine(
            transfers.lftp, config.data_dir / "scratch", bandwidth=Bandwidth(0),
            slots=lambda: 1, nice=0,
        )  # fmt: skip
    if name == "sftp":
        return SftpEngine(transfers.sftp, Bandwidth(0))
    rsync: Any = importlib.import_module("q4d_bridge.transfer.engines.rsync")
    engine: Engine = rsync.RsyncEngine(
        transfers.rsync, bandwidth=Bandwidth(0), slots=lambda: 1, nice=0
    )
    return engine


async def transfer(args: argparse.Namespace) -> dict[str, Any]:
    config = build_config(args)
    seedbox = next(iter(config.seedboxes.values()))
    engine = build_engine(args.engine, config)
    session = SeedboxSession(seedbox)
    final = args.dest / Path(args.remote).name
    if args.warm:
        # The bridge's steady state: its SSH link to the seedbox and the engine's pooled
        # connections are open before a completion arrives (keep_connected + pool), and
        # the SFTP engine has moved a payload from this seedbox before, so it starts
        # with the connections and reads in flight it learned (sftp_adapt.py).
        await session.inspect_payload(str(Path(args.remote).parent), ())
        if isinstance(engine, SftpEngine):
            scratch = args.work / "warm-up"
            earlier = Job("wan-warm-up", seedbox, args.remote, scratch, scratch / "payload")
            await run_transfer(earlier, session=session, engine=engine, reporter=Unheard())
            shutil.rmtree(scratch)
        engine.warm(seedbox)
        if isinstance(engine, SftpEngine):
            await engine.wait_warm(seedbox)
    reporter = Unheard()
    started = reporter.started
    try:
        job = Job(f"wan-{args.engine}", seedbox, args.remote, args.dest, final)
        landed = await run_transfer(job, session=session, engine=engine, reporter=reporter)
        seconds = time.monotonic() - started
    finally:
        await session.close()
        if isinstance(engine, SftpEngine):
            await engine.close()
    result = {
        "engine": args.engine,
        "warm": args.warm,
        "seconds": seconds,
        "bytes": landed.size,
        "path": str(final),
        "phases_began_s": reporter.phases,  # e.g. when the listing ended and fetching began
    }
    # What an adaptive engine chose for this link (connections, request window, the
    # loss and RTT it saw), when it records it; engines without it print nothing extra.
    adaptation = getattr(engine, "last_adaptation", None)
    if adaptation is not None:
        result["adaptation"] = adaptation
    return result


class Unheard:
    """A reporter nobody listens to but for when each phase began: the benchmark times
    the whole attempt, and says where the time went."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}

    def phase(self, state: ItemState, remote: RemoteEntry) -> None:
        self.phases.setdefault(state.value, round(time.monotonic() - self.started, 3))

    def progress(self, done: int) -> None:
        pass

    def heartbeat(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, choices=["lftp", "sftp", "rsync"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--known-hosts", type=Path, required=True)
    parser.add_argument("--remote", required=True, help="payload path on the seedbox")
    parser.add_argument("--dest", type=Path, required=True, help="empty destination root")
    parser.add_argument("--work", type=Path, required=True, help="data/scratch directory")
    parser.add_argument("--option", action="append", default=[], help="section.key=value")
    parser.add_argument("--warm", action="store_true", help="connect before timing")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(transfer(args)), default=str))


if __name__ == "__main__":
    main()
