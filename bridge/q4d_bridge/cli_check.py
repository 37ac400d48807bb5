"""`q4d-bridge check --permissions`: for every destination, what the bridge will do there
tried for real with a probe folder (create, write, rename, give to the configured owner
and group) and its free space read; one line per destination, or per problem."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .config.model import Config
from .dispatch.scoring import human_size


@dataclass(frozen=True, slots=True)
class Account:
    """An owner and group as a rule or destination plan asks for them (None: keep)."""

    owner: str | int | None
    group: str | int | None

    def __str__(self) -> str:
        return (
            f"{'' if self.owner is None else self.owner}:{'' if self.group is None else self.group}"
        )


def accounts(config: Config, destination: str) -> list[Account]:
    """Every owner:group the destination's plan and the rules sending there ask for."""
    routing = config.routing
    plans = [routing.plans.get(destination)]
    plans += [r.post for r in routing.rules if r.destination == destination and not r.ignore]
    found = {
        Account(p.ownership.owner, p.ownership.group)
        for p in plans
        if p is not None and (p.ownership.owner is not None or p.ownership.group is not None)
    }
    return sorted(found, key=str)


def _uid(owner: str | int | None) -> int:
    if owner is None:
        return -1
    return owner if isinstance(owner, int) else pwd.getpwnam(owner).pw_uid


def _gid(group: str | int | None) -> int:
    if group is None:
        return -1
    return group if isinstance(group, int) else grp.getgrnam(group).gr_gid


def _why(err: OSError) -> str:
    return (err.strerror or type(err).__name__).lower()


def _created_parents(root: Path) -> list[Path]:
    """The folders of `root` that do not exist yet, deepest first (removed afterwards)."""
    missing = []
    for path in (root, *root.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def check_destination(config: Config, name: str, root: Path) -> Iterator[tuple[bool, str]]:
    """(ok, line) for each check of one destination; the probe is always removed."""
    created = _created_parents(root)
    probe = root / f".q4d-check-{secrets.token_hex(4)}"
    try:
        try:
            probe.mkdir(parents=True)
        except OSError as err:
            yield (
                False,
                f"{name}: cannot create a folder in {root} ({_why(err)}): "
                + ("give the bridge's user write access to it (or its parent)"),
            )
            return
        staged = probe / "staged"
        try:
            staged.write_bytes(b"q4d")
        except OSError as err:
            yield False, f"{name}: cannot write a file in {root} ({_why(err)})"
            return
        landed = probe / "landed"
        try:
            staged.rename(landed)
        except OSError as err:
            yield False, f"{name}: cannot rename a file in {root} ({_why(err)})"
            return
        done = ["create", "write", "rename"]
        for account in accounts(config, name):
            problem = _chown(name, landed, account)
            if problem is not None:
                yield False, problem
            else:
                done.append(f"chown {account}")
        yield from _space(config, name, root, done)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break  # something else was put there meanwhile: leave it


def _chown(name: str, path: Path, account: Account) -> str | None:
    try:
        uid, gid = _uid(account.owner), _gid(account.group)
    except KeyError:
        return f"{name}: no such user or group {account} on this host: use numeric ids"
    try:
        os.chown(path, uid, gid)
    except OSError as err:
        hint = "run the bridge as root or drop owner:"
        if err.errno == errno.EPERM and account.owner is None:
            hint = "make the bridge's user a member of that group, or drop group:"
        return f"{name}: cannot chown to {account} ({_why(err)}): {hint}"
    return None


def _space(config: Config, name: str, root: Path, done: list[str]) -> Iterator[tuple[bool, str]]:
    least = config.transfers.min_free_space
    try:
        free = shutil.disk_usage(root).free
    except OSError as err:
        yield False, f"{name}: cannot read the free space of {root} ({_why(err)})"
        return
    if free < least:
        yield (
            False,
            (
                f"{name}: {human_size(free)} free in {root}, below transfers.min_free_space "
                f"({human_size(least)}): no transfer would start"
            ),
        )
        return
    yield True, f"{name}: ok ({root}: {', '.join(done)}; {human_size(free)} free)"


def check_permissions(config: Config) -> int:
    """Exit 0 if every destination passed, else 1; one line per destination or problem."""
    failed = False
    for name, root in config.routing.destinations.items():
        for ok, line in check_destination(config, name, root):
            failed = failed or not ok
            print(line)
    return 1 if failed else 0
