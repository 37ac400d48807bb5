"""MQTT with paho-mqtt (>= 2.0): the hook's bounded QoS 1 sender, and the client
settings the label daemon shares.

MQTT 5, because the bridge already requires it of the broker, and because a v5 PUBACK
carries a reason code: a broker that refuses a publish (an ACL denial, a quota) says so,
and the message stays in the outbox. Under 3.1.1 the broker acknowledges a denied
publish like any other and drops it, and the hook would delete an event nobody got.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .config import MqttConfig
from .outbox import Message, Outbox, OutboxError

# Passes over the outbox in one delivery: files written while a pass runs (by hooks
# that gave up waiting for the lock) are picked up, but a flood cannot keep it busy.
MAX_PASSES = 10


class PublishError(Exception):
    pass


def new_client(cfg: MqttConfig, client_id: str = "", *, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password)
    if cfg.tls:
        client.tls_set(ca_certs=cfg.ca_certs, cert_reqs=ssl.CERT_REQUIRED)
    return client


def session_properties(expiry: int) -> Properties:
    """CONNECT properties that keep the session (and its queued QoS 1 messages) for
    `expiry` seconds after a disconnect; without them MQTT 5 drops it at once."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry
    return props


class Sender:
    """One clean MQTT 5 connection that publishes QoS 1 messages one at a time, each
    confirmed by its PUBACK before the next, every step bounded by a deadline."""

    def __init__(self, cfg: MqttConfig) -> None:
        self.cfg = cfg
        self.client = new_client(cfg)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self._connack: ReasonCode | None = None
        self._acks: dict[int, ReasonCode] = {}

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._connack = reason

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._acks[mid] = reason

    def _loop(self, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PublishError(f"timed out waiting for {what}")
        rc = self.client.loop(timeout=min(0.1, remaining))
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"connection lost waiting for {what}: {mqtt.error_string(rc)}")

    def connect(self, deadline: float) -> None:
        self.client.connect_timeout = max(0.1, deadline - time.monotonic())
        try:
            self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive, clean_start=True)
        except (OSError, ValueError) as err:
            raise PublishError(
                f"cannot connect to {self.cfg.host}:{self.cfg.port}: {err}"
            ) from None
        while self._connack is None:
            self._loop(deadline, "CONNACK")
        if self._connack.is_failure:
            raise PublishError(f"broker refused the connection: {self._connack}")

    def publish(self, topic: str, payload: bytes, deadline: float, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"publish failed: {mqtt.error_string(info.rc)}")
        while info.mid not in self._acks:
            self._loop(deadline, "PUBACK")
        reason = self._acks.pop(info.mid)
        if reason.is_failure:
            raise PublishError(f"broker refused the message: {reason}")

    def close(self) -> None:
        # Best effort: the messages that matter are already acknowledged.
        self.client.disconnect()
        self.client.loop(timeout=0.05)


@dataclass
class Delivery:
    sent: int = 0
    left: int = 0
    error: str | None = None


def sequence_of(message: Message, completed_topic: str) -> tuple[str, int] | None:
    """The (stream, seq) a completion event carries, if it is one and has them."""
    if message.topic != completed_topic:
        return None
    try:
        data = json.loads(message.payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    stream, seq = data.get("stream"), data.get("seq")
    return (stream, seq) if isinstance(stream, str) and type(seq) is int else None


def _announce_sequence(
    sender: Sender, cfg: MqttConfig, high: tuple[str, int], deadline: float
) -> None:
    """The last number sent, retained: a bridge that was away reads it when it
    subscribes again and learns of events the broker dropped from its queue."""
    payload = json.dumps({"v": 1, "stream": high[0], "seq": high[1]}).encode()
    with contextlib.suppress(PublishError):  # nothing is lost: the next event has its number
        sender.publish(cfg.sequence_topic, payload, deadline, retain=True)


def deliver(outbox: Outbox, cfg: MqttConfig, deadline: float, step_timeout: float) -> Delivery:
    """Send the outbox oldest first; stop at the first failure so order holds. The
    caller holds the outbox lock. Each step (connect, one PUBACK) gets `step_timeout`
    and everything ends by `deadline` (time.monotonic())."""
    result = Delivery()
    sender: Sender | None = None
    high: tuple[str, int] | None = None
    try:
        for _ in range(MAX_PASSES):
            pending = outbox.pending()
            if not pending:
                break
            for path in pending:
                try:
                    message = outbox.read(path)
                except OutboxError as err:
                    result.error = str(err)
                    continue
                if message is None:
                    continue
                step = min(deadline, time.monotonic() + step_timeout)
                if sender is None:
                    sender = Sender(cfg)
                    sender.connect(step)
                    step = min(deadline, time.monotonic() + step_timeout)
                sender.publish(message.topic, message.payload, step)
                outbox.remove(path)
                result.sent += 1
                sequence = sequence_of(message, cfg.completed_topic)
                if sequence is not None and (high is None or sequence[1] > high[1]):
                    high = sequence
        if sender is not None and high is not None:
            _announce_sequence(sender, cfg, high, min(deadline, time.monotonic() + step_timeout))
    except PublishError as err:
        result.error = str(err)
    finally:
        if sender is not None:
            sender.close()
    result.left = len(outbox.pending())
    return result


def check(cfg: MqttConfig, deadline: float) -> None:
    """Connect and disconnect (for `q4d-hook test`); raises PublishError."""
    sender = Sender(cfg)
    try:
        sender.connect(deadline)
    finally:
        sender.close()
