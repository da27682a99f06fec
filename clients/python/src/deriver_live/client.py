"""The client: Honcho's names where they exist, pushed instead of polled.

``DeriverLive(url, token=None, workspace_id="default")`` talks to one server's ``/graphql``:
queries and mutations over HTTP, waits and watches over Server-Sent Events (the server pushes each
change; nothing polls). Every method blocks; ``deriver_live.aio`` has the asyncio flavour.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

from ._transport import Transport
from ._types import (
    DERIVATION_FIELDS,
    MESSAGE_FIELDS,
    SESSION_FIELDS,
    STATUS_FIELDS,
    AddMessagesResult,
    DeriverStatus,
    MessagesDerivation,
    SessionInfo,
    derivation_from_api,
    message_from_api,
    session_from_api,
    status_from_api,
)
from .errors import DeriverLiveError, DeriverLiveTimeout

#: A message to add: ``{"peer_id": ..., "content": ...}`` (what ``Peer.message`` returns) or a
#: ``(peer_id, content)`` pair.
MessageLike = Union[Mapping[str, Any], Tuple[str, str]]
#: A session member: a peer id, or ``{"peer_id": ..., "observe_me": ..., "observe_others": ...}``.
PeerLike = Union[str, Mapping[str, Any]]

_STATUS_ARGS = "$workspaceId: ID, $observerId: ID, $senderId: ID, $sessionId: ID"
_STATUS_VARS = "workspaceId: $workspaceId, observerId: $observerId, senderId: $senderId, sessionId: $sessionId"
_GET_STATUS = f"query ({_STATUS_ARGS}) {{ deriverStatus({_STATUS_VARS}) {{ {STATUS_FIELDS} }} }}"
_WATCH_STATUS = (
    f"subscription ({_STATUS_ARGS}, $untilIdle: Boolean, $coalesceMs: Int) {{"
    f" deriverStatus({_STATUS_VARS}, untilIdle: $untilIdle, coalesceMs: $coalesceMs) {{ {STATUS_FIELDS} }} }}"
)
_DERIVATION_ARGS = "$workspaceId: ID, $messageIds: [ID!]!, $observerId: ID"
_DERIVATION_VARS = "workspaceId: $workspaceId, messageIds: $messageIds, observerId: $observerId"
_GET_DERIVATION = (
    f"query ({_DERIVATION_ARGS}) {{ messageDerivation({_DERIVATION_VARS}) {{ {DERIVATION_FIELDS} }} }}"
)
_WATCH_DERIVATION = (
    f"subscription ({_DERIVATION_ARGS}) {{ messageDerivation({_DERIVATION_VARS}) {{ {DERIVATION_FIELDS} }} }}"
)
_ADD_MESSAGES = (
    "mutation ($workspaceId: ID, $sessionId: ID!, $messages: [MessageInput!]!, $notifyWhenDerived: Boolean) {"
    " addMessages(workspaceId: $workspaceId, sessionId: $sessionId, messages: $messages,"
    f" notifyWhenDerived: $notifyWhenDerived) {{ enqueuedTasks watchId messages {{ {MESSAGE_FIELDS} }} }} }}"
)
_UPSERT_SESSION = (
    "mutation ($workspaceId: ID, $id: ID!, $peers: [SessionPeerInput!]) {"
    f" upsertSession(workspaceId: $workspaceId, id: $id, peers: $peers) {{ {SESSION_FIELDS} }} }}"
)
_GET_SESSION = f"query ($workspaceId: ID, $id: ID!) {{ session(workspaceId: $workspaceId, id: $id) {{ {SESSION_FIELDS} }} }}"
_UPSERT_PEER = (
    "mutation ($workspaceId: ID, $id: ID!, $observeMe: Boolean) {"
    " upsertPeer(workspaceId: $workspaceId, id: $id, observeMe: $observeMe) { id observeMe } }"
)


def _message_input(message: MessageLike) -> dict[str, Any]:
    if isinstance(message, tuple):
        peer_id, content = message
        return {"peerId": peer_id, "content": content}
    if "peer_id" not in message or "content" not in message:
        raise TypeError(f"a message needs peer_id and content (got {dict(message)!r})")
    return {"peerId": message["peer_id"], "content": message["content"]}


def _peer_input(peer: PeerLike) -> dict[str, Any]:
    if isinstance(peer, str):
        return {"peerId": peer}
    entry: dict[str, Any] = {"peerId": peer["peer_id"]}
    if "observe_me" in peer:
        entry["observeMe"] = peer["observe_me"]
    if "observe_others" in peer:
        entry["observeOthers"] = peer["observe_others"]
    return entry


class Peer:
    """A peer of the workspace; ``message(content)`` makes a message from it for ``add_messages``."""

    def __init__(self, id: str, observe_me: bool) -> None:
        self.id = id
        self.observe_me = observe_me

    def message(self, content: str) -> dict[str, str]:
        return {"peer_id": self.id, "content": content}

    def __repr__(self) -> str:
        return f"Peer(id={self.id!r}, observe_me={self.observe_me!r})"


class DeriverLive:
    """A Deriver Live server, for one workspace.

    :param url: the GraphQL URL, like ``http://localhost:4000/graphql``.
    :param token: a key (``deriver-live key ...`` mints one) when the server runs with auth.
    :param workspace_id: the workspace every call is about.
    :param timeout: seconds a single request may take (waits take their own ``timeout``).
    """

    def __init__(
        self, url: str, token: Optional[str] = None, workspace_id: str = "default", timeout: float = 30.0
    ) -> None:
        self.url = url
        self.workspace_id = workspace_id
        self._transport = Transport(url, token, timeout)

    # -- status ---------------------------------------------------------------------------------

    def get_deriver_status(
        self,
        observer_id: Optional[str] = None,
        sender_id: Optional[str] = None,
        session_id: Optional[str] = None,
    ) -> DeriverStatus:
        """The counts now (filters combine with AND; unknown ids count zero, as in Honcho)."""
        data = self._execute(
            _GET_STATUS, observerId=observer_id, senderId=sender_id, sessionId=session_id
        )
        return status_from_api(data["deriverStatus"])

    def wait_for_idle(
        self,
        observer_id: Optional[str] = None,
        sender_id: Optional[str] = None,
        session_id: Optional[str] = None,
        timeout: Optional[float] = 300.0,
    ) -> DeriverStatus:
        """Blocks until nothing matching is pending or running; returns that status.

        Pushed by the server the moment it happens (no polling). Raises
        :class:`DeriverLiveTimeout` after ``timeout`` seconds (``None``: no limit), and
        ``DeriverLiveError`` with code ``NOT_FOUND`` for a session or peer that does not exist.
        On a busy deployment the queue may never be idle: prefer :meth:`wait_for_messages`.
        """
        last: Optional[DeriverStatus] = None
        for last in self._watch(observer_id, sender_id, session_id, until_idle=True, timeout=timeout):
            pass
        if last is None:
            raise DeriverLiveError("BAD_RESPONSE", "the status stream completed without a status")
        return last

    #: Honcho's name for :meth:`wait_for_idle`; here it is pushed, not polled.
    poll_deriver_status = wait_for_idle

    def watch_deriver_status(
        self,
        observer_id: Optional[str] = None,
        sender_id: Optional[str] = None,
        session_id: Optional[str] = None,
        coalesce_ms: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[DeriverStatus]:
        """The status now, then every change as the server pushes it. Close the iterator (or
        leave the ``for`` loop) to stop; ``timeout`` (seconds) is how long to watch: when it is up
        the loop ends, with no exception (a wait that must finish is :meth:`wait_for_idle`)."""
        return self._watch(observer_id, sender_id, session_id, until_idle=False, timeout=timeout, coalesce_ms=coalesce_ms)

    def _watch(
        self,
        observer_id: Optional[str],
        sender_id: Optional[str],
        session_id: Optional[str],
        until_idle: bool,
        timeout: Optional[float],
        coalesce_ms: Optional[int] = None,
    ) -> Iterator[DeriverStatus]:
        variables = {
            "workspaceId": self.workspace_id,
            "observerId": observer_id,
            "senderId": sender_id,
            "sessionId": session_id,
            "untilIdle": until_idle,
            "coalesceMs": coalesce_ms,
        }
        try:
            for data in self._transport.subscribe(_WATCH_STATUS, variables, timeout):
                yield status_from_api(data["deriverStatus"])
        except DeriverLiveTimeout:
            if until_idle:
                raise  # a wait that did not finish in time is an error
            return  # a watch's time is up: the loop ends

    # -- your messages --------------------------------------------------------------------------

    def get_message_derivation(
        self, message_ids: Sequence[str], observer_id: Optional[str] = None
    ) -> MessagesDerivation:
        """What the tasks of these messages are doing now."""
        data = self._execute(_GET_DERIVATION, messageIds=list(message_ids), observerId=observer_id)
        return derivation_from_api(data["messageDerivation"])

    def wait_for_messages(
        self,
        message_ids: Union[Sequence[str], AddMessagesResult],
        observer_id: Optional[str] = None,
        timeout: Optional[float] = 300.0,
    ) -> MessagesDerivation:
        """Blocks until every task these messages created (for ``observer_id``, if given) has
        finished, however busy the rest of the queue is; returns their final state (``failed``
        counts the ones that failed for good). Takes ids or what :meth:`add_messages` returned."""
        ids = message_ids.message_ids if isinstance(message_ids, AddMessagesResult) else list(message_ids)
        variables = {"workspaceId": self.workspace_id, "messageIds": ids, "observerId": observer_id}
        last: Optional[MessagesDerivation] = None
        for data in self._transport.subscribe(_WATCH_DERIVATION, variables, timeout):
            last = derivation_from_api(data["messageDerivation"])
        if last is None:
            raise DeriverLiveError("BAD_RESPONSE", "the derivation stream completed without a state")
        return last

    # -- writes ---------------------------------------------------------------------------------

    def upsert_peer(self, id: str, observe_me: Optional[bool] = None) -> Peer:
        """Creates the peer or updates it (``observe_me``: whether facts about it are derived)."""
        data = self._execute(_UPSERT_PEER, id=id, observeMe=observe_me)
        return Peer(data["upsertPeer"]["id"], data["upsertPeer"]["observeMe"])

    #: Honcho's name: get or create a peer.
    peer = upsert_peer

    def upsert_session(self, id: str, peers: Optional[Iterable[PeerLike]] = None) -> SessionInfo:
        """Creates the session or updates it; listed peers join it (created when missing)."""
        data = self._execute(_UPSERT_SESSION, id=id, peers=None if peers is None else [_peer_input(p) for p in peers])
        return session_from_api(data["upsertSession"])

    def get_session(self, id: str) -> Optional[SessionInfo]:
        data = self._execute(_GET_SESSION, id=id)
        return None if data["session"] is None else session_from_api(data["session"])

    def add_messages(
        self, session_id: str, messages: Iterable[MessageLike], notify_when_derived: bool = False
    ) -> AddMessagesResult:
        """Stores 1 to 100 messages and the tasks they create, in one transaction. With
        ``notify_when_derived`` a ``messages.derived`` webhook event follows once they are."""
        data = self._execute(
            _ADD_MESSAGES,
            sessionId=session_id,
            messages=[_message_input(m) for m in messages],
            notifyWhenDerived=notify_when_derived or None,
        )
        result = data["addMessages"]
        return AddMessagesResult(
            messages=[message_from_api(m) for m in result["messages"]],
            enqueued_tasks=result["enqueuedTasks"],
            watch_id=result["watchId"],
        )

    def session(self, id: str) -> "Session":
        """A handle on one session (nothing is sent until you call a method)."""
        return Session(self, id)

    def _execute(self, query: str, **variables: Any) -> dict[str, Any]:
        return self._transport.execute(query, {"workspaceId": self.workspace_id, **variables})

    def __repr__(self) -> str:
        return f"DeriverLive(url={self.url!r}, workspace_id={self.workspace_id!r})"


class Session:
    """One session: the client's methods with ``session_id`` filled in."""

    def __init__(self, client: DeriverLive, id: str) -> None:
        self._client = client
        self.id = id

    def get_deriver_status(
        self, observer_id: Optional[str] = None, sender_id: Optional[str] = None
    ) -> DeriverStatus:
        return self._client.get_deriver_status(observer_id, sender_id, self.id)

    def wait_for_idle(
        self,
        observer_id: Optional[str] = None,
        sender_id: Optional[str] = None,
        timeout: Optional[float] = 300.0,
    ) -> DeriverStatus:
        return self._client.wait_for_idle(observer_id, sender_id, self.id, timeout=timeout)

    poll_deriver_status = wait_for_idle

    def watch_deriver_status(
        self,
        observer_id: Optional[str] = None,
        sender_id: Optional[str] = None,
        coalesce_ms: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Iterator[DeriverStatus]:
        return self._client.watch_deriver_status(observer_id, sender_id, self.id, coalesce_ms, timeout)

    def add_messages(self, messages: Iterable[MessageLike], notify_when_derived: bool = False) -> AddMessagesResult:
        return self._client.add_messages(self.id, messages, notify_when_derived)

    def add_peers(self, peers: Iterable[PeerLike]) -> SessionInfo:
        return self._client.upsert_session(self.id, peers)

    def wait_for_messages(
        self,
        message_ids: Union[Sequence[str], AddMessagesResult],
        observer_id: Optional[str] = None,
        timeout: Optional[float] = 300.0,
    ) -> MessagesDerivation:
        return self._client.wait_for_messages(message_ids, observer_id, timeout)

    def get(self) -> Optional[SessionInfo]:
        return self._client.get_session(self.id)

    def __repr__(self) -> str:
        return f"Session(id={self.id!r})"
