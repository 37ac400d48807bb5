"""The final step of landing: a verified payload put at its library path, replacing an
older copy in one step where the filesystem can (never a moment without a copy)."""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path

import pytest
from q4d_bridge.transfer import landing
from q4d_bridge.transfer.landing import Modes, exchange, put_in_place, staging_dir


def staged(root: Path, kind: str, text: str) -> tuple[Path, Path]:
    stage = staging_dir(root, "item1")
    stage.mkdir(parents=True)
    target = stage / "Show.S01"
    if kind == "folder":
        target.mkdir()
        (target / "e01.mkv").write_text(text)
    else:
        target.write_text(text)
    return stage, target


def test_exchange_swaps_two_folders_in_one_step(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "new").write_text("new")
    (tmp_path / "b").write_text("old file")
    assert exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "new").read_text() == "new"
    assert (tmp_path / "a").read_text() == "old file"
    with pytest.raises(FileNotFoundError):
        exchange(tmp_path / "missing", tmp_path / "b")


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_new_copy_replaces_the_library_s_and_staging_goes(tmp_path: Path, kind: str) -> None:
    final = tmp_path / "tv" / "Show.S01"
    final.mkdir(parents=True)
    (final / "e01.mkv").write_text("old")
    (final / "stale.nfo").write_text("old")
    stage, target = staged(tmp_path, kind, "new")
    put_in_place(target, final, stage, Modes())
    landed = final / "e01.mkv" if kind == "folder" else final
    assert landed.read_text() == "new"
    assert not (final / "stale.nfo").exists()
    assert not stage.exists() and not stage.parent.exists()  # .q4d-partial tidied


def test_without_exchange_the_older_copy_steps_aside_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[Path, Path]] = []

    def unsupported(a: Path, b: Path) -> bool:
        asked.append((a, b))
        return False

    monkeypatch.setattr(landing, "exchange", unsupported)
    final = tmp_path / "Show.S01"
    final.mkdir()
    (final / "e01.mkv").write_text("old")
    stage, target = staged(tmp_path, "folder", "new")
    put_in_place(target, final, stage, Modes())
    assert asked == [(target, final)]
    assert (final / "e01.mkv").read_text() == "new" and not stage.exists()


def test_a_filesystem_without_exchange_is_told_apart_from_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(code: int) -> object:
        def renameat2(*_args: object) -> int:
            ctypes.set_errno(code)
            return -1

        return renameat2

    for code, supported in ((errno.EINVAL, False), (errno.EOPNOTSUPP, False)):
        monkeypatch.setattr(landing._libc, "renameat2", failing(code))
        assert exchange(tmp_path / "a", tmp_path / "b") is supported
    monkeypatch.setattr(landing._libc, "renameat2", failing(errno.EACCES))
    with pytest.raises(PermissionError):
        exchange(tmp_path / "a", tmp_path / "b")
