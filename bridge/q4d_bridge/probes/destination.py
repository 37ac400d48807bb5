"""A destination tried for real, as landing uses it: its folder made if missing, a file
created, written, synced and renamed in a probe folder, given to each owner and group
the destination's plan and rules ask for, and its free space read. Everything made is
removed, the missing folders too. `check --permissions` prints the same trial."""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol

from ..config.model import Config
from ..config.post import destination
from .base import ProbeError, configured, invalid, reference, schema_lines

PROBE_PREFIX = ".q4d-check-"


@dataclass(frozen=True, slots=True)
class Account:
    """An owner and group as a rule or destination plan asks for them (None: keep)."""

    owner: str | int | None
    group: str | int | None

    def __str__(self) -> str:
        return (
            f"{'' if self.owner is None else self.owner}:{'' if self.group is None else self.group}"
        )


def accounts(config: Config, name: str) -> list[Account]:
    """Every owner:group the destination's plan and the rules sending there ask for."""
    routing = config.routing
    plans = [routing.plans.get(name)]
    plans += [r.post for r in routing.rules if r.destination == name and not r.ignore]
    found = {
        Account(p.ownership.owner, p.ownership.group)
        for p in plans
        if p is not None and (p.ownership.owner is not None or p.ownership.group is not None)
    }
    return sorted(found, key=str)


@dataclass(slots=True)
class Trial:
    """What trying a destination found. `problems` are (code, message): `missing`,
    `not_writable` (both stop the trial) and `chown_failed`."""

    root: Path
    existed: bool
    done: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    free: int | None = None
    space_error: str | None = None

    @property
    def stopped(self) -> bool:
        return any(code != "chown_failed" for code, _ in self.problems)


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


def try_destination(root: Path, wanted: Sequence[Account]) -> Trial:
    """The trial of one destination (blocking file system calls: run it in a thread).
    The probe folder, and the folders made for it, are always removed."""
    created = _created_parents(root)
    trial = Trial(root, existed=not created)
    probe = root / f"{PROBE_PREFIX}{secrets.token_hex(4)}"
    try:
        try:
            probe.mkdir(parents=True)
        except OSError as err:
            trial.problems.append(
                (
                    "not_writable" if trial.existed else "missing",
                    f"cannot create a folder in {root} ({_why(err)}): "
                    "give the bridge's user write access to it (or its parent)",
                )
            )
            return trial
        trial.done.append("create")
        staged, landed = probe / "staged", probe / "landed"
        steps = (
            ("write", lambda: _write_synced(staged)),
            ("rename", lambda: staged.rename(landed)),
        )
        for step, act in steps:
            try:
                act()
            except OSError as err:
                trial.problems.append(
                    ("not_writable", f"cannot {step} a file in {root} ({_why(err)})")
                )
                return trial
            trial.done.append(step)
        for account in wanted:
            problem = _chown(landed, account)
            if problem is None:
                trial.done.append(f"chown {account}")
            else:
                trial.problems.append(("chown_failed", problem))
        try:
            trial.free = shutil.disk_usage(root).free
        except OSError as err:
            trial.space_error = f"cannot read the free space of {root} ({_why(err)})"
        return trial
    finally:
        shutil.rmtree(probe, ignore_errors=True)
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break  # something else was put there meanwhile: leave it


def _write_synced(path: Path) -> None:
    """A small file, on disk before the rename, as a landed payload is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"q4d")
        os.fsync(fd)
    finally:
        os.close(fd)


def _uid(owner: str | int | None) -> int:
    if owner is None:
        return -1
    return owner if isinstance(owner, int) else pwd.getpwnam(owner).pw_uid


def _gid(group: str | int | None) -> int:
    if group is None:
        return -1
    return group if isinstance(group, int) else grp.getgrnam(group).gr_gid


def _chown(path: Path, account: Account) -> str | None:
    try:
        uid, gid = _uid(account.owner), _gid(account.group)
    except KeyError:
        return f"no such user or group {account} on this host: use numeric ids"
    try:
        os.chown(path, uid, gid)
    except OSError as err:
        hint = "run the bridge as root or drop owner:"
        if err.errno == errno.EPERM and account.owner is None:
            hint = "make the bridge's user a member of that group, or drop group:"
        return f"cannot chown to {account} ({_why(err)}): {hint}"
    return None


@dataclass(frozen=True, slots=True)
class DestinationTarget:
    root: Path
    accounts: list[Account]


def destination_target(value: Any, config: Config) -> DestinationTarget:
    """The destination a `config_test` value gives (a folder, or a mapping with `path`
    and post-processing keys, as `config_set` takes it) or names (`{"id": ...}`)."""
    if isinstance(value, dict) and (ident := reference(value)) is not None:
        root = configured(ident, config.routing.destinations, "destination")
        return DestinationTarget(root, accounts(config, ident))
    try:
        # a bare folder checked as its mapping's `path`, so a refusal names that field
        data = destination({"path": value} if isinstance(value, str) else value)
    except vol.Invalid as err:
        raise invalid(schema_lines(err)) from None
    account = Account(data.get("owner"), data.get("group"))
    wanted = [account] if account.owner is not None or account.group is not None else []
    return DestinationTarget(Path(data["path"]), wanted)


async def probe_destination(target: DestinationTarget, min_free_space: int) -> dict[str, Any]:
    trial = await asyncio.to_thread(try_destination, target.root, target.accounts)
    found: dict[str, Any] = {
        "path": str(trial.root),
        "existed": trial.existed,
        "checks": trial.done,
    }
    if trial.problems:
        code, message = trial.problems[0]
        raise ProbeError(code, message, **found)
    return {**found, "free_space": trial.free, "min_free_space": min_free_space}
