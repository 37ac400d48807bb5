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


def _file_form(label: str, body: str) -> str:
    """The key's PEM text rebuilt, 64 or 70 base64 characters a line. Legacy PEM headers
    (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: AES-128-CBC,<iv>` of an encrypted PKCS#1 key)
    are `Name: value` pairs whose values hold no spaces, so they survive a one-line field."""
    words = body.split()
    headers: list[str] = []
    while len(words) >= 2 and words[0].endswith(":"):
        headers.append(f"{words[0]} {words[1]}")
        words = words[2:]
    b64 = "".join(words)
    width = OPENSSH_WIDTH if label == "OPENSSH PRIVATE KEY" else PEM_WIDTH
    lines = [b64[i : i + width] for i in range(0, len(b64), width)]
    head = "\n".join(headers) + "\n\n" if headers else ""
    return f"-----BEGIN {label}-----\n{head}" + "\n".join(lines) + f"\n-----END {label}-----\n"


def private_key(
    text: str, where: str, passphrase: str | None = None, phrase_option: str = "passphrase"
) -> str:
    """The key in its file form (still encrypted if it was), checked: it must load, with
    `passphrase` exactly when it has one (`phrase_option` names that option)."""
    match = _PEM.search(text)
    if match is None:
        raise ValueError(
            f"{where}: not a private key (expected -----BEGIN OPENSSH PRIVATE KEY----- …)"
        )
    pem = _file_form(*match.groups())
    try:
        asyncssh.import_private_key(pem)
    except ValueError as err:  # asyncssh's KeyImportError is one
        if "Passphrase must be specified" not in str(err):
            raise ValueError(f"{where}: not a usable private key: {err}") from None
        if passphrase is None:
            raise ValueError(
                f"{where}: the key has a passphrase: set the {phrase_option} option to it"
            ) from None
    else:
        if passphrase is not None:
            # asyncssh would ignore it; more likely the wrong key than a harmless extra
            raise ValueError(
                f"{phrase_option}: the key in {where} has no passphrase: clear this option"
            )
        return pem
    try:
        asyncssh.import_private_key(pem, passphrase)
    except ValueError as err:  # KeyImportError, or KeyEncryptionError for OpenSSH keys
        raise ValueError(f"{phrase_option}: does not unlock the key in {where} ({err})") from None
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
