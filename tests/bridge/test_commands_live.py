"""Queue commands on the live bridge: pause/resume (whole queue and one item), retry of
every failed item, and set_limits while transfers run, each against Mosquitto, sshd
and the real engines (lftp, rsync, the SFTP engine) on loopback.

Everything is driven over MQTT (`command` → `command/result`) and observed on the
bridge's item topics and events; the seedbox is reached through a relay that counts
what it sends, so a transfer that started over instead of resuming shows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bridge.test_e2e import Env, digest_tree, make_file, running_bridge
from tests.helpers.mqtt import publish
from tests.helpers.proxy import CountingProxy
from tests.helpers.services import Mosquitto, SshServer, free_port

pytestmark = pytest.mark.timeout(60)
MiB = 2**20
PREFIX = "q4d/bridge/test"
SIZE = 60 * MiB  # at 20 MiB/s a transfer runs ~3 s: time to interfere
BASE = {"retry_initial": 0.2, "max_attempts": 2, "stall_timeout": 10}


# --- observing the bridge over MQTT ---------------------------------------------------


def item_messages(env: Env, item_id: str) -> list[dict[str, Any]]:
    """Every payload the bridge published on the item's topic, oldest first."""
    topic = f"{PREFIX}/item/{item_id}"
    return [m.json() for m in env.recorder.messages if m.topic == topic and m.payload]


def latest(env: Env, item_id: str) -> dict[str, Any]:
    return item_messages(env, item_id)[-1]


def events_of(env: Env, kind: str, item_id: str) -> list[dict[str, Any]]:
    return [e for e in env.recorder.events(kind) if e["item"]["id"] == item_id]


async def wait_item(
    env: Env, item_id: str, predicate: Callable[[dict[str, Any]], bool], what: str,
    timeout: float = 15,
) -> dict[str, Any]:  # fmt: skip
    def check() -> dict[str, Any] | None:
        messages = item_messages(env, item_id)
        return messages[-1] if messages and predicate(messages[-1]) else None

    found: dict[str, Any] = await env.recorder.wait_for(check, timeout, f"{item_id}: {what}")
    return found


async def queue_payload(
    env: Env, name: str, size: int | None, seed: int, seedbox: str = "sb1"
) -> str:
    """Put a payload on the seedbox (size None: announce a path that is not there),
    announce its completion, return its item id (read from its item topic)."""
    path = str(env.remote / name)
    if size is not None:
        make_file(env.remote / name, size, seed=seed)
    event = {"v": 1, "event_id": f"{seedbox}-{name}", "path": path, "hash": f"{seed:02x}" * 20}
    await publish(env.port, [(f"q4d/seedbox/{seedbox}/completed", json.dumps(event).encode())])

    def find() -> str | None:
        for m in env.recorder.on(f"{PREFIX}/item/"):
            item = m.json() if m.payload else {}
            if item.get("remote_path") == path and item.get("seedbox") == seedbox:
                return str(item["id"])
        return None

    found: str = await env.recorder.wait_for(find, 15, f"item of {name}")
    return found


async def answer(env: Env, op: str, **args: Any) -> dict[str, Any]:
    """Send a command; return the bridge's answer to it, an error or not."""
    request_id = f"{op}-{time.monotonic_ns()}"
    payload = json.dumps({"id": request_id, "op": op, "args": args}).encode()
    await publish(env.port, [(f"{PREFIX}/command", payload)])
    answers = await env.recorder.wait_for(
        lambda: [
            m.json()
            for m in env.recorder.on(f"{PREFIX}/command/result")
            if m.json()["id"] == request_id
        ],
        10,
        f"result of {op}",
    )
    (only,) = answers
    return dict(only)


async def command(env: Env, op: str, **args: Any) -> Any:
    """Send a command; return its result, failing on an error answer."""
    result = await answer(env, op, **args)
    assert result["ok"], result
    return result["result"]


async def wait_completed(env: Env, item_ids: list[str], timeout: float = 30) -> None:
    await env.recorder.wait_for(
        lambda: {e["item"]["id"] for e in env.recorder.events("completed")} >= set(item_ids),
        timeout,
        f"completion of {item_ids}",
    )


def staged_bytes(env: Env, item_id: str) -> int:
    """Payload bytes on disk in the item's staging folder (allocated blocks, so the
    holes of a segmented download do not count)."""
    stage = env.library / "other" / ".q4d-partial" / item_id
    if not stage.exists():
        return 0
    total = 0
    for path in stage.rglob("*"):
        if path.is_file() and ".q4d-journal" not in path.parts and "lftp-pget" not in path.name:
            st = path.stat()
            total += min(st.st_size, st.st_blocks * 512)
    return total


def landed_intact(env: Env, name: str) -> bool:
    return digest_tree(env.library / "other" / name) == digest_tree(env.remote / name)


@contextlib.asynccontextmanager
async def counted_bridge(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str,
    more_seedboxes: tuple[dict[str, Any], ...] = (), **transfers: Any,
) -> AsyncIterator[tuple[Env, CountingProxy]]:  # fmt: skip
    """A running bridge whose seedbox sb1 is reached through a counting relay."""
    async with CountingProxy(sshd.port) as proxy:
        sb1 = seedbox_config(tmp_path, sshd, "sb1", proxy.port)
        async with running_bridge(
            tmp_path, mosquitto, sshd, engine=engine, seedboxes=[sb1, *more_seedboxes],
            transfers={**BASE, **transfers},
        ) as env:  # fmt: skip
            yield env, proxy


def seedbox_config(tmp_path: Path, sshd: SshServer, seedbox: str, port: int) -> dict[str, Any]:
    """A seedbox entry for sshd reached on 127.0.0.1:port, its host key pinned there."""
    known_hosts = tmp_path / f"known_hosts-{seedbox}"
    known_hosts.write_text(f"[127.0.0.1]:{port} {sshd.host_public_key}\n")
    return {
        "id": seedbox, "host": "127.0.0.1", "port": port, "user": sshd.user,
        "key": str(sshd.client_key), "known_hosts": str(known_hosts),
        "remote_roots": [str(tmp_path / "seedbox")], "max_concurrent": 4,
    }  # fmt: skip


class RelayOnPort(CountingProxy):
    """A relay to sshd that opens on a port chosen beforehand: until it does, a
    seedbox configured there refuses connections."""

    def __init__(self, target_port: int, port: int) -> None:
        super().__init__(target_port)
        self.port = port

    async def __aenter__(self) -> RelayOnPort:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self


# --- the tests ------------------------------------------------------------------------


def limit_for(engine: str, per_transfer: int, max_concurrent: int) -> int:
    """The bandwidth_limit that lets one transfer run at per_transfer bytes/s: lftp and
    rsync get limit ÷ max_concurrent each, SFTP transfers share one bucket."""
    return per_transfer * (max_concurrent if engine in ("lftp", "rsync") else 1)


async def until_staged(env: Env, item_id: str, size: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while (done := staged_bytes(env, item_id)) < size:
        assert time.monotonic() < deadline, f"{item_id}: {size} bytes not staged in {timeout}s"
        await asyncio.sleep(0.02)
    return done


@contextlib.asynccontextmanager
async def sampling(env: Env, item_id: str, name: str) -> AsyncIterator[list[tuple[float, int]]]:
    """(time, bytes on disk) of the item's staged file every 10 ms while the block runs,
    whenever the file is there. A transfer that starts over deletes or truncates it."""
    path = env.library / "other" / ".q4d-partial" / item_id / name
    samples: list[tuple[float, int]] = []

    async def watch() -> None:
        while True:
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                samples.append((time.monotonic(), min(st.st_size, st.st_blocks * 512)))
            await asyncio.sleep(0.01)

    task = asyncio.create_task(watch())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def smallest(samples: list[tuple[float, int]]) -> int:
    assert samples, "the staged file was never seen"
    return min(size for _, size in samples)


def rate_between(samples: list[tuple[float, int]], low: int, high: int) -> float:
    """Bytes per second on disk between the first samples at or over low and high."""
    start = next((s for s in samples if s[1] >= low), None)
    end = next((s for s in samples if s[1] >= high), None)
    assert start and end and end[0] > start[0], f"no samples from {low} to {high} bytes"
    return (end[1] - start[1]) / (end[0] - start[0])


@pytest.mark.parametrize("engine", ["lftp", "sftp", "rsync"])
async def test_global_pause_stops_running_transfer_and_resume_continues(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """`pause` without item: the running transfer goes back to queued, nothing starts
    (not even a new item with a slot free); `resume` continues it from staging."""
    size = 80 * MiB
    async with counted_bridge(
        tmp_path, mosquitto, sshd, engine, max_concurrent=2,
        bandwidth_limit=limit_for(engine, 20 * MiB, 2),
    ) as (env, proxy):  # fmt: skip
        big = await queue_payload(env, "big.bin", size, seed=1)
        await until_staged(env, big, 48 * MiB)
        assert await command(env, "pause") == {"items": [big]}
        stopped = await wait_item(env, big, lambda i: i["state"] == "queued", "back in queue")
        assert stopped["attempts"] == 0  # a pause spends no attempt
        # Not paused itself: held by the queue, which its payload says.
        assert (stopped["paused"], stopped["held"]) == (False, "queue")
        await env.recorder.wait_for(
            lambda: any(m.json()["paused"] for m in env.recorder.on(f"{PREFIX}/state")),
            5, "state paused",
        )  # fmt: skip
        # Nothing starts while paused: not the stopped item, not a new one with a free slot.
        small = await queue_payload(env, "small.bin", 2 * MiB, seed=2)
        on_disk = staged_bytes(env, big)
        await asyncio.sleep(1.0)
        assert staged_bytes(env, big) == on_disk, "a writer outlived the pause"
        assert len(events_of(env, "started", big)) == 1
        assert events_of(env, "started", small) == []
        assert latest(env, big)["state"] == latest(env, small)["state"] == "queued"

        assert latest(env, small)["held"] == "queue"
        sent_before_resume = proxy.downstream
        async with sampling(env, big, "big.bin") as samples:
            assert await command(env, "resume") == {"items": []}
            await wait_completed(env, [big, small])
        assert all(m["held"] is None for m in item_messages(env, big)[-3:])
        restarted = events_of(env, "started", big)[1]["item"]
        assert restarted["attempts"] == 1
        (done,) = events_of(env, "completed", big)
        assert done["item"]["attempts"] == 1
        assert landed_intact(env, "big.bin") and landed_intact(env, "small.bin")
        assert not list((env.library / "other" / ".q4d-partial").glob("*"))
        # It resumed from staging: the staged file never lost bytes, and after the
        # resume the seedbox sent about what was missing, not the whole file again
        # (lftp fetches again what came since it last saved its status, 1 s of data, and
        # what its 4 connections had in flight, 64 x 32 KiB each: up to ~28 MiB here).
        resent = proxy.downstream - sent_before_resume - (size - on_disk) - 2 * MiB
        print(f"{engine}: {on_disk / MiB:.1f} MiB staged at the pause; after the resume the "
              f"seedbox sent {resent / MiB:+.1f} MiB beyond what was missing")  # fmt: skip
        assert smallest(samples) >= on_disk
        assert resent < on_disk * 0.75


@pytest.mark.parametrize("engine", ["lftp", "sftp"])
async def test_pausing_one_running_item_leaves_the_other_running(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """`pause` with an item stops that transfer only; the other keeps running, and
    `resume` of the item continues it from staging."""
    async with counted_bridge(
        tmp_path, mosquitto, sshd, engine, max_concurrent=2,
        bandwidth_limit=40 * MiB,  # 20 MiB/s each while both run
    ) as (env, _):  # fmt: skip
        first = await queue_payload(env, "first.bin", SIZE, seed=3)
        second = await queue_payload(env, "second.bin", SIZE, seed=4)
        # Past lftp's first second: until it has saved its pget status once, a stopped
        # lftp transfer starts over (docs/protocol.md, staging).
        await until_staged(env, first, 28 * MiB)
        await until_staged(env, second, 28 * MiB)

        assert await command(env, "pause", item_id=first) == {"items": [first]}
        paused = await wait_item(env, first, lambda i: i["state"] == "queued", "back in queue")
        assert paused["paused"] is True and paused["attempts"] == 0
        assert paused["held"] == "item"
        # Still going, or (on a busy machine) its bytes all in already.
        assert latest(env, second)["state"] in ("transferring", "verifying", "done")
        first_on_disk, second_on_disk = staged_bytes(env, first), staged_bytes(env, second)
        await asyncio.sleep(1.0)
        assert staged_bytes(env, first) == first_on_disk, "the paused transfer still writes"
        # The other one went on (it may even have landed by now). Not at the whole limit
        # on the SFTP engine: see test_sftp_pause_of_one_transfer_leaves_the_other_...
        second_now = staged_bytes(env, second)
        if not second_now and (env.library / "other" / "second.bin").exists():
            second_now = SIZE
        # (under load it may have been near its end already: all of it counts too)
        assert second_now >= min(SIZE, second_on_disk + 4 * MiB), "the other one stalled"
        assert len(events_of(env, "started", first)) == 1  # a free slot, but it is paused
        assert latest(env, first)["state"] == "queued"

        async with sampling(env, first, "first.bin") as samples:
            assert await command(env, "resume", item_id=first) == {"items": [first]}
            resumed = await wait_item(env, first, lambda i: not i["paused"], "resumed")
            assert resumed["state"] in ("queued", "transferring") and resumed["held"] is None
            await wait_completed(env, [first, second])
        assert smallest(samples) >= first_on_disk  # resumed from staging
        assert [e["item"]["attempts"] for e in events_of(env, "started", first)] == [1, 1]
        assert len(events_of(env, "started", second)) == 1  # never interrupted
        for item_id in (first, second):
            (done,) = events_of(env, "completed", item_id)
            assert done["item"]["attempts"] == 1 and done["item"]["paused"] is False
        assert landed_intact(env, "first.bin") and landed_intact(env, "second.bin")


async def test_sftp_pause_of_one_transfer_leaves_the_other_the_whole_limit(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """The SFTP engine pays the bandwidth bucket before each read; reads a pause
    cancels give their payment back (found by this test: they used to keep it, ~14 MiB
    of 6 connections x 12 requests x ~205 KiB the running transfer never got)."""
    limit = 20 * MiB  # one SFTP bucket: 10 MiB/s each while both run, 20 for one alone
    async with counted_bridge(
        tmp_path, mosquitto, sshd, "sftp", max_concurrent=2, bandwidth_limit=limit
    ) as (env, _):  # fmt: skip
        first = await queue_payload(env, "first.bin", SIZE, seed=3)
        second = await queue_payload(env, "second.bin", SIZE, seed=4)
        await until_staged(env, first, 8 * MiB)
        await until_staged(env, second, 8 * MiB)
        assert await command(env, "pause", item_id=first) == {"items": [first]}
        before = staged_bytes(env, second)
        # 2 s: by then every read paid for before the pause has been paid off, whatever
        # their order in the bucket (when payments were kept: 14 MiB + 0.56 s x 20 MiB/s).
        await asyncio.sleep(2.0)
        gained = staged_bytes(env, second) - before
        print(f"sftp: alone, the other transfer got {gained / MiB:.1f} MiB in 2 s (limit 20)")
        assert gained >= 0.8 * 2 * limit


async def test_paused_queued_item_waits_while_others_run(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """A paused queued item is not started while another runs, a slot free, nor after
    it finished; `resume` of the item lets it start."""
    engine = "rsync"
    async with counted_bridge(
        tmp_path, mosquitto, sshd, engine, max_concurrent=2,
        bandwidth_limit=limit_for(engine, 20 * MiB, 2),
    ) as (env, _):  # fmt: skip
        assert await command(env, "pause") == {"items": []}  # so both are queued, not started
        running = await queue_payload(env, "running.bin", SIZE, seed=5)
        held = await queue_payload(env, "held.bin", 4 * MiB, seed=6)
        assert await command(env, "pause", item_id=held) == {"items": [held]}
        await wait_item(env, held, lambda i: i["paused"] and i["state"] == "queued", "paused")
        assert await command(env, "resume") == {"items": []}

        await until_staged(env, running, 10 * MiB)
        assert latest(env, held)["state"] == "queued"  # a slot is free, but it is held
        await wait_completed(env, [running])
        await asyncio.sleep(0.5)  # the scheduler has run again since: still held
        assert events_of(env, "started", held) == []
        assert latest(env, held)["state"] == "queued" and latest(env, held)["paused"] is True
        assert not (env.library / "other" / "held.bin").exists()

        assert await command(env, "resume", item_id=held) == {"items": [held]}
        await wait_completed(env, [held])
        (started,) = events_of(env, "started", held)
        assert started["item"]["paused"] is False
        assert landed_intact(env, "running.bin") and landed_intact(env, "held.bin")


# With sftp it also covers connection warm-ups that failed while the seedbox refused
# connections: they are dropped, not handed out once it is back (found by this test).
@pytest.mark.parametrize("far_engine", ["rsync", "sftp"])
async def test_retry_without_item_requeues_every_failed_item(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, far_engine: str
) -> None:
    """Two items fail for reasons that are then fixed: a payload missing on the seedbox
    (permanent, one attempt) and a seedbox that refuses connections (retryable, until
    max_attempts). `retry` with no item re-queues exactly those, attempts reset, and
    they complete; a done and a cancelled item are left alone."""
    closed = free_port()
    far = {**seedbox_config(tmp_path, sshd, "sb2", closed), "engine": far_engine, "hook_flush": ""}
    async with counted_bridge(
        tmp_path, mosquitto, sshd, "lftp", more_seedboxes=(far,), max_attempts=2
    ) as (env, _):  # fmt: skip
        assert await command(env, "pause") == {"items": []}
        fine = await queue_payload(env, "fine.bin", 3 * MiB, seed=7)
        missing = await queue_payload(env, "missing.bin", None, seed=8)
        refused = await queue_payload(env, "refused.bin", 2 * MiB, seed=9, seedbox="sb2")
        dropped = await queue_payload(env, "dropped.bin", 1 * MiB, seed=10)
        assert await command(env, "cancel", item_id=dropped) == {"item": dropped}
        assert await command(env, "resume") == {"items": []}
        await env.recorder.wait_for(
            lambda: {e["item"]["id"] for e in env.recorder.events("failed")} == {missing, refused}
            and events_of(env, "completed", fine),
            30, "two failures and one completion",
        )  # fmt: skip
        failed = {e["item"]["id"]: e["item"] for e in env.recorder.events("failed")}
        assert (failed[missing]["error"]["code"], failed[missing]["attempts"]) == (
            "remote_missing", 1,
        )  # fmt: skip
        assert (failed[refused]["error"]["code"], failed[refused]["attempts"]) == (
            "connection", 2,
        )  # fmt: skip

        make_file(env.remote / "missing.bin", 5 * MiB, seed=8)  # the payload arrives
        async with RelayOnPort(sshd.port, closed):  # and the seedbox answers
            requeued = await command(env, "retry")
            assert sorted(requeued["items"]) == sorted([missing, refused])
            assert requeued["count"] == 2
            assert sorted(requeued["names"]) == ["missing.bin", "refused.bin"]
            await env.recorder.wait_for(
                lambda: len([e for e in env.recorder.events("queued") if e.get("retry")]) >= 2,
                10, "two queued events with retry",
            )  # fmt: skip
            retried = {e["item"]["id"]: e for e in env.recorder.events("queued") if e.get("retry")}
            assert set(retried) == {missing, refused}
            for event in retried.values():
                item = event["item"]
                assert (item["state"], item["attempts"], item["error"]) == ("queued", 0, None)
                assert item["finished_at"] is None and item["next_attempt_at"] is None
            # Each ends once more, completed (or, were the fix not taken, failed again).
            await env.recorder.wait_for(
                lambda: all(len(events_of(env, "completed", i) + events_of(env, "failed", i)) == 2
                            for i in (missing, refused)),
                30, "the retried items to finish",
            )  # fmt: skip
            for item_id in (missing, refused):
                assert events_of(env, "completed", item_id), latest(env, item_id)["error"]
                (done,) = events_of(env, "completed", item_id)
                assert done["item"]["attempts"] == 1 and done["item"]["error"] is None
            nothing = {"items": [], "count": 0, "names": []}
            assert await command(env, "retry") == nothing  # nothing failed any more
        assert landed_intact(env, "missing.bin") and landed_intact(env, "refused.bin")
        # Neither the done nor the cancelled item was touched.
        assert len(events_of(env, "completed", fine)) == 1
        assert latest(env, dropped)["state"] == "cancelled"
        assert events_of(env, "started", dropped) == []


@pytest.mark.parametrize("engine", ["lftp", "rsync", "sftp"])
async def test_set_limits_applies_the_new_rate_to_running_transfers(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """lftp and rsync take their rate when they start: a new limit restarts them, and
    they resume from staging. The SFTP engine takes the new rate as it goes."""
    old, new, size = 10 * MiB, 40 * MiB, 80 * MiB
    async with counted_bridge(
        tmp_path, mosquitto, sshd, engine, max_concurrent=1, bandwidth_limit=old
    ) as (env, proxy):  # fmt: skip
        item = await queue_payload(env, "film.bin", size, seed=11)
        # lftp may fetch again what came since it last saved its status (1 s, 10 MiB
        # here) and what its 4 connections had in flight (64 x 32 KiB each): 18 MiB.
        # Well past that, so that starting over (~36 MiB again) would show.
        on_disk = await until_staged(env, item, 36 * MiB)
        sent_before = proxy.downstream
        async with sampling(env, item, "film.bin") as samples:
            changed_at = time.monotonic()
            result = await command(env, "set_limits", bandwidth_limit=new)
            assert result == {"bandwidth_limit": new, "max_concurrent": 1}
            restarts = 1 if engine == "sftp" else 2
            await env.recorder.wait_for(
                lambda: len(events_of(env, "started", item)) == restarts, 10, "the restart"
            )
            # The same limit again, while it runs: nothing changes, nothing restarts.
            assert await command(env, "set_limits", bandwidth_limit=new) == result
            assert latest(env, item)["state"] == "transferring"
            await wait_completed(env, [item])
        elapsed = time.monotonic() - changed_at
        rate = rate_between(samples, on_disk + 12 * MiB, size - 4 * MiB)
        resent = proxy.downstream - sent_before - (size - on_disk)
        print(f"{engine}: {on_disk / MiB:.1f} MiB staged at the change, then "
              f"{rate / MiB:.1f} MiB/s, done {elapsed:.1f}s later; the seedbox sent "
              f"{resent / MiB:+.1f} MiB beyond what was missing")  # fmt: skip
        states = [m["state"] for m in item_messages(env, item)]
        after_start = states[states.index("transferring") :]
        starts = events_of(env, "started", item)
        assert len(starts) == restarts, states
        if engine == "sftp":
            assert "queued" not in after_start  # never stopped
        else:
            assert "queued" in after_start  # stopped, re-queued, started again
            assert [e["item"]["attempts"] for e in starts] == [1, 1]  # no attempt spent
        (done,) = events_of(env, "completed", item)
        assert done["item"]["attempts"] == 1
        assert landed_intact(env, "film.bin")
        # The rest came at the new rate (at the old one it would take 5 s), still limited.
        # SFTP: reads already paid at the old rate still go out on their old schedule
        # (up to 6 connections x 12 requests) while new ones pay the new rate: for a
        # second or so the rate ramps up and can exceed the new limit by the old one.
        low, high = (0.7 * new, 1.2 * new) if engine != "sftp" else (0.5 * new, 1.1 * (new + old))
        assert low <= rate <= high, f"{rate / MiB:.1f} MiB/s"
        assert smallest(samples) >= on_disk and resent < on_disk * 0.75  # resumed
        state = await env.recorder.wait_for(
            lambda: [m.json() for m in env.recorder.on(f"{PREFIX}/state")
                     if m.json()["limits"]["bandwidth_limit"] == new],
            5, "the new limit in the state",
        )  # fmt: skip
        assert state[-1]["limits"]["max_concurrent"] == 1
