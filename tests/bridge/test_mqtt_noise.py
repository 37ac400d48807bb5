"""A lost MQTT connection is the bridge's one WARNING, not paho's and asyncio's ERRORs;
every other error still reaches the log."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from q4d_bridge.mqtt.noise import paho_logger, quiet_closed_sockets


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_paho_socket_errors_go_to_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logger = paho_logger()
    assert paho_logger() is logger and len(logger.filters) == 1
    # as paho's _easy_log calls it
    logger.log(logging.ERROR, "failed to receive on socket: %s", "[Errno 104] reset by peer")
    logger.log(logging.ERROR, "timeout on socket: %s", "timed out")
    assert errors(caplog) == []
    assert "paho: failed to receive on socket: [Errno 104] reset by peer" in caplog.messages
    logger.log(logging.ERROR, "Caught exception in on_message: %s", "boom")
    assert errors(caplog) == ["Caught exception in on_message: boom"]


async def test_socket_callbacks_on_a_closed_descriptor_go_to_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    quiet_closed_sockets(loop)
    sock = socket.socket()
    fd = sock.fileno()
    sock.close()
    # What aiomqtt schedules from paho's socket callbacks, run after the socket closed.
    loop.call_soon(loop.add_writer, fd, lambda: None)
    await asyncio.sleep(0.01)
    assert errors(caplog) == []
    assert any("after the MQTT connection closed" in m for m in caplog.messages)

    def broken() -> None:
        raise ValueError("a real bug")

    loop.call_soon(broken)
    await asyncio.sleep(0.01)
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.getMessage().startswith("Exception in callback")
    assert error.exc_info is not None and isinstance(error.exc_info[1], ValueError)
