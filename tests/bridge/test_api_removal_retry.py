"""The API's pending seedbox removals: what a restart finds is tried at once, and an
unexpected failure of one attempt (a bug) is logged and retried, never ending the job
that serves the API. The bridge is built, not run; its client call fails on purpose."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from q4d_bridge.api.removal import Removal
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.persistence.api_removals import PendingRemoval

KEY = "d" * 40


@pytest.fixture
async def bridge(raw: dict[str, Any]) -> AsyncIterator[Bridge]:
    raw["api"] = {"enabled": True, "port": 0, "username": "arr", "password": "arr-secret-pw"}
    raw["transfers"]["retry_initial"] = 0.05
    built = Bridge(parse_config(raw))
    yield built
    built.store.close()


async def test_a_failing_attempt_is_retried_and_the_job_goes_on(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    assert bridge.api is not None
    (job,) = bridge.api.jobs
    removal = job.__self__  # type: ignore[attr-defined]
    assert isinstance(removal, Removal)
    # left by a bridge that stopped before the client answered: due at once
    removal.pending.save(PendingRemoval(KEY, "sb1", KEY, delete_data=True))
    calls: list[tuple[str, str, bool]] = []

    async def steer(op: str, seedbox: str, info_hash: str, *, delete_data: bool) -> None:
        calls.append((seedbox, info_hash, delete_data))
        if len(calls) == 1:
            raise RuntimeError("a bug in a client adapter")

    removal.dispatcher.steer = steer  # type: ignore[method-assign]
    task = asyncio.create_task(removal.run())
    try:
        for _ in range(100):
            if not removal.pending.pending():
                break
            await asyncio.sleep(0.05)
        assert not removal.pending.pending()
        assert calls == [("sb1", KEY, True)] * 2
        assert not task.done()  # the job serves on
        assert f"removing {KEY} from sb1 failed" in caplog.text
        assert "RuntimeError: a bug in a client adapter" in caplog.text
        assert any(r.levelno == logging.ERROR for r in caplog.records)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
