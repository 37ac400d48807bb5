"""The extract step: the payload's RAR, zip and 7z archives (multi-volume too) unpacked
beside them or into a subfolder, their CRCs checked by the extractor, archives found
inside them unpacked once more.

Crash-safe: everything is unpacked into one private folder inside the payload's folder
(or beside a single-file payload), so on the library's filesystem. Once all of it is
verified and checked, a manifest is written there and only then are the results renamed
into place; a rerun without the manifest discards the folder and starts again, with it
finishes the moves. The payload is never written, and its archives are deleted (when
the plan says so) only after everything they held is in place.

Tools, Debian's, run through argv: lsar lists every archive first (encryption, member
names); unar extracts RAR (Debian's 7zz has no RAR codec) and 7zz zip and 7z (7-Zip's own
implementation: unar 1.10 fails the ARM64 filter 7-Zip 23+ writes). Both check the
members' CRCs and exit non-zero on a mismatch."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import filecmp
import json
import os
import re
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..transfer.engines.process import launcher
from ..transfer.landing import remove
from .archives import WORK_PREFIX, ArchiveSet, discover, escapes, read_listing, regular_files
from .base import Landed, StepError
from .plan import ExtractPlan, Ownership

OUTPUT_LIMIT = 64 * 1024  # the tail of a tool's output kept for its error message
LISTING_LIMIT = 16 * 1024 * 1024  # lsar's JSON listing, ~500 bytes a member
MANIFEST = "done.json"
PACKAGES = {"unar": "unar", "lsar": "unar", "7zz": "7zip"}
_PASSWORD = re.compile(r"requires a password|wrong password", re.I)
_NO_SPACE = re.compile(r"no space left|disk quota", re.I)
_FULL = (errno.ENOSPC, errno.EDQUOT)  # retried: space may be freed
# The tools' own error lines first (7zz: "ERROR: CRC Failed : x"; unar: "x... Failed!
# (Wrong checksum)"), then anything that sounds like one.
_REASONS = (
    re.compile(r"^ERROR|Failed!|requires a password"),
    re.compile(r"error|failed|cannot|can't|unsupported|corrupt|missing", re.I),
)

# Gives a new file or folder the landed payload's modes and owner (its plan's).
Fix = Callable[[Path, Ownership], None]


@dataclass(frozen=True, slots=True)
class _Output:
    returncode: int
    stdout: bytes
    text: str  # stdout and stderr tails, for messages
    stderr: str
    overflow: bool  # stdout was longer than its limit


class Extract:
    """The `extract` step (postprocess.base.Step). `fix` is given every file and folder
    that will be moved into the library (the landed payload's modes and owner)."""

    name = "extract"

    def __init__(
        self, *, unar: str = "unar", lsar: str = "lsar", sevenzip: str = "7zz",
        fix: Fix | None = None,
    ) -> None:  # fmt: skip
        self._unar, self._lsar, self._sevenzip, self._fix = unar, lsar, sevenzip, fix

    async def run(self, landed: Landed) -> str:
        plan = landed.plan.extract or ExtractPlan()
        path = landed.path.absolute()
        if not path.exists():
            raise StepError(f"{landed.name}: nothing at {path}")
        base = path if path.is_dir() and not path.is_symlink() else path.parent
        work = base / f"{WORK_PREFIX}{landed.item_id}"
        try:
            manifest = await self._unpacked(path, base, work, plan, landed.plan.ownership)
            if manifest is None:
                return "no archives"
            await asyncio.to_thread(self._place, manifest, base, work, plan.keep_archives)
        except StepError:
            remove(work)  # unpacking failed, or a conflict found before any move
            raise
        except OSError as err:
            remove(work)
            # The runner puts the step's name before the message (lifecycle/post.py).
            raise StepError(str(err), transient=err.errno in _FULL) from err
        labels, files = manifest["labels"], manifest["files"]
        return (
            f"{files} file{'s' * (files != 1)} from {len(labels)} "
            f"archive{'s' * (len(labels) != 1)} ({', '.join(labels)})"
        )

    async def _unpacked(
        self, path: Path, base: Path, work: Path, plan: ExtractPlan, ownership: Ownership
    ) -> dict[str, Any] | None:
        """An earlier run's manifest (it got as far as the moves), or a new one; None:
        no archives. A killed run's folder without one is discarded."""
        if (manifest := await asyncio.to_thread(_read_manifest, work)) is not None:
            return manifest
        await asyncio.to_thread(remove, work)
        found = await asyncio.to_thread(discover, path)
        _check_complete(found.sets, found.orphans, base)
        if not found.sets:
            return None
        try:
            return await self._unpack_all(found.sets, base, work, plan, ownership)
        except asyncio.CancelledError:
            remove(work)  # only the step's own folder: the payload stays as it was
            raise

    async def _unpack_all(
        self,
        sets: tuple[ArchiveSet, ...],
        base: Path,
        work: Path,
        plan: ExtractPlan,
        ownership: Ownership,
    ) -> dict[str, Any]:
        """Unpack every set (and what is nested in it) into work/out, which mirrors the
        payload's folder, then write the manifest: from here on only moves remain."""
        work.mkdir(mode=0o700)  # private: nobody reads a half-unpacked file
        out = work / "out"
        labels = []
        for index, archive in enumerate(sets):
            unpacked = work / str(index)
            await self._unpack(archive, unpacked, str(archive.first.relative_to(base)))
            labels.append(archive.label)
            nested = await asyncio.to_thread(discover, unpacked)
            _check_complete(nested.sets, nested.orphans, unpacked)
            for inner_index, inner in enumerate(nested.sets):
                inner_out = work / f"{index}.{inner_index}"
                shown = f"{archive.first.name}: {inner.first.relative_to(unpacked)}"
                await self._unpack(inner, inner_out, shown)
                await asyncio.to_thread(_merge, inner_out, inner.first.parent)
                for volume in inner.volumes:  # unpacked copies, not the payload's
                    volume.unlink()
                labels.append(f"{inner.label} inside")
            rel = archive.first.parent.relative_to(base)
            target = out / plan.subfolder / rel if plan.subfolder else out / rel
            await asyncio.to_thread(_merge, unpacked, target)
        if self._fix:
            await asyncio.to_thread(_fix_tree, out, self._fix, ownership)
        manifest = {
            "labels": labels,
            "files": await asyncio.to_thread(regular_files, out),
            "volumes": [str(v.relative_to(base)) for s in sets for v in s.volumes],
        }
        temporary = work / f"{MANIFEST}.tmp"
        temporary.write_text(json.dumps(manifest))
        temporary.replace(work / MANIFEST)
        return manifest

    async def _unpack(self, archive: ArchiveSet, out: Path, shown: str) -> None:
        """List, extract (CRCs checked by the tool) and check one archive into `out`."""
        lsar = _tool(self._lsar)
        listing = await _run([lsar, "-j", "--", str(archive.first)], LISTING_LIMIT)
        # lsar's exit 2: a password is needed (its JSON on stdout names "Encrypted" keys)
        if listing.returncode == 2 or _PASSWORD.search(listing.stderr):
            raise _password(shown)
        if listing.returncode != 0 or listing.overflow:
            why = "listing too long" if listing.overflow else _reason(listing.text, archive.first)
            raise StepError(f"{shown}: not a readable {archive.kind} archive: {why}")
        try:
            members = read_listing(listing.stdout.decode("utf-8", "replace"))
        except (ValueError, AttributeError) as err:
            raise StepError(f"{shown}: unreadable listing from lsar: {err}") from err
        if members.encrypted:
            raise _password(shown)
        if members.unsafe:
            names = ", ".join(members.unsafe[:3])
            raise StepError(f"{shown}: refused, members would land outside the target: {names}")
        out.mkdir()
        if archive.kind == "RAR":
            argv = [_tool(self._unar), "-D", "-nr", "-k", "skip", "-o", str(out)]
        else:  # an empty password (-p) so that 7zz never asks for one
            argv = [_tool(self._sevenzip), "x", "-y", "-bd", "-p", f"-o{out}"]
        done = await _run([*argv, "--", str(archive.first)], OUTPUT_LIMIT)
        if done.returncode != 0:
            if _PASSWORD.search(done.text):
                raise _password(shown)
            why = _reason(done.text, archive.first, out)
            raise StepError(
                f"{shown}: extraction failed ({archive.label}): {why}",
                transient=bool(_NO_SPACE.search(done.text)),
            )
        if bad := await asyncio.to_thread(escapes, out):
            raise StepError(f"{shown}: refused, links out of the target: {', '.join(bad[:3])}")

    def _place(self, manifest: dict[str, Any], base: Path, work: Path, keep: bool) -> None:
        """Move what was unpacked into place (again after a crash: what moved already is
        no longer in work/out), then delete the archives if asked, then the folder."""
        out = work / "out"
        if out.exists():
            _merge(out, base)
        if not keep:
            for volume in manifest["volumes"]:
                with contextlib.suppress(FileNotFoundError):
                    (base / volume).unlink()
        remove(out)  # before the manifest: until it goes, a rerun resumes here
        remove(work)


def _check_complete(sets: tuple[ArchiveSet, ...], orphans: tuple[Path, ...], base: Path) -> None:
    if orphans:
        names = ", ".join(str(p.relative_to(base)) for p in orphans[:3])
        raise StepError(f"volumes without their first volume: {names}")
    for archive in sets:
        if archive.missing:
            shown = archive.first.relative_to(base)
            raise StepError(f"{shown}: volumes missing: {', '.join(archive.missing[:5])}")


def _password(shown: str) -> StepError:
    return StepError(f"{shown}: password-protected; q4d has no password to give it")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        package = PACKAGES.get(Path(name).name, Path(name).name)
        raise StepError(f"{name} not found (Debian package {package})")
    return found


def _reason(text: str, *paths: Path) -> str:
    """The tool's complaint, without the lines that only echo our paths (a payload's
    name may hold any word)."""
    echoes = [str(path) for path in paths]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not any(echo in line for echo in echoes)]  # fmt: skip
    for pattern in _REASONS:
        if picked := [line for line in lines if pattern.search(line)]:
            return "; ".join(picked[:3])[:400]
    return lines[-1][:400] if lines else "no output"


async def _tail(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, bool]:
    kept, overflow = b"", False
    while stream is not None and (chunk := await stream.read(65536)):
        kept += chunk
        if len(kept) > limit:
            kept, overflow = kept[-limit:], True
    return kept, overflow


async def _run(argv: list[str], limit: int) -> _Output:
    """Run a tool without a shell and wait for it. Cancelling kills its process group;
    launcher's death signal kills it if the bridge itself is killed."""
    proc = await asyncio.create_subprocess_exec(
        *launcher(0), *argv,
        stdin=asyncio.subprocess.DEVNULL,  # never a password prompt
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        (stdout, overflow), (stderr, _) = await asyncio.gather(
            _tail(proc.stdout, limit), _tail(proc.stderr, OUTPUT_LIMIT)
        )
        await proc.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    text = (stdout[-OUTPUT_LIMIT:] + b"\n" + stderr).decode("utf-8", "replace")
    return _Output(proc.returncode or 0, stdout, text, stderr.decode("utf-8", "replace"), overflow)


def _read_manifest(work: Path) -> dict[str, Any] | None:
    """An earlier run's manifest: that run got as far as the moves."""
    try:
        data: dict[str, Any] = json.loads((work / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data


def _merge(src: Path, dst: Path) -> None:
    """Move src's content into dst. Folders merge; a file already there with the same
    bytes is left (a rerun after everything moved); a different one is a conflict,
    found before anything moves."""
    moves: list[tuple[Path, Path]] = []
    _plan_moves(src, dst, moves)
    dst.mkdir(parents=True, exist_ok=True)
    for source, target in moves:
        source.rename(target)


def _plan_moves(src: Path, dst: Path, moves: list[tuple[Path, Path]]) -> None:
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if not target.exists() and not target.is_symlink():
            moves.append((entry, target))
        elif _real_dir(entry) and _real_dir(target):
            _plan_moves(entry, target, moves)
        elif not (_real_file(entry) and _real_file(target) and _same(entry, target)):
            raise StepError(f"{target}: already there and different from the archive's")


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _real_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _same(a: Path, b: Path) -> bool:
    return filecmp.cmp(a, b, shallow=False)


def _fix_tree(root: Path, fix: Fix, ownership: Ownership) -> None:
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            if not (path := Path(dirpath, name)).is_symlink():
                fix(path, ownership)
