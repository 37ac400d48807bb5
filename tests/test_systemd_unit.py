"""The systemd unit for plain installs: systemd's own checks accept it (verify, and the
offline security audit), and it runs the bridge as its own user with its state where
data_dir points."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parent.parent / "packaging" / "systemd"
UNIT = SYSTEMD / "q4d-bridge.service"
INSTALLED_AT = "/opt/q4d-bridge/bin/q4d-bridge"
# systemd-analyze's own scale: 0 (best) to 10; "OK" ends at 4.9.
MAX_EXPOSURE = 2.5

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture
def testable_unit(tmp_path: Path) -> Path:
    """The unit with its ExecStart on this machine's q4d-bridge (verify checks that the
    program exists); nothing else changed."""
    here = Path(sys.executable).parent / "q4d-bridge"
    assert here.is_file(), "the venv's console script (pip install -e .)"
    text = UNIT.read_text()
    assert INSTALLED_AT in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_AT, str(here)))
    return unit


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(testable_unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(testable_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_offline_security_audit_rates_it_ok(testable_unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(testable_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip(f"systemd-analyze too old for --offline: {result.stderr.strip()}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_it_runs_as_its_own_user_with_its_state_as_data_dir() -> None:
    unit = settings(UNIT.read_text())
    assert unit["ExecStart"] == [f"{INSTALLED_AT} run --config /etc/q4d/bridge.yaml"]
    assert unit["User"] == unit["Group"] == ["q4d-bridge"]
    sysusers = (SYSTEMD / "q4d-bridge.sysusers").read_text().splitlines()
    assert [line.split()[:2] for line in sysusers if line and not line.startswith("#")] == [
        ["u", "q4d-bridge"]
    ]
    # %S is /var/lib for a system unit: data_dir is the StateDirectory systemd makes
    assert unit["StateDirectory"] == ["q4d-bridge"]
    assert unit["Environment"] == ["Q4D_DATA_DIR=%S/q4d-bridge"]
    assert unit["ProtectSystem"] == ["strict"] and "ReadWritePaths" not in unit
    assert unit["Restart"] == ["on-failure"]
