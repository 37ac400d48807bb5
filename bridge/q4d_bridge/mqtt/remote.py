"""One command sent to the running bridge over MQTT and its answer awaited, as Home
Assistant sends them: for the CLI's `add` and `clients`, which need the bridge's live
client sessions and its lock on the store."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiomqtt

from ..config.model import BrokerConfig
from .noise import paho_logger
from .topics import Topics

STATUS_WAIT = 5.0  # for the bridge's retained status: none means it never ran here


def _json(message: aiomqtt.Message) -> dict[str, Any]:
    try:
        data = json.loads(bytes(message.payload))
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RemoteError(Exception):
    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail or {}  # the answer's whole error object (e.g. `fields`)


async def call_bridge(
    broker: BrokerConfig, topics: Topics, op: str, args: dict[str, Any], *, within: float
) -> Any:
    """The result of `op`, or RemoteError with the bridge's error code and message."""
    tls = None
    if broker.tls is not None:
        tls = aiomqtt.TLSParameters(
            ca_certs=broker.tls.ca_certs, certfile=broker.tls.certfile, keyfile=broker.tls.keyfile
        )
    request_id = f"cli-{secrets.token_hex(8)}"
    async with (
        asyncio.timeout(within),
        aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            identifier=f"{broker.client_id}-cli-{secrets.token_hex(4)}",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_params=tls,
            tls_insecure=broker.tls.insecure if broker.tls else None,
            timeout=10,
            logger=paho_logger(),
        ) as client,
    ):
        await client.subscribe([(topics.status, 1), (topics.command_result, 1)])
        asked = False
        try:
            async with asyncio.timeout(STATUS_WAIT) as waiting_for_status:
                async for message in client.messages:
                    answer = _json(message)
                    if message.topic.matches(topics.status) and not asked:
                        # retained: the bridge's last word on whether it runs
                        if answer.get("state") != "online":
                            raise RemoteError("offline", f"bridge {topics.bridge_id} is offline")
                        waiting_for_status.reschedule(None)
                        await client.publish(
                            topics.command,
                            json.dumps({"id": request_id, "op": op, "args": args}),
                            qos=1,
                        )
                        asked = True
                        continue
                    if answer.get("id") != request_id:
                        continue
                    if answer.get("ok"):
                        return answer.get("result")
                    error = answer.get("error") or {}
                    raise RemoteError(str(error.get("code")), str(error.get("message")), error)
        except TimeoutError:
            if asked:
                raise
            raise RemoteError(
                "offline", f"no status from bridge {topics.bridge_id} on the broker"
            ) from None
    raise RemoteError("no_answer", "the broker closed the connection")  # pragma: no cover
