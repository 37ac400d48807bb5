"""The bridge's share of the machine. The engines' tools (lftp, rsync) run in their own session: with autogroup scheduling
that session is its own group, so `transfers.nice` must reach the group, not only the
processes, or the tools weigh as much as the bridge on a busy box."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from q4d_bridge.transfer.engines.process import launcher, run_tool
from q4d_bridge.transfer.errors import TransferError

autogroup = pytest.mark.skipif(
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


@autogroup
async def test_the_tools_session_gets_the_configured_nice() -> None:
    assert (await report_of(7)).endswith(" nice 7")
    assert (await report_of(0)).endswith(" nice 0")


def test_the_bridge_raises_its_soft_open_file_limit() -> None:
    """The SFTP engine keeps files open ahead on each of up to 24 connections."""
    probe = (
        "import resource as r\n"
        "from q4d_bridge.cli import OPEN_FILES_CAP, raise_open_file_limit\n"
        "soft, hard = r.getrlimit(r.RLIMIT_NOFILE)\n"
        "r.setrlimit(r.RLIMIT_NOFILE, (256, hard))\n"
        "raise_open_file_limit()\n"
        "soft, hard = r.getrlimit(r.RLIMIT_NOFILE)\n"
        "print(soft == min(hard, OPEN_FILES_CAP), soft > 256)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert result.stdout.split() == ["True", "True"]
