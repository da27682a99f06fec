"""One exception class for everything the server refuses, with the GraphQL error code."""

from __future__ import annotations

from typing import Any, Optional, Sequence


class DeriverLiveError(Exception):
    """A refused or failed call.

    ``code`` is the server's ``extensions.code`` (``BAD_USER_INPUT``, ``NOT_FOUND``,
    ``UNAUTHENTICATED``, ``FORBIDDEN``, ``RATE_LIMITED``, ...), or ``TIMEOUT``, ``NETWORK_ERROR``
    and ``BAD_RESPONSE`` for what happened on the way. ``argument`` names the argument at fault
    when the server names one (``session_id`` is sent as ``sessionId``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        argument: Optional[str] = None,
        status: Optional[int] = None,
        errors: Optional[Sequence[Any]] = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.argument = argument
        self.status = status
        self.errors = list(errors or [])


class DeriverLiveTimeout(DeriverLiveError, TimeoutError):
    """A wait (``wait_for_idle``, ``wait_for_messages``, a call) ran past its ``timeout``."""

    def __init__(self, message: str) -> None:
        super().__init__("TIMEOUT", message)
