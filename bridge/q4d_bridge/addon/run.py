"""`q4d-bridge addon-run`, the add-on image's entry point: read /data/options.json, ask
the Supervisor for the MQTT broker, write the bridge configuration and its secret files
under /data, check it, then become `q4d-bridge run` (exec: the init's SIGTERM reaches
the bridge itself, which then says `offline`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..config.loader import ConfigError
from ..config.model import Config
from ..config.source import ConfigSource
from . import DEFAULT_URL, TOKEN_ENV, TOKEN_ENVS, URL_ENV, AddonError
from .options import Plan, build, parse
from .supervisor import MqttService, mqtt_service

DEFAULT_OPTIONS = "/data/options.json"
DEFAULT_DATA = "/data"
CONFIG_NAME = "bridge.yaml"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "addon-run",
        help="Home Assistant add-on: options and the Supervisor's MQTT service to a "
        "bridge configuration, then run the bridge",
    )
    p.add_argument("--options", default=DEFAULT_OPTIONS, help="the add-on's options.json")
    p.add_argument("--data", default=DEFAULT_DATA, help="the add-on's persistent folder")
    p.add_argument(
        "--write-only", action="store_true", help="write and check the configuration, then exit"
    )
    p.add_argument(
        "--supervisor-wait",
        type=float,
        default=30.0,
        help="seconds to wait for the Supervisor and the broker add-on (default 30)",
    )


def _read_options(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise AddonError([f"{path}: cannot read the add-on's options: {err.strerror}"]) from None
    except ValueError as err:
        raise AddonError([f"{path}: not valid JSON: {err}"]) from None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _write(plan: Plan, data: Path) -> Path:
    # Written afresh each start: a seedbox or password removed from the options goes too.
    for folder in (data / "ssh", data / "secrets"):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700, parents=True)
    for path, text in plan.files.items():
        _write_private(path, text)
    config_path = data / CONFIG_NAME
    config_path.unlink(missing_ok=True)
    _write_private(config_path, yaml.safe_dump(plan.config, sort_keys=False))
    return config_path


def _summary(config: Config, mqtt: MqttService | None, config_path: Path) -> str:
    broker = config.broker
    login = f" as {broker.username!r}" if broker.username else ""
    source = "the Supervisor's MQTT service" if mqtt else "the mqtt_host option"
    seedboxes = ", ".join(
        f"{sb.id} ({sb.user}@{sb.host}:{sb.port}, {sb.engine})" for sb in config.seedboxes.values()
    )
    destinations = ", ".join(f"{n} → {p}" for n, p in config.routing.destinations.items())
    # none at all is a valid start: they are then added from Home Assistant
    from_ha = "none yet (add them from Home Assistant)"
    seedboxes, destinations = seedboxes or from_ha, destinations or from_ha
    return (
        f"q4d add-on: bridge {config.bridge_id!r}, found by Home Assistant on "
        f"{broker.topic_prefix}/bridge/{config.bridge_id}/status\n"
        f"  MQTT {broker.host}:{broker.port}{login} ({source})\n"
        f"  seedboxes: {seedboxes}\n"
        f"  destinations: {destinations}\n"
        f"  configuration: {config_path}"
    )


def prepare(
    options_path: Path, data: Path, environ: Mapping[str, str], *, wait: float = 30.0
) -> Path:
    """Write the bridge configuration for the options and check it as `run` will."""
    options = parse(_read_options(options_path))
    mqtt = None
    if "mqtt_host" not in options:
        url = environ.get(URL_ENV, DEFAULT_URL)
        mqtt = asyncio.run(mqtt_service(url, environ.get(TOKEN_ENV, ""), wait=wait))
    config_path = _write(build(options, mqtt, data), data)
    try:
        config = ConfigSource.read(config_path, environ).load()  # as `run` will
    except ConfigError as err:
        raise AddonError(
            [f"{line} (in {config_path}, made from the options)" for line in err.errors]
        ) from None
    print(_summary(config, mqtt, config_path), flush=True)
    return config_path


def command(args: argparse.Namespace) -> int:
    try:
        config_path = prepare(
            Path(args.options), Path(args.data), os.environ, wait=args.supervisor_wait
        )
    except AddonError as err:
        print("q4d-bridge add-on: cannot start:", file=sys.stderr)
        for line in err.errors:
            print(f"  - {line}", file=sys.stderr)
        return 1
    if args.write_only:
        return 0
    # The bridge and its lftp/ssh children have no use for the Supervisor's token.
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_ENVS}
    argv = [sys.executable, "-m", "q4d_bridge.cli", "run", "--config", str(config_path)]
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # noqa: S606 - an argv list, no shell
    raise AssertionError("unreachable")  # pragma: no cover - execve does not return
