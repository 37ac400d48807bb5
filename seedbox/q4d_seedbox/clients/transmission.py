"""Transmission RPC (labels need rpc-version 16, Transmission 3.00+).

`torrent-set labels` replaces the whole list, so the current labels are read first and
only q4d's own are swapped.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ..config import LabelsConfig
from . import ClientError, LabelClient, UnknownTorrent
from .http import Http, check

SESSION_HEADER = "X-Transmission-Session-Id"


class Transmission(LabelClient):
    def __init__(self, cfg: LabelsConfig) -> None:
        super().__init__(cfg)
        self.http = Http(cfg.timeout)
        self._session_id = ""

    def _rpc(self, method: str, arguments: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        headers = {"Content-Type": "application/json"}
        if self.cfg.username is not None:
            token = f"{self.cfg.username}:{self.cfg.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        for _ in range(2):
            headers[SESSION_HEADER] = self._session_id
            answer = self.http.post(self.cfg.url, body, headers)
            # CSRF protection: 409 hands out the session id to send from now on.
            if answer.status != 409:
                break
            self._session_id = answer.headers.get(SESSION_HEADER, "")
        if answer.status == 401:
            raise ClientError(
                "Transmission refused the login: check [labels] username and password"
            )
        check(answer, f"Transmission {method}")
        try:
            data = json.loads(answer.body)
        except ValueError:
            raise ClientError(f"Transmission {method}: answer is not JSON") from None
        if data.get("result") != "success":
            raise ClientError(f"Transmission {method}: {data.get('result')}", retry=False)
        arguments_out: dict[str, Any] = data.get("arguments") or {}
        return arguments_out

    def apply(self, info_hash: str, label: str) -> None:
        found = self._rpc("torrent-get", {"ids": [info_hash], "fields": ["hashString", "labels"]})
        torrents = found.get("torrents") or []
        if not torrents:
            raise UnknownTorrent("Transmission")
        ours = set(self.other_names(label)) | {self.cfg.label_name(label)}
        labels = [x for x in torrents[0].get("labels", []) if x not in ours]
        labels.append(self.cfg.label_name(label))
        self._rpc("torrent-set", {"ids": [info_hash], "labels": labels})
