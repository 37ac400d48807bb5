"""Deluge's Label plugin over the web UI's JSON-RPC (`deluge-web`, POST /json).

Deluge has one label per torrent and no tags, and the Label plugin accepts only
`[a-z0-9_-]`: `q4d:DONE` becomes `q4d_done`.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from ..config import LabelsConfig
from . import ClientError, LabelClient, UnknownTorrent
from .http import Http, check

NOT_AUTHENTICATED = 1
UNKNOWN_METHOD = 2


def deluge_label(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "_", name.lower())


class Deluge(LabelClient):
    def __init__(self, cfg: LabelsConfig) -> None:
        super().__init__(cfg)
        self.http = Http(cfg.timeout)
        self._ids = itertools.count(1)

    def _raw(self, method: str, *params: Any) -> dict[str, Any]:
        body = json.dumps({"method": method, "params": list(params), "id": next(self._ids)})
        answer = self.http.post(self.cfg.url, body.encode(), {"Content-Type": "application/json"})
        check(answer, f"Deluge {method}")
        try:
            data: dict[str, Any] = json.loads(answer.body)
        except ValueError:
            raise ClientError(f"Deluge {method}: answer is not JSON") from None
        return data

    def _call(self, method: str, *params: Any) -> Any:
        data = self._raw(method, *params)
        error = data.get("error")
        if error and error.get("code") == NOT_AUTHENTICATED:
            self._login()
            data = self._raw(method, *params)
            error = data.get("error")
        if not error:
            return data.get("result")
        if error.get("code") == UNKNOWN_METHOD and method.startswith("label."):
            raise ClientError("Deluge's Label plugin is not enabled (Preferences > Plugins)")
        # Deluge wraps daemon errors in a Failure repr with a traceback; the wrapped
        # exception's own message is what a user needs.
        message = str(error.get("message", ""))
        wrapped = re.search(r"Exception'>: ([^\n]*)", message)
        reason = wrapped.group(1) if wrapped else message.strip().split("\n", 1)[0]
        raise ClientError(f"Deluge {method}: {reason}", retry=False)

    def _login(self) -> None:
        if self._raw("auth.login", self.cfg.password or "").get("result") is not True:
            raise ClientError("Deluge web refused the login: check [labels] password")

    def _connect(self) -> None:
        """The web UI may be up without a daemon behind it (after either restarts)."""
        if self._call("web.connected"):
            return
        hosts = self._call("web.get_hosts") or []
        if not hosts:
            raise ClientError("Deluge web has no daemon in its connection manager")
        self._call("web.connect", hosts[0][0])

    def apply(self, info_hash: str, label: str) -> None:
        self._connect()
        # An empty status is deluged's answer for a torrent it does not have.
        if not self._call("core.get_torrent_status", info_hash, ["hash"]):
            raise UnknownTorrent("Deluge")
        label_id = deluge_label(self.cfg.label_name(label))
        if label_id not in (self._call("label.get_labels") or []):
            self._call("label.add", label_id)
        self._call("label.set_torrent", info_hash, label_id)
