"""The rTorrent and Deluge label adapters against the real daemons (rtorrent's SCGI
socket; deluged behind deluge-web's JSON-RPC), and rTorrent's XML-RPC over HTTP
against a local XML-RPC server that checks Basic auth."""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import xmlrpc.client
import xmlrpc.server
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from q4d_seedbox.clients import ClientError, UnknownTorrent, make_client
from q4d_seedbox.clients.deluge import deluge_label
from q4d_seedbox.clients.rtorrent import server_proxy
from q4d_seedbox.config import LabelsConfig

from tests.seedbox.support import Deluge, DelugeWeb, RTorrent, need, wait_until

pytestmark = pytest.mark.timeout(120)


def labels_config(client: str, url: str, mode: str, **extra: Any) -> LabelsConfig:
    return LabelsConfig(client=client, url=url, mode=mode, timeout=5, **extra)


# --- rTorrent -------------------------------------------------------------------------


@pytest.fixture(params=["tcp", "unix"])
def rtorrent(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RTorrent]:
    need("rtorrent")
    daemon = RTorrent(tmp_path / "rtorrent", unix=request.param == "unix")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_rtorrent_custom_key_and_custom1(
    rtorrent: RTorrent, torrent: tuple[Path, bytes, str]
) -> None:
    _, raw, h = torrent
    proxy = server_proxy(rtorrent.url, None, None, 5)
    proxy.load.raw("", xmlrpc.client.Binary(raw), f"d.directory.set={rtorrent.downloads}")
    loaded = getattr(proxy, "download_list")  # noqa: B009 - a typed call for a dynamic method
    wait_until(lambda: h.upper() in loaded(""), 10, "the torrent in rtorrent")
    getattr(proxy, "d.custom1.set")(h.upper(), "tv-sonarr")

    tags = make_client(labels_config("rtorrent", rtorrent.url, "tag"))
    tags.apply(h, "QUEUED")
    tags.apply(h, "DONE")
    assert getattr(proxy, "d.custom")(h.upper(), "q4d") == "q4d:DONE"
    assert getattr(proxy, "d.custom1")(h.upper()) == "tv-sonarr"  # the *arr's label stays

    make_client(labels_config("rtorrent", rtorrent.url, "category")).apply(h, "FAILED")
    assert getattr(proxy, "d.custom1")(h.upper()) == "q4d:FAILED"

    for client in (tags, make_client(labels_config("rtorrent", rtorrent.url, "category"))):
        with pytest.raises(UnknownTorrent, match="rTorrent has no torrent") as unknown:
            client.apply("f" * 40, "DONE")
        assert not unknown.value.retry


def test_rtorrent_down_is_retryable(tmp_path: Path) -> None:
    client = make_client(labels_config("rtorrent", f"scgi://{tmp_path / 'nothing.sock'}", "tag"))
    with pytest.raises(ClientError) as down:
        client.apply("a" * 40, "DONE")
    assert down.value.retry


class _AuthHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)
    seen_auth: ClassVar[list[str]] = []

    def decode_request_content(self, data: bytes) -> bytes | None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        return super().decode_request_content(data)

    def log_message(self, *_: Any) -> None:
        pass


def test_rtorrent_over_http_with_basic_auth() -> None:
    calls: list[tuple[Any, ...]] = []

    def recorder(name: str) -> Callable[..., int]:
        def record(*args: Any) -> int:
            calls.append((name, *args))
            return 0

        return record

    server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), _AuthHandler, logRequests=False)
    server.register_function(recorder("custom"), "d.custom.set")
    server.register_function(recorder("custom1"), "d.custom1.set")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/RPC2"
        cfg = labels_config("rtorrent", url, "tag", username="me", password="p@ss:word")
        make_client(cfg).apply("ab" * 20, "DONE")
    finally:
        server.shutdown()
        server.server_close()
    assert calls == [("custom", "AB" * 20, "q4d", "q4d:DONE")]
    assert _AuthHandler.seen_auth == ["Basic " + base64.b64encode(b"me:p@ss:word").decode()]


# --- Deluge ----------------------------------------------------------------------------


@pytest.fixture
def deluge(tmp_path: Path) -> Iterator[Deluge]:
    need("deluged")
    need("deluge-web")
    services = Deluge(tmp_path / "deluge")
    services.start()
    try:
        yield services
    finally:
        services.stop()


def test_deluge_label_plugin(deluge: Deluge, torrent: tuple[Path, bytes, str]) -> None:
    data, raw, h = torrent
    web = DelugeWeb(deluge.url)
    web(
        "core.add_torrent_file",
        "t.torrent",
        base64.b64encode(raw).decode(),
        {"download_location": str(data.parent)},
    )
    wait_until(lambda: web("core.get_torrent_status", h, ["name"]), 10, "the torrent in deluged")

    cfg = labels_config("deluge", deluge.url, "category", password="deluge")
    client = make_client(cfg)
    with pytest.raises(ClientError, match="Label plugin is not enabled") as disabled:
        client.apply(h, "QUEUED")
    assert disabled.value.retry  # enabling the plugin fixes it: keep the label

    web("core.enable_plugin", "Label")
    wait_until(lambda: "Label" in web("core.get_enabled_plugins"), 10, "the Label plugin")
    client.apply(h, "QUEUED")
    assert web("core.get_torrent_status", h, ["label"])["label"] == "q4d_queued"
    web("web.disconnect")  # as after a deluged restart: the adapter reconnects the web UI
    client.apply(h, "DONE")
    assert web("core.get_torrent_status", h, ["label"])["label"] == "q4d_done"

    with pytest.raises(UnknownTorrent, match="Deluge has no torrent") as unknown:
        client.apply("f" * 40, "FAILED")
    assert not unknown.value.retry
    assert "q4d_failed" not in web("label.get_labels")  # nothing made for it

    with pytest.raises(ClientError, match="refused the login") as refused:
        make_client(labels_config("deluge", deluge.url, "category", password="wrong")).apply(
            h, "DONE"
        )
    assert refused.value.retry


def test_deluge_label_names() -> None:
    assert deluge_label("q4d:DONE") == "q4d_done"
    assert deluge_label("DONE") == "done"
    assert deluge_label("My Label/é") == "my_label__"


class _Broken(http.server.BaseHTTPRequestHandler):
    """Answers every POST with `status` and a body that is not what the client expects."""

    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html>not an API</html>"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "client", "message", "retry"),
    [
        (200, "transmission", "answer is not JSON", True),
        (200, "deluge", "answer is not JSON", True),
        (200, "qbittorrent", "refused the login", True),
        (502, "transmission", "HTTP 502", True),
        (502, "deluge", "HTTP 502", True),
        (404, "transmission", "HTTP 404", False),
    ],
)
def test_http_adapters_facing_a_broken_server(
    status: int, client: str, message: str, retry: bool
) -> None:
    handler = type("Handler", (_Broken,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x"
        with pytest.raises(ClientError, match=message) as err:
            make_client(
                labels_config(
                    client,
                    url,
                    "category" if client == "deluge" else "tag",
                    username="u",
                    password="p",
                )
            ).apply("a" * 40, "DONE")
    finally:
        server.shutdown()
        server.server_close()
    assert err.value.retry is retry


@pytest.mark.parametrize("client", ["qbittorrent", "transmission", "deluge"])
def test_http_adapters_when_nothing_listens(client: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = labels_config(
        client,
        f"http://127.0.0.1:{port}/",
        "category" if client == "deluge" else "tag",
        username="u",
    )
    with pytest.raises(ClientError, match="cannot reach") as err:
        make_client(cfg).apply("a" * 40, "DONE")
    assert err.value.retry
