"""The engines' tools (lftp, rsync) run in their own session: with autogroup scheduling
that session is its own group, so `transfers.nice` must reach the group, not only the
processes, or the tools weigh as much as the bridge on a busy box."""

from __future__ import annotations

from pathlib import Path

import pytest
from q4d_bridge.transfer.engines.process import launcher, run_tool
from q4d_bridge.transfer.errors import TransferError

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(), reason="this kernel has no autogroup scheduling"
)
# The group's nice is set once the tool runs: read it a moment later.
REPORT = "sleep 0.3; cat /proc/self/autogroup >&2; exit 3"


async def report_of(nice: int) -> str:
    async def tick() -> None:
        pass

    with pytest.raises(TransferError) as failed:
        await run_tool(
            [*launcher(nice), "sh", "-c", REPORT], tool="sh", item_id="i", patterns=(),
            on_tick=tick, nice=nice,
        )  # fmt: skip
    return str(failed.value)


async def test_the_tools_session_gets_the_configured_nice() -> None:
    assert (await report_of(7)).endswith(" nice 7")
    assert (await report_of(0)).endswith(" nice 0")
