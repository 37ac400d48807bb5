"""A real qbittorrent-nox on 127.0.0.1, completely offline (no DHT, LSD, PeX or port
forwarding, no IP-geolocation download, no RSS, no DynDNS), with a WebUI login, started
and stopped by PID. tests/test_netguard.py runs it in a guarded network namespace."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from tests.helpers.services import LOOPBACK, STOP_TIMEOUT, _Service, _which, free_port


def pbkdf2_password(password: str, salt: bytes | None = None) -> str:
    """qBittorrent's WebUI\\Password_PBKDF2 value (PBKDF2-SHA512, 100000 rounds)."""
    salt = salt or os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 100_000, 64)
    return f"@ByteArray({base64.b64encode(salt).decode()}:{base64.b64encode(key).decode()})"


class QBittorrent(_Service):
    def __init__(self, workdir: Path, *, password: str = "q4d-test-pw") -> None:
        self.workdir = Path(workdir)
        self.host = LOOPBACK
        self.port = free_port()  # WebUI
        self.peer_port = free_port()
        self.username = "admin"
        self.password = password
        self.downloads = self.workdir / "downloads"
        self.log_path = self.workdir / "qbittorrent.log"
        self.binary = _which("qbittorrent-nox", "/usr/bin/qbittorrent-nox")
        self._proc = None
        self._log = None
        self.downloads.mkdir(parents=True, exist_ok=True)
        self._write_config()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_config(self) -> None:
        config = self.workdir / "qBittorrent" / "config" / "qBittorrent.conf"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "\n".join(
                [
                    "[LegalNotice]",
                    "Accepted=true",
                    "[BitTorrent]",
                    "Session\\DHTEnabled=false",
                    "Session\\LSDEnabled=false",
                    "Session\\PeXEnabled=false",
                    # the peer port on lo only (by default it listens on every interface)
                    "Session\\Interface=lo",
                    "Session\\InterfaceName=lo",
                    "Session\\InterfaceAddress=127.0.0.1",
                    f"Session\\Port={self.peer_port}",
                    f"Session\\DefaultSavePath={self.downloads}",
                    # A seedbox seeds everything it holds: with queueing on (the default),
                    # a fourth torrent waits as queuedUP and a peer gets nothing from it.
                    "Session\\QueueingSystemEnabled=false",
                    # TCP only: a uTP connection between two libtorrents on loopback
                    # stalled mid-download once (stalledDL at 56 %, never dropped), and
                    # the one announce left it no other peer.
                    "Session\\BTProtocol=TCP",
                    "[Network]",
                    "PortForwardingEnabled=false",
                    "[Preferences]",
                    # On by default: fetches the IP-geolocation database from
                    # download.db-ip.com at every start (a name lookup, then HTTPS).
                    "Connection\\ResolvePeerCountries=false",
                    # Off by default, kept off here: RSS feeds, DynDNS updates, UPnP for
                    # the WebUI port (used only with port forwarding, which is off).
                    "DynDNS\\Enabled=false",
                    "WebUI\\UseUPnP=false",
                    f"WebUI\\Address={self.host}",
                    f"WebUI\\Port={self.port}",
                    f"WebUI\\Username={self.username}",
                    f'WebUI\\Password_PBKDF2="{pbkdf2_password(self.password)}"',
                    "WebUI\\LocalHostAuth=true",
                    "WebUI\\CSRFProtection=true",
                    "[RSS]",
                    "Session\\EnableProcessing=false",
                    "AutoDownloader\\EnableProcessing=false",
                    "",
                ]
            )
        )

    def _argv(self) -> list[str]:
        return [self.binary, f"--profile={self.workdir}"]

    def start(self) -> None:
        self._spawn()

    def kill(self) -> None:
        """SIGKILL, as a crash: no chance to save its state; start() brings it back on
        the same ports and profile."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=STOP_TIMEOUT)
        self.stop()
