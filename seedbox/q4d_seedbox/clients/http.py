"""A minimal urllib HTTP client (stdlib only): POST with a cookie jar and a timeout,
every HTTP status returned as an answer, every transport failure a retryable ClientError."""

from __future__ import annotations

import http.client
import http.cookiejar
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message

from . import ClientError


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes


class Http:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # The jar keeps the login session (qBittorrent's SID, Deluge's _session_id).
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        request = urllib.request.Request(  # noqa: S310 - config allows only http(s) URLs here
            url, data=body, headers=dict(headers), method="POST"
        )
        try:
            with self.opener.open(request, timeout=self.timeout) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, err.headers, err.read())
        # URLError and socket timeouts are OSErrors (also on 3.8).
        except (OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            raise ClientError(f"cannot reach {url}: {reason}") from None


def check(response: Response, what: str) -> None:
    """2xx passes; 5xx and auth trouble may pass later; other 4xx will not."""
    if 200 <= response.status < 300:
        return
    text = response.body[:200].decode("utf-8", "replace").strip()
    retry = response.status >= 500 or response.status in (401, 403, 408, 429)
    raise ClientError(f"{what}: HTTP {response.status} {text}".rstrip(), retry=retry)
