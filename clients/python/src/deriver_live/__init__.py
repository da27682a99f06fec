"""Deriver Live's Python client: deriver status pushed over SSE, with Honcho's names.

>>> from deriver_live import DeriverLive
>>> client = DeriverLive("http://localhost:4000/graphql")
>>> sent = client.session("chat").add_messages([("alice", "hello")])
>>> client.wait_for_messages(sent, timeout=60).done
True
"""

from ._types import (
    AddMessagesResult,
    DeriverStatus,
    Message,
    MessageDerivation,
    MessagesDerivation,
    SessionDeriverStatus,
    SessionInfo,
    SessionPeer,
    WorkUnitCounts,
)
from .client import DeriverLive, Peer, Session
from .errors import DeriverLiveError, DeriverLiveTimeout

__all__ = [
    "AddMessagesResult",
    "DeriverLive",
    "DeriverLiveError",
    "DeriverLiveTimeout",
    "DeriverStatus",
    "Message",
    "MessageDerivation",
    "MessagesDerivation",
    "Peer",
    "Session",
    "SessionDeriverStatus",
    "SessionInfo",
    "SessionPeer",
    "WorkUnitCounts",
]
__version__ = "0.1.0"
