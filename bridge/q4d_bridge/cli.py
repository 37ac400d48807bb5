"""`q4d-bridge run | check-config | check | status | add | clients | route | tracker-rule |
cleanup | config | addon-run`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import __version__, cli_check, cli_cleanup, cli_config, cli_dispatch, cli_route, cli_tracker
from .addon import run as addon_run
from .config.loader import ConfigError
from .config.model import Config
from .config.source import ConfigSource

DEFAULT_CONFIG = "/etc/q4d/bridge.yaml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
OPEN_FILES_CAP = 1 << 16


def _source(path: str) -> tuple[ConfigSource, Config] | None:
    """The file with the environment over it, and the runtime layer from the store: what
    the bridge runs (every command reads the configuration this one way)."""
    try:
        source = ConfigSource.read(Path(path))
        return source, source.load()
    except ConfigError as err:
        print(f"q4d-bridge: invalid configuration in {path}:", file=sys.stderr)
        for line in err.errors:
            print(f"  - {line}", file=sys.stderr)
        return None


def _load(path: str) -> Config | None:
    loaded = _source(path)
    return None if loaded is None else loaded[1]


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    # A configuration from the environment alone has no file to name.
    origin = args.config if Path(args.config).exists() else "the environment"
    print(
        f"{origin}: OK (bridge {config.bridge_id!r}, {len(config.seedboxes)} seedbox(es), "
        f"{len(config.routing.destinations)} destination(s), {len(config.routing.rules)} rule(s))"
    )
    # A valid start, not a mistake: an install configured from Home Assistant begins so.
    if not config.seedboxes:
        print("note: no seedbox yet: add one from Home Assistant")
    if not config.routing.destinations:
        print(
            "note: no destination yet: completions are rejected (no_destination) until one is added"
        )
    return 0


def raise_open_file_limit() -> None:
    """The soft limit up to the hard one, as many servers do: each SFTP connection
    keeps files open ahead of its reads, a transfer may use 24 connections, and the
    usual soft limit of 1024 is a relic of select(), which asyncio does not use."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_CAP if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_CAP)
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # the kernel's nr_open is lower
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def cmd_run(args: argparse.Namespace) -> int:
    # Logging first, so what loading the config warns about is formatted like the rest.
    level = "DEBUG" if args.debug else args.log_level
    logging.basicConfig(
        level=level or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    loaded = _source(args.config)
    if loaded is None:
        return 1
    source, config = loaded
    logging.getLogger().setLevel(level or config.log_level)  # the command line wins
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    from .bridge import Bridge  # noqa: PLC0415 - keeps check-config free of network imports
    from .datadir import DataDirBusy  # noqa: PLC0415 - as above

    raise_open_file_limit()

    async def main() -> int:
        bridge = Bridge(config, source=source)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bridge.stop)
        try:
            await bridge.run()
        except DataDirBusy as err:
            print(f"q4d-bridge: {err}", file=sys.stderr)
            return 1
        return 1 if bridge.failed else 0

    return asyncio.run(main())


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _bar(progress: float, width: int) -> str:
    filled = round(width * progress / 100)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    from .persistence.store import Store  # noqa: PLC0415

    db_path = config.data_dir / "q4d.sqlite3"
    if not db_path.exists():
        print(f"no queue yet ({db_path} does not exist)")
        return 0
    try:
        db = Store.open_readonly(db_path)
        rows = db.execute(
            "SELECT id, seedbox, name, state, size, bytes_done, paused, attempts, last_error, "
            "error_code FROM items ORDER BY received_at DESC LIMIT ?",
            (args.limit,),
        ).fetchall()
        paused = db.execute("SELECT value FROM settings WHERE key = 'paused'").fetchone()
    except sqlite3.Error as err:
        print(f"cannot read {db_path}: {err}", file=sys.stderr)
        return 1
    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size((100, 20)).columns
    queue_state = "PAUSED" if paused and paused[0] == "true" else "running"
    print(f"q4d bridge {config.bridge_id} — queue {queue_state}")
    for row in rows:
        size = row["size"] or 0
        progress = (
            100.0 if row["state"] == "done" else (100 * row["bytes_done"] / size if size else 0.0)
        )
        flag = " (paused)" if row["paused"] else ""
        line = f"{row['id']}  {row['state']:<12}{flag} {row['seedbox']:<10} {_human(size):>10}  "
        if tty:
            line += _bar(progress, 20) + f" {progress:5.1f}%  "
        else:
            line += f"{progress:5.1f}%  "
        name_room = max(10, width - len(line) - 1) if tty else None
        name = row["name"] if name_room is None else row["name"][:name_room]
        print(line + name)
        if row["last_error"] and row["state"] in ("failed", "waiting"):
            print(f"{'':18}{row['error_code']}: {row['last_error']}")
    if not rows:
        print("(queue is empty)")
    return 0


def _remote(
    command: Callable[[Config, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        config = _load(args.config)
        return 1 if config is None else command(config, args)

    return run


def _with_source(
    command: Callable[[ConfigSource, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            source = ConfigSource.read(Path(args.config))
        except ConfigError as err:
            print(f"q4d-bridge: invalid configuration in {args.config}:", file=sys.stderr)
            for line in err.errors:
                print(f"  - {line}", file=sys.stderr)
            return 1
        return command(source, args)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="q4d-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    default = os.environ.get("Q4D_CONFIG", DEFAULT_CONFIG)
    for name, helptext in (
        ("run", "run the bridge"),
        ("check-config", "validate the configuration file and exit 0/1"),
        ("status", "show the queue"),
        ("add", "add a torrent: the running bridge picks the seedbox (docs/dispatch.md)"),
        ("clients", "the seedboxes' torrent clients: reachability, scores, reasons"),
        (
            "check",
            "check --permissions: can the bridge write, rename and chown in each destination",
        ),
        ("route", "route --dry-run: which rule, destination and steps a completion would get"),
        ("tracker-rule", "add, list or remove the running bridge's tracker rules"),
        ("cleanup", "the seedbox torrents whose clean-up goal is reached (--now: remove them)"),
        (
            "config",
            "config export: the effective configuration as YAML, secrets redacted; "
            "config remove SECTION ID: an entry set from Home Assistant, bridge stopped",
        ),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--config", "-c", default=default, help=f"config file (default {default})")
        if name == "run":
            p.add_argument(
                "--log-level",
                type=str.upper,
                choices=LOG_LEVELS,
                help="log verbosity, over the config's log_level",
            )
            p.add_argument("--debug", action="store_true", help="the same as --log-level DEBUG")
        if name == "status":
            p.add_argument("--limit", type=int, default=50)
        if name == "add":
            p.add_argument("torrent", help="a magnet link, a .torrent file or its http(s) URL")
            p.add_argument("--category")
            p.add_argument("--seedbox", help="this seedbox's client, not the best scoring one")
            p.add_argument("--paused", action="store_true", help="add it paused")
            p.add_argument("--dry-run", action="store_true", help="only say where it would go")
        if name == "check":
            p.add_argument("--permissions", action="store_true", required=True)
        if name == "route":
            cli_route.add_arguments(p)
        if name == "tracker-rule":
            cli_tracker.add_arguments(p)
        if name == "cleanup":
            cli_cleanup.add_arguments(p)
        if name == "config":
            cli_config.add_arguments(p)
    addon_run.add_parser(sub)
    args = parser.parse_args(argv)
    handler = {
        "run": cmd_run,
        "check-config": cmd_check_config,
        "status": cmd_status,
        "add": _remote(cli_dispatch.add),
        "clients": _remote(cli_dispatch.clients),
        "check": _remote(lambda config, _args: cli_check.check_permissions(config)),
        "route": _remote(cli_route.route),
        "tracker-rule": _remote(cli_tracker.tracker_rule),
        "cleanup": _remote(cli_cleanup.cleanup),
        "config": _with_source(cli_config.config_command),
        "addon-run": addon_run.command,
    }[args.command]
    started = time.monotonic()
    code = handler(args)
    logging.getLogger(__name__).debug(
        "%s finished in %.2fs", args.command, time.monotonic() - started
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
