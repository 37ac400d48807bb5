"""Fair shares of the bandwidth limit and the rates and ETAs items report, measured on
real transfers from sshd: the SFTP engine alone, through the whole bridge, and next to
lftp or rsync. (The allocator and the rate meter without sockets: test_rates.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from q4d_bridge.models import ItemState
from q4d_bridge.transfer.bandwidth import BURST_SECONDS, Ask, Bandwidth, FairShare
from q4d_bridge.transfer.engines.base import TransferRequest
from q4d_bridge.transfer.engines.sftp import SftpEngine
from q4d_bridge.transfer.remote import SeedboxSession

from tests.bridge.test_commands_live import item_messages, wait_completed
from tests.bridge.test_e2e import Env, make_file, running_bridge
from tests.bridge.test_sftp_engine import config_for
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(90)
MiB = 2**20
Samples = list[tuple[float, list[int]]]


@contextlib.asynccontextmanager
async def sampling(paths: list[Path], every: float = 0.02) -> AsyncIterator[Samples]:
    """(time, bytes on disk of each path) every `every` seconds while the block runs;
    a staged file that landed (and left its staging path) keeps its last count."""
    samples: Samples = []

    def on_disk(path: Path) -> int:
        try:
            st = path.stat()
        except FileNotFoundError:
            return 0
        return min(st.st_size, st.st_blocks * 512)

    async def watch() -> None:
        last = [0] * len(paths)
        while True:
            last = [max(n, on_disk(p)) for n, p in zip(last, paths, strict=True)]
            samples.append((time.monotonic(), last))
            await asyncio.sleep(every)

    task = asyncio.create_task(watch())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def windows(samples: Samples, start: float, end: float, span: float = 2.0) -> list[list[float]]:
    """Per-path rates (bytes/s) over every `span`-second window between start and end."""
    rates = []
    for i, (t0, first) in enumerate(samples):
        if t0 < start:
            continue
        j = next((j for j in range(i, len(samples)) if samples[j][0] - t0 >= span), None)
        if j is None or samples[j][0] > end:
            break
        t1, last = samples[j]
        rates.append([(b - a) / (t1 - t0) for a, b in zip(first, last, strict=True)])
    return rates


def recorded_grants(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int]]:
    """(time, bytes) of every grant the limiter makes from now on, at the time it
    grants them rather than when the waiting read wakes up."""
    grants: list[tuple[float, int]] = []
    grant = FairShare.grant

    def recording(share: FairShare, now: float) -> list[Ask]:
        granted = grant(share, now)
        grants.extend((now, ask.amount) for ask in granted)
        return granted

    monkeypatch.setattr(FairShare, "grant", recording)
    return grants


def most_granted(grants: list[tuple[float, int]], span: float) -> int:
    """The most bytes granted within any `span` seconds."""
    most, first, total = 0, 0, 0
    for t, amount in grants:
        total += amount
        while grants[first][0] < t - span:
            total -= grants[first][1]
            first += 1
        most = max(most, total)
    return most


async def test_concurrent_sftp_transfers_share_the_limit_fairly(
    tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limiter grants within its documented bound, every flow gets near its fair
    share, and the bytes on disk keep to the limit (plus what the delivery's jitter
    bunches into a window: a read granted just before a window may land inside it)."""
    limit, count, size = 4 * MiB, 3, 12 * MiB
    grants = recorded_grants(monkeypatch)
    config = config_for(tmp_path, sshd)
    seedbox = config.seedboxes["sb1"]
    remote = tmp_path / "seedbox"
    names = [f"f{n}.bin" for n in range(count)]
    for n, name in enumerate(names):
        make_file(remote / name, size, seed=n)
    targets = [tmp_path / "staged" / name for name in names]
    targets[0].parent.mkdir(parents=True)
    session = SeedboxSession(seedbox)
    engine = SftpEngine(config.transfers.sftp, Bandwidth(limit))
    finished: list[float] = []

    async def one(name: str, target: Path) -> None:
        entry = await session.inspect_payload(str(remote / name), ())
        await engine.fetch(TransferRequest(name, seedbox, str(remote / name), target, entry),
                           lambda _done: None)  # fmt: skip
        finished.append(time.monotonic())

    try:
        async with sampling(targets) as samples:
            started = time.monotonic()
            await asyncio.gather(*(one(n, t) for n, t in zip(names, targets, strict=True)))
    finally:
        await session.close()
        await engine.close()
    fair = limit / count
    spans = windows(samples, started + 1.0, min(finished))
    assert spans, "no 2 s window while all ran"
    worst_total = max(sum(rates) for rates in spans)
    lowest = min(min(rates) for rates in spans)
    print(f"{len(spans)} windows: slowest transfer {lowest / fair:.2f} x its fair share, "
          f"worst total {worst_total / limit:.3f} x the limit; "
          f"ends at {', '.join(f'{t - started:.1f}' for t in sorted(finished))} s")  # fmt: skip
    for rates in spans[:: max(1, len(spans) // 8)]:
        print("  " + " ".join(f"{r / MiB:.2f}" for r in rates))
    biggest = max(amount for _, amount in grants)
    granted = most_granted(grants, 2.0)
    whole = windows(samples, started, max(finished) + 1)
    on_disk = max(sum(rates) for rates in whole)
    print(f"most granted in 2 s: {granted / (2 * limit):.3f} x the limit (asks up to "
          f"{biggest // 1024} KiB); most on disk in 2 s: {on_disk / limit:.3f} x")  # fmt: skip
    assert lowest >= 0.6 * fair
    assert granted <= limit * (2.0 + BURST_SECONDS) + biggest
    assert on_disk <= 1.10 * limit


def staged(env: Env, name: str) -> Path:
    """Where the item of `name` is staged (its id is only known once it is queued)."""
    for item in env.bridge.lifecycle.items.values():
        if item.name == name:
            return env.library / "other" / ".q4d-partial" / item.id / name
    return env.library / "other" / ".q4d-partial" / "none" / name


async def test_items_report_their_fair_rate_and_a_true_eta(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """Three SFTP items under one limit, as Home Assistant sees them on their topics:
    each reports about a third of the limit (not one all of it and the others nothing),
    and each ETA it publishes is close to the time the transfer then really took."""
    limit, count, size = 4 * MiB, 3, 10 * MiB
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp",
        transfers={"max_concurrent": count, "bandwidth_limit": limit},
    ) as env:  # fmt: skip
        for n in range(count):
            make_file(env.remote / f"item{n}.bin", size, seed=n)
            await env.complete(f"item{n}.bin", f"{n + 1:040x}")
        await env.wait_settled(count, timeout=40)
        ids = list(env.bridge.lifecycle.items)
        await wait_completed(env, ids)
    fair = limit / count
    shares, misses = [], []  # rate ÷ fair share; ETA - the time it then took
    for item_id in ids:
        published = item_messages(env, item_id)
        began = next(m["updated_at"] for m in published if m["bytes_done"])
        ended = next(m["updated_at"] for m in published if m["state"] == "verifying")
        for m in published:
            # From 2 s after the first bytes: the first reports give a rate in the making.
            if m["state"] == "transferring" and m["updated_at"] >= began + 2.0:
                true_left = ended - m["updated_at"]
                shares.append(m["rate"] / fair)
                misses.append(m["eta"] - true_left)
                assert 0.6 * fair <= m["rate"] <= 1.4 * fair, m
                assert abs(m["eta"] - true_left) <= max(1.5, 0.2 * true_left), (m, true_left)
    assert len(shares) >= 3 * count, "too few reports to judge"
    print(f"{len(shares)} reports: rates {min(shares):.2f}-{max(shares):.2f} x the fair share, "
          f"ETAs {min(misses):+.2f} to {max(misses):+.2f} s off")  # fmt: skip


@pytest.mark.parametrize("tool", ["lftp", "rsync"])
async def test_a_tool_engine_keeps_its_share_and_sftp_transfers_share_the_rest(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, tool: str
) -> None:
    """lftp and rsync pace themselves at limit ÷ max_concurrent and reserve that share:
    the SFTP transfer next to one gets the rest, so together they stay within the
    limit."""
    limit, size = 8 * MiB, 24 * MiB
    rules = [{"destination": "default", "match": [{"field": "category", "is": "fast"}],
              "engine": "sftp"}]  # fmt: skip
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine=tool, rules=rules,
        transfers={"max_concurrent": 2, "bandwidth_limit": limit},
    ) as env:  # fmt: skip
        make_file(env.remote / "by-tool.bin", size, seed=1)
        make_file(env.remote / "by-sftp.bin", size, seed=2)
        await env.complete("by-tool.bin", "1" * 40)
        await env.complete("by-sftp.bin", "2" * 40, category="fast")
        await env.recorder.wait_for(lambda: len(env.bridge.lifecycle.items) == 2, 10, "items")
        paths = [staged(env, "by-tool.bin"), staged(env, "by-sftp.bin")]
        async with sampling(paths) as samples:
            started = time.monotonic()
            await env.wait_settled(2, timeout=40)
        engines = sorted(i.engine or "" for i in env.bridge.lifecycle.items.values())
        assert engines == sorted([tool, "sftp"])
        assert all(i.state is ItemState.DONE for i in env.bridge.lifecycle.items.values())
    both = [i for i, (_, sizes) in enumerate(samples) if min(sizes) > 0 and max(sizes) < size]
    assert both, "the two never ran together"
    spans = windows(samples, samples[both[0]][0] + 1.0, samples[both[-1]][0])
    whole = windows(samples, started, samples[-1][0])
    worst = max(sum(rates) for rates in whole)
    print(
        f"{len(spans)} windows together: {tool} {min(r[0] for r in spans) / MiB:.2f}-"
        f"{max(r[0] for r in spans) / MiB:.2f} MiB/s, sftp {min(r[1] for r in spans) / MiB:.2f}-"
        f"{max(r[1] for r in spans) / MiB:.2f} MiB/s; worst total {worst / limit:.3f} x the limit"
    )
    assert spans
    for rates in spans:
        assert min(rates) >= 0.6 * limit / 2, rates
    assert worst <= 1.05 * limit
