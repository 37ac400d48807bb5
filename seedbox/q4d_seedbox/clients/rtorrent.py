"""rTorrent XML-RPC, over HTTP (a web server's /RPC2, as ruTorrent uses) or straight to
rTorrent's SCGI socket: `scgi://127.0.0.1:5000` or `scgi:///home/me/.rtorrent.sock`.

mode = tag (default) stores the label under rTorrent's custom key `q4d`
(`d.custom=q4d`), which nothing else reads. mode = category sets `d.custom1`, the
ruTorrent label, which Sonarr/Radarr also use as their category.
"""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ..config import LabelsConfig
from . import ClientError, LabelClient, UnknownTorrent

CUSTOM_KEY = "q4d"
# rTorrent's fault for a d.* call on a hash it does not have (its torrent::input_error).
NOT_FOUND = "Could not find info-hash"


class ScgiTransport(xmlrpc.client.Transport):
    """XML-RPC over SCGI (a netstring of CGI headers, then the body), TCP or Unix socket."""

    def __init__(self, address: str | tuple[str, int], timeout: float) -> None:
        super().__init__()
        self.address = address
        self.timeout = timeout

    def request(self, host: Any, handler: str, request_body: Any, verbose: bool = False) -> Any:
        body = bytes(request_body)
        headers = b"CONTENT_LENGTH\x00%d\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00" % len(body)
        packet = b"%d:%s," % (len(headers), headers) + body
        if isinstance(self.address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.address)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(self.address, timeout=self.timeout)
        with sock:
            sock.sendall(packet)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        response = b"".join(chunks)
        _, _, payload = response.partition(b"\r\n\r\n")
        parser, unmarshaller = self.getparser()
        parser.feed(payload)
        parser.close()
        return unmarshaller.close()


class TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


class TimeoutSafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPSConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def server_proxy(
    url: str, username: str | None, password: str | None, timeout: float
) -> xmlrpc.client.ServerProxy:
    parts = urlsplit(url)
    if parts.scheme == "scgi":
        address: str | tuple[str, int] = (
            (parts.hostname or "127.0.0.1", parts.port or 5000) if parts.netloc else parts.path
        )
        return xmlrpc.client.ServerProxy(
            "http://scgi/RPC2", transport=ScgiTransport(address, timeout)
        )
    if username is not None:
        # xmlrpc.client sends Basic auth for credentials in the URL.
        userinfo = quote(username, safe="") + ":" + quote(password or "", safe="")
        parts = parts._replace(netloc=f"{userinfo}@{parts.netloc.rsplit('@', 1)[-1]}")
    transport: xmlrpc.client.Transport = (
        TimeoutSafeTransport(timeout) if parts.scheme == "https" else TimeoutTransport(timeout)
    )
    return xmlrpc.client.ServerProxy(urlunsplit(parts), transport=transport)


class RTorrent(LabelClient):
    def __init__(self, cfg: LabelsConfig) -> None:
        super().__init__(cfg)
        self.proxy = server_proxy(cfg.url, cfg.username, cfg.password, cfg.timeout)

    def call(self, method: str, *params: Any) -> Any:
        try:
            return getattr(self.proxy, method)(*params)
        except xmlrpc.client.Fault as fault:
            if NOT_FOUND in fault.faultString:
                raise UnknownTorrent("rTorrent") from None
            raise ClientError(f"rTorrent {method}: {fault.faultString}", retry=False) from None
        except xmlrpc.client.ProtocolError as err:
            raise ClientError(f"rTorrent {method}: HTTP {err.errcode} {err.errmsg}") from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ResponseError) as err:
            raise ClientError(f"rTorrent {method}: {err}") from None

    def apply(self, info_hash: str, label: str) -> None:
        # rTorrent checks the hash itself: a set on an unknown one is a NOT_FOUND fault.
        name = self.cfg.label_name(label)
        target = info_hash.upper()  # rTorrent's own spelling of info-hashes
        if self.cfg.mode == "category":
            self.call("d.custom1.set", target, name)
        else:
            self.call("d.custom.set", target, CUSTOM_KEY, name)
