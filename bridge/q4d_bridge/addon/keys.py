"""SSH keys as an add-on user gives them: a private key pasted into a one-line password
field (its line breaks turned into spaces) or kept in a file, and the seedbox's host key
as `ssh-keyscan` prints it."""

from __future__ import annotations

import re

import asyncssh

from ..transfer.remote import known_hosts_line

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-)")
# what ssh-keygen and OpenSSL write (any width reads back)
OPENSSH_WIDTH, PEM_WIDTH = 70, 64


def private_key(text: str, where: str) -> str:
    """The key in its file form, checked: it must load without a passphrase (lftp's and
    rsync's ssh run in batch mode, asyncssh is given none)."""
    match = _PEM.search(text)
    if match is None:
        raise ValueError(
            f"{where}: not a private key (expected -----BEGIN OPENSSH PRIVATE KEY----- …)"
        )
    label, body = match.groups()
    if ":" in body:
        # Legacy PEM headers (Proc-Type, DEK-Info) mean an encrypted key; kept as given
        # so the message below is asyncssh's.
        pem = match.group(0) + "\n"
    else:
        b64 = "".join(body.split())
        width = OPENSSH_WIDTH if label == "OPENSSH PRIVATE KEY" else PEM_WIDTH
        lines = [b64[i : i + width] for i in range(0, len(b64), width)]
        pem = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
    try:
        asyncssh.import_private_key(pem)
    except ValueError as err:  # asyncssh's KeyImportError is one
        hint = " (the bridge needs a key without a passphrase)" if "assphrase" in str(err) else ""
        raise ValueError(f"{where}: not a usable private key: {err}{hint}") from None
    return pem


def known_hosts(host: str, port: int, text: str, where: str) -> str:
    """known_hosts lines for the seedbox from what `ssh-keyscan -p PORT HOST` printed (with
    or without its host field, one or more lines), each key checked."""
    lines: list[str] = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not _KEY_TYPE.match(fields[0]):
            fields = fields[1:]  # the host field; the seedbox's host and port replace it
        if len(fields) < 2 or not _KEY_TYPE.match(fields[0]):
            raise ValueError(
                f"{where}: expected a public host key like 'ssh-ed25519 AAAA…' "
                "(a line of ssh-keyscan's output)"
            )
        try:
            asyncssh.import_public_key(f"{fields[0]} {fields[1]}")
        except ValueError as err:  # asyncssh's KeyImportError is one
            raise ValueError(f"{where}: not a public host key: {err}") from None
        lines.append(known_hosts_line(host, port, f"{fields[0]} {fields[1]}"))
    if not lines:
        raise ValueError(f"{where}: empty")
    return "".join(lines)
