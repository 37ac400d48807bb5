"""Keep an expected MQTT reconnect to the one WARNING the bridge logs itself.

When the broker restarts or the link drops, paho (under aiomqtt) logs the socket error
at ERROR, and a socket callback it scheduled can still run on the closed descriptor and
reach asyncio's exception handler with a traceback. Both are the same lost connection
the bridge already reports and recovers from: they are logged at DEBUG here instead.
Anything else still reaches the log as it was.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)
# paho's messages for a connection that just went away (client.py, _easy_log calls).
_SOCKET_LOST = ("failed to receive on socket", "timeout on socket")
# asyncio's loop methods that paho's socket callbacks schedule (via aiomqtt).
_SOCKET_CALLBACKS = ("add_reader", "add_writer", "remove_reader", "remove_writer")


class _SocketLostFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(_SOCKET_LOST):
            _LOGGER.debug("paho: %s", record.getMessage())
            return False
        return True


def paho_logger() -> logging.Logger:
    """The logger to give aiomqtt (and so paho)."""
    logger = logging.getLogger("q4d_bridge.paho")
    if not any(isinstance(f, _SocketLostFilter) for f in logger.filters):
        logger.addFilter(_SocketLostFilter())
    return logger


def quiet_closed_sockets(loop: asyncio.AbstractEventLoop) -> None:
    """An exception handler that logs a socket callback on a closed descriptor at
    DEBUG, and passes everything else to the loop's default handler."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        err = context.get("exception")
        handle_repr = repr(context.get("handle", ""))
        if (
            isinstance(err, OSError)
            and err.errno == errno.EBADF
            and any(name in handle_repr for name in _SOCKET_CALLBACKS)
        ):
            _LOGGER.debug("socket callback after the MQTT connection closed: %s", handle_repr)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
