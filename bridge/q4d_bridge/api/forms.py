"""Reading a request's parameters as qBittorrent does: the query string, and a body that
is form-urlencoded or multipart (Sonarr switches to multipart for a file or any value
over 1024 bytes), within a size limit; booleans in any case (`True`, as .NET and Python
write them, `true`, `TRUE`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web

from ..clients.metainfo import MAX_TORRENT_FILE

MAX_BODY = 2 * MAX_TORRENT_FILE  # a .torrent at its largest, and the fields beside it
MAX_PARTS = 100
MAX_FIELD = 1024 * 1024  # a plain value: a magnet with a few hundred trackers fits


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


@dataclass(slots=True)
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else default

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def flag(self, name: str) -> bool | None:
        """A boolean parameter, `true` or `false` in any case; None when absent or
        anything else (qBittorrent's parseBool: the default then applies)."""
        value = (self.get(name) or "").strip().lower()
        return {"true": True, "false": False}.get(value)

    def hashes(self) -> list[str] | None:
        """`hashes=a|b|c`, lowercased; None for `all`; 400 when missing."""
        value = self.get("hashes")
        if value is None:
            raise web.HTTPBadRequest(text="hashes: missing")
        if value.strip().lower() == "all":
            return None
        return [h.strip().lower() for h in value.split("|") if h.strip()]

    def add(self, name: str, value: str) -> None:
        self.fields.setdefault(name, []).append(value)


async def read_form(request: web.Request) -> Form:
    form = Form()
    for name, value in request.query.items():
        form.add(name, value)
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    if request.content_type == "multipart/form-data":
        await _read_multipart(request, form)
    elif request.can_read_body:
        body = await request.read()  # bounded by the app's client_max_size (413)
        # no Content-Type at all is read as a form too (aiohttp calls it octet-stream)
        declared = "Content-Type" in request.headers
        if body and declared and request.content_type != "application/x-www-form-urlencoded":
            raise web.HTTPUnsupportedMediaType(
                text="send application/x-www-form-urlencoded or multipart/form-data"
            )
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError) as err:
            raise web.HTTPBadRequest(text=f"malformed form body: {err}") from None
        for name, value in pairs:
            form.add(name, value)
    return form


async def _read_multipart(request: web.Request, form: Form) -> None:
    total = 0
    try:
        reader = await request.multipart()
        for _ in range(MAX_PARTS + 1):
            part = await reader.next()
            if part is None:
                return
            if not isinstance(part, BodyPartReader) or not part.name:
                raise web.HTTPBadRequest(text="malformed multipart body: a part without a name")
            limit = MAX_TORRENT_FILE if part.filename is not None else MAX_FIELD
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                total += len(chunk)
                if len(data) > limit or total > MAX_BODY:
                    raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=total)
            if part.filename is not None:
                form.files.append(Upload(part.filename, bytes(data)))
            else:
                form.add(part.name, data.decode())
    except (ValueError, AssertionError, UnicodeDecodeError) as err:
        raise web.HTTPBadRequest(text=f"malformed multipart body: {err}") from None
    raise web.HTTPBadRequest(text=f"malformed multipart body: more than {MAX_PARTS} parts")
