"""A plain MQTT subscriber that records what the bridge says, for assertions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self._changed = asyncio.Event()

    def on(self, topic_prefix: str) -> list[Received]:
        return [m for m in self.messages if m.topic.startswith(topic_prefix)]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = [m.json() for m in self.messages if m.topic.endswith("/event")]
        return [e for e in out if kind is None or e["event"] == kind]

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    def _add(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        self.messages.append(Received(message.topic.value, payload, message.retain))
        self._changed.set()


@contextlib.asynccontextmanager
async def recording(port: int, *topics: str) -> AsyncIterator[Recorder]:
    async with aiomqtt.Client("127.0.0.1", port) as client, recording_on(client, *topics) as rec:
        yield rec


@contextlib.asynccontextmanager
async def recording_on(client: aiomqtt.Client, *topics: str) -> AsyncIterator[Recorder]:
    """A Recorder of what a connected client receives on topics (all, by default)."""
    recorder = Recorder()
    for topic in topics or ("#",):
        await client.subscribe(topic, qos=1)

    async def pump() -> None:
        async for message in client.messages:
            recorder._add(message)

    task = asyncio.create_task(pump())
    try:
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)
