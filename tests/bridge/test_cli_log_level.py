"""`q4d-bridge run --log-level LEVEL` and `--debug` over the config's log_level, with
what loading the config warns about (a Q4D-era variable) logged in the same format."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import recording
from tests.helpers.services import Mosquitto, free_port

pytestmark = pytest.mark.timeout(90)
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ", re.M)
DEPRECATION = (
    "WARNING q4d_bridge.config.environment: Q4D_SEGMENTS is Queue4Download's name and is "
    "deprecated: use Q4D_TRANSFERS__LFTP__SEGMENTS (transfers.lftp.segments)"
)


async def run_until_online(
    tmp_path: Path, mosquitto: Mosquitto, log_level: str, *flags: str
) -> tuple[int, str]:
    key, known = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("h")
    config = bridge_config(
        tmp_path / "data", tmp_path / "library", key=key, known_hosts=known,
        broker_port=mosquitto.port, ssh_port=free_port(), log_level=log_level,
    )  # fmt: skip
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(str(root / d) for d in ("bridge", "seedbox", "")),
        "Q4D_SEGMENTS": "6",
    }
    async with recording(mosquitto.port, "q4d/bridge/test/status") as rec:
        proc = subprocess.Popen(
            [sys.executable, "-m", "q4d_bridge.cli", "run", "--config", str(path), *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            await rec.wait_for(
                lambda: any(m.payload and m.json()["state"] == "online" for m in rec.messages),
                30, "the bridge online",
            )  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
    return proc.returncode, output.decode(errors="replace")


def levels(output: str) -> set[str]:
    return set(LINE.findall(output))


async def test_debug_overrides_the_configs_level(tmp_path: Path, mosquitto: Mosquitto) -> None:
    code, output = await run_until_online(tmp_path, mosquitto, "ERROR", "--debug")
    assert code == 0
    assert {"DEBUG", "INFO", "WARNING"} <= levels(output)
    assert output.count(DEPRECATION) == 1


async def test_log_level_overrides_the_configs_level(tmp_path: Path, mosquitto: Mosquitto) -> None:
    code, output = await run_until_online(tmp_path, mosquitto, "DEBUG", "--log-level", "warning")
    assert code == 0
    assert levels(output) == {"WARNING"}, output
    assert output.count(DEPRECATION) == 1


async def test_without_a_flag_the_configs_level_holds(tmp_path: Path, mosquitto: Mosquitto) -> None:
    code, output = await run_until_online(tmp_path, mosquitto, "INFO")
    assert code == 0
    assert "INFO" in levels(output) and "DEBUG" not in levels(output)


def test_a_bad_level_is_refused_by_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "q4d_bridge.cli", "run", "--log-level", "loud"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "argument --log-level: invalid choice: 'LOUD'" in result.stderr
