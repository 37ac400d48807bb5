"""Real faults against real daemons: a frozen server, dropped SSH sessions, a payload
deleted on the seedbox, a seedbox that keeps failing, a full destination."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest
from q4d_bridge.models import ItemState

from tests.bridge.test_e2e import ENGINES, Env, digest_tree, make_file, running_bridge
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(180)
FAST = {"stall_timeout": 2, "retry_initial": 0.2, "max_attempts": 4, "max_concurrent": 1}


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


SLOW = {**FAST, "bandwidth_limit": "20MiB"}  # 60 MiB take ~3 s: time to interfere


async def start_transfer(env: Env, name: str, seed: int) -> None:
    """A 60 MiB payload, queued and past its first MiB."""
    make_file(env.remote / name, 60 * 2**20, seed=seed)
    await env.complete(name, f"{seed}" * 40)
    await env.recorder.wait_for(
        lambda: any(i.bytes_done >= 2**20 for i in env.bridge.lifecycle.items.values()),
        60,
        "progress",
    )


def landed_intact(env: Env, name: str) -> bool:
    return digest_tree(env.library / "other" / name) == digest_tree(env.remote / name)


@ENGINES
async def test_frozen_server_trips_the_watchdog(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=SLOW) as env:
        await start_transfer(env, "frozen.bin", 2)
        frozen = sshd.session_pids()  # the sshd processes serving our connections
        signal_all(frozen, signal.SIGSTOP)
        try:
            await env.recorder.wait_for(
                lambda: any(e["item"]["error"] and e["item"]["error"]["code"] == "stalled"
                            for e in env.recorder.events("waiting")),
                30, "watchdog",
            )  # fmt: skip
        finally:
            await asyncio.sleep(1)
            signal_all(frozen, signal.SIGCONT)
        await env.wait_settled(1, timeout=90)
        (item,) = env.bridge.lifecycle.items.values()
        assert item.state is ItemState.DONE and item.attempts >= 2
        assert landed_intact(env, "frozen.bin")


@ENGINES
async def test_dropped_ssh_sessions_are_retried(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=SLOW) as env:
        await start_transfer(env, "dropped.bin", 3)
        signal_all(sshd.session_pids(), signal.SIGKILL)  # every live SSH connection drops
        await env.wait_settled(1, timeout=90)
        (item,) = env.bridge.lifecycle.items.values()
        # lftp reconnects by itself (net:max-retries); the SFTP and rsync engines fail
        # the attempt and the bridge retries it. Either way it lands intact.
        assert item.state is ItemState.DONE
        assert item.attempts >= (1 if engine == "lftp" else 2)
        assert landed_intact(env, "dropped.bin")


@ENGINES
async def test_payload_deleted_on_seedbox_mid_transfer(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=SLOW) as env:
        await start_transfer(env, "gone.bin", 4)
        (env.remote / "gone.bin").unlink()
        signal_all(sshd.session_pids(), signal.SIGKILL)
        await env.wait_settled(1, timeout=90)
        (item,) = env.bridge.lifecycle.items.values()
        assert (item.state, item.error_code) == (ItemState.FAILED, "remote_missing")
        assert not (env.library / "other" / "gone.bin").exists()


async def test_breaker_rests_a_failing_seedbox(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    transfers = {**FAST, "breaker_failures": 2, "breaker_cooldown": 600}
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", transfers=transfers,
        known_hosts=sshd.wrong_known_hosts,
    ) as env:  # fmt: skip
        for n in range(4):
            make_file(env.remote / f"b{n}.mkv", 100)
            await env.complete(f"b{n}.mkv", f"{n}" * 40)
        rec = env.recorder
        await rec.wait_for(lambda: rec.events("breaker_open"), 30, "breaker to open")
        await asyncio.sleep(1)
        states = sorted(i.state.value for i in env.bridge.lifecycle.items.values())
        assert states == ["failed", "failed", "queued", "queued"]
        node = env.bridge.state().as_dict()["seedboxes"]["sb1"]
        assert node["breaker"] == "open" and node["consecutive_failures"] == 2
        assert rec.events("breaker_open")[0]["seedbox"] == "sb1"


async def test_waits_for_space_then_proceeds(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """The destination's free space comes from an injected reading, so the test does
    not depend on what else writes to this machine's disk meanwhile."""
    free = [40 * 2**20]  # the 50 MiB payload plus the 10 MiB margin needs 60
    transfers = {**FAST, "min_free_space": 10 * 2**20, "space_recheck": 1}
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", transfers=transfers,
        disk_free=lambda _path: free[0],
    ) as env:  # fmt: skip
        make_file(env.remote / "roomy.bin", 50 * 2**20)
        await env.complete("roomy.bin", "8" * 40)
        await env.recorder.wait_for(
            lambda: any(i.error_code == "insufficient_space" and i.state is ItemState.WAITING
                        for i in env.bridge.lifecycle.items.values()),
            30, "insufficient_space",
        )  # fmt: skip
        (item,) = env.bridge.lifecycle.items.values()
        assert item.attempts == 0  # waiting for space spends no attempt
        assert "has 41943040 bytes free; this payload needs 62914560" in (item.last_error or "")
        free[0] = 60 * 2**20
        await env.wait_settled(1, timeout=60)
        assert item.state is ItemState.DONE
        await env.recorder.wait_for(
            lambda: env.bridge.state().as_dict()["destinations"]["default"]["free_space"] == free[0],
            10, "the state to show the injected free space",
        )  # fmt: skip
