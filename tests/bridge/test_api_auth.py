"""The API's auth and the removal's safety, without sockets: sessions that end when
idle, a bounded session table, an address refused after wrong passwords and let in
again later (wrong credentials on any call count too), and a home copy deleted only
inside a destination. (The admin key guards
the management routes: tests/bridge/test_api_management.py.)"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from q4d_bridge.api import auth as auth_module
from q4d_bridge.api.auth import SESSION_COOKIE, Auth
from q4d_bridge.api.removal import delete_landed
from q4d_bridge.config.model import ApiConfig

SETTINGS = ApiConfig(enabled=True, username="arr", password="secret-pw", api_key="k" * 32,
                     session_lifetime=60)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(**headers: str):  # type: ignore[no-untyped-def]
    return make_mocked_request("GET", "/api/v2/torrents/info", headers=headers)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_on_every_request() -> None:
    auth = Auth(SETTINGS)
    assert auth.allowed(request(Authorization="Bearer " + "k" * 32))
    assert auth.allowed(request(Authorization="bearer " + "k" * 32))
    assert auth.allowed(request(Authorization=basic("arr", "secret-pw")))
    for refused in ("Bearer " + "x" * 32, basic("arr", "wrong"), basic("other", "secret-pw"),
                    "Basic not-base64!", "Basic " + base64.b64encode(b"nocolon").decode(), ""):  # fmt: skip
        assert not auth.allowed(request(Authorization=refused)), refused
    assert not auth.allowed(request(Cookie=f"{SESSION_COOKIE}=forged"))


def test_a_session_ends_when_idle_and_the_table_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    auth = Auth(SETTINGS, clock=clock)
    session = auth.open_session()
    cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
    for _ in range(5):  # in use: each call renews it
        clock.now += 50
        assert auth.allowed(request(**cookie))
    clock.now += 61
    assert not auth.allowed(request(**cookie))
    assert not auth.allowed(request(**cookie))  # gone, not revived

    monkeypatch.setattr(auth_module, "MAX_SESSIONS", 3)
    sessions = [auth.open_session() for _ in range(5)]
    alive = [s for s in sessions if auth.allowed(request(Cookie=f"{SESSION_COOKIE}={s}"))]
    assert alive == sessions[2:]
    auth.close_session(sessions[-1])
    assert not auth.allowed(request(Cookie=f"{SESSION_COOKIE}={sessions[-1]}"))


def test_wrong_passwords_refuse_the_address_for_a_while() -> None:
    clock = Clock()
    auth = Auth(SETTINGS, clock=clock)
    assert not auth.valid_login("arr", "wrong") and auth.valid_login("arr", "secret-pw")
    for _ in range(auth_module.MAX_FAILURES):
        assert not auth.banned("10.0.0.5")
        auth.failed("10.0.0.5")
    assert auth.banned("10.0.0.5") and not auth.banned("10.0.0.6")
    clock.now += auth_module.BAN + 1
    assert not auth.banned("10.0.0.5")
    auth.failed("10.0.0.6")
    auth.succeeded("10.0.0.6")  # a good login starts the count again
    for _ in range(auth_module.MAX_FAILURES - 1):
        auth.failed("10.0.0.6")
    assert not auth.banned("10.0.0.6")


def test_wrong_credentials_on_any_call_count_like_wrong_logins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    auth = Auth(SETTINGS, clock=clock)
    cookie = f"{SESSION_COOKIE}={auth.open_session()}"
    for wrong in [basic("arr", "wrong"), "Bearer " + "x" * 32] * 2 + ["Basic not-base64!"]:
        assert not auth.banned("")
        assert not auth.allowed(request(Authorization=wrong))
    assert auth.banned("")
    # refused whatever it presents now, the right password and key too
    assert not auth.allowed(request(Authorization=basic("arr", "secret-pw")))
    assert not auth.allowed(request(Authorization="Bearer " + "k" * 32))
    # a session it opened before keeps working, whatever else the call carries
    assert auth.allowed(request(Cookie=cookie, Authorization=basic("arr", "wrong")))
    # said once in the log, with the address and for how long (never what was sent)
    (refused,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == "API: an unknown address refused for 300 s after 5 wrong logins or " \
        "credentials in a row"  # fmt: skip
    # tries while refused are not counted: the ban ends on time
    clock.now += auth_module.BAN + 1
    assert auth.allowed(request(Authorization=basic("arr", "secret-pw")))
    # calls without credentials (Sonarr's probe, an expired cookie) are no wrong tries
    for _ in range(2 * auth_module.MAX_FAILURES):
        assert not auth.allowed(request())
        assert not auth.allowed(request(Cookie=f"{SESSION_COOKIE}=gone"))
    assert not auth.banned("")
    # a right call starts the count again
    for _ in range(auth_module.MAX_FAILURES - 1):
        assert not auth.allowed(request(Authorization=basic("arr", "wrong")))
    assert auth.allowed(request(Authorization="Bearer " + "k" * 32))
    assert not auth.allowed(request(Authorization=basic("arr", "wrong")))
    assert not auth.banned("")


def test_the_home_copy_is_deleted_only_inside_a_destination(tmp_path: Path) -> None:
    library, elsewhere = tmp_path / "library", tmp_path / "elsewhere"
    (library / "Show.S01").mkdir(parents=True)
    (library / "Show.S01" / "e1.mkv").write_bytes(b"x")
    (library / "Film.mkv").write_bytes(b"y")
    elsewhere.mkdir()
    (elsewhere / "keep.mkv").write_bytes(b"z")
    (library / "link").symlink_to(elsewhere)

    assert delete_landed(library / "Show.S01", [library])
    assert delete_landed(library / "Film.mkv", [library])
    assert not (library / "Show.S01").exists() and not (library / "Film.mkv").exists()
    assert not delete_landed(elsewhere / "keep.mkv", [library])
    assert not delete_landed(library, [library])  # never a destination itself
    assert not delete_landed(library / "link" / "keep.mkv", [library])  # through a symlink
    assert delete_landed(library / "link", [library])  # the link only
    assert (elsewhere / "keep.mkv").read_bytes() == b"z" and library.exists()
    assert not delete_landed(library / "gone.mkv", [library])
