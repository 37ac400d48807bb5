"""A throwaway system user with a password, for password logins to the test sshd.

sshd checks a password against the system's user database (`UsePAM no`: /etc/shadow),
so a test of password login needs a real user. This one gets a random name and
password (set through chpasswd's stdin, never an argv), a home of its own, and is
removed by name on exit. Needs root.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PasswordUser:
    name: str
    password: str
    home: Path  # 0755, the user's own: a seedbox's files can live under it


def unavailable() -> str | None:
    """Why no throwaway user can be made here, or None."""
    if os.geteuid() != 0:
        return "creating a throwaway user for password logins needs root"
    missing = [tool for tool in ("useradd", "userdel", "chpasswd") if not shutil.which(tool)]
    return f"not installed: {', '.join(missing)}" if missing else None


def _remove(name: str) -> None:
    # Its sshd sessions end as their connections close; until then userdel refuses.
    for _ in range(50):
        if subprocess.run(["userdel", name], check=False, capture_output=True).returncode in (0, 6):
            return  # 6: no such user
        time.sleep(0.1)
    subprocess.run(["userdel", "--force", name], check=False, capture_output=True)


@contextlib.contextmanager
def password_user() -> Iterator[PasswordUser]:
    name = f"q4dt{secrets.token_hex(4)}"
    # What lftp's command language, ssh's option parsing and a shell would each read
    # specially: quotes, backslash, comma (lftp's user,password), colon, space, $ ; #.
    password = f'pw:{secrets.token_hex(6)}, "q" \\ $x;#{secrets.token_hex(4)}'
    home = Path(tempfile.mkdtemp(prefix="q4d-pwuser-"))
    home.chmod(0o755)
    try:
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(home), "--gid", "nogroup",
             "--shell", "/bin/sh", name],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        try:
            subprocess.run(
                ["chpasswd"], input=f"{name}:{password}\n", text=True, check=True,
                capture_output=True, timeout=30,
            )  # fmt: skip
            shutil.chown(home, name)
            yield PasswordUser(name, password, home)
        finally:
            _remove(name)
    finally:
        shutil.rmtree(home, ignore_errors=True)
