"""How the rTorrent adapter reaches rTorrent's XML-RPC: its SCGI socket (TCP or unix),
one connection per request, from here or on the seedbox through the bridge's SSH
connection to it (a channel per request); or a web server's HTTP(S) mount of it
(ruTorrent's `/RPC2`) with HTTP Basic auth. Bytes in, bytes out: marshalling stays in
rtorrent.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import asyncssh
from yarl import URL

from ..config.model import ClientConfig
from .base import ClientError, ClientErrorKind

REQUEST_TIMEOUT = 30.0
SCGI_DEFAULT_PORT = 5000
MAX_ANSWER_BYTES = 64 * 1024 * 1024

# The seedbox's SSH connection, (re)connected: a failure to get it raises a ClientError
# of its kind (the caller knows whether retrying can help), or OSError/asyncssh.Error.
SshLink = Callable[[], Awaitable[asyncssh.SSHClientConnection]]


class Transport(Protocol):
    where: str  # the endpoint, without credentials, for messages

    async def post(self, body: bytes) -> bytes: ...

    async def close(self) -> None: ...


def client_error(message: str, kind: ClientErrorKind = ClientErrorKind.UNREACHABLE) -> ClientError:
    return ClientError(message, kind)


class _Reader(Protocol):  # asyncio's StreamReader, or asyncssh's SSHReader
    async def read(self, n: int = -1) -> bytes: ...


class _Writer(Protocol):  # asyncio's StreamWriter, or asyncssh's SSHWriter
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class ScgiTransport:
    """One XML-RPC request per connection: the netstring of CGI headers, the body, then
    rTorrent's HTTP-like answer (`Status:` line optional, headers, blank line, XML)."""

    def __init__(self, address: str | tuple[str, int], where: str) -> None:
        self.address = address
        self.where = where

    async def _open(self) -> tuple[_Reader, _Writer]:
        if isinstance(self.address, str):
            return await asyncio.open_unix_connection(self.address)
        return await asyncio.open_connection(*self.address)

    async def post(self, body: bytes) -> bytes:
        headers = b"CONTENT_LENGTH\x00%d\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00" % len(body)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                reader, writer = await self._open()
                try:
                    writer.write(b"%d:%s," % (len(headers), headers) + body)
                    await writer.drain()
                    answer = await _read_all(reader, self.where)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError, asyncssh.Error):
                        await writer.wait_closed()
        except TimeoutError as err:
            raise client_error(
                f"rTorrent at {self.where}: no answer within {REQUEST_TIMEOUT:g} s"
            ) from err
        except (OSError, asyncssh.Error) as err:  # asyncssh's: the SSH connection dropped
            raise client_error(
                f"rTorrent unreachable at {self.where}: {type(err).__name__}: {err}"
            ) from err
        return _scgi_body(answer, self.where)

    async def close(self) -> None:
        pass


class SshScgiTransport(ScgiTransport):
    """SCGI to a socket on the seedbox, each request a channel on the bridge's SSH
    connection to it: direct-streamlocal for a Unix socket, direct-tcpip for a port
    (sshd connects, on the seedbox). Nothing held here: each request asks the link for
    the connection, which reconnects when it dropped."""

    def __init__(self, address: str | tuple[str, int], where: str, ssh: SshLink) -> None:
        super().__init__(address, where)
        self.ssh = ssh

    async def _open(self) -> tuple[_Reader, _Writer]:
        try:
            conn = await self.ssh()
        except ClientError as err:
            head = "rTorrent unreachable at" if err.transient else "rTorrent at"
            raise client_error(
                f"{head} {self.where}: no SSH link to the seedbox: {err}", err.kind
            ) from err
        try:
            if isinstance(self.address, str):
                return await conn.open_unix_connection(self.address)
            return await conn.open_connection(*self.address)
        except asyncssh.ChannelOpenError as err:
            if err.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
                raise client_error(
                    f"rTorrent at {self.where}: the seedbox's sshd does not forward to it "
                    f"({err.reason}): see its AllowTcpForwarding, and the key's "
                    "restrict or no-port-forwarding in authorized_keys",
                    ClientErrorKind.REFUSED,
                ) from err
            # asyncssh's own reason when the connection went while the channel opened
            if conn.is_closed() or err.reason == "SSH connection closed":
                raise client_error(
                    f"rTorrent unreachable at {self.where}: the SSH connection to the "
                    f"seedbox dropped ({err.reason})"
                ) from err
            # OpenSSH says "open failed" for a missing socket and for streamlocal
            # forwarding turned off alike: the message names both.
            hint = (
                "is rTorrent running, with network.scgi.open_local at this path, and does "
                "sshd allow it (AllowStreamLocalForwarding)?"
                if isinstance(self.address, str)
                else "is rTorrent running, with network.scgi.open_port on this port?"
            )
            raise client_error(
                f"rTorrent unreachable at {self.where}: the seedbox's sshd could not connect "
                f"to it ({err.reason or 'no reason given'}): {hint}"
            ) from err


async def _read_all(reader: _Reader, where: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise client_error(
                f"rTorrent at {where}: answer larger than {MAX_ANSWER_BYTES // 2**20} MiB",
                ClientErrorKind.REFUSED,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _scgi_body(answer: bytes, where: str) -> bytes:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = answer.partition(b"\n\n")
    if not sep:
        raise client_error(f"rTorrent at {where}: the answer ended early ({len(answer)} bytes)")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = headers.get("status", "200")
    code = int(status.split()[0]) if status.split() and status.split()[0].isdigit() else 0
    if code != 200:
        kind = ClientErrorKind.UNREACHABLE if code >= 500 else ClientErrorKind.REFUSED
        raise client_error(f"rTorrent at {where}: SCGI status {status}", kind)
    length = headers.get("content-length", "")
    if length.isdigit():
        if len(body) < int(length):
            raise client_error(
                f"rTorrent at {where}: the answer ended early ({len(body)} of {length} bytes)"
            )
        body = body[: int(length)]
    return body


class HttpTransport:
    """XML-RPC over HTTP(S): ruTorrent's or a web server's /RPC2 mount of the SCGI socket."""

    def __init__(self, config: ClientConfig) -> None:
        url = URL(config.url)
        self.auth: aiohttp.BasicAuth | None = None
        if config.username is not None:
            # UTF-8, as browsers send it and htpasswd files hold it (aiohttp: Latin-1)
            self.auth = aiohttp.BasicAuth(config.username, config.password or "", "utf-8")
            url = url.with_user(None)
        elif url.user is not None:  # credentials in the URL, only there
            self.auth = aiohttp.BasicAuth(url.user, url.password or "", "utf-8")
            url = url.with_user(None)
        self.url = url
        self.where = str(url)
        self.ssl = config.verify_tls  # False: any certificate and host name
        self._http: aiohttp.ClientSession | None = None

    async def post(self, body: bytes) -> bytes:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        try:
            async with self._http.post(
                self.url,
                data=body,
                headers={"Content-Type": "text/xml"},
                auth=self.auth,
                ssl=self.ssl,
                allow_redirects=False,
            ) as response:
                status = f"HTTP {response.status} {response.reason or ''}".strip()
                if response.status in (401, 403):
                    raise client_error(
                        f"rTorrent at {self.where}: {status} (check username/password)",
                        ClientErrorKind.AUTH,
                    )
                if response.status >= 500:
                    raise client_error(f"rTorrent at {self.where}: {status}")
                if 300 <= response.status < 400:
                    target = response.headers.get("Location", "?")
                    raise client_error(
                        f"rTorrent at {self.where}: {status}, redirected to {target} (not an "
                        "XML-RPC endpoint: a login page?)",
                        ClientErrorKind.REFUSED,
                    )
                if response.status != 200:
                    raise client_error(
                        f"rTorrent at {self.where}: {status} (is the url rTorrent's XML-RPC "
                        "endpoint, e.g. https://host/RPC2?)",
                        ClientErrorKind.REFUSED,
                    )
                return await _read_limited(response.content, self.where)
        except TimeoutError as err:
            raise client_error(
                f"rTorrent at {self.where}: no answer within {REQUEST_TIMEOUT:g} s"
            ) from err
        except (aiohttp.ClientError, OSError) as err:
            raise client_error(
                f"rTorrent unreachable at {self.where}: {type(err).__name__}: {err}"
            ) from err

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


async def _read_limited(content: aiohttp.StreamReader, where: str) -> bytes:
    data = await content.read(MAX_ANSWER_BYTES + 1)
    while len(data) <= MAX_ANSWER_BYTES and (chunk := await content.read(65536)):
        data += chunk
    if len(data) > MAX_ANSWER_BYTES:
        raise client_error(
            f"rTorrent at {where}: answer larger than {MAX_ANSWER_BYTES // 2**20} MiB",
            ClientErrorKind.REFUSED,
        )
    return data


def make_transport(config: ClientConfig, ssh: SshLink | None = None) -> Transport:
    """`scgi://host[:port]`, `scgi:///path/to.sock`, the same as `scgi+ssh://` (on the
    seedbox, through `ssh`) or `http(s)://…` (config validated it)."""
    parts = urlsplit(config.url)
    if parts.scheme not in ("scgi", "scgi+ssh"):
        return HttpTransport(config)
    address: str | tuple[str, int] = parts.path
    where = f"{parts.scheme}://{parts.path}"
    if parts.netloc:
        address = (parts.hostname or "127.0.0.1", parts.port or SCGI_DEFAULT_PORT)
        where = f"{parts.scheme}://{parts.netloc}"
    if parts.scheme == "scgi":
        return ScgiTransport(address, where)
    if ssh is None:
        raise ValueError(f"{where}: needs the seedbox's SSH link (make_client's ssh)")
    return SshScgiTransport(address, where, ssh)
