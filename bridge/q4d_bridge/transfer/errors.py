"""Transfer errors and their stable reason codes (Home Assistant shows them, automations
match on them), and how local filesystem errors map onto them."""

from __future__ import annotations

import enum
import errno
import os


class ErrorCode(enum.StrEnum):
    """Stable reason codes; Home Assistant shows them and automations match on them."""

    AUTH_FAILED = "auth_failed"
    HOST_KEY_MISMATCH = "host_key_mismatch"
    PERMISSION_DENIED = "permission_denied"
    NO_SPACE = "no_space"
    REMOTE_MISSING = "remote_missing"
    CONNECTION = "connection"
    SIZE_MISMATCH = "size_mismatch"
    TRANSFER = "transfer_failed"
    UNSAFE_PATH = "unsafe_path"
    STALLED = "stalled"
    NOT_CONFIGURED = "not_configured"
    INSUFFICIENT_SPACE = "insufficient_space"
    VERIFY_FAILED = "verify_failed"
    POST_PROCESSING = "post_processing"  # a step after landing failed; the payload stays
    # The rule's exclude patterns leave no file of the payload to fetch.
    NOTHING_TO_FETCH = "nothing_to_fetch"
    # The configured owner or group is unknown here, or the bridge may not give it.
    OWNERSHIP = "ownership"


# Retrying these cannot help until someone changes configuration or the seedbox.
PERMANENT = frozenset(
    {
        ErrorCode.AUTH_FAILED,
        ErrorCode.HOST_KEY_MISMATCH,
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.REMOTE_MISSING,
        ErrorCode.UNSAFE_PATH,
        ErrorCode.VERIFY_FAILED,
        ErrorCode.NOTHING_TO_FETCH,
        ErrorCode.OWNERSHIP,
    }
)


class TransferError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def permanent(self) -> bool:
        return self.code in PERMANENT


def local_error(err: OSError) -> TransferError:
    """A local filesystem error as a transfer error with its reason code."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return TransferError(ErrorCode.NO_SPACE, f"no space left at destination: {err}")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TransferError(ErrorCode.PERMISSION_DENIED, f"cannot write destination: {err}")
    return TransferError(ErrorCode.TRANSFER, f"{os.strerror(err.errno or 0)}: {err}")
