"""qBittorrent WebUI API v2: tags by default, the category only in mode = category.

Tags, because the category is what Sonarr/Radarr file their downloads under: Q4D's
labeller overwrote it with QUEUED/DONE and the *arr lost track of the torrent.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from ..config import LabelsConfig
from . import ClientError, LabelClient, UnknownTorrent
from .http import Http, Response, check


class QBittorrent(LabelClient):
    def __init__(self, cfg: LabelsConfig) -> None:
        super().__init__(cfg)
        self.base = self.cfg.url.rstrip("/")
        self.http = Http(self.cfg.timeout)
        self._logged_in = False

    def _form(self, endpoint: str, fields: dict[str, str]) -> Response:
        # Referer satisfies the WebUI's CSRF check (it must match the Host).
        headers = {
            "Referer": self.base,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return self.http.post(f"{self.base}/api/v2/{endpoint}", urlencode(fields).encode(), headers)

    def _login(self) -> None:
        if self.cfg.username is None:
            # No credentials: the WebUI is expected to trust localhost (LocalHostAuth off).
            self._logged_in = True
            return
        answer = self._form(
            "auth/login", {"username": self.cfg.username, "password": self.cfg.password or ""}
        )
        # Up to 5.1: 200 "Ok." or "Fails."; 5.2+: empty 200/204, or 401.
        if answer.status in (200, 204) and answer.body.strip() in (b"", b"Ok."):
            self._logged_in = True
            return
        if answer.status == 403:
            raise ClientError("qBittorrent refused the login: this IP is banned for a while")
        raise ClientError("qBittorrent refused the login: check [labels] username and password")

    def _post(self, endpoint: str, fields: dict[str, str]) -> Response:
        if not self._logged_in:
            self._login()
        answer = self._form(endpoint, fields)
        if answer.status == 403:  # the session expired (or qBittorrent restarted)
            self._logged_in = False
            self._login()
            answer = self._form(endpoint, fields)
        return answer

    def _check_exists(self, info_hash: str) -> None:
        """addTags and setCategory answer 200 for a hash qBittorrent does not have."""
        answer = self._post("torrents/info", {"hashes": info_hash})
        check(answer, "qBittorrent torrents/info")
        try:
            found = json.loads(answer.body)
        except ValueError:
            raise ClientError("qBittorrent torrents/info: answer is not JSON") from None
        if not found:
            raise UnknownTorrent("qBittorrent")

    def apply(self, info_hash: str, label: str) -> None:
        self._check_exists(info_hash)
        name = self.cfg.label_name(label)
        if self.cfg.mode == "category":
            created = self._post("torrents/createCategory", {"category": name})
            if created.status != 409:  # 409: it exists already
                check(created, "qBittorrent createCategory")
            check(
                self._post("torrents/setCategory", {"hashes": info_hash, "category": name}),
                "qBittorrent setCategory",
            )
            return
        check(
            self._post("torrents/addTags", {"hashes": info_hash, "tags": name}),
            "qBittorrent addTags",
        )
        check(
            self._post(
                "torrents/removeTags",
                {"hashes": info_hash, "tags": ",".join(self.other_names(label))},
            ),
            "qBittorrent removeTags",
        )
