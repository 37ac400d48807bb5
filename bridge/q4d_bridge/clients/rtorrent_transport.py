"""How the rTorrent adapter reaches rTorrent's XML-RPC: its SCGI socket (TCP or unix),
one connection per request, or a web server's HTTP(S) mount of it (ruTorrent's
`/RPC2`) with HTTP Basic auth. Bytes in, bytes out: marshalling stays in rtorrent.py."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from ..config.model import ClientConfig
from .base import ClientError, ClientErrorKind

REQUEST_TIMEOUT = 30.0
SCGI_DEFAULT_PORT = 5000
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class Transport(Protocol):
    where: str  # the endpoint, without credentials, for messages

    async def post(self, body: bytes) -> bytes: ...

    async def close(self) -> None: ...


def client_error(message: str, kind: ClientErrorKind = ClientErrorKind.UNREACHABLE) -> ClientError:
    return ClientError(message, kind)


class ScgiTransport:
    """One XML-RPC request per connection: the netstring of CGI headers, the body, then
    rTorrent's HTTP-like answer (`Status:` line optional, headers, blank line, XML)."""

    def __init__(self, address: str | tuple[str, int], where: str) -> None:
        self.address = address
        self.where = where

    async def post(self, body: bytes) -> bytes:
        headers = b"CONTENT_LENGTH\x00%d\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00" % len(body)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                if isinstance(self.address, str):
                    reader, writer = await asyncio.open_unix_connection(self.address)
                else:
                    reader, writer = await asyncio.open_connection(*self.address)
                try:
                    writer.write(b"%d:%s," % (len(headers), headers) + body)
                    await writer.drain()
                    answer = await _read_all(reader, self.where)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except TimeoutError as err:
            raise client_error(
                f"rTorrent at {self.where}: no answer within {REQUEST_TIMEOUT:g} s"
            ) from err
        except OSError as err:
            raise client_error(
                f"rTorrent unreachable at {self.where}: {type(err).__name__}: {err}"
            ) from err
        return _scgi_body(answer, self.where)

    async def close(self) -> None:
        pass


async def _read_all(reader: asyncio.StreamReader, where: str) -> bytes:
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


def make_transport(config: ClientConfig) -> Transport:
    """`scgi://host[:port]`, `scgi:///path/to.sock` or `http(s)://…` (config validated it)."""
    parts = urlsplit(config.url)
    if parts.scheme == "scgi":
        if parts.netloc:
            host = parts.hostname or "127.0.0.1"
            port = parts.port or SCGI_DEFAULT_PORT
            return ScgiTransport((host, port), f"scgi://{parts.netloc}")
        return ScgiTransport(parts.path, f"scgi://{parts.path}")
    return HttpTransport(config)
