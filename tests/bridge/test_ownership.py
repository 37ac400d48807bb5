"""Ownership and permissions of what lands: owner, group and modes from the plan, given
in staging before the atomic rename; a bridge without the right to chown fails with a
clear `ownership` error and keeps the staged payload; kill -9 while landing leaves the
payload whole in staging or in place; `.q4d-partial` goes when nothing stages there."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.models import ItemState
from q4d_bridge.postprocess.plan import Ownership
from q4d_bridge.transfer.errors import TransferError
from q4d_bridge.transfer.landing import (
    STAGING_DIR,
    Modes,
    discard_staging,
    make_private,
    staging_dir,
    tidy_staging,
)
from q4d_bridge.transfer.ownership import Ids, land, modes_for, probe, resolve

from tests.bridge.test_e2e import digest_tree, make_file, running_bridge
from tests.helpers.services import Mosquitto, SshServer

USER, GROUP = "q4d-own-test", "q4d-own-grp"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture(scope="session")
def account() -> Iterator[tuple[int, int]]:
    """A user and a group made for these tests (uid, gid), removed afterwards."""
    made = []
    with contextlib.suppress(KeyError):
        grp.getgrnam(GROUP)
        made.append("group existed")
    if not made:
        subprocess.run(["groupadd", GROUP], check=True, capture_output=True)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--no-user-group", "--gid", GROUP,
             "--shell", "/usr/sbin/nologin", USER],
            check=True, capture_output=True,
        )  # fmt: skip
    try:
        yield pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid
    finally:
        subprocess.run(["userdel", USER], check=False, capture_output=True)
        subprocess.run(["groupdel", GROUP], check=False, capture_output=True)


def season(root: Path) -> Path:
    for n, rel in enumerate(["e01.mkv", "e02.mkv", "Subs/en.srt", "Subs/Forced/en.srt"]):
        make_file(root / rel, 1000 + n, seed=n)
    return root


def owners_and_modes(path: Path) -> set[tuple[str, int, int, int]]:
    found = set()
    for item in [path, *path.rglob("*")]:
        st = item.lstat()
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        found.add((kind, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
    return found


async def test_landed_payload_gets_the_plans_owner_group_and_modes(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, account: tuple[int, int]
) -> None:
    uid, gid = account
    library = tmp_path / "library"
    destinations = {
        "tv": {"path": str(library / "tv"), "owner": USER, "group": gid,
               "file_mode": "0660", "dir_mode": "0770"},
        "movies": str(library / "movies"),
        "default": str(library / "other"),
    }  # fmt: skip
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", destinations=destinations
    ) as env:
        season(env.remote / "Show.S01")
        make_file(env.remote / "movie.mkv", 500)
        await env.complete("Show.S01", "a" * 40, category="tv")
        await env.complete("movie.mkv", "b" * 40, category="movies")
        await env.wait_settled(2)
        assert sorted(env.items_in(ItemState.DONE)) == sorted(env.bridge.lifecycle.items)
    landed = library / "tv" / "Show.S01"
    assert digest_tree(landed) == digest_tree(env.remote / "Show.S01")
    assert owners_and_modes(landed) == {("dir", uid, gid, 0o770), ("file", uid, gid, 0o660)}
    # without a plan: the bridge's user and the transfers' modes, as before
    movie = (library / "movies" / "movie.mkv").stat()
    assert (movie.st_uid, stat.S_IMODE(movie.st_mode)) == (0, 0o644)
    for destination in ("tv", "movies"):
        assert not (library / destination / STAGING_DIR).exists()


async def test_unknown_user_fails_before_anything_is_fetched(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    library = tmp_path / "library"
    destinations = {
        "tv": str(library / "tv"),
        "movies": str(library / "movies"),
        "default": {"path": str(library / "other"), "owner": "no-such-q4d-user"},
    }
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", destinations=destinations
    ) as env:
        make_file(env.remote / "movie.mkv", 500)
        await env.complete("movie.mkv", "c" * 40)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
    assert (item.state, item.error_code) == (ItemState.FAILED, "ownership")
    assert item.last_error == (
        "owner 'no-such-q4d-user' is not a user on the bridge's machine; give a numeric "
        "uid (a media container's PUID) or create the user"
    )
    assert not (library / "other" / STAGING_DIR).exists()


def test_names_and_numbers_resolve(account: tuple[int, int]) -> None:
    uid, gid = account
    assert resolve(Ownership(owner=USER, group=GROUP)) == Ids(uid, gid)
    assert resolve(Ownership(owner=1234, group=None)) == Ids(1234, -1)
    assert not resolve(Ownership())
    with pytest.raises(TransferError, match="group 'nope-q4d' is not a group"):
        resolve(Ownership(group="nope-q4d"))
    base = Modes(0o644, 0o755)
    assert modes_for(base, Ownership(file_mode=0o664)) == Modes(0o664, 0o755)


def in_child(work: Callable[[], None], uid: int | None = None, gid: int | None = None) -> int:
    """Start work in a forked child (which first drops root for uid/gid, if given);
    returns its pid. The child exits 0 once work returns, 3 if it raised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads about
        pid = os.fork()
    if pid:
        return pid
    try:  # the child: never back into pytest
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        work()
        os._exit(0)
    except BaseException:
        os._exit(3)


def run_as(uid: int, gid: int, work: Callable[[], None]) -> str:
    """work's TransferError message, run in a child that dropped root for uid/gid."""
    read, write = os.pipe()

    def report() -> None:
        os.close(read)
        try:
            work()
        except TransferError as err:
            os.write(write, f"{err.code}: {err.message}".encode())

    pid = in_child(report, uid, gid)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return message


@pytest.fixture
def shared(account: tuple[int, int]) -> Iterator[Path]:
    """A folder outside pytest's (root-only) temp tree, owned by the test user."""
    folder = Path(tempfile.mkdtemp(prefix="q4d-own-"))
    os.chown(folder, *account)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_without_the_right_to_chown_the_error_is_clear_and_the_payload_stays(
    shared: Path, account: tuple[int, int]
) -> None:
    uid, gid = account
    root = shared / "tv"
    stage = staging_dir(root, "item1")
    target = stage / "Show.S01"
    final = root / "Show.S01"
    nobody = pwd.getpwnam("nobody")
    to_root = Ids(0, -1)
    other_group = Ids(-1, nobody.pw_gid)
    other = grp.getgrgid(nobody.pw_gid).gr_name

    def prepare() -> None:
        make_private(stage)
        season(target)

    assert run_as(uid, gid, prepare) == ""
    before = digest_tree(target)
    modes = Modes(0o640, 0o750)
    assert run_as(uid, gid, lambda: probe(stage, to_root)) == (
        f"ownership: cannot give {stage}/.q4d-chown-probe to uid 0: the bridge (uid {uid}) "
        "lacks the right; run the bridge as root, or drop owner: from the destination or rule"
    )
    assert run_as(uid, gid, lambda: land(target, final, root, modes, other_group)) == (
        f"ownership: cannot give {target} to gid {nobody.pw_gid}: the bridge (uid {uid}) lacks "
        f"the right; run the bridge as root or as a member of group {other} ({nobody.pw_gid}), "
        "or drop group: from the destination or rule"
    )
    assert digest_tree(target) == before and not final.exists()  # staged, whole
    # Its own group is one it may give: that lands.
    assert run_as(uid, gid, lambda: land(target, final, root, modes, Ids(-1, gid))) == ""
    assert digest_tree(final) == before
    assert owners_and_modes(final) == {("dir", uid, gid, 0o750), ("file", uid, gid, 0o640)}
    assert not (root / STAGING_DIR).exists()


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.06, 0.1, 0.2])
def test_kill_9_while_landing_leaves_the_payload_whole(
    tmp_path: Path, account: tuple[int, int], delay: float
) -> None:
    """SIGKILL at some point of the modes, chown and rename of 3000 files: the payload
    is whole in staging (and a new landing finishes it) or whole in place."""
    root = tmp_path / "tv"
    stage = staging_dir(root, "item1")
    target = stage / "Pack"
    final = root / "Pack"
    make_private(stage)
    for n in range(3000):
        make_file(target / f"d{n % 30}" / f"f{n}.bin", 64, seed=n)
    expected = digest_tree(target)
    modes, ids = Modes(0o640, 0o750), Ids(*account)
    pid = in_child(lambda: land(target, final, root, modes, ids))
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    if target.exists():
        assert not final.exists() and digest_tree(target) == expected
        land(target, final, root, modes, ids)  # the retry
    assert digest_tree(final) == expected
    assert owners_and_modes(final) == {("dir", *account, 0o750), ("file", *account, 0o640)}


def test_staging_parent_goes_when_empty_and_stays_while_another_item_stages(
    tmp_path: Path,
) -> None:
    root = tmp_path / "tv"
    for item in ("a", "b"):
        make_private(staging_dir(root, item))
        make_file(staging_dir(root, item) / "x.mkv", 10)
    land(staging_dir(root, "a") / "x.mkv", root / "x.mkv", root, Modes(), Ids())
    assert (root / "x.mkv").is_file()
    assert (root / STAGING_DIR).is_dir()  # b still stages there
    discard_staging(root, "b")
    assert not (root / STAGING_DIR).exists()
    tidy_staging(root / STAGING_DIR)  # gone already: nothing to do
    make_private(staging_dir(root, "c"))  # and made again when needed
    assert stat.S_IMODE((root / STAGING_DIR).stat().st_mode) == 0o700


def test_make_private_survives_a_concurrent_tidy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another item's tidy-up may remove the empty parent between its mkdir and ours."""
    stage = staging_dir(tmp_path / "tv", "item")
    original = Path.chmod
    removed: list[Any] = []

    def racing_chmod(self: Path, mode: int, **kwargs: Any) -> None:
        original(self, mode, **kwargs)
        if self.name == STAGING_DIR and not removed:
            removed.append(self)
            tidy_staging(self)

    monkeypatch.setattr(Path, "chmod", racing_chmod)
    make_private(stage)
    assert stage.is_dir() and removed
