"""The SSH test (`config_test` kind `ssh`) against a real sshd: a host key nobody pinned
is shown (as `ssh-keygen -lf` prints it) and nothing is sent to the server; a pinned key
that differs; a refused login (key and password); a root that is missing, a file, or
that the user may not list; an unreachable and a silent server; a value the schema
refuses; and the whole test passing, for settings and for a seedbox of the running
configuration."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge import probes
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.probes import ProbeError
from q4d_bridge.transfer.errors import ErrorCode, TransferError
from q4d_bridge.transfer.remote import connect

from tests.bridge.test_ssh_password import user as password_user
from tests.conftest import allow_loopback_sockets
from tests.helpers.configs import bridge_config
from tests.helpers.services import LOOPBACK, SshServer, free_port
from tests.helpers.sshuser import PasswordUser

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """This module's own sshd (its log is only these tests'), which takes passwords."""
    allow_loopback_sockets()
    with SshServer(tmp_path_factory.mktemp("sshd-probe"), passwords=True) as server:
        yield server


user = password_user  # a throwaway system user with a password (module-scoped)


@pytest.fixture
def config(tmp_path: Path, sshd: SshServer) -> Config:
    """The running configuration: seedbox sb1 is this sshd, pinned, with a root."""
    (tmp_path / "remote").mkdir()
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key,
        known_hosts=sshd.known_hosts, ssh_port=sshd.port, user=sshd.user,
        remote_root=str(tmp_path / "remote"),
    )  # fmt: skip
    return parse_config(raw)


def settings(sshd: SshServer, *roots: Path, **changes: Any) -> dict[str, Any]:
    """A seedbox as Home Assistant sends it: no pinned key unless `host_key` is given."""
    value: dict[str, Any] = {
        "id": "new", "host": LOOPBACK, "port": sshd.port, "user": sshd.user,
        "key": str(sshd.client_key), "remote_roots": [str(r) for r in roots],
    }  # fmt: skip
    return {k: v for k, v in (value | changes).items() if v is not None}


def keygen_fingerprint(public_key: Path) -> str:
    """The fingerprint as OpenSSH prints it: `256 SHA256:… comment (ED25519)`."""
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(public_key)], check=True, capture_output=True, text=True
    ).stdout
    return out.split()[1]


def logins(sshd: SshServer) -> tuple[int, int]:
    """Accepted and failed logins the sshd has logged so far."""
    log = sshd.log()
    return log.count("Accepted "), log.count("Failed ")


async def failure(value: Any, config: Config, **kw: Any) -> ProbeError:
    with pytest.raises(ProbeError) as err:
        await probes.run("ssh", value, config, **kw)
    return err.value


async def test_an_unknown_host_key_is_shown_and_nothing_is_sent(
    tmp_path: Path, sshd: SshServer, config: Config
) -> None:
    before = logins(sshd)
    err = await failure(settings(sshd, tmp_path), config)
    assert err.code == "host_key_unknown"
    fingerprint = keygen_fingerprint(sshd.host_key.with_name(sshd.host_key.name + ".pub"))
    assert err.detail == {"fingerprint": fingerprint, "host_key": sshd.host_public_key}
    assert fingerprint in err.message and "nothing was sent" in err.message
    assert logins(sshd) == before  # no login tried, so no credentials offered
    # trust_on_first_use does not pin anything from a test
    err = await failure(settings(sshd, tmp_path, trust_on_first_use=True), config)
    assert err.code == "host_key_unknown"
    assert not (tmp_path / "data" / "known_hosts").exists()


async def test_the_key_shown_pins_the_next_test(
    tmp_path: Path, sshd: SshServer, config: Config
) -> None:
    shown = await failure(settings(sshd, tmp_path), config)
    found = await probes.run(
        "ssh", settings(sshd, tmp_path, host_key=shown.detail["host_key"]), config
    )
    assert found["fingerprint"] == shown.detail["fingerprint"]
    assert found["host_key"] == sshd.host_public_key
    assert found["server_version"].startswith("SSH-2.0-OpenSSH")
    assert found["roots"] == [{"path": str(tmp_path), "ok": True}]
    assert (found["host"], found["port"]) == (LOOPBACK, sshd.port)


async def test_a_pinned_key_that_differs(tmp_path: Path, sshd: SshServer, config: Config) -> None:
    other = SshServer._public(sshd.other_host_key)
    before = logins(sshd)
    for value in (
        settings(sshd, tmp_path, host_key=other),
        settings(sshd, tmp_path, known_hosts=str(sshd.wrong_known_hosts)),
    ):
        err = await failure(value, config)
        assert err.code == "host_key_mismatch", err.message
        assert err.detail["host_key"] == sshd.host_public_key  # what the server shows now
    assert logins(sshd) == before


async def test_a_known_hosts_file_pinning_other_hosts_only(
    tmp_path: Path, sshd: SshServer, config: Config
) -> None:
    elsewhere = tmp_path / "known_hosts"
    elsewhere.write_text(f"[127.0.0.1]:{free_port()} {sshd.host_public_key}\n")
    err = await failure(settings(sshd, tmp_path, known_hosts=str(elsewhere)), config)
    assert err.code == "host_key_unknown"


async def test_a_refused_key(tmp_path: Path, sshd: SshServer, config: Config) -> None:
    value = settings(
        sshd, tmp_path, key=str(sshd.other_host_key), known_hosts=str(sshd.known_hosts)
    )
    err = await failure(value, config)
    assert err.code == "auth_failed"
    assert f"{sshd.user}@127.0.0.1:{sshd.port} refused the login" in err.message


async def test_a_refused_password_is_not_echoed(
    tmp_path: Path, sshd: SshServer, config: Config, user: PasswordUser, caplog: Any
) -> None:
    wrong = user.password + "x"
    value = settings(
        sshd, tmp_path, user=user.name, key=None, password=wrong, host_key=sshd.host_public_key
    )
    err = await failure(value, config)
    assert err.code == "auth_failed"
    assert wrong not in repr((err.message, err.detail)) and wrong not in caplog.text


async def test_roots_missing_a_file_and_unreadable(
    tmp_path: Path, sshd: SshServer, config: Config, user: PasswordUser
) -> None:
    pinned = {"host_key": sshd.host_public_key}
    missing = tmp_path / "nowhere"
    err = await failure(settings(sshd, tmp_path, missing, **pinned), config)
    assert (err.code, err.detail["root"]) == ("root_missing", str(missing))
    assert err.detail["roots"] == [
        {"path": str(tmp_path), "ok": True},
        {"path": str(missing), "ok": False},
    ]
    assert err.detail["fingerprint"].startswith("SHA256:")  # logged in: the key is known
    a_file = tmp_path / "file"
    a_file.write_text("x")
    err = await failure(settings(sshd, a_file, **pinned), config)
    assert (err.code, err.message) == ("root_missing", f"{a_file} is not a folder on the seedbox")
    # Root reads any folder: the password user is the one who may not.
    closed = user.home / "closed"
    closed.mkdir()
    closed.chmod(0o000)
    behind = closed / "inside"
    as_user = {"user": user.name, "key": None, "password": user.password, **pinned}
    try:
        err = await failure(settings(sshd, user.home, closed, **as_user), config)
        assert (err.code, err.detail["root"]) == ("root_unreadable", str(closed))
        assert err.message == f"{closed} cannot be listed: permission denied"
        err = await failure(settings(sshd, behind, **as_user), config)
        assert (err.code, err.detail["root"]) == ("root_unreadable", str(behind))
        found = await probes.run("ssh", settings(sshd, user.home, **as_user), config)
        assert found["roots"] == [{"path": str(user.home), "ok": True}]
    finally:
        closed.chmod(0o755)


async def test_a_key_given_as_text_and_a_configured_seedbox(
    tmp_path: Path, sshd: SshServer, config: Config
) -> None:
    text = sshd.client_key.read_text()
    value = settings(sshd, tmp_path, key=None, private_key=text, host_key=sshd.host_public_key)
    found = await probes.run("ssh", value, config)
    assert found["roots"] == [{"path": str(tmp_path), "ok": True}]
    found = await probes.run("ssh", {"id": "sb1"}, config)
    assert found["roots"] == [{"path": str(tmp_path / "remote"), "ok": True}]
    err = await failure({"id": "sb9"}, config)
    assert (err.code, err.message) == ("not_found", "no seedbox 'sb9' (known: sb1)")


async def test_unreachable_and_silent(tmp_path: Path, sshd: SshServer, config: Config) -> None:
    err = await failure(settings(sshd, tmp_path, port=free_port()), config)
    assert err.code == "unreachable"
    assert err.message.startswith(f"cannot reach the SSH server at {LOOPBACK}:")
    with socket.socket() as silent:  # accepts connections (the backlog) and never speaks
        silent.bind((LOOPBACK, 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = asyncio.get_running_loop().time()
        err = await failure(settings(sshd, tmp_path, port=port), config, within=0.5)
        assert (err.code, err.message) == ("timeout", "no answer within 0.5 s")
        assert asyncio.get_running_loop().time() - started < 3
        err = await failure(
            settings(sshd, tmp_path, port=port, host_key=sshd.host_public_key), config, within=0.5
        )
        assert err.code == "timeout"


async def test_a_value_the_schema_refuses(sshd: SshServer, config: Config) -> None:
    err = await failure(
        {"host": LOOPBACK, "port": 70000, "user": "me", "remote_roots": ["relative"]}, config
    )
    assert err.code == "invalid"
    assert err.detail["errors"] == [
        "port: value must be at most 65535",
        "remote_roots[0]: must be an absolute path, got 'relative'",
    ]
    assert err.detail["fields"]["port"] == "value must be at most 65535"
    err = await failure({"host": LOOPBACK, "user": "me", "host_key": "not a key"}, config)
    assert err.detail["errors"] == [
        "host_key: expected a public host key like 'ssh-ed25519 AAAA…' (a line of "
        "ssh-keyscan's output)",
        "key: required (a private key file), or password_file to log in by password",
    ]
    err = await failure(
        {"host": LOOPBACK, "user": "me", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----"},
        config,
    )
    assert err.detail["fields"] == {
        "private_key": "not a private key (expected -----BEGIN OPENSSH PRIVATE KEY----- …)"
    }


async def test_an_encrypted_key(tmp_path: Path, sshd: SshServer, config: Config) -> None:
    key = tmp_path / "id_encrypted"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret-phrase", "-C", "", "-f", str(key)],
        check=True, capture_output=True,
    )  # fmt: skip
    with sshd.authorized_keys.open("a") as keys:
        keys.write(key.with_name(key.name + ".pub").read_text())
    pinned = {"host_key": sshd.host_public_key}
    text = {"key": None, "private_key": key.read_text(), **pinned}
    found = await probes.run(
        "ssh", settings(sshd, tmp_path, passphrase="s3cret-phrase", **text), config
    )
    assert found["roots"] == [{"path": str(tmp_path), "ok": True}]
    found = await probes.run(
        "ssh", settings(sshd, tmp_path, key=str(key), passphrase="s3cret-phrase", **pinned), config
    )
    assert found["roots"] == [{"path": str(tmp_path), "ok": True}]
    err = await failure(settings(sshd, tmp_path, passphrase="wrong-phrase", **text), config)
    assert err.code == "invalid" and set(err.detail["fields"]) == {"passphrase"}
    err = await failure(
        settings(sshd, tmp_path, key=str(key), passphrase="wrong-phrase", **pinned), config
    )
    assert err.code == "auth_failed" and err.message.startswith(f"cannot use the key {key}: ")
    # the transfers' connections classify it the same way (an OpenSSH key's own error)
    wrong = dataclasses.replace(config.seedboxes["sb1"], key=str(key), passphrase="wrong-phrase")
    with pytest.raises(TransferError) as refused:
        await connect(wrong)
    assert refused.value.code is ErrorCode.AUTH_FAILED
    err = await failure(settings(sshd, tmp_path, private_key=key.read_text(), **pinned), config)
    assert err.detail["fields"] == {
        "private_key": "give private_key (the key's text) or key (its path), not both"
    }


async def test_only_the_bridges_own_secret_files_are_read(
    tmp_path: Path, sshd: SshServer, config: Config
) -> None:
    """A test's value naming a file (`password_file`) could have the bridge send any file
    it can read to the value's host as the password: only the runtime layer's own
    secret files are taken, as config_get shows them."""
    elsewhere = tmp_path / "not-a-secret"
    elsewhere.write_text("private text")
    value = settings(sshd, tmp_path, key=None, password_file=str(elsewhere),
                     client={"type": "transmission", "url": "http://127.0.0.1:9",
                             "password_file": str(elsewhere)},
                     host_key=sshd.host_public_key)  # fmt: skip
    err = await failure(value, config)
    assert err.code == "invalid"
    assert set(err.detail["fields"]) == {"password_file", "client.password_file"}
    held = config.data_dir / "secrets"
    held.mkdir(parents=True, exist_ok=True)
    (held / "seedboxes-sb9-password").write_text("wrong")
    value = settings(sshd, tmp_path, key=None, password_file=str(held / "seedboxes-sb9-password"),
                     host_key=sshd.host_public_key)  # fmt: skip
    assert (await failure(value, config)).code == "auth_failed"  # read, sent, refused
