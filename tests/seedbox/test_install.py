"""seedbox/install.sh into a temporary HOME, against the real torrent-client daemons:
what it writes (and with which modes), the hook wired into each client, a second run
that changes nothing, and --uninstall leaving HOME (and the client) as it found them."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from q4d_seedbox.clients.rtorrent import server_proxy
from q4d_seedbox.installer import remove_block, set_block

from tests.helpers.qbittorrent import QBittorrent
from tests.seedbox import SEEDBOX
from tests.seedbox.installing import (
    INSTALL,
    Home,
    advice,
    idempotent,
    listing,
    paho_wheel,
    secret,
)
from tests.seedbox.support import (
    COMPLETED,
    Deluge,
    DelugeWeb,
    QbtApi,
    RTorrent,
    Subscriber,
    Transmission,
    TransmissionRpc,
    need,
    wait_until,
)
from tests.seedbox.test_python38 import python38

pytestmark = pytest.mark.timeout(180)

QBT_ARGS = 'qbittorrent "%I" "%N" "%F" "%L" "%G" "%Z" "%T"'
TR_ENABLED, TR_FILENAME = "script-torrent-done-enabled", "script-torrent-done-filename"


def check_installed(home: Home) -> None:
    """What every install writes, with its modes."""
    assert stat.S_IMODE(home.config.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.config.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((home.state / "outbox").stat().st_mode) == 0o700
    for name in ("q4d-hook", "q4d-hook-deluge", "q4d-labeld"):
        wrapper = home.bin / name
        assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755
        assert f"{home.tree}/bin/{name}" in wrapper.read_text()
    assert (home.tree / "q4d_seedbox" / "hook.py").read_bytes() == (
        SEEDBOX / "q4d_seedbox" / "hook.py"
    ).read_bytes()
    assert (home.tree / "install.sh").exists()
    assert (home.bin / "my-tool").exists()


# --- qBittorrent ----------------------------------------------------------------------


def test_qbittorrent(home: Home, tmp_path: Path) -> None:
    original = listing(home.path)
    with QBittorrent(tmp_path / "qbt") as qbt:
        api = QbtApi(qbt.url, qbt.username, qbt.password)
        password = secret(tmp_path, "qbt", qbt.password)
        args = ["--client", "qbittorrent", "--client-url", qbt.url]
        args += ["--client-user", qbt.username, "--client-password-file", str(password)]
        home.install(*args)
        check_installed(home)
        prefs = api.preferences()
        command = f'"{home.bin}/q4d-hook" {QBT_ARGS}'
        assert (prefs["autorun_enabled"], prefs["autorun_program"]) == (True, command)
        config = home.config.read_text()
        assert "[labels]\nclient = qbittorrent\n" in config
        assert f"password_file = {password}\n" in config
        assert qbt.password not in config
        idempotent(home, *args)

        # The bridge's default hook_flush, through a login shell's `~`.
        flushed = subprocess.run(
            ["sh", "-c", "~/.local/bin/q4d-hook flush"],
            env=home.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (flushed.returncode, flushed.stdout) == (0, "sent 0, 0 left\n"), flushed.stderr

        home.uninstall()
        assert listing(home.path) == original
        prefs = api.preferences()
        assert (prefs["autorun_enabled"], prefs["autorun_program"]) == (False, "")

        # Someone else's program in qBittorrent's one slot: refused, then taken over
        # with --replace-hook, and given back by --uninstall.
        theirs = "/usr/local/bin/notify %N"
        api.set_preferences(autorun_enabled=True, autorun_program=theirs)
        refused = home.install(*args, expect=1)
        assert "already runs '/usr/local/bin/notify %N'" in refused.stderr
        assert api.preferences()["autorun_program"] == theirs
        home.install(*args, "--replace-hook")
        assert api.preferences()["autorun_program"] == command
        home.uninstall()
        prefs = api.preferences()
        assert (prefs["autorun_enabled"], prefs["autorun_program"]) == (True, theirs)
    assert listing(home.path) == original
    assert qbt.password not in home.output()


def test_password_from_stdin_and_a_wrong_one(home: Home, tmp_path: Path) -> None:
    original = listing(home.path)
    with QBittorrent(tmp_path / "qbt") as qbt:
        args = ["--client", "qbittorrent", "--client-url", qbt.url]
        args += ["--client-user", qbt.username, "--client-password-file", "-"]
        wrong = home.install(*args, stdin="not-the-password\n", expect=1)
        assert "refused the login" in wrong.stderr
        assert "not-the-password" not in wrong.stdout + wrong.stderr
        home.install(*args, stdin=qbt.password + "\n")
        stored = home.config.parent / "qbittorrent.password"
        assert stored.read_text() == qbt.password + "\n"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert f"password_file = {stored}\n" in home.config.read_text()
        home.uninstall()
    assert listing(home.path) == original


# --- rTorrent -------------------------------------------------------------------------


def test_rtorrent(home: Home, tmp_path: Path) -> None:
    need("rtorrent")
    rc = home.path / ".rtorrent.rc"
    rc.write_text("# my rTorrent\nthrottle.global_down.max_rate.set_kb = 1000\n")
    original = listing(home.path)
    daemon = RTorrent(tmp_path / "rtorrent", unix=True)
    daemon.start()
    try:
        proxy = server_proxy(daemon.url, None, None, 5)
        args = ["--client", "rtorrent", "--client-url", daemon.url]
        home.install(*args)
        check_installed(home)
        command = (
            f"execute.nothrow.bg={home.bin}/q4d-hook,rtorrent,"
            "$d.hash=,$d.name=,$d.base_path=,$d.custom1=,$d.size_bytes="
        )
        text = rc.read_text()
        assert text.startswith("# my rTorrent\nthrottle.global_down.max_rate.set_kb = 1000\n")
        assert text.count("# BEGIN q4d-seedbox") == 1
        assert f'method.set_key = event.download.finished, q4d, "{command}"\n' in text
        # The running rTorrent has it too, without a restart.
        assert proxy.method.get("", "event.download.finished")["q4d"] == command
        assert f"[labels]\nclient = rtorrent\nurl = {daemon.url}\n" in home.config.read_text()
        idempotent(home, *args)
        home.uninstall()
        assert "q4d" not in proxy.method.list_keys("", "event.download.finished")
    finally:
        daemon.stop()
    assert listing(home.path) == original


# --- Transmission ---------------------------------------------------------------------


def test_transmission(home: Home, tmp_path: Path) -> None:
    need("transmission-daemon")
    original = listing(home.path)
    daemon = Transmission(tmp_path / "transmission")
    settings = daemon.workdir / "config" / "settings.json"
    password = secret(tmp_path, "tr", daemon.password)
    args = ["--client", "transmission", "--client-url", daemon.url]
    args += ["--client-user", daemon.username, "--client-password-file", str(password)]
    args += ["--transmission-config", str(settings.parent)]
    hook = str(home.bin / "q4d-hook")

    def session() -> tuple[object, object]:
        got = TransmissionRpc(daemon)("session-get")
        return got[TR_ENABLED], got[TR_FILENAME]

    def in_file() -> tuple[object, object]:
        data = json.loads(settings.read_text())
        return data.get(TR_ENABLED), data.get(TR_FILENAME)

    with daemon:
        # Running: set over RPC (the daemon would overwrite settings.json on exit).
        home.install(*args)
        check_installed(home)
        assert session() == (True, hook)
        assert in_file() == (True, hook)
        idempotent(home, *args)
    # transmission-daemon wrote its own settings.json on exit: the hook is still there.
    assert in_file() == (True, hook)
    home.uninstall()  # stopped: settings.json only
    assert in_file() == (False, "")
    assert listing(home.path) == original

    home.install(*args)  # stopped: settings.json, read when the daemon starts
    assert in_file() == (True, hook)
    with daemon:
        assert session() == (True, hook)
        home.uninstall()
        assert session() == (False, "")
    assert in_file() == (False, "")
    assert listing(home.path) == original


# --- Deluge ---------------------------------------------------------------------------


def test_deluge(home: Home, tmp_path: Path) -> None:
    need("deluged")
    need("deluge-web")
    original = listing(home.path)
    deluge = Deluge(tmp_path / "deluge")
    deluge.start()
    try:
        web = DelugeWeb(deluge.url)
        password = secret(tmp_path, "deluge", deluge.password)
        args = ["--client", "deluge", "--client-url", deluge.url]
        args += ["--client-password-file", str(password)]
        home.install(*args)
        check_installed(home)
        hook = str(home.bin / "q4d-hook-deluge")
        assert {"Execute", "Label"} <= set(web("core.get_enabled_plugins"))
        assert [c[1:] for c in web("execute.get_commands")] == [["complete", hook]]
        config = home.config.read_text()
        assert f"[labels]\nclient = deluge\nurl = {deluge.url}\npassword_file = {password}\n" in (
            config
        )
        idempotent(home, *args)
        assert len(web("execute.get_commands")) == 1
        home.uninstall()
        # The plugins it switched on are off again.
        wait_until(
            lambda: not {"Execute", "Label"} & set(web("core.get_enabled_plugins")),
            10,
            "the plugins to be disabled",
        )
    finally:
        deluge.stop()
    assert listing(home.path) == original


# --- paho-mqtt, Python 3.8, offline ---------------------------------------------------


def test_offline_then_vendored_paho_on_python38(
    home: Home, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    py38 = python38()  # has pip, not paho-mqtt
    sub = subscribe(COMPLETED)
    original = listing(home.path)
    offline = home.install("--python", py38, "--offline")
    assert "WARNING: paho-mqtt is not installed" in offline.stderr
    assert not (home.tree / "vendor").exists()
    # Without paho the completion is saved, and waits.
    data = tmp_path / "Show.S01E01.mkv"
    data.write_bytes(b"x" * 1000)
    saved = home.hook("qbittorrent", "a" * 40, data.name, str(data))
    assert saved.returncode == 0, saved.stderr
    assert len(list((home.state / "outbox").glob("*.msg"))) == 1

    wheels = paho_wheel(tmp_path / "wheels")
    # With paho-mqtt there, the install sends what waited for it.
    vendored = home.install("--python", py38, "--wheel-dir", str(wheels.parent))
    assert "outbox: sent the completions that were waiting (sent 1, 0 left)" in vendored.stderr
    assert sub.wait_count(COMPLETED, 1)[0].json()["path"] == str(data)
    assert (home.tree / "vendor" / "paho" / "mqtt" / "client.py").exists()
    assert py38 in (home.bin / "q4d-hook").read_text()
    idempotent(home, "--python", py38, "--wheel-dir", str(wheels.parent))
    flushed = home.hook("flush")
    assert (flushed.returncode, flushed.stdout) == (0, "sent 0, 0 left\n"), flushed.stderr
    checked = home.hook("test")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    home.uninstall()
    assert listing(home.path) == original


def test_wheel_without_pip(home: Home, tmp_path: Path) -> None:
    """A Python without pip unpacks the wheel itself."""
    venv = tmp_path / "bare"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    wheels = paho_wheel(tmp_path / "wheels")
    original = listing(home.path)
    home.install("--python", str(venv / "bin" / "python"), "--wheel-dir", str(wheels.parent))
    assert (home.tree / "vendor" / "paho" / "mqtt" / "client.py").exists()
    checked = home.hook("test")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    home.uninstall()
    assert listing(home.path) == original


# --- the uninstall keeps waiting events -----------------------------------------------


def complete(home: Home, tmp_path: Path, name: str) -> None:
    """A completion the hook saves in the outbox (and cannot send: broker port 1)."""
    data = tmp_path / name
    data.write_bytes(b"x" * 10)
    assert home.hook("qbittorrent", "b" * 40, data.name, str(data)).returncode == 0
    assert len(list((home.state / "outbox").glob("*.msg"))) == 1


def test_a_kept_outbox_is_purged_from_the_repository_copy(home: Home, tmp_path: Path) -> None:
    original = listing(home.path)
    home.install("--broker-port", "1")  # nothing listens there: events stay in the outbox
    complete(home, tmp_path, "Film.mkv")
    # As docs/seedbox.md says: the installed copy uninstalls, and removes itself.
    kept = home.uninstall(script=home.tree / "install.sh")
    assert "kept" in kept.stderr and "1 completion(s)" in kept.stderr
    assert advice(kept.stderr, "To delete them") == "seedbox/install.sh --uninstall --purge"
    assert len(list((home.state / "outbox").glob("*.msg"))) == 1
    assert not home.tree.exists() and not home.config.exists()

    # The repository copy, with nothing installed: it says what waits, deletes nothing ...
    told = home.uninstall()
    assert "still holds 1 completion(s)" in told.stderr
    assert len(list((home.state / "outbox").glob("*.msg"))) == 1
    # ... and the exact command it names deletes them, and what install.sh made for them.
    purge = advice(told.stderr, "or delete them")
    assert purge == f"'{INSTALL}' --uninstall --purge"
    purged = home.shell(purge)
    assert purged.returncode == 0, purged.stderr
    assert "purged" in purged.stderr
    assert listing(home.path) == original
    assert "nothing to remove" in home.uninstall("--purge").stderr

    # An outbox no uninstall kept (a hand install's) is not install.sh's to delete.
    theirs = home.state / "outbox" / "1-2-3.msg"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("q4d/seedbox/sb1/completed\n{}")
    left = home.uninstall("--purge")
    assert "(1 file(s)) is not one an uninstall kept: left as it is" in left.stderr
    assert theirs.exists()


def test_installing_again_sends_a_kept_outbox(
    home: Home, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    sub = subscribe(COMPLETED)
    original = listing(home.path)
    home.install("--broker-port", "1")
    complete(home, tmp_path, "Show.S01E01.mkv")
    kept = home.uninstall()
    assert f"install again ('{INSTALL}' with your options): the install sends them" in (
        " ".join(kept.stderr.split())
    )
    # Installed again, with a broker it reaches: the waiting completion goes out.
    again = home.install()
    assert "outbox: sent the completions that were waiting (sent 1, 0 left)" in again.stderr
    assert sub.wait_count(COMPLETED, 1)[0].json()["path"] == str(tmp_path / "Show.S01E01.mkv")
    assert not list((home.state / "outbox").glob("*.msg"))
    home.uninstall()
    assert listing(home.path) == original


def test_a_reinstall_that_cannot_send_says_so(home: Home, tmp_path: Path) -> None:
    original = listing(home.path)
    home.install("--broker-port", "1")
    complete(home, tmp_path, "Film.mkv")
    again = home.install("--broker-port", "1")
    said = " ".join(again.stderr.split())
    assert "outbox: completions wait that could not be sent now (sent 0, 1 left" in said
    assert f"To send them now: '{home.bin}/q4d-hook' flush" in said
    home.uninstall()  # keeps it
    home.install("--broker-port", "1")  # adopts what the first install made
    home.uninstall("--purge")
    assert listing(home.path) == original


# --- the installer itself -------------------------------------------------------------


def test_help_and_docs_choose_the_python_alike() -> None:
    """--help and docs/seedbox.md describe --python's default in the same words, and
    the help text is made from the list install.sh tries."""
    shown = subprocess.run(
        ["bash", str(INSTALL), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    found = re.search(r"--python PATH +(.+?)\n  --", shown, re.DOTALL)
    assert found, shown
    helped = " ".join(found.group(1).split())
    assert helped == (
        "the Python to run q4d with (default: the first of python3, python3.13 ... python3.8"
        " on PATH that is 3.8 or newer)"
    )
    docs = (SEEDBOX.parent / "docs" / "seedbox.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `--python PATH`"))
    assert helped in row.replace("`", ""), row


def test_install_sh_is_shellcheck_clean() -> None:
    need("shellcheck")
    done = subprocess.run(
        ["shellcheck", str(INSTALL)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout


def test_marked_blocks() -> None:
    """.rtorrent.rc and crontab edits: one block, kept in place, removed exactly."""
    mine = "a = 1\n# comment\nb = 2\n"
    once = set_block(mine, "x = 1")
    assert once.startswith(mine) and once.count("# BEGIN q4d-seedbox") == 1
    assert set_block(once, "x = 1") == once
    assert remove_block(once) == mine
    # A block the user moved stays where it is when it is rewritten.
    moved = "top\n" + set_block("", "x = 1") + "bottom\n"
    rewritten = set_block(moved, "x = 2\ny = 3")
    assert rewritten.startswith("top\n# BEGIN") and rewritten.endswith(
        "# END q4d-seedbox\nbottom\n"
    )
    assert "x = 2\ny = 3\n" in rewritten and "x = 1" not in rewritten
    assert remove_block(rewritten) == "top\nbottom\n"
    assert set_block("no newline at the end", "x") == (
        "no newline at the end\n" + set_block("", "x")
    )
