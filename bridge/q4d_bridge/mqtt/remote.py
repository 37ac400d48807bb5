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


class RemoteError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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
        await client.subscribe(topics.command_result, qos=1)
        payload = json.dumps({"id": request_id, "op": op, "args": args})
        await client.publish(topics.command, payload, qos=1)
        async for message in client.messages:
            try:
                answer = json.loads(bytes(message.payload))
            except (TypeError, ValueError):
                continue
            if not isinstance(answer, dict) or answer.get("id") != request_id:
                continue
            if answer.get("ok"):
                return answer.get("result")
            error = answer.get("error") or {}
            raise RemoteError(str(error.get("code")), str(error.get("message")))
    raise RemoteError("no_answer", "the broker closed the connection")  # pragma: no cover
