"""`q4d-labeld`: applies the bridge's labels (QUEUED, DONE, FAILED) to torrents.

    q4d-labeld [--config FILE]

It keeps a persistent MQTT 5 session (stable client id, clean start off, a session
expiry), so labels published while it is down wait at the broker. A message is
acknowledged only once its label is applied, or found impossible to apply (malformed,
unknown torrent): if the daemon stops first, the broker delivers it again. The broker
connection is retried with backoff forever; a torrent-client call that fails is retried
with backoff and never ends the daemon. SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import re
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from . import __version__
from .clients import LABELS, ClientError, LabelClient, UnknownTorrent, make_client
from .config import Config, ConfigError, config_path, load
from .publish import new_client, session_properties

log = logging.getLogger("q4d_seedbox.labeld")

HASH_V1 = re.compile(r"[0-9a-fA-F]{40}")
CLASSIC_LABELS = {"QUEUED": "QUEUED", "DONE": "DONE", "NOPE": "FAILED"}
RETRY_FIRST = 1.0
RETRY_MAX = 60.0


@dataclass(frozen=True)
class Job:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection delivered it: a mid is only valid on that one


def parse_label(payload: bytes, classic: bool) -> tuple[str, str]:
    """(lowercase hash, QUEUED|DONE|FAILED) from a v1 label or a classic `HASH\\tLABEL`."""
    if classic:
        fields = payload.decode("utf-8", "replace").strip().split("\t")
        if len(fields) < 2 or not HASH_V1.fullmatch(fields[0]) or fields[1] not in CLASSIC_LABELS:
            raise ValueError(f"not a classic label: {payload[:120]!r}")
        return fields[0].lower(), CLASSIC_LABELS[fields[1]]
    try:
        data = json.loads(payload.decode("utf-8"))
    except ValueError:
        raise ValueError(f"not JSON: {payload[:120]!r}") from None
    if not isinstance(data, dict) or type(data.get("v")) is not int or data["v"] != 1:
        raise ValueError(f"not a v1 label: {payload[:120]!r}")
    info_hash, label = data.get("hash"), data.get("label")
    if not isinstance(info_hash, str) or not HASH_V1.fullmatch(info_hash) or label not in LABELS:
        raise ValueError(f"bad hash or label: {payload[:120]!r}")
    return info_hash.lower(), str(label)


class LabelDaemon:
    def __init__(self, cfg: Config, client: LabelClient) -> None:
        assert cfg.labels is not None
        self.cfg = cfg
        self.labels = cfg.labels
        self.client = client
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connection = 0
        self.mqtt = new_client(cfg.mqtt, cfg.mqtt.client_id, manual_ack=True)
        self.mqtt.reconnect_delay_set(int(RETRY_FIRST), int(RETRY_MAX))
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_message = self._on_message
        self.topics = [cfg.mqtt.label_topic]
        if self.labels.subscribe_classic:
            self.topics.append(self.labels.classic_topic)

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s; retrying", reason)
            return
        with self._lock:
            self._connection += 1
        log.info(
            "connected to %s:%d (session kept: %s)",
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
            bool(flags.session_present),
        )
        # Subscribing again is harmless when the session kept the subscriptions.
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        # One reason per topic, in subscription order (no zip(strict=) on Python 3.8).
        refused = [f"{self.topics[i]} ({r})" for i, r in enumerate(reasons) if r.is_failure]
        if refused:
            log.error("broker refused the subscription to %s", ", ".join(refused))
        else:
            log.info("listening on %s", ", ".join(self.topics))

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if not self.stopping.is_set():
            log.warning("broker connection lost (%s); reconnecting with backoff", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            connection = self._connection
        self.jobs.put(Job(message.topic, message.payload, message.mid, message.qos, connection))

    def _ack(self, job: Job) -> None:
        with self._lock:
            current = job.connection == self._connection
        # After a reconnect the broker resends the message under a new id; acking the
        # old id on the new connection could acknowledge some other message.
        if current and job.qos > 0:
            self.mqtt.ack(job.mid, job.qos)

    def _apply(self, info_hash: str, label: str) -> bool:
        """True once applied or given up on; False if the daemon is stopping first."""
        delay = RETRY_FIRST
        while not self.stopping.is_set():
            try:
                self.client.apply(info_hash, label)
            except UnknownTorrent as err:
                # Removed from the client since, most likely: not worth an ERROR.
                log.warning("%s %s not applied: %s", info_hash, label, err)
                return True
            except ClientError as err:
                if not err.retry:
                    log.error("%s %s not applied: %s", info_hash, label, err)
                    return True
                log.warning("%s %s: %s; retrying in %.0fs", info_hash, label, err, delay)
            except Exception:
                log.exception("%s %s: unexpected error; retrying in %.0fs", info_hash, label, delay)
            else:
                log.info("%s labelled %s", info_hash, self.labels.label_name(label))
                return True
            if self.stopping.wait(delay):
                break
            delay = min(delay * 2, RETRY_MAX)
        return False

    def handle(self, job: Job) -> None:
        classic = job.topic == self.labels.classic_topic and job.topic != self.cfg.mqtt.label_topic
        try:
            info_hash, label = parse_label(job.payload, classic)
        except ValueError as err:
            log.error("ignoring a message on %s: %s", job.topic, err)
            self._ack(job)
            return
        if self._apply(info_hash, label):
            self._ack(job)

    def stop(self, signum: int = 0, _frame: FrameType | None = None) -> None:
        if not self.stopping.is_set():
            log.info("stopping (signal %d)", signum)
        self.stopping.set()

    def run(self) -> int:
        mq = self.cfg.mqtt
        self.mqtt.connect_async(
            mq.host,
            mq.port,
            mq.keepalive,
            clean_start=False,
            properties=session_properties(mq.session_expiry),
        )
        # paho's network thread connects, and reconnects with backoff, for as long as
        # it runs, whether the first attempt works or not.
        self.mqtt.loop_start()
        try:
            while not self.stopping.is_set():
                try:
                    job = self.jobs.get(timeout=0.5)
                except queue.Empty:
                    continue
                self.handle(job)
        finally:
            # A normal DISCONNECT keeps the session (its expiry is set at connect);
            # anything not acknowledged yet is delivered again next time.
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
        log.info("stopped")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="q4d-labeld", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--config", help="config file (default: $Q4D_SEEDBOX_CONFIG or ~/.config/q4d/seedbox.conf)"
    )
    parser.add_argument("--version", action="version", version=f"q4d-labeld {__version__}")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s q4d-labeld %(levelname)s %(message)s",
    )
    try:
        cfg = load(config_path(args.config))
    except ConfigError as err:
        log.error("%s", err)
        return 1
    for warning in cfg.warnings:
        log.warning("%s", warning)
    if cfg.labels is None:
        log.error("%s has no [labels] section: nothing to apply labels to", cfg.path)
        return 1
    daemon = LabelDaemon(cfg, make_client(cfg.labels))
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    log.info(
        "q4d-labeld %s: %s at %s, mode %s",
        __version__,
        cfg.labels.client,
        cfg.labels.url,
        cfg.labels.mode,
    )
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
