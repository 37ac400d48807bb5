"""Symlinks on the seedbox never take a transfer past the seedbox's roots, with every
engine, and what lands never carries the seedbox's modes.

Each case runs the whole bridge against real sshd, lftp and rsync: the refusal is
`unsafe_path` with a reason naming the link, and nothing is fetched or left behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.models import ItemState
from q4d_bridge.transfer.engines.base import ProgressCallback, TransferRequest

from tests.bridge.test_e2e import ENGINES, Env, digest_tree, make_file, running_bridge
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(120)
FAST = {"retry_initial": 0.2, "max_attempts": 2}


def landed_files(env: Env) -> list[Path]:
    """Every file under the library, staging included."""
    return [p for p in env.library.rglob("*") if p.is_file() or p.is_symlink()]


async def refused(env: Env, rel: str, info_hash: str) -> dict[str, Any]:
    await env.complete(rel, info_hash)
    await env.wait_settled(1)
    (item,) = env.bridge.lifecycle.items.values()
    assert (item.state, item.error_code) == (ItemState.FAILED, "unsafe_path"), item.last_error
    assert item.attempts == 1  # permanent: never retried
    assert landed_files(env) == []
    (failed,) = env.recorder.events("failed")
    return dict(failed["item"]["error"])


def outside(tmp_path: Path) -> Path:
    """A folder beside the seedbox root, with something worth stealing in it."""
    secret = tmp_path / "outside" / "secret.key"
    make_file(secret, 4096, seed=7)
    secret.chmod(0o600)
    return secret.parent


@ENGINES
async def test_symlinked_file_payload_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=FAST) as env:
        (env.remote / "Movie.mkv").symlink_to(outside(tmp_path) / "secret.key")
        error = await refused(env, "Movie.mkv", "1" * 40)
    assert f"{env.remote}/Movie.mkv is a symlink" in error["message"]
    assert str(tmp_path / "outside" / "secret.key") in error["message"]


@ENGINES
async def test_symlinked_directory_beside_the_root_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=FAST) as env:
        outside(tmp_path)
        (env.remote / "Pack").symlink_to("../outside")
        error = await refused(env, "Pack", "2" * 40)
    assert f"{env.remote}/Pack is a symlink (to {tmp_path / 'outside'})" in error["message"]


@ENGINES
async def test_chain_of_links_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=FAST) as env:
        secrets = outside(tmp_path)
        (env.remote / "hop2").symlink_to(secrets)
        (env.remote / "hop1").symlink_to(env.remote / "hop2")
        error = await refused(env, "hop1", "3" * 40)
    assert f"{env.remote}/hop1 is a symlink (to {secrets})" in error["message"]


@ENGINES
async def test_link_to_etc_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=FAST) as env:
        (env.remote / "link-etc").symlink_to("/etc")
        error = await refused(env, "link-etc", "4" * 40)
    assert "link-etc is a symlink (to /etc)" in error["message"]


@ENGINES
async def test_linked_parent_directory_is_named(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """The payload itself is a plain file, reached through a linked folder."""
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=FAST) as env:
        secrets = outside(tmp_path)
        (env.remote / "shows").symlink_to(secrets)
        error = await refused(env, "shows/secret.key", "5" * 40)
    assert (
        f"resolves to {secrets}/secret.key through the symlink {env.remote}/shows"
        in (error["message"])
    )


@ENGINES
async def test_link_planted_between_event_and_transfer_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """Time of check, time of use: the event named a real file; by the time the bridge
    gets to it, the file is a link to /etc."""
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=FAST) as env:
        make_file(env.remote / "Show.S01", 1000)
        env.bridge.controller.pause(None)
        await env.complete("Show.S01", "6" * 40)
        await env.recorder.wait_for(lambda: env.recorder.events("queued"), 10, "queued")
        (env.remote / "Show.S01").unlink()
        (env.remote / "Show.S01").symlink_to("/etc")
        env.bridge.controller.resume(None)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
        assert (item.state, item.error_code) == (ItemState.FAILED, "unsafe_path")
        assert "Show.S01 is a symlink (to /etc)" in (item.last_error or "")
        assert landed_files(env) == []


class SwapDuringFetch:
    """The real engine, with part of the payload turned into a link while it runs (as a
    hostile seedbox account could): the look after the engine catches it, and nothing
    fetched reaches the library, or stays in staging."""

    def __init__(self, engine: Any, victim: Path, target: str) -> None:
        self.engine = engine
        self.name = engine.name
        self.victim = victim
        self.target = target

    def warm(self, seedbox: Any) -> None:
        self.engine.warm(seedbox)

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        await self.engine.fetch(request, on_progress)
        if self.victim.is_dir():
            shutil.rmtree(self.victim)
        else:
            self.victim.unlink()
        self.victim.symlink_to(self.target)


@ENGINES
@pytest.mark.parametrize("swapped", ["file", "folder"])
async def test_link_swapped_in_during_transfer_never_lands(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str, swapped: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=FAST) as env:
        album = env.remote / "Album"
        make_file(album / "01.flac", 5000, seed=1)
        make_file(album / "Disc2" / "02.flac", 6000, seed=2)
        victim = album / "Disc2" if swapped == "folder" else album / "Disc2" / "02.flac"
        env.bridge.runner.engines[engine] = SwapDuringFetch(  # type: ignore[assignment]
            env.bridge.runner.engines[engine], victim, str(outside(tmp_path))
        )
        error = await refused(env, "Album", "7" * 40)
    changed = "Disc2, Disc2/02.flac" if swapped == "folder" else "Disc2/02.flac"
    assert error["message"] == f"became a symlink during transfer: {changed}"


@ENGINES
async def test_a_root_behind_a_link_is_fine_a_link_below_it_is_named(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """Roots are compared resolved (~/downloads -> /mnt/disk1/downloads is common), and
    the refusal names the link below the root, not the root's own."""
    linked = tmp_path / "linked-root"
    seedbox = {"remote_roots": [str(linked)]}
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine=engine, transfers=FAST, seedbox=seedbox
    ) as env:
        linked.symlink_to(env.remote)
        make_file(env.remote / "ok.mkv", 1234, seed=3)
        (env.remote / "shows").symlink_to(outside(tmp_path))
        await env.complete(str(linked / "ok.mkv"), "b" * 40)
        await env.complete(str(linked / "shows" / "secret.key"), "c" * 40)
        await env.wait_settled(2)
    states = {i.name: (i.state, i.last_error) for i in env.bridge.lifecycle.items.values()}
    assert states["ok.mkv"] == (ItemState.DONE, None)
    assert states["secret.key"][0] is ItemState.FAILED
    assert f"through the symlink {linked}/shows, outside" in (states["secret.key"][1] or "")
    assert [p.name for p in landed_files(env)] == ["ok.mkv"]


@ENGINES
async def test_links_inside_a_payload_are_skipped_and_reported(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """Inside a payload no link is followed, whether it points inside the payload or
    out of it, and no special file is read; each is named in the item's history and in
    the completed event. Every engine lands exactly the same files."""
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine) as env:
        season = env.remote / "Show.S02"
        make_file(season / "E01.mkv", 10_000, seed=1)
        make_file(season / "Extras" / "E01.srt", 500, seed=2)
        (season / "E01-again.mkv").symlink_to("E01.mkv")  # inside the payload
        (season / "Extras" / "etc").symlink_to("/etc")
        (season / "Extras" / "key").symlink_to(outside(tmp_path) / "secret.key")
        os.mkfifo(season / "pipe")
        await env.complete("Show.S02", "8" * 40)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
        assert item.state is ItemState.DONE, item.last_error
        landed = env.library / "other" / "Show.S02"
        assert digest_tree(landed) == {
            "E01.mkv": digest_tree(season / "E01.mkv")[""],
            "Extras/E01.srt": digest_tree(season / "Extras" / "E01.srt")[""],
        }
        assert not [
            p for p in landed.rglob("*") if p.is_symlink() or not (p.is_file() or p.is_dir())
        ]
        skipped = ["E01-again.mkv", "Extras/etc", "Extras/key", "pipe"]
        (completed,) = env.recorder.events("completed")
        assert completed["skipped"] == skipped
        history = env.bridge.store.history(item.id)
        assert {"skipped": skipped} in [
            h["detail"] for h in history if h["event"] == "transferring"
        ]


@ENGINES
async def test_landed_modes_are_the_bridges_not_the_seedboxes(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """A private file on the seedbox does not become world-readable at home, and a
    world-writable one does not stay world-writable: everything lands with the
    configured modes (here 0640/0750) minus the umask."""
    umask = os.umask(0o027)
    try:
        transfers = {"file_mode": "0660", "dir_mode": "0770"}
        async with running_bridge(
            tmp_path, mosquitto, sshd, engine=engine, transfers=transfers
        ) as env:
            pack = env.remote / "Pack"
            make_file(pack / "private.key", 100, seed=1)
            make_file(pack / "shared" / "open.txt", 100, seed=2)
            make_file(env.remote / "single.bin", 100, seed=3)
            (pack / "private.key").chmod(0o600)
            (pack / "shared" / "open.txt").chmod(0o777)
            (pack / "shared").chmod(0o777)
            (env.remote / "single.bin").chmod(0o4755)
            await env.complete("Pack", "9" * 40)
            await env.complete("single.bin", "a" * 40)
            await env.wait_settled(2)
    finally:
        os.umask(umask)
    assert {i.state for i in env.bridge.lifecycle.items.values()} == {ItemState.DONE}
    other = env.library / "other"
    modes = {
        str(p.relative_to(other)): p.stat().st_mode & 0o7777
        for p in [other / "Pack", *sorted((other / "Pack").rglob("*")), other / "single.bin"]
    }
    assert modes == {
        "Pack": 0o750,
        "Pack/private.key": 0o640,
        "Pack/shared": 0o750,
        "Pack/shared/open.txt": 0o640,
        "single.bin": 0o640,
    }
