"""`q4d-bridge check --permissions`: for every destination, what the bridge will do there
tried for real with a probe folder (create, write, rename, give to the configured owner
and group) and its free space read; one line per destination, or per problem. The trial
is the destination test's (probes/destination.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .config.model import Config
from .dispatch.scoring import human_size
from .probes.destination import accounts, try_destination


def check_destination(config: Config, name: str, root: Path) -> Iterator[tuple[bool, str]]:
    """(ok, line) for each check of one destination; the probe is always removed."""
    trial = try_destination(root, accounts(config, name))
    for _code, message in trial.problems:
        yield False, f"{name}: {message}"
    if trial.stopped:
        return
    if trial.free is None:
        yield False, f"{name}: {trial.space_error}"
        return
    least = config.transfers.min_free_space
    if trial.free < least:
        yield (
            False,
            (
                f"{name}: {human_size(trial.free)} free in {root}, below "
                f"transfers.min_free_space ({human_size(least)}): no transfer would start"
            ),
        )
        return
    # A refused chown does not stop the trial (the free space is still read), but the
    # destination is not ok: its problem line says so, and no "ok" line contradicts it.
    if not trial.problems:
        yield True, f"{name}: ok ({root}: {', '.join(trial.done)}; {human_size(trial.free)} free)"


def check_permissions(config: Config) -> int:
    """Exit 0 if every destination passed, else 1; one line per destination or problem."""
    failed = False
    for name, root in config.routing.destinations.items():
        for ok, line in check_destination(config, name, root):
            failed = failed or not ok
            print(line)
    return 1 if failed else 0
