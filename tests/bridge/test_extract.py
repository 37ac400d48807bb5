"""The extract step on real archives made here: RAR 4 (tests/helpers/rar.py, both volume
namings), zip and 7z (7zz, multi-volume too), nested, corrupt, password-protected and
hostile ones, extracted by Debian's unar and 7zz; a SIGKILL while the tool runs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import q4d_bridge
from q4d_bridge.postprocess import extract as extract_module
from q4d_bridge.postprocess.archives import (
    WORK_PREFIX,
    discover,
    escapes,
    group,
    read_listing,
    unsafe_name,
)
from q4d_bridge.postprocess.base import Landed, StepError
from q4d_bridge.postprocess.extract import Extract
from q4d_bridge.postprocess.plan import ExtractPlan, Ownership, PostPlan
from q4d_bridge.transfer.engines.process import running

from tests.helpers.rar import Member, write_rar


def data(size: int, seed: int | str) -> bytes:
    return random.Random(seed).randbytes(size)


def landed(path: Path, plan: ExtractPlan | None = None, item_id: str = "it1") -> Landed:
    return Landed(
        item_id=item_id, name=path.name, hash=None, seedbox="sb1", category=None, path=path,
        root=path.parent, plan=PostPlan(extract=plan or ExtractPlan()),
    )  # fmt: skip


def seven(cwd: Path, *args: str) -> None:
    subprocess.run(["7zz", "a", "-bd", *args], cwd=cwd, check=True, capture_output=True)


def tree(root: Path) -> dict[str, str]:
    """Every file and link under root with its content's hash (a link: its target)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            out[rel] = (
                f"-> {path.readlink()}" if path.is_symlink()
                else hashlib.sha256(path.read_bytes()).hexdigest()
            )  # fmt: skip
    return out


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


# --- discovery, pure -------------------------------------------------------------------


def test_groups_volumes_by_name() -> None:
    names = [
        "a.part01.rar", "a.part02.rar", "a.part03.rar",  # new naming, two digits
        "b.part1.rar", "b.part2.rar",  # new naming, one digit
        "c.rar", "c.r00", "c.r01", "c.R02",  # old naming, any case
        "d.part1.rar", "d.part1.r00",  # old naming of an archive named d.part1
        "e.7z.001", "e.7z.002", "f.7z", "g.zip", "movie.mkv", "h.nfo",
        "i.part2.rar", "j.r00",  # orphans: their first volumes are not here
        "k.part1.rar", "k.part3.rar", "l.rar", "l.r01",  # gaps
    ]  # fmt: skip
    found = group(Path("/p"), names)
    got = {s.first.name: ([v.name for v in s.volumes], s.kind, s.missing) for s in found.sets}
    assert got == {
        "a.part01.rar": (["a.part01.rar", "a.part02.rar", "a.part03.rar"], "RAR", ()),
        "b.part1.rar": (["b.part1.rar", "b.part2.rar"], "RAR", ()),
        "c.rar": (["c.rar", "c.r00", "c.r01", "c.R02"], "RAR", ()),
        "d.part1.rar": (["d.part1.rar", "d.part1.r00"], "RAR", ()),
        "e.7z.001": (["e.7z.001", "e.7z.002"], "7z", ()),
        "f.7z": (["f.7z"], "7z", ()),
        "g.zip": (["g.zip"], "zip", ()),
        "k.part1.rar": (["k.part1.rar", "k.part3.rar"], "RAR", ("k.part2.rar",)),
        "l.rar": (["l.rar", "l.r01"], "RAR", ("l.r00",)),
    }
    assert sorted(p.name for p in found.orphans) == ["i.part2.rar", "j.r00"]
    labels = {s.first.name: s.label for s in found.sets}
    assert labels["a.part01.rar"] == "RAR 3 volumes" and labels["g.zip"] == "zip"


def test_single_file_payload_never_takes_its_neighbours(tmp_path: Path) -> None:
    for name in ("movie.rar", "movie.r00", "other.zip"):
        (tmp_path / name).write_bytes(b"x")
    found = discover(tmp_path / "movie.rar")
    assert [[v.name for v in s.volumes] for s in found.sets] == [["movie.rar"]]
    assert discover(tmp_path / "movie.r00").sets == ()
    (tmp_path / f"{WORK_PREFIX}x").mkdir()
    (tmp_path / f"{WORK_PREFIX}x" / "left.zip").write_bytes(b"x")
    assert sorted(s.first.name for s in discover(tmp_path).sets) == ["movie.rar", "other.zip"]


def test_listing_and_names() -> None:
    listing = read_listing(json.dumps({"lsarContents": [
        {"XADFileName": "ok/a.mkv"}, {"XADFileName": "../up.txt"},
        {"XADFileName": "/etc/cron.d/x"}, {"XADFileName": "b", "XADIsEncrypted": 1},
    ]}))  # fmt: skip
    assert listing.members == 4 and listing.encrypted
    assert listing.unsafe == ("../up.txt", "/etc/cron.d/x")
    assert [unsafe_name(n) for n in ("a..b/c", "a/../b", "a\\..\\b", "C:/x", "x/")] == [
        False, True, True, True, False,
    ]  # fmt: skip


def test_links_out_of_the_target_are_found(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "in").symlink_to("../f")
    (tmp_path / "f").write_text("x")
    (tmp_path / "d" / "up").symlink_to("../../elsewhere")
    (tmp_path / "abs").symlink_to("/etc/passwd")
    os.mkfifo(tmp_path / "fifo")
    assert sorted(escapes(tmp_path)) == [
        "abs -> /etc/passwd", "d/up -> ../../elsewhere", "fifo (not a file or folder)",
    ]  # fmt: skip


# --- the RAR helper, against the real extractor ----------------------------------------


def lsar_test(first: Path) -> subprocess.CompletedProcess[str]:
    """unar's own integrity test: every member read and its CRC checked."""
    return subprocess.run(["lsar", "-t", "--", str(first)], check=False, capture_output=True,
                          text=True)  # fmt: skip


@pytest.mark.parametrize("new_naming", [True, False])
def test_rar_helper_writes_what_unar_accepts(tmp_path: Path, new_naming: bool) -> None:
    a, b = data(50_000, 1), data(30_000, 2)
    members = [Member("Show/a.mkv", a), Member("Show/sub", directory=True),
               Member("Show/sub/b.srt", b)]  # fmt: skip
    volumes = write_rar(tmp_path / "x", members, volume_size=20_000, new_naming=new_naming)
    names = [v.name for v in volumes]
    assert names == (
        ["x.part1.rar", "x.part2.rar", "x.part3.rar", "x.part4.rar"] if new_naming
        else ["x.rar", "x.r00", "x.r01", "x.r02"]
    )  # fmt: skip
    test = lsar_test(volumes[0])
    assert test.returncode == 0 and "RAR (4 volumes)" in test.stdout, test.stdout
    assert "3 passed, 0 failed" in test.stdout  # the folder counts too
    out = tmp_path / "out"
    subprocess.run(["unar", "-D", "-o", str(out), "--", str(volumes[0])], check=True,
                   capture_output=True)  # fmt: skip
    assert (out / "Show/a.mkv").read_bytes() == a and (out / "Show/sub/b.srt").read_bytes() == b
    flip(volumes[1], 3_000)  # inside the data of a's second part
    test = lsar_test(volumes[0])
    assert test.returncode != 0 and "1 failed" in test.stdout, test.stdout


# --- the step --------------------------------------------------------------------------


def mixed_payload(root: Path) -> tuple[Path, dict[str, bytes]]:
    """A payload with every kind: RAR in both namings, zip, multi-volume 7z."""
    payload = root / "Show.S01"
    want = {f"ep{n}.mkv": data(40_000 + n, n) for n in range(1, 5)}
    write_rar(payload / "ep1", [Member("ep1.mkv", want["ep1.mkv"])], volume_size=4_000)
    write_rar(payload / "CD2" / "ep2", [Member("ep2.mkv", want["ep2.mkv"])],
              volume_size=15_000, new_naming=False)  # fmt: skip
    (payload / "src").mkdir()
    (payload / "src" / "ep3.mkv").write_bytes(want["ep3.mkv"])
    (payload / "src" / "ep4.mkv").write_bytes(want["ep4.mkv"])
    seven(payload / "src", "-tzip", "../extras.zip", "ep3.mkv")
    seven(payload / "src", "-mx=0", "-v15k", "../ep4.7z", "ep4.mkv")
    for name in ("ep3.mkv", "ep4.mkv"):
        (payload / "src" / name).unlink()
    (payload / "src").rmdir()
    (payload / "Show.nfo").write_text("info")
    return payload, want


async def test_extracts_every_kind_where_the_archives_are(tmp_path: Path) -> None:
    payload, want = mixed_payload(tmp_path)
    before = tree(payload)
    detail = await Extract().run(landed(payload))
    assert detail == "4 files from 4 archives (RAR 11 volumes, 7z 3 volumes, zip, RAR 3 volumes)"
    after = tree(payload)
    assert {k: after[k] for k in before} == before  # the archives stay (keep_archives)
    assert (payload / "ep1.mkv").read_bytes() == want["ep1.mkv"]
    assert (payload / "CD2" / "ep2.mkv").read_bytes() == want["ep2.mkv"]
    assert (payload / "ep3.mkv").read_bytes() == want["ep3.mkv"]
    assert (payload / "ep4.mkv").read_bytes() == want["ep4.mkv"]
    assert set(after) - set(before) == {"ep1.mkv", "CD2/ep2.mkv", "ep3.mkv", "ep4.mkv"}
    # A rerun (a crash before the step was recorded) recognises what is there.
    assert await Extract().run(landed(payload)) == detail
    assert tree(payload) == after


async def test_subfolder_deletes_archives_and_fixes_modes(tmp_path: Path) -> None:
    payload, want = mixed_payload(tmp_path)
    fixed: list[str] = []

    def fix(path: Path, _ownership: Ownership) -> None:
        fixed.append(str(path.relative_to(next(p for p in path.parents if p.name == "out"))))
        path.chmod(0o750 if path.is_dir() else 0o640)

    plan = ExtractPlan(subfolder="unpacked/all", keep_archives=False)
    await Extract(fix=fix).run(landed(payload, plan))
    assert tree(payload) == {
        "Show.nfo": hashlib.sha256(b"info").hexdigest(),
        **{f"unpacked/all/{n}": hashlib.sha256(b).hexdigest() for n, b in want.items()
           if n != "ep2.mkv"},
        "unpacked/all/CD2/ep2.mkv": hashlib.sha256(want["ep2.mkv"]).hexdigest(),
    }  # fmt: skip
    assert sorted(fixed) == sorted([
        "unpacked", "unpacked/all", "unpacked/all/CD2", "unpacked/all/CD2/ep2.mkv",
        "unpacked/all/ep1.mkv", "unpacked/all/ep3.mkv", "unpacked/all/ep4.mkv",
    ])  # fmt: skip
    assert (payload / "unpacked").stat().st_mode & 0o777 == 0o750
    assert (payload / "unpacked/all/ep1.mkv").stat().st_mode & 0o777 == 0o640
    assert list((payload / "CD2").iterdir()) == []  # its volumes deleted


async def test_single_file_payload_unpacks_beside_it(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "movie.mkv").write_bytes(movie := data(10_000, "m"))
    seven(tmp_path / "src", "-tzip", "../movie.zip", "movie.mkv")
    (tmp_path / "src" / "movie.mkv").unlink()
    write_rar(tmp_path / "neighbour", [Member("n.mkv", b"n")])  # another payload's
    assert await Extract().run(landed(tmp_path / "movie.zip")) == "1 file from 1 archive (zip)"
    assert (tmp_path / "movie.mkv").read_bytes() == movie
    assert not (tmp_path / "n.mkv").exists()


async def test_nested_archives_are_unpacked_once(tmp_path: Path) -> None:
    payload = tmp_path / "P"
    inner = tmp_path / "inner"
    (inner / "deeper").mkdir(parents=True)
    (inner / "deeper" / "x.txt").write_text("third level")
    seven(inner, "-tzip", "../third.zip", "deeper")
    film = data(30_000, "f")
    third = Member("third.zip", (tmp_path / "third.zip").read_bytes())
    volumes = write_rar(inner / "film", [Member("film.mkv", film), third], volume_size=12_000)
    payload.mkdir()
    seven(inner, "-tzip", str(payload / "outer.zip"), *(v.name for v in volumes))
    detail = await Extract().run(landed(payload))
    assert detail == "2 files from 2 archives (zip, RAR 3 volumes inside)"
    assert sorted(tree(payload)) == ["film.mkv", "outer.zip", "third.zip"]
    assert (payload / "film.mkv").read_bytes() == film


async def step_fails(payload: Path, message: str, plan: ExtractPlan | None = None) -> None:
    """The step fails with `message`, not to be retried, and nothing of the
    destination changed (the step's own folder gone)."""
    before = tree(payload.parent)
    with pytest.raises(StepError, match=message) as failure:
        await Extract().run(landed(payload, plan))
    assert not failure.value.transient
    assert tree(payload.parent) == before
    assert not list(payload.rglob(f"{WORK_PREFIX}*"))


@pytest.mark.parametrize("kind", ["rar", "7z", "zip"])
async def test_corrupt_archive_fails_with_the_tools_reason(tmp_path: Path, kind: str) -> None:
    payload = tmp_path / "P"
    write_rar(payload / "good", [Member("good.mkv", data(5_000, 1))])
    if kind == "rar":
        volumes = write_rar(payload / "bad", [Member("b.mkv", data(50_000, 2))], volume_size=20_000)
        flip(volumes[1], 5_000)
        reason = r"bad\.part1\.rar: extraction failed \(RAR 3 volumes\): .*Wrong checksum"
    else:
        (tmp_path / "b.mkv").write_bytes(data(50_000, 2))
        seven(tmp_path, "-mx=0", *(["-tzip"] if kind == "zip" else []), f"{payload}/bad.{kind}",
              "b.mkv")  # fmt: skip
        flip(payload / f"bad.{kind}", 20_000)
        reason = rf"bad\.{kind}: extraction failed \({kind}\): ERROR: CRC Failed : b\.mkv"
    await step_fails(payload, reason, ExtractPlan(keep_archives=False))


@pytest.mark.parametrize("args", [["-tzip"], ["-mhe=on"], ["-mhe=off"]])
async def test_password_protected_archive_fails_clearly(tmp_path: Path, args: list[str]) -> None:
    payload = tmp_path / "P"
    (tmp_path / "a.mkv").write_bytes(data(5_000, 3))
    payload.mkdir()
    suffix = "zip" if "-tzip" in args else "7z"
    seven(tmp_path, "-pSecret", *args, f"{payload}/locked.{suffix}", "a.mkv")
    await step_fails(payload, rf"^locked\.{suffix}: password-protected")


async def test_encrypted_rar_member_fails_clearly(tmp_path: Path) -> None:
    payload = tmp_path / "P"
    write_rar(payload / "locked", [Member("a.mkv", b"a" * 100, encrypted=True)])
    await step_fails(payload, r"^locked\.rar: password-protected")


async def test_missing_and_orphan_volumes(tmp_path: Path) -> None:
    payload = tmp_path / "P"
    volumes = write_rar(payload / "x", [Member("a.mkv", data(50_000, 4))], volume_size=15_000)
    volumes[1].unlink()
    await step_fails(payload, r"x\.part1\.rar: volumes missing: x\.part2\.rar")
    volumes[0].unlink()
    await step_fails(payload, r"volumes without their first volume: x\.part3\.rar")


async def test_members_escaping_the_target_are_refused(tmp_path: Path) -> None:
    payload = tmp_path / "P"
    payload.mkdir()
    with zipfile.ZipFile(payload / "up.zip", "w") as archive:
        archive.writestr("ok.txt", "fine")
        archive.writestr("../../evil.txt", "no")
    await step_fails(payload, r"up\.zip: refused, members would land outside.*\.\./\.\./evil")
    (payload / "up.zip").unlink()
    with zipfile.ZipFile(payload / "link.zip", "w") as archive:
        link = zipfile.ZipInfo("passwd")
        link.create_system, link.external_attr = 3, 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
    await step_fails(payload, r"link\.zip: refused, links out of the target: passwd -> ")
    (payload / "link.zip").unlink()
    write_rar(payload / "up", [Member("../evil.txt", b"no")])
    await step_fails(payload, r"up\.rar: refused, members would land outside")


async def test_conflicting_file_is_never_replaced(tmp_path: Path) -> None:
    payload = tmp_path / "P"
    write_rar(payload / "x", [Member("a.mkv", b"from the archive")])
    (payload / "a.mkv").write_bytes(b"the payload's own")
    await step_fails(payload, r"a\.mkv: already there and different")


async def test_missing_tool_is_named(tmp_path: Path) -> None:
    write_rar(tmp_path / "P" / "x", [Member("a.mkv", b"a")])
    with pytest.raises(StepError) as missing:
        await Extract(lsar="/nonexistent/lsar").run(landed(tmp_path / "P"))
    # the runner puts `extract: ` before it (lifecycle/post.py): not the step's own job
    assert str(missing.value) == "/nonexistent/lsar not found (Debian package unar)"
    (tmp_path / "plain.mkv").write_bytes(b"p")
    leftover = tmp_path / f"{WORK_PREFIX}it1" / "0"  # a killed run's, without a manifest
    leftover.mkdir(parents=True)
    assert await Extract().run(landed(tmp_path / "plain.mkv")) == "no archives"
    assert not leftover.parent.exists()


class Crash(BaseException):
    """Stands for the process dying: nothing catches it."""


async def test_crash_between_moves_finishes_on_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload, want = mixed_payload(tmp_path)
    merge = extract_module._merge

    def merge_then_die(src: Path, dst: Path) -> None:
        if dst != payload:
            return merge(src, dst)
        moves: list[tuple[Path, Path]] = []
        extract_module._plan_moves(src, dst, moves)
        moves[0][0].rename(moves[0][1])
        raise Crash

    monkeypatch.setattr(extract_module, "_merge", merge_then_die)
    with pytest.raises(Crash):
        await Extract().run(landed(payload, ExtractPlan(keep_archives=False)))
    assert (payload / f"{WORK_PREFIX}it1" / "done.json").exists()
    monkeypatch.undo()
    # The rerun only moves and deletes: with no tools at all it must still finish.
    tools = {"unar": "/nonexistent", "lsar": "/nonexistent", "sevenzip": "/nonexistent"}
    detail = await Extract(**tools).run(landed(payload, ExtractPlan(keep_archives=False)))
    assert detail.startswith("4 files from 4 archives")
    assert sorted(tree(payload)) == ["CD2/ep2.mkv", "Show.nfo", "ep1.mkv", "ep3.mkv", "ep4.mkv"]
    assert all(tree(payload)[n] == hashlib.sha256(b).hexdigest() for n, b in want.items()
               if n != "ep2.mkv")  # fmt: skip


CHILD = """
import asyncio, sys
from pathlib import Path
from q4d_bridge.postprocess.base import Landed
from q4d_bridge.postprocess.extract import Extract
from q4d_bridge.postprocess.plan import ExtractPlan, PostPlan
path = Path(sys.argv[1])
plan = PostPlan(extract=ExtractPlan(keep_archives=False))
print(asyncio.run(Extract().run(Landed("it1", path.name, None, "sb1", None, path, path.parent, plan))))
"""


def _children(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
        if entry.name.isdigit() and int(rest.split()[1]) == pid:
            found[int(entry.name)] = name
    return found


async def test_sigkill_while_the_tool_runs_then_rerun(tmp_path: Path) -> None:
    payload = tmp_path / "P"
    big = data(48 * 1024 * 1024, "big")
    write_rar(payload / "big", [Member("big.mkv", big)], volume_size=16 * 1024 * 1024)
    before = tree(payload)
    env = {**os.environ, "PYTHONPATH": str(Path(q4d_bridge.__file__).parents[1])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(payload)], env=env)
    work = payload / f"{WORK_PREFIX}it1"
    deadline = time.monotonic() + 60
    tool = None
    while tool is None and time.monotonic() < deadline:
        tool = next((p for p, n in _children(child.pid).items() if n == "unar"), None)
        time.sleep(0.001)
    assert tool is not None, "unar never ran"
    os.kill(tool, signal.SIGSTOP)
    # Let it write a little, so the kill lands mid-file.
    while not any(f.stat().st_size for f in work.rglob("*.mkv")):
        assert time.monotonic() < deadline, "unar wrote nothing"
        os.kill(tool, signal.SIGCONT)
        time.sleep(0.002)
        os.kill(tool, signal.SIGSTOP)
    child.kill()
    child.wait()
    deadline = time.monotonic() + 10
    while running(tool) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not running(tool), "the extractor outlived the killed step"
    partial = next(f for f in work.rglob("*.mkv"))
    assert 0 < partial.stat().st_size < len(big)
    assert not (work / "done.json").exists()
    assert {k: v for k, v in tree(payload).items() if not k.startswith(WORK_PREFIX)} == before
    detail = await Extract().run(landed(payload, ExtractPlan(keep_archives=False)))
    assert detail == "1 file from 1 archive (RAR 3 volumes)"
    assert sorted(tree(payload)) == ["big.mkv"]
    assert (payload / "big.mkv").read_bytes() == big


async def test_cancelling_kills_the_tool_and_cleans_up(tmp_path: Path) -> None:
    payload = tmp_path / "P"
    write_rar(payload / "big", [Member("big.mkv", data(48 * 1024 * 1024, "big"))])
    before = tree(payload)
    step = asyncio.create_task(Extract().run(landed(payload)))
    deadline = time.monotonic() + 60
    while not (tools := [p for p, n in _children(os.getpid()).items() if n == "unar"]):
        assert time.monotonic() < deadline and not step.done(), "unar never ran"
        await asyncio.sleep(0.001)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert not running(tools[0])
    assert tree(payload) == before  # the step's folder gone, the payload as it was
