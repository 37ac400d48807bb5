"""The seedbox tree on the oldest Python it supports (3.8), laid out as an installer
copies it (~/.local/share/q4d-seedbox/{bin,q4d_seedbox,vendor}) without pip."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import paho
import pytest

from tests.seedbox import SEEDBOX
from tests.seedbox.support import COMPLETED, Seedbox, Subscriber, info_hash

pytestmark = pytest.mark.timeout(120)


def python38() -> str:
    found = shutil.which("python3.8")
    candidates = [found] if found else []
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in Path(root).glob("versions/3.8*/bin/python3.8"))
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "pass"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return candidate
    pytest.skip("no Python 3.8 here")


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    share = tmp_path / "share" / "q4d-seedbox"
    shutil.copytree(SEEDBOX / "bin", share / "bin")
    shutil.copytree(
        SEEDBOX / "q4d_seedbox", share / "q4d_seedbox", ignore=shutil.ignore_patterns("__pycache__")
    )
    return share


def test_runs_on_python38_with_vendored_paho(
    installed: Path, seedbox: Seedbox, subscribe: Callable[..., Subscriber], tmp_path: Path
) -> None:
    py38 = python38()
    sub = subscribe(COMPLETED)
    h = info_hash("py38")
    hook = installed / "bin" / "q4d-hook"

    # No paho-mqtt: the completion is still saved, and the reason logged.
    first = seedbox.hook_run(
        "qbittorrent", h, "Show", str(tmp_path / "Show"), program=hook, python=py38
    )
    assert first.returncode == 0, first.stderr
    assert "paho-mqtt >= 2.0 is missing" in first.stderr
    assert len(seedbox.pending()) == 1

    # paho-mqtt is pure Python: the installer can put it in vendor/.
    (installed / "vendor").mkdir()
    (installed / "vendor" / "paho").symlink_to(Path(paho.__file__).parent)
    flushed = seedbox.hook_run("flush", program=hook, python=py38)
    assert flushed.returncode == 0, flushed.stderr
    second = seedbox.hook_run(
        "qbittorrent", h, "Show 2", str(tmp_path / "Show 2"), program=hook, python=py38
    )
    assert second.returncode == 0, second.stderr
    names = [m.json()["name"] for m in sub.wait_count(COMPLETED, 2)]
    assert names == ["Show", "Show 2"]

    labeld = subprocess.run(
        [py38, str(installed / "bin" / "q4d-labeld"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert labeld.returncode == 0 and labeld.stdout.startswith("q4d-labeld "), labeld.stderr


def test_every_module_compiles_on_python38(installed: Path) -> None:
    py38 = python38()
    done = subprocess.run(
        [py38, "-m", "compileall", "-q", str(installed / "q4d_seedbox")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
