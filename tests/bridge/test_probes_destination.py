"""The destination test (`config_test` kind `destination`) on real folders: a folder
that exists and one made for the test (and removed again), the owner and group the
destination's plan and rules ask for, an unknown owner, a folder under a file, the
settings a schema refuses; and, as an unprivileged user, a folder it cannot write and
a chown it may not do. Every test leaves the folders as it found them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge import probes
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.probes import ProbeError

from tests.helpers.configs import bridge_config

pytestmark = pytest.mark.timeout(60)
BRIDGE = str(Path(__file__).parents[2] / "bridge")
# The test in a child process that drops root after its imports (which live under /root).
AS_NOBODY = """
import asyncio, concurrent.futures.thread, json, os, sys
from q4d_bridge.probes.base import ProbeError
from q4d_bridge.probes.destination import destination_target, probe_destination
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
try:
    target = destination_target(json.loads(sys.argv[1]), None)
    print(json.dumps({"ok": True, **asyncio.run(probe_destination(target, 0))}))
except ProbeError as err:
    print(json.dumps({"ok": False, "code": err.code, "message": err.message, **err.detail}))
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "key").write_text("k")
    (tmp_path / "known_hosts").write_text("h")
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=tmp_path / "key",
        known_hosts=tmp_path / "known_hosts",
    )  # fmt: skip
    raw["destinations"]["tv"] = {"path": str(tmp_path / "library" / "tv"), "owner": 4321}
    raw["rules"][0]["group"] = 4322
    return parse_config(raw)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def failure(value: Any, config: Config) -> ProbeError:
    with pytest.raises(ProbeError) as err:
        await probes.run("destination", value, config)
    return err.value


async def test_an_existing_folder_and_one_made_for_the_test(tmp_path: Path, config: Config) -> None:
    library = tmp_path / "media"
    library.mkdir()
    (library / "kept.mkv").write_text("x")
    found = await probes.run("destination", str(library), config)
    assert found == {
        "path": str(library), "existed": True, "checks": ["create", "write", "rename"],
        "free_space": found["free_space"], "min_free_space": 1024**3,
    }  # fmt: skip
    assert found["free_space"] > 0
    assert tree(library) == ["kept.mkv"]
    deep = library / "new" / "tv"
    found = await probes.run("destination", {"path": str(deep)}, config)
    assert (found["existed"], found["checks"]) == (False, ["create", "write", "rename"])
    assert tree(library) == ["kept.mkv"]  # the folders made for the test went too


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
async def test_owner_and_group(tmp_path: Path, config: Config) -> None:
    found = await probes.run(
        "destination", {"path": str(tmp_path / "x"), "owner": 4321, "group": "4322"}, config
    )
    assert found["checks"] == ["create", "write", "rename", "chown 4321:4322"]
    # a configured destination: its plan's owner, and the group a rule sending there sets
    found = await probes.run("destination", {"id": "tv"}, config)
    assert found["checks"] == ["create", "write", "rename", "chown 4321:", "chown 4321:4322"]
    assert not (tmp_path / "library").exists()


async def test_refusals(tmp_path: Path, config: Config) -> None:
    err = await failure({"path": str(tmp_path), "owner": "q4d-nobody-here"}, config)
    assert (err.code, err.message) == (
        "chown_failed",
        "no such user or group q4d-nobody-here: on this host: use numeric ids",
    )
    assert err.detail == {
        "path": str(tmp_path), "existed": True, "checks": ["create", "write", "rename"],
    }  # fmt: skip
    a_file = tmp_path / "file"
    a_file.write_text("x")
    err = await failure(str(a_file / "tv"), config)
    assert err.code == "missing"
    assert err.message.startswith(f"cannot create a folder in {a_file / 'tv'} (not a directory)")
    assert tree(tmp_path) == ["file", "key", "known_hosts"]
    err = await failure({"id": "music"}, config)
    assert (err.code, err.message) == (
        "not_found",
        "no destination 'music' (known: tv, movies, default)",
    )
    err = await failure("relative/path", config)
    assert err.detail["errors"] == ["path: must be an absolute path, got 'relative/path'"]
    err = await failure({"path": "/x", "owner": "no spaces", "extract": "yes"}, config)
    assert err.code == "invalid"
    assert set(err.detail["fields"]) == {"owner", "extract"}


def as_nobody(value: Any) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, json.dumps(value)],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PYTHONPATH": BRIDGE},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_as_a_user_who_may_not() -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to drop privileges")
    # pytest's own temporary folders are root's alone: this one is open to `nobody`
    workdir = Path(tempfile.mkdtemp(prefix="q4d-probe-"))
    try:
        workdir.chmod(0o755)
        closed, open_ = workdir / "closed", workdir / "open"
        closed.mkdir()  # root's, 0755: nobody may not write there
        open_.mkdir()
        open_.chmod(0o777)
        answer = as_nobody(str(closed))
        assert answer == {
            "ok": False, "code": "not_writable", "path": str(closed), "existed": True,
            "checks": [],
            "message": f"cannot create a folder in {closed} (permission denied): give the "
            "bridge's user write access to it (or its parent)",
        }  # fmt: skip
        answer = as_nobody(str(closed / "tv"))
        assert (answer["code"], answer["existed"]) == ("missing", False)
        answer = as_nobody({"path": str(open_), "owner": 1000})
        assert (answer["code"], answer["message"]) == (
            "chown_failed",
            "cannot chown to 1000: (operation not permitted): run the bridge as root or drop "
            "owner:",
        )
        assert answer["checks"] == ["create", "write", "rename"]
        assert answer["ok"] is False
        assert as_nobody(str(open_))["ok"] is True
        assert tree(workdir) == ["closed", "open"]
    finally:
        shutil.rmtree(workdir)
