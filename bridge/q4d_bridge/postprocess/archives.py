"""Which files of a payload are archives to extract, grouped with their volumes, and
what must be refused in them: pure logic over names, an lsar listing and a folder, no
extraction tools."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["RAR", "zip", "7z"]
WORK_PREFIX = ".q4d-extract-"  # the step's private folders, never archives' content

_RAR_PART = re.compile(r"^(?P<stem>.+)\.part(?P<num>\d{1,4})\.rar$", re.I)
# Old naming: x.rar, then x.r00 … x.r99, x.s00 … (RAR goes on through the alphabet).
_RAR_OLD = re.compile(r"^(?P<stem>.+)\.(?P<letter>[r-z])(?P<num>\d\d)$", re.I)
_RAR = re.compile(r"^(?P<stem>.+)\.rar$", re.I)
_SEVEN_SPLIT = re.compile(r"^(?P<stem>.+\.7z)\.(?P<num>\d{3})$", re.I)
_SINGLE: dict[str, Kind] = {".zip": "zip", ".7z": "7z"}


@dataclass(frozen=True, slots=True)
class ArchiveSet:
    kind: Kind
    volumes: tuple[Path, ...]  # the first volume first
    missing: tuple[str, ...] = ()  # names of volumes absent from a numbered series

    @property
    def first(self) -> Path:
        return self.volumes[0]

    @property
    def label(self) -> str:
        n = len(self.volumes)
        return self.kind if n == 1 else f"{self.kind} {n} volumes"


@dataclass(frozen=True, slots=True)
class Found:
    sets: tuple[ArchiveSet, ...]
    orphans: tuple[Path, ...]  # volumes whose first volume is not there


def discover(path: Path) -> Found:
    """The archives in a payload: a single file (never its neighbours, which belong to
    other payloads) or a folder, recursively, symlinks and the step's folders skipped."""
    if path.is_symlink():
        return Found((), ())
    if not path.is_dir():
        return group(path.parent, [path.name]) if _is_first_alone(path.name) else Found((), ())
    sets: list[ArchiveSet] = []
    orphans: list[Path] = []
    for dirpath, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(WORK_PREFIX))
        here = Path(dirpath)
        found = group(here, [f for f in files if not (here / f).is_symlink()])
        sets += found.sets
        orphans += found.orphans
    return Found(tuple(sets), tuple(orphans))


def _is_first_alone(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".zip", ".7z", ".7z.001", ".rar"))


def group(folder: Path, names: Iterable[str]) -> Found:
    """Group the files of one folder into archive sets by their names."""
    names = sorted(names)
    old_stems = {m["stem"] for n in names if (m := _RAR_OLD.match(n))}
    parts: dict[str, dict[int, str]] = {}
    old: dict[str, dict[tuple[str, int], str]] = {}
    sevens: dict[str, dict[int, str]] = {}
    sets: list[ArchiveSet] = []
    for name in names:
        # x.part1.rar beside x.part1.r00 is the old naming of an archive named x.part1
        if (m := _RAR_PART.match(name)) and name[:-4] not in old_stems:
            parts.setdefault(m["stem"], {})[int(m["num"])] = name
        elif m := _RAR.match(name):
            old.setdefault(m["stem"], {})[("", -1)] = name
        elif m := _RAR_OLD.match(name):
            old.setdefault(m["stem"], {})[(m["letter"].lower(), int(m["num"]))] = name
        elif m := _SEVEN_SPLIT.match(name):
            sevens.setdefault(m["stem"], {})[int(m["num"])] = name
        elif kind := _SINGLE.get(Path(name).suffix.lower()):
            sets.append(ArchiveSet(kind, (folder / name,)))
    orphans: list[Path] = []
    numbered_sets: list[tuple[Kind, dict[int, str], Callable[[str, int], str]]] = [
        *(("RAR", vols, _part_name) for vols in parts.values()),
        *(("7z", vols, lambda first, n: f"{first[:-4]}.{n:03d}") for vols in sevens.values()),
    ]
    for kind, numbered, name_of in numbered_sets:
        ordered = tuple(folder / numbered[k] for k in sorted(numbered))
        if 1 not in numbered:
            orphans += ordered
            continue
        first = numbered[1]
        missing = tuple(name_of(first, n) for n in range(2, max(numbered)) if n not in numbered)
        sets.append(ArchiveSet(kind, ordered, missing))
    for volumes in old.values():
        ordered = tuple(folder / volumes[k] for k in sorted(volumes))
        if ("", -1) not in volumes:
            orphans += ordered
            continue
        sets.append(ArchiveSet("RAR", ordered, _old_gaps(volumes)))
    return Found(tuple(sorted(sets, key=lambda s: s.first.name)), tuple(orphans))


def _part_name(first: str, n: int) -> str:
    """The n-th volume's name in the series of `first` (x.part01.rar: as many digits)."""
    m = _RAR_PART.match(first)
    assert m is not None
    return f"{m['stem']}.part{n:0{len(m['num'])}d}.rar"


def _old_gaps(volumes: dict[tuple[str, int], str]) -> tuple[str, ...]:
    """x.r03 with no x.r02: the series' names between x.r00 and the last one present."""
    last = max(volumes)
    if last == ("", -1):
        return ()
    stem = volumes[("", -1)][:-4]
    expected = [(chr(c), n) for c in range(ord("r"), ord(last[0]) + 1) for n in range(100)]
    return tuple(
        f"{stem}.{letter}{n:02d}"
        for letter, n in expected[: expected.index(last)]
        if (letter, n) not in volumes
    )


@dataclass(frozen=True, slots=True)
class Listing:
    members: int
    encrypted: bool
    unsafe: tuple[str, ...]  # names that would land outside the target


def read_listing(text: str) -> Listing:
    """lsar -j's listing: whether any member is encrypted, and names that are absolute
    or climb out with `..` (the tools rewrite those; q4d refuses the archive instead)."""
    data = json.loads(text)
    contents: list[dict[str, Any]] = data.get("lsarContents") or []
    unsafe = [
        str(entry.get("XADFileName", ""))
        for entry in contents
        if unsafe_name(str(entry.get("XADFileName", "")))
    ]
    encrypted = any(entry.get("XADIsEncrypted") for entry in contents)
    return Listing(len(contents), encrypted, tuple(unsafe))


def unsafe_name(name: str) -> bool:
    parts = re.split(r"[/\\]", name)
    return (
        name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name) is not None
    )


def escapes(root: Path) -> list[str]:
    """What an extraction left in `root` that must not reach the library: symlinks that
    are absolute or point outside `root`, and anything not a file, folder or link."""
    bad = []
    top = str(root.resolve())
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(dirpath, name)
            mode = path.lstat().st_mode
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                target = path.readlink()
                # normpath, not resolve: the link's target may not exist (yet)
                inside = os.path.normpath(Path(dirpath).resolve() / target)
                if target.is_absolute() or os.path.commonpath([top, inside]) != top:
                    bad.append(f"{rel} -> {target}")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                bad.append(f"{rel} (not a file or folder)")
    return bad


def regular_files(root: Path) -> int:
    return sum(
        1 for dirpath, _, files in os.walk(root) for f in files if Path(dirpath, f).is_file()
    )
