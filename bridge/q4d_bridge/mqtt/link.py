"""The bridge's MQTT link: one persistent MQTT 5 session (clean_start false, a session
expiry, a retained last will), kept up with backoff, its subscriptions renewed on every
connect, and every incoming message acknowledged only after it was handled.

Manual acknowledgement is the one place this bends aiomqtt: aiomqtt acknowledges a QoS 1
message as soon as it arrives, and a bridge that died before committing the message to
its store would lose it. So paho's manual-ack mode is switched on under aiomqtt, and the
PUBACK goes out after the handler returned: a crash before the commit leaves the message
with the broker, which delivers it again to the session. The messages that have arrived
by the time one is taken are handled with it, in one transaction (group commit), and
acknowledged together after its commit: nothing ever waits for more to come.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import sqlite3
from collections.abc import Callable, Sequence

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..config.model import BrokerConfig
from .noise import paho_logger
from .publisher import MAX_IN_FLIGHT, Publisher
from .topics import Topics

_LOGGER = logging.getLogger(__name__)
RECONNECT_MAX = 60.0
MAX_BATCH = 10  # half of Mosquitto's default window of unacknowledged messages (20): it
# sends the next ones while a batch is recorded


class MqttLink:
    def __init__(
        self,
        broker: BrokerConfig,
        topics: Topics,
        publisher: Publisher,
        *,
        subscriptions: Sequence[str],
        handle: Callable[[Sequence[aiomqtt.Message]], None],
        fatal: Callable[[], None],
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.publisher = publisher
        self.subscriptions = list(subscriptions)
        # raises sqlite3.Error when the messages could not be recorded
        self.handle = handle
        self.fatal = fatal
        self.connected = asyncio.Event()
        self._rng = random.Random()  # noqa: S311 - reconnect jitter, not cryptography

    def _client(self) -> aiomqtt.Client:
        broker = self.broker
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = int(broker.session_expiry)
        tls_params = None
        if broker.tls is not None:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=broker.tls.ca_certs,
                certfile=broker.tls.certfile,
                keyfile=broker.tls.keyfile,
            )
        client = aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            identifier=broker.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            keepalive=broker.keepalive,
            will=aiomqtt.Will(
                self.topics.status, self.publisher.status_payload("offline"), qos=1, retain=True
            ),
            tls_params=tls_params,
            tls_insecure=broker.tls.insecure if broker.tls else None,
            timeout=10,
            logger=paho_logger(),
        )
        client._client.manual_ack_set(True)  # see the module's docstring
        client.pending_calls_threshold = 2 * MAX_IN_FLIGHT
        return client

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                async with self._client() as client:
                    _no_delay(client)
                    await client.subscribe([(topic, 1) for topic in self.subscriptions])
                    await self.publisher.attach(client)
                    self.connected.set()
                    delay = 1.0
                    _LOGGER.info(
                        "connected to MQTT broker %s:%s", self.broker.host, self.broker.port
                    )
                    arrived = client._queue  # aiomqtt's; its iterator spends a task on each
                    async for message in client.messages:
                        batch = [message]
                        while len(batch) < MAX_BATCH and not arrived.empty():
                            batch.append(arrived.get_nowait())
                        try:
                            self.handle(batch)
                        except sqlite3.Error:
                            # Not stored, so not acknowledged: the broker keeps it for
                            # the next start. A store that cannot write is fatal.
                            _LOGGER.critical("cannot record an incoming message", exc_info=True)
                            self.fatal()
                            # Leaving cleanly sends no last will: say offline ourselves.
                            await client.publish(
                                self.topics.status,
                                self.publisher.status_payload("offline"),
                                qos=1,
                                retain=True,
                            )
                            return
                        for done in batch:
                            client._client.ack(done.mid, done.qos)
            except aiomqtt.MqttError as err:
                self.connected.clear()
                await self.publisher.detach(graceful=False)
                wait = delay * (0.5 + self._rng.random() / 2)
                _LOGGER.warning("MQTT connection lost (%s); reconnecting in %.1fs", err, wait)
                await asyncio.sleep(wait)
                delay = min(RECONNECT_MAX, delay * 2)


def _no_delay(client: aiomqtt.Client) -> None:
    """Send each MQTT packet at once (paho leaves Nagle's algorithm on): a command's
    answer, written right after the message's PUBACK, would otherwise wait for the
    broker to acknowledge that one (up to 40 ms of delayed ACK)."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket):  # TLS too: an SSLSocket is one
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
