"""The embedded SFTP engine against a real sshd: listing, how files are spread over the
connections, and what lands."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.transfer.bandwidth import Bandwidth
from q4d_bridge.transfer.engines.base import TransferRequest
from q4d_bridge.transfer.engines.sftp import SftpEngine
from q4d_bridge.transfer.engines.sftp_adapt import Adaptation, Decision
from q4d_bridge.transfer.remote import SeedboxSession

from tests.bridge.test_e2e import digest_tree, make_file
from tests.helpers.configs import bridge_config
from tests.helpers.services import SshServer


def config_for(tmp_path: Path, sshd: SshServer, **sftp: Any) -> Config:
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key,
        known_hosts=sshd.known_hosts, ssh_port=sshd.port, user=sshd.user,
    )  # fmt: skip
    raw["transfers"]["sftp"] = sftp
    return parse_config(raw)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Remote paths the engine opens, counted."""
    counts: Counter[str] = Counter()
    original = asyncssh.SFTPClient.open

    def counting_open(self: asyncssh.SFTPClient, path: str, *args: Any, **kwargs: Any) -> Any:
        counts[path] += 1
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(asyncssh.SFTPClient, "open", counting_open)
    return counts


async def fetch(config: Config, remote: Path, target: Path) -> list[int]:
    seedbox = config.seedboxes["sb1"]
    session = SeedboxSession(seedbox)
    engine = SftpEngine(config.transfers.sftp, Bandwidth(0))
    progress: list[int] = []
    try:
        entry = await session.inspect_payload(str(remote), ())
        request = TransferRequest("item", seedbox, str(remote), target, entry)
        await engine.fetch(request, progress.append)
    finally:
        await session.close()
        await engine.close()
    return progress


async def test_listing_spans_many_readdir_replies(tmp_path: Path, sshd: SshServer) -> None:
    """OpenSSH answers 100 names per READDIR: 450 files (and nested and empty folders)
    take several pipelined rounds, and every name and size comes back."""
    remote = tmp_path / "seedbox" / "Pack"
    for n in range(450):
        make_file(remote / f"f{n:03}.bin", n, seed=n)
    make_file(remote / "Sub" / "Deeper" / "x.bin", 7)
    (remote / "Empty").mkdir()
    config = config_for(tmp_path, sshd)
    session = SeedboxSession(config.seedboxes["sb1"])
    try:
        entry = await session.inspect_payload(str(remote), ())
        again = await session.inspect_payload(str(remote), ())  # the directory handles were closed
    finally:
        await session.close()
    assert entry == again
    assert entry.is_dir
    sizes = {f.rel: f.size for f in entry.entries}
    assert sizes == {f"f{n:03}.bin": n for n in range(450)} | {"Sub/Deeper/x.bin": 7}
    assert entry.dirs == ("Empty", "Sub", "Sub/Deeper")


async def test_folder_files_are_opened_once_each(
    tmp_path: Path, sshd: SshServer, opened: Counter[str]
) -> None:
    """Connections claim whole files, so a folder costs one open per file; only at the
    end may a connection with nothing left help with a file another one is reading.
    Everything lands byte-identical, the empty file included."""
    remote = tmp_path / "seedbox" / "Season"
    for n in range(24):
        make_file(remote / f"e{n:02}.mkv", 200_000 + n * 9_000, seed=n)
    make_file(remote / "empty.nfo", 0)
    target = tmp_path / "staged" / "Season"
    config = config_for(tmp_path, sshd, connections=3, chunk_size="64KiB", max_requests=4)
    progress = await fetch(config, remote, target)
    assert digest_tree(target) == digest_tree(remote)
    assert progress[-1] == sum(p.stat().st_size for p in remote.iterdir())
    assert sorted(opened) == sorted(str(p) for p in remote.iterdir() if p.stat().st_size)
    # Helped: only the files still being read when the last one was claimed (at most
    # two per connection: the one it reads and the one it opened ahead), each opened at
    # most once on each connection. Which and how often depends on timing.
    helped = [n for n in opened.values() if n > 1]
    assert len(helped) <= 2 * 3 and max(opened.values()) <= 3, opened


async def test_one_large_file_is_read_over_every_connection(
    tmp_path: Path, sshd: SshServer, opened: Counter[str]
) -> None:
    """With no file left to claim, connections help with the one being read."""
    remote = tmp_path / "seedbox" / "film.mkv"
    make_file(remote, 12 * 2**20 + 5, seed=3)
    target = tmp_path / "staged" / "film.mkv"
    config = config_for(tmp_path, sshd, connections=3, chunk_size="256KiB", max_requests=2)
    await fetch(config, remote, target)
    assert target.read_bytes() == remote.read_bytes()
    assert opened == {str(remote): 3}


async def test_connections_the_adaptation_adds_read_too_and_are_kept(
    tmp_path: Path, sshd: SshServer, opened: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the adaptation decides is carried out mid-transfer (its decisions are
    scripted here: loopback has no long lossy link; test_sftp_adapt.py tests them):
    a wider window, then 3 more connections, which open the file and read it too. The
    file lands intact, the pool keeps the 6 connections, and the next transfer starts
    with 6 and the wider window."""
    script = iter([Decision(requests=4), Decision(add_connections=3)])

    def scripted(self: Adaptation, rate: float, latency: float, remaining: int) -> Decision:
        self.history.append((rate, self.connections, self.requests))
        decision = next(script, Decision())
        self.connections += decision.add_connections
        self.requests = decision.requests or self.requests
        return decision

    monkeypatch.setattr(Adaptation, "step", scripted)
    first, second = tmp_path / "seedbox" / "a.mkv", tmp_path / "seedbox" / "b.mkv"
    make_file(first, 12 * 2**20, seed=4)
    make_file(second, 6 * 2**20, seed=5)
    config = config_for(tmp_path, sshd, connections=3, chunk_size="256KiB", max_requests=2)
    seedbox = config.seedboxes["sb1"]
    session = SeedboxSession(seedbox)
    engine = SftpEngine(config.transfers.sftp, Bandwidth(4_000_000))  # 1 s: an interval
    started = []
    try:
        for remote in (first, second):
            entry = await session.inspect_payload(str(remote), ())
            target = tmp_path / "staged" / remote.stem / remote.name  # a journal each
            await engine.fetch(TransferRequest("item", seedbox, str(remote), target, entry), print)
            assert target.read_bytes() == remote.read_bytes()
            assert engine.last_adaptation is not None
            steps: Any = engine.last_adaptation["steps"]
            started.append((steps[0]["connections"], steps[0]["requests"]))
            assert (engine.last_adaptation["connections"], engine.last_adaptation["requests"]) == (
                6, 4,
            )  # fmt: skip
        assert len(engine._idle[seedbox]) == 6
    finally:
        await session.close()
        await engine.close()
    assert started == [(3, 2), (6, 4)]
    assert opened[str(first)] == 6
