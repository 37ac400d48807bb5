"""The SSH test of a seedbox: its host key, the login, and each remote root.

Credentials go only to a host whose key is pinned (a `host_key` sent with the value, or
the seedbox's known_hosts file) and matches: with nothing pinned the probe reads the key
the server shows, without logging in, and answers `host_key_unknown` with it, for the
user to confirm. Connections use the transfers' own options (transfer/remote.py)."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncssh
import voluptuous as vol

from ..addon import keys
from ..config.loader import login_problems, read_secret_keys, seedbox_config
from ..config.model import Config, SeedboxConfig
from ..config.schema import SEEDBOX_SCHEMA, TRANSFER_ENGINES
from ..transfer.remote import connect_options, public_key_line
from .base import ProbeError, foreign_secret_files, invalid, reference, relative, schema_lines

WHERE = "value"  # the loader's lines about the value start with this
PROBE_ID = "probe"  # a seedbox value without an id is tested under this one


@dataclass(frozen=True, slots=True)
class SshTarget:
    """A seedbox to test: its settings, the host keys pinned for it (None: none), and
    its key when given as text (else the settings' key file, or its password)."""

    seedbox: SeedboxConfig
    pins: asyncssh.SSHKnownHosts | None
    client_key: asyncssh.SSHKey | None = None

    @property
    def where(self) -> str:
        return f"{self.seedbox.host}:{self.seedbox.port}"


def ssh_target(value: dict[str, Any], config: Config) -> SshTarget:
    """The seedbox a `config_test` value gives (settings as `config_set` takes them) or
    names (`{"id": ...}`: one of the running configuration); `invalid` when it fails
    the seedbox schema, `not_found` for an unknown id."""
    ident = reference(value)
    if ident is not None:
        seedbox = config.seedboxes.get(ident)
        if seedbox is None:
            raise ProbeError(
                "not_found", f"no seedbox {ident!r} (known: {', '.join(config.seedboxes)})"
            )
        return SshTarget(seedbox, _read_pins(Path(seedbox.known_hosts)))
    raw = copy.deepcopy(value)
    host_key, private_key = raw.pop("host_key", None), raw.pop("private_key", None)
    raw.setdefault("id", PROBE_ID)
    errors: list[str] = []
    foreign = foreign_secret_files(raw, ("password", "passphrase"), config.data_dir)
    if isinstance(raw.get("client"), dict):
        foreign += foreign_secret_files(raw["client"], ("password",), config.data_dir, "client.")
    if foreign:
        raise invalid(foreign)
    read_secret_keys(WHERE, raw, ("password", "passphrase"), errors)
    if isinstance(raw.get("client"), dict):
        read_secret_keys(f"{WHERE}.client", raw["client"], ("password",), errors)
    try:
        data: dict[str, Any] = SEEDBOX_SCHEMA(raw)
    except vol.Invalid as err:
        raise invalid([*relative(errors, WHERE), *schema_lines(err)]) from None
    engine = "sftp" if data["engine"] not in TRANSFER_ENGINES else data["engine"]
    login = {**data, "key": "(given as private_key)"} if private_key is not None else data
    errors += login_problems(WHERE, login, {engine})
    if private_key is not None and "key" in data:
        errors.append(
            f"{WHERE}.private_key: give private_key (the key's text) or key (its path), not both"
        )
    pins: asyncssh.SSHKnownHosts | None = None
    client_key: asyncssh.SSHKey | None = None
    # addon/keys.py checks a pasted host key or private key as the add-on's options do
    if host_key is not None:
        try:
            pins = asyncssh.import_known_hosts(
                keys.known_hosts(data["host"], data["port"], str(host_key), "host_key")
            )
        except ValueError as err:
            errors.append(str(err))
    if private_key is not None:
        try:
            pem = keys.private_key(str(private_key), "private_key", data.get("passphrase"))
            client_key = asyncssh.import_private_key(pem, data.get("passphrase"))
        except ValueError as err:
            errors.append(str(err))
    if errors:
        raise invalid(relative(errors, WHERE))
    known_hosts = data.get("known_hosts") or str(config.data_dir / "known_hosts" / data["id"])
    if pins is None and (data["trust_on_first_use"] or "known_hosts" in data):
        pins = _read_pins(Path(known_hosts))
    # Never trust on first use here: a probe pins nothing (Home Assistant confirms a key).
    data["trust_on_first_use"] = False
    return SshTarget(seedbox_config(data, engine=engine, known_hosts=""), pins, client_key)


def _read_pins(path: Path) -> asyncssh.SSHKnownHosts | None:
    """The host keys pinned in a known_hosts file; None when there is no such file."""
    try:
        return asyncssh.import_known_hosts(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise invalid([f"known_hosts: cannot read the host keys pinned in {path}: {err}"]) from None


def _pinned(pins: asyncssh.SSHKnownHosts, host: str, port: int) -> bool:
    """Whether any key is pinned for the seedbox's host and port (the pins may be for
    other hosts: a known_hosts file shared with other tools)."""
    try:
        addr = str(ipaddress.ip_address(host))
    except ValueError:
        addr = ""  # a name: matched as it is, never looked up
    found = pins.match(host, addr, port)
    return bool(found[0] or found[1])


def shown(key: asyncssh.SSHKey) -> dict[str, str]:
    """The host key as Home Assistant shows it and sends it back to pin it."""
    return {"fingerprint": key.get_fingerprint("sha256"), "host_key": public_key_line(key)}


async def read_host_key(target: SshTarget) -> asyncssh.SSHKey:
    """The key the server shows, read without logging in (nothing is sent but the
    key exchange)."""
    sb = target.seedbox
    try:
        key = await asyncssh.get_server_host_key(sb.host, sb.port, config=None)
    except (OSError, asyncssh.Error) as err:
        raise unreachable(target, err) from None
    if key is None:
        raise ProbeError("unreachable", f"{target.where} showed no host key")
    return key


def unreachable(target: SshTarget, err: BaseException) -> ProbeError:
    reason = err.reason if isinstance(err, asyncssh.Error) else (str(err) or type(err).__name__)
    return ProbeError("unreachable", f"cannot reach the SSH server at {target.where}: {reason}")


async def open_connection(target: SshTarget) -> asyncssh.SSHClientConnection:
    """Logged in to the seedbox, its host key checked against the pins: the link the
    SSH test and a client reached through it (rTorrent's `scgi+ssh://`) both use."""
    sb, pins = target.seedbox, target.pins
    # (asyncssh would take known_hosts=None as "check nothing": never let it get that)
    if pins is None or not _pinned(pins, sb.host, sb.port):
        key = await read_host_key(target)
        raise ProbeError(
            "host_key_unknown",
            f"{target.where} shows host key {key.get_fingerprint('sha256')}, which is not "
            "pinned: confirm it to trust it (nothing was sent to the server)",
            **shown(key),
        )
    options = connect_options(sb) | {"known_hosts": pins}
    if target.client_key is not None:
        options.update(client_keys=[target.client_key], passphrase=None)
    try:
        return await asyncssh.connect(sb.host, port=sb.port, **options)
    except asyncssh.HostKeyNotVerifiable:
        key = await read_host_key(target)
        raise ProbeError(
            "host_key_mismatch",
            f"{target.where} shows host key {key.get_fingerprint('sha256')}, not the one "
            "pinned for it: the server was reinstalled, or it is not the seedbox; nothing "
            "was sent to it",
            **shown(key),
        ) from None
    except asyncssh.PermissionDenied as err:
        raise ProbeError(
            "auth_failed", f"{sb.user}@{target.where} refused the login: {err.reason}"
        ) from None
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as err:  # or a wrong passphrase
        raise ProbeError("auth_failed", f"cannot use the key {sb.key}: {err}") from None
    except (OSError, asyncssh.Error) as err:
        raise unreachable(target, err) from None


async def probe_ssh(target: SshTarget) -> dict[str, Any]:
    """Host key, login, then each remote root: an existing folder the user may list.
    The first root that fails answers `root_missing` or `root_unreadable`."""
    conn = await open_connection(target)
    async with conn:
        key = conn.get_server_host_key()
        found = {
            "host": target.seedbox.host,
            "port": target.seedbox.port,
            "server_version": str(conn.get_extra_info("server_version") or ""),
            **(shown(key) if key is not None else {}),
        }
        roots: list[dict[str, Any]] = []
        async with conn.start_sftp_client() as sftp:
            for root in target.seedbox.remote_roots:
                problem = await _root_problem(sftp, root)
                roots.append({"path": root, "ok": problem is None})
                if problem is not None:
                    code, message = problem
                    raise ProbeError(code, message, root=root, roots=roots, **found)
    return {**found, "roots": roots}


async def _root_problem(sftp: asyncssh.SFTPClient, root: str) -> tuple[str, str] | None:
    try:
        attrs = await sftp.stat(root)
    except asyncssh.SFTPNoSuchFile:
        return "root_missing", f"{root} does not exist on the seedbox"
    except asyncssh.SFTPPermissionDenied:
        return "root_unreadable", f"{root} cannot be reached: permission denied on the way"
    if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
        return "root_missing", f"{root} is not a folder on the seedbox"
    try:
        # the first names only: opening the folder is the test, not reading it all
        # (scandir is an async generator, typed as an iterator: closing it closes the handle)
        names = cast(AsyncGenerator[asyncssh.SFTPName], sftp.scandir(root))
        async with contextlib.aclosing(names):
            async for _name in names:
                break
    except asyncssh.SFTPPermissionDenied:
        return "root_unreadable", f"{root} cannot be listed: permission denied"
    return None
