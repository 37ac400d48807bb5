"""SSH keys as add-on users paste them: the private key's line breaks lost in a one-line
field, the host key as ssh-keyscan prints it."""

from __future__ import annotations

import asyncssh
import pytest
from q4d_bridge.addon import keys


@pytest.fixture(scope="module")
def private() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()


@pytest.fixture(scope="module")
def public() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


MANGLES = {
    "as is": lambda k: k,
    "spaces": lambda k: k.replace("\n", " "),  # the one-line password field
    "nothing": lambda k: k.replace("\n", ""),
    "crlf": lambda k: k.replace("\n", "\r\n"),  # pasted on Windows
    "indented": lambda k: "  " + k.replace("\n", "\n  ") + "\n\n",
}


@pytest.mark.parametrize("mangle", MANGLES.values(), ids=MANGLES.keys())
def test_a_pasted_private_key_comes_back_whole(private: str, mangle: object) -> None:
    assert callable(mangle)
    assert keys.private_key(mangle(private), "k") == private


# a PEM key's headers glued to its body ("nothing") cannot be told apart again
SEPARATED = {name: mangle for name, mangle in MANGLES.items() if name != "nothing"}


@pytest.mark.parametrize("mangle", SEPARATED.values(), ids=SEPARATED.keys())
def test_an_encrypted_pem_key_keeps_its_headers(mangle: object) -> None:
    """`ssh-keygen -m PEM` with a passphrase: Proc-Type and DEK-Info lines before the body."""
    assert callable(mangle)
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    text = rsa.export_private_key("pkcs1-pem", "phrase").decode()
    assert "\nProc-Type: 4,ENCRYPTED\nDEK-Info: " in text
    assert keys.private_key(mangle(text), "k", "phrase", "p") == text
    with pytest.raises(ValueError, match=r"^k: the key has a passphrase: set the p option to it$"):
        keys.private_key(mangle(text), "k", None, "p")


def test_a_truncated_private_key_is_refused(private: str) -> None:
    lines = private.splitlines()
    broken = "\n".join([lines[0], *lines[1:-2], lines[-1]])  # a line lost on the way
    with pytest.raises(ValueError, match=r"^k: not a usable private key: "):
        keys.private_key(broken, "k")


def test_an_rsa_pem_key_loads() -> None:
    pem = asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_private_key("pkcs1-pem")
    text = pem.decode()
    assert keys.private_key(text.replace("\n", " "), "k") == text


@pytest.mark.parametrize(
    ("host", "port", "given", "line"),
    [
        ("sb.example.com", 22, "{key}", "sb.example.com {key}\n"),
        ("sb.example.com", 2222, "{key}", "[sb.example.com]:2222 {key}\n"),
        ("sb.example.com", 2222, "[sb.example.com]:2222 {key}", "[sb.example.com]:2222 {key}\n"),
        # ssh-keyscan's own host field is replaced: the options' host and port decide
        ("10.0.0.5", 22, "sb.example.com {key} me@box", "10.0.0.5 {key}\n"),
        ("h", 22, "# h:22 SSH-2.0-OpenSSH_9.2\n{key}\n{key}", "h {key}\nh {key}\n"),
    ],
)
def test_host_keys_become_known_hosts_lines(
    public: str, host: str, port: int, given: str, line: str
) -> None:
    assert keys.known_hosts(host, port, given.format(key=public), "h") == line.format(key=public)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "h: empty"),
        ("SHA256:3f9a0b", "h: expected a public host key like 'ssh-ed25519 AAAA"),
        ("ssh-ed25519", "h: expected a public host key"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "h: not a public host key"),
    ],
)
def test_what_is_not_a_host_key_is_refused(given: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        keys.known_hosts("h", 22, given, "h")
