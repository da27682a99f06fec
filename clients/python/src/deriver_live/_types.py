"""What the client returns: frozen dataclasses with Honcho's snake_case names, built from the
GraphQL answers (camelCase) by the ``from_api`` functions below."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class WorkUnitCounts:
    """Task counts (each "work unit" is one task): ``total == completed + in_progress + pending``,
    always exactly; ``failed`` is part of ``completed``, ``retrying`` part of ``pending``."""

    total_work_units: int
    completed_work_units: int
    in_progress_work_units: int
    pending_work_units: int
    failed_work_units: int
    retrying_work_units: int

    @property
    def idle(self) -> bool:
        """Nothing pending or running."""
        return self.pending_work_units == 0 and self.in_progress_work_units == 0


@dataclass(frozen=True)
class SessionDeriverStatus(WorkUnitCounts):
    """One session's counts within a :class:`DeriverStatus`."""

    session_id: str


@dataclass(frozen=True)
class DeriverStatus(WorkUnitCounts):
    """Task counts for a filter (its ids combined with AND)."""

    stuck_tasks: int
    #: With a session filter: every task is finished for its messages up to this seq.
    derived_through_seq: Optional[int]
    #: Per session, keyed by id as Honcho's SDK has it; ``None`` when the filter names a session.
    sessions: Optional[dict[str, SessionDeriverStatus]] = None


@dataclass(frozen=True)
class Message:
    id: str
    session_id: str
    peer_id: str
    seq: int
    content: str
    created_at: str


@dataclass(frozen=True)
class AddMessagesResult:
    messages: list[Message]
    #: Tasks these messages created.
    enqueued_tasks: int
    #: With ``notify_when_derived``: the ``watch_id`` of the ``messages.derived`` webhook event.
    watch_id: Optional[str] = None

    @property
    def message_ids(self) -> list[str]:
        return [m.id for m in self.messages]


@dataclass(frozen=True)
class SessionPeer:
    peer_id: str
    observe_me: Optional[bool]
    observe_others: bool


@dataclass(frozen=True)
class SessionInfo:
    id: str
    workspace_id: str
    message_count: int
    peers: list[SessionPeer] = field(default_factory=list)


@dataclass(frozen=True)
class DerivationCounts:
    """Tasks some messages created: ``done`` once none is pending or running."""

    total: int
    pending: int
    in_progress: int
    completed: int
    failed: int
    done: bool


@dataclass(frozen=True)
class MessageDerivation(DerivationCounts):
    """What the tasks one message created are doing."""

    message_id: str
    session_id: str
    seq: int


@dataclass(frozen=True)
class MessagesDerivation(DerivationCounts):
    """The tasks of a set of messages, in total and per message."""

    messages: list[MessageDerivation]


COUNT_FIELDS = (
    "totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits failedWorkUnits retryingWorkUnits"
)
STATUS_FIELDS = f"{COUNT_FIELDS} stuckTasks derivedThroughSeq sessions {{ sessionId {COUNT_FIELDS} }}"
MESSAGE_FIELDS = "id sessionId peerId seq content createdAt"
SESSION_FIELDS = "id workspaceId messageCount peers { peerId observeMe observeOthers }"
DERIVATION_COUNTS = "total pending inProgress completed failed done"
DERIVATION_FIELDS = f"{DERIVATION_COUNTS} messages {{ messageId sessionId seq {DERIVATION_COUNTS} }}"


def _counts(d: Mapping[str, Any]) -> dict[str, int]:
    return {
        "total_work_units": d["totalWorkUnits"],
        "completed_work_units": d["completedWorkUnits"],
        "in_progress_work_units": d["inProgressWorkUnits"],
        "pending_work_units": d["pendingWorkUnits"],
        "failed_work_units": d["failedWorkUnits"],
        "retrying_work_units": d["retryingWorkUnits"],
    }


def status_from_api(d: Mapping[str, Any]) -> DeriverStatus:
    sessions = d.get("sessions")
    return DeriverStatus(
        **_counts(d),
        stuck_tasks=d["stuckTasks"],
        derived_through_seq=d.get("derivedThroughSeq"),
        sessions=None
        if sessions is None
        else {s["sessionId"]: SessionDeriverStatus(session_id=s["sessionId"], **_counts(s)) for s in sessions},
    )


def message_from_api(d: Mapping[str, Any]) -> Message:
    return Message(
        id=d["id"],
        session_id=d["sessionId"],
        peer_id=d["peerId"],
        seq=d["seq"],
        content=d["content"],
        created_at=d["createdAt"],
    )


def session_from_api(d: Mapping[str, Any]) -> SessionInfo:
    return SessionInfo(
        id=d["id"],
        workspace_id=d["workspaceId"],
        message_count=d["messageCount"],
        peers=[
            SessionPeer(peer_id=p["peerId"], observe_me=p["observeMe"], observe_others=p["observeOthers"])
            for p in d["peers"]
        ],
    )


def _derivation_counts(d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "total": d["total"],
        "pending": d["pending"],
        "in_progress": d["inProgress"],
        "completed": d["completed"],
        "failed": d["failed"],
        "done": d["done"],
    }


def derivation_from_api(d: Mapping[str, Any]) -> MessagesDerivation:
    return MessagesDerivation(
        **_derivation_counts(d),
        messages=[
            MessageDerivation(
                message_id=m["messageId"], session_id=m["sessionId"], seq=m["seq"], **_derivation_counts(m)
            )
            for m in d["messages"]
        ],
    )
