/**
 * Which tasks a message creates (docs/api.md, "What a message creates"), as pure functions over a snapshot of the session
 * that the store loads inside its transaction. The store writes exactly the plan returned here.
 */
import { InvalidInputError } from '../errors.ts';
import { limits } from './limits.ts';
import type { JsonObject, SessionPeer } from './model.ts';
import type { DerivationSettings } from './settings.ts';
import { representationUnit, summaryUnit, type WorkUnitKey } from './work-unit-key.ts';

export type SummaryLevel = 'short' | 'long';

/** Task payload as stored. `level` and `fromSeq` are set on summary tasks only. */
export interface TaskPayload {
  /** The message's sequence number (a summary: the last message it covers). */
  readonly seq: number;
  readonly level?: SummaryLevel;
  /** A summary's first message. */
  readonly fromSeq?: number;
}

/** The messages a summary task summarises: `fromSeq` to `toSeq` of its session, both included. */
export interface SummaryRange {
  readonly level: SummaryLevel;
  readonly fromSeq: number;
  readonly toSeq: number;
}

/** A summary task's range; `null` for a representation task. */
export function summaryRangeOf(payload: TaskPayload): SummaryRange | null {
  if (!payload.level) return null;
  return { level: payload.level, fromSeq: payload.fromSeq ?? payload.seq, toSeq: payload.seq };
}

export interface PlannedTask {
  readonly key: WorkUnitKey;
  readonly payload: TaskPayload;
  /**
   * Estimated input tokens (batch sizes and token rate limits): a representation task's message; a
   * summary task's messages sent in the same call (its earlier ones are not re-read to estimate it).
   */
  readonly tokens: number;
}

/** Estimates a text's tokens for batching and token rate limits (replaceable: `estimateTokens`). */
export type TokenEstimator = (text: string) => number;

/** The default estimate: about one token per four characters, as OpenAI's rule of thumb says. */
export const estimateTokens: TokenEstimator = (text) => Math.ceil(text.length / 4);

/** What the store knows about the session when a batch of messages arrives. */
export interface SessionSnapshot {
  readonly workspaceId: string;
  readonly sessionId: string;
  readonly settings: DerivationSettings;
  readonly messageCount: number;
  readonly members: readonly SessionPeer[];
  /** Peer-level `observeMe` of existing peers named by the batch or in the session. */
  readonly peerObserveMe: ReadonlyMap<string, boolean>;
}

export interface PlannedMessage {
  readonly peerId: string;
  readonly content: string;
  /** Honcho's message metadata, stored as given. @default {} */
  readonly metadata?: JsonObject | undefined;
  readonly seq: number;
  readonly tasks: readonly PlannedTask[];
}

export interface MessagePlan {
  /** Peers that do not exist yet and are created with defaults. */
  readonly newPeers: readonly string[];
  /** Peers that join the session (default session config) before their first message. */
  readonly joins: readonly string[];
  readonly messages: readonly PlannedMessage[];
}

/** Effective `observeMe`: the session-peer value if set, else the peer's, else `true`. */
export function effectiveObserveMe(
  member: SessionPeer | undefined,
  peerObserveMe: boolean | undefined,
): boolean {
  return member?.observeMe ?? peerObserveMe ?? true;
}

/** The tasks one message creates, given the session's members at that moment. */
export function tasksForMessage(args: {
  workspaceId: string;
  sessionId: string;
  senderId: string;
  seq: number;
  settings: DerivationSettings;
  members: readonly SessionPeer[];
  peerObserveMe: ReadonlyMap<string, boolean>;
}): PlannedTask[] {
  const { workspaceId, sessionId, senderId, seq, settings, members, peerObserveMe } = args;
  const tasks: PlannedTask[] = [];
  const sender = members.find((m) => m.peerId === senderId);
  if (settings.reasoningEnabled && effectiveObserveMe(sender, peerObserveMe.get(senderId))) {
    tasks.push({
      key: representationUnit(workspaceId, sessionId, senderId, senderId),
      payload: { seq },
      tokens: 0,
    });
    for (const member of members) {
      if (member.peerId !== senderId && member.observeOthers) {
        tasks.push({
          key: representationUnit(workspaceId, sessionId, member.peerId, senderId),
          payload: { seq },
          tokens: 0,
        });
      }
    }
  }
  if (settings.summariesEnabled) {
    const long = seq % settings.messagesPerLongSummary === 0;
    if (long || seq % settings.messagesPerShortSummary === 0) {
      // A summary covers the messages since the previous one of its level, at most a bounded number.
      const period = long ? settings.messagesPerLongSummary : settings.messagesPerShortSummary;
      const covered = Math.min(period, limits.messagesPerSummary);
      tasks.push({
        key: summaryUnit(workspaceId, sessionId),
        payload: { seq, level: long ? 'long' : 'short', fromSeq: Math.max(1, seq - covered + 1) },
        tokens: 0,
      });
    }
  }
  return tasks;
}

/**
 * Plans a batch of messages: sequence numbers, joins of new senders, and every message's tasks
 * with their estimated tokens (see `PlannedTask.tokens`).
 */
export function planMessages(
  snapshot: SessionSnapshot,
  messages: readonly { peerId: string; content: string; metadata?: JsonObject | undefined }[],
  estimate: TokenEstimator = estimateTokens,
): MessagePlan {
  const members = [...snapshot.members];
  const memberIds = new Set(members.map((m) => m.peerId));
  const newPeers: string[] = [];
  const joins: string[] = [];
  const planned: PlannedMessage[] = [];
  const tokensBySeq = new Map<number, number>();
  let seq = snapshot.messageCount;
  for (const message of messages) {
    if (!snapshot.peerObserveMe.has(message.peerId) && !newPeers.includes(message.peerId)) {
      newPeers.push(message.peerId);
    }
    if (!memberIds.has(message.peerId)) {
      memberIds.add(message.peerId);
      joins.push(message.peerId);
      members.push({ peerId: message.peerId, observeMe: null, observeOthers: false });
    }
    seq += 1;
    const tokens = estimateOf(estimate, message.content);
    tokensBySeq.set(seq, tokens);
    const tasks = tasksForMessage({
      workspaceId: snapshot.workspaceId,
      sessionId: snapshot.sessionId,
      senderId: message.peerId,
      seq,
      settings: snapshot.settings,
      members,
      peerObserveMe: snapshot.peerObserveMe,
    }).map((task) => {
      const range = summaryRangeOf(task.payload);
      if (!range) return { ...task, tokens };
      let sum = 0;
      for (let s = range.fromSeq; s <= range.toSeq; s++) sum += tokensBySeq.get(s) ?? 0;
      return { ...task, tokens: sum };
    });
    planned.push({
      peerId: message.peerId,
      content: message.content,
      metadata: message.metadata,
      seq,
      tasks,
    });
  }
  return { newPeers, joins, messages: planned };
}

/** A user's estimate, held to a whole number of at least 0 (a bad estimator must not break a batch). */
function estimateOf(estimate: TokenEstimator, text: string): number {
  const tokens = estimate(text);
  return Number.isFinite(tokens) && tokens > 0 ? Math.ceil(tokens) : 0;
}

/** A change to one member of a session; `undefined` fields keep their value (defaults on join). */
export interface SessionPeerChange {
  readonly peerId: string;
  /** `null` inherits the peer's value. */
  readonly observeMe?: boolean | null;
  readonly observeOthers?: boolean;
}

/**
 * The session's members after `changes` (joins and config updates) and `removals`; rejects a result
 * with more than `limits.observersPerSession` observers, naming the input entry at fault.
 */
export function planSessionPeers(
  current: readonly SessionPeer[],
  changes: readonly SessionPeerChange[],
  removals: readonly string[] = [],
): SessionPeer[] {
  const byId = new Map(current.map((m) => [m.peerId, m]));
  for (const peerId of removals) byId.delete(peerId);
  for (const change of changes) {
    const existing = byId.get(change.peerId);
    byId.set(change.peerId, {
      peerId: change.peerId,
      observeMe: change.observeMe === undefined ? (existing?.observeMe ?? null) : change.observeMe,
      observeOthers: change.observeOthers ?? existing?.observeOthers ?? false,
    });
  }
  const result = [...byId.values()].sort((a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0));
  const observers = result.filter((m) => m.observeOthers).length;
  if (observers > limits.observersPerSession) {
    const culprit = changes.findLastIndex((c) => c.observeOthers === true);
    throw new InvalidInputError([
      {
        path: culprit >= 0 ? ['peers', culprit, 'observeOthers'] : ['peers'],
        message: `at most ${limits.observersPerSession} peers of a session may have observeOthers set; this change would make ${observers}`,
      },
    ]);
  }
  return result;
}
