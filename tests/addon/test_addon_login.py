"""SSH logins the add-on offers besides a plain key: a key with a passphrase (pasted, or a
legacy PEM key in a file) and a password. Each secret goes to its own 0600 file that the
configuration names (`passphrase_file`, `password_file`), and the real check-config takes
the result; a key missing its passphrase, a wrong passphrase, and each mix of logins the
bridge cannot use stop the add-on with a line naming the option, the secret unseen."""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from q4d_bridge.config.loader import load_config

from tests.addon.supervisor_fake import addon_run, fake_supervisor, mosquitto_service
from tests.addon.test_addon_run import check_config

# what the bridge hands on to lftp's command language, sshpass and asyncssh, verbatim
PASSWORD = "ssh-Pass word, 'q' $x;#1"
PASSPHRASE = 'key-Phrase "q" \\ 2'


@pytest.fixture(scope="module")
def logins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    pasted = asyncssh.generate_private_key("ssh-ed25519")
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    key_file = tmp_path_factory.mktemp("ssl") / "id_rsa"
    # what `ssh-keygen -m PEM` writes with a passphrase: Proc-Type and DEK-Info headers
    key_file.write_bytes(rsa.export_private_key("pkcs1-pem", PASSPHRASE))
    return {
        "locked": pasted.export_private_key("openssh", PASSPHRASE).decode(),
        "plain": pasted.export_private_key("openssh").decode(),
        "file": str(key_file),
        "host": asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode(),
    }


def options(logins: dict[str, str]) -> dict[str, Any]:
    box = {"host": "127.0.0.1", "port": 22, "user": "me", "host_key": logins["host"].strip()}
    return {
        "bridge_id": "home",
        "seedboxes": [
            {"id": "pw", **box, "password": PASSWORD},
            {
                "id": "pasted",
                **box,
                "private_key": logins["locked"].replace("\n", " "),  # a one-line field
                "passphrase": PASSPHRASE,
            },
            {"id": "file", **box, "key_file": logins["file"], "passphrase": PASSPHRASE},
        ],
        "destinations": [{"name": "default", "path": "/media/downloads"}],
        "log_level": "info",
    }


async def test_passwords_and_passphrases_go_to_their_own_files(
    tmp_path: Path, logins: dict[str, str]
) -> None:
    data = tmp_path / "data"
    async with fake_supervisor(mosquitto_service("h", 1883, "u", "p")) as supervisor:
        ran = await addon_run(options(logins), data, supervisor.url)
    assert ran.code == 0, ran.err
    checked = check_config(data / "bridge.yaml")
    assert checked.returncode == 0, checked.stderr
    assert "OK (bridge 'home', 3 seedbox(es)" in checked.stdout

    ssh, secrets = data / "ssh", data / "secrets"
    pw, pasted, file = yaml.safe_load((data / "bridge.yaml").read_text())["seedboxes"]
    assert pw["password_file"] == str(secrets / "pw.password")
    assert not {"key", "password", "passphrase", "passphrase_file"} & set(pw)
    for sb in (pasted, file):
        assert sb["key"] == str(ssh / f"{sb['id']}.key")
        assert sb["passphrase_file"] == str(secrets / f"{sb['id']}.passphrase")
        assert not {"password", "passphrase", "password_file"} & set(sb)
    files = {
        secrets / "pw.password": PASSWORD,
        secrets / "pasted.passphrase": PASSPHRASE,
        secrets / "file.passphrase": PASSPHRASE,
        # the keys stay encrypted, the pasted one's line breaks back
        ssh / "pasted.key": logins["locked"],
        ssh / "file.key": Path(logins["file"]).read_text(),
    }
    for path, text in files.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.read_text() == text, path
    for key in (ssh / "pasted.key", ssh / "file.key"):
        with pytest.raises(asyncssh.KeyImportError, match="Passphrase must be specified"):
            asyncssh.read_private_key(key)
        asyncssh.read_private_key(key, PASSPHRASE)

    # the bridge reads them back as given
    config = load_config(data / "bridge.yaml", {})
    assert config.seedboxes["pw"].password == PASSWORD and config.seedboxes["pw"].key is None
    assert config.seedboxes["file"].passphrase == PASSPHRASE
    everything = (data / "bridge.yaml").read_text() + ran.out + ran.err + checked.stdout
    assert PASSWORD not in everything and PASSPHRASE not in everything


WRONG = "not-the-Phrase"
BAD_LOGINS: list[tuple[str, Any, str]] = [
    (
        "key and password",
        lambda o, k: o["seedboxes"][1].update(password=PASSWORD),
        "seedboxes[1].password: set a key (key_file or private_key) or password, not both",
    ),
    (
        "neither",
        lambda o, k: o["seedboxes"][0].pop("password"),
        "seedboxes[0]: set key_file or private_key (an SSH key), or password",
    ),
    (
        "passphrase without a key",
        lambda o, k: o["seedboxes"][0].update(passphrase=PASSPHRASE),
        "seedboxes[0].passphrase: only with key_file or private_key (that key's passphrase)",
    ),
    (
        "pasted key without its passphrase",
        lambda o, k: o["seedboxes"][1].pop("passphrase"),
        "seedboxes[1].private_key: the key has a passphrase: "
        "set the seedboxes[1].passphrase option to it",
    ),
    (
        "key file without its passphrase",
        lambda o, k: o["seedboxes"][2].pop("passphrase"),
        "seedboxes[2].key_file: the key has a passphrase: "
        "set the seedboxes[2].passphrase option to it",
    ),
    (
        "wrong passphrase",
        lambda o, k: o["seedboxes"][1].update(passphrase=WRONG),
        "seedboxes[1].passphrase: does not unlock the key in seedboxes[1].private_key "
        "(Incorrect passphrase)",
    ),
    (
        "wrong passphrase for a PEM key",
        lambda o, k: o["seedboxes"][2].update(passphrase=WRONG),
        "seedboxes[2].passphrase: does not unlock the key in seedboxes[2].key_file "
        "(Unable to decrypt PKCS#1 private key)",
    ),
    (
        "passphrase for a key that has none",
        lambda o, k: o["seedboxes"][1].update(private_key=k["plain"]),
        "seedboxes[1].passphrase: the key in seedboxes[1].private_key has no passphrase: "
        "clear this option",
    ),
    (
        "two-line password",
        lambda o, k: o["seedboxes"][0].update(password=f"{PASSWORD}\nsecond"),
        "seedboxes[0].password: must be one line without control characters",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"), [c[1:] for c in BAD_LOGINS], ids=[c[0] for c in BAD_LOGINS]
)
async def test_bad_logins_stop_it_clearly(
    tmp_path: Path, logins: dict[str, str], change: Any, message: str
) -> None:
    given = copy.deepcopy(options(logins))
    change(given, logins)
    data = tmp_path / "data"
    async with fake_supervisor(mosquitto_service("h", 1883, "u", "p")) as supervisor:
        ran = await addon_run(given, data, supervisor.url)
    assert ran.code == 1
    assert ran.err.startswith("q4d-bridge add-on: cannot start:\n  - "), ran.err
    assert f"  - {message}\n" in ran.err
    assert ran.err.count("\n  - ") == 1, ran.err  # only this problem
    for secret in (PASSWORD, PASSPHRASE, WRONG):
        assert secret not in ran.err + ran.out
    assert not (data / "bridge.yaml").exists()
