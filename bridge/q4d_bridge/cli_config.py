"""`q4d-bridge config export`: the effective configuration — the YAML file, the
environment over it and the entries set from Home Assistant — as one YAML file, secrets
redacted (their files named, never read), to move back to a file-based install."""

from __future__ import annotations

import argparse
import sys
import time

import yaml

from .config.loader import ConfigError
from .config.runtime import REDACTED, redacted, redacted_keys
from .config.source import ConfigSource


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("export",))


def export(source: ConfigSource) -> str:
    layer = source.stored_layer()
    raw = source.merged(layer)
    runtime = sum(len(entries) for entries in layer.values())
    lines = [
        f"# q4d-bridge configuration exported {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"# from {source.path} and the environment, with {runtime} entry(ies) set from Home",
        "# Assistant. Secrets stay in the files *_file, key and known_hosts name.",
    ]
    hidden = redacted_keys(raw)
    if hidden:
        lines.append(f"# Written as {REDACTED!r}, to fill in (or use <key>_file):")
        lines += [f"#   {key}" for key in hidden]
    return "\n".join(lines) + "\n" + yaml.safe_dump(redacted(raw), sort_keys=False)


def config_command(source: ConfigSource, args: argparse.Namespace) -> int:
    del args  # one action so far: export
    try:
        source.load()  # an export that check-config would refuse helps no one
    except ConfigError as err:
        print(f"q4d-bridge: invalid configuration in {source.path}:", file=sys.stderr)
        for line in err.errors:
            print(f"  - {line}", file=sys.stderr)
        return 1
    sys.stdout.write(export(source))
    return 0
