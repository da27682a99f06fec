/**
 * Workspaces, peers, sessions, members and messages in the embedded store. Every function runs
 * inside the caller's transaction.
 */
import type { Peer, Session, SessionPeer, Upserted, Workspace } from '../../domain/model.ts';
import { mergeOverrides, resolveSettings, type SettingsOverride } from '../../domain/settings.ts';
import type { MessagePlan, SessionSnapshot } from '../../domain/task-generation.ts';
import type { WorkUnitKey } from '../../domain/work-unit-key.ts';
import { NotFoundError } from '../../errors.ts';
import { appendedMessages, appendRows } from '../append-rows.ts';
import { attributesOf, messageMetadataColumn, updateColumns } from '../attributes.ts';
import type { BatchPolicies } from '../queue-plan.ts';
import type { AppendMessagesRequest, AppendMessagesResult, UpsertSessionRequest } from '../store.ts';
import { newWatch, sqliteValues } from '../webhook-sql.ts';
import { gateBatches, recordEvent } from './queue.ts';
import type { Statements } from './statements.ts';

/** Creates the workspace when missing; whether it did. */
export function ensureWorkspace(sql: Statements, id: string, now: number): boolean {
  return sql.insertWorkspace.run(id, now).changes > 0;
}

export function readWorkspace(sql: Statements, id: string): Workspace | null {
  const row = sql.getWorkspace.get(id);
  return row ? { id, settings: JSON.parse(row.settings) as SettingsOverride, ...attributesOf(row) } : null;
}

export function readPeer(sql: Statements, workspaceId: string, id: string): Peer | null {
  const row = sql.getPeer.get(workspaceId, id);
  return row ? { workspaceId, id, observeMe: row.observe_me === 1, ...attributesOf(row) } : null;
}

export function readMembers(sql: Statements, workspaceId: string, sessionId: string): SessionPeer[] {
  return sql.listMembers.all(workspaceId, sessionId).map((row) => ({
    peerId: row.peer_id,
    observeMe: row.observe_me === null ? null : row.observe_me === 1,
    observeOthers: row.observe_others === 1,
  }));
}

export function readSession(sql: Statements, workspaceId: string, id: string): Session | null {
  const row = sql.getSession.get(workspaceId, id);
  if (!row) return null;
  return {
    workspaceId,
    id,
    peers: readMembers(sql, workspaceId, id),
    settings: JSON.parse(row.settings) as SettingsOverride,
    messageCount: row.message_count,
    ...attributesOf(row),
  };
}

/** Stored settings JSON with an update applied (see `mergeOverrides`), as JSON. */
export const mergedSettings = (current: string | undefined, update: SettingsOverride): string =>
  JSON.stringify(mergeOverrides(current ? (JSON.parse(current) as SettingsOverride) : {}, update));

export function readWorkspaceSettings(sql: Statements, id: string): SettingsOverride | undefined {
  const row = sql.getWorkspace.get(id);
  return row ? (JSON.parse(row.settings) as SettingsOverride) : undefined;
}

/** Creates or updates a session and its members (see `Store.upsertSession`). */
export function writeSession(
  sql: Statements,
  request: UpsertSessionRequest,
  peerIds: readonly string[],
  planMembers: (current: readonly SessionPeer[]) => readonly SessionPeer[],
  now: number,
): Upserted<Session> {
  const { workspaceId, id } = request;
  ensureWorkspace(sql, workspaceId, now);
  const created = sql.insertSession.run(workspaceId, id, now).changes > 0;
  const columns = updateColumns(request.attributes);
  if (columns) sql.setSessionAttributes.run(columns.metadata, columns.configuration, workspaceId, id);
  if (request.settings) {
    const current = sql.getSession.get(workspaceId, id)?.settings;
    sql.setSessionSettings.run(mergedSettings(current, request.settings), workspaceId, id);
  }
  for (const peerId of peerIds) sql.insertPeer.run(workspaceId, peerId, now);
  const current = readMembers(sql, workspaceId, id);
  const next = planMembers(current);
  const keep = new Set(next.map((m) => m.peerId));
  for (const member of current) {
    if (!keep.has(member.peerId)) sql.deleteMember.run(workspaceId, id, member.peerId);
  }
  for (const member of next) {
    sql.upsertMember.run(
      workspaceId,
      id,
      member.peerId,
      member.observeMe === null ? null : member.observeMe ? 1 : 0,
      member.observeOthers ? 1 : 0,
      now,
    );
  }
  const session = readSession(sql, workspaceId, id);
  if (!session) throw new Error(`session ${id} vanished inside its transaction`);
  return { ...session, created };
}

/** Appends the planned messages and their tasks. */
export function appendMessages(
  sql: Statements,
  request: AppendMessagesRequest,
  plan: (snapshot: SessionSnapshot) => MessagePlan,
  now: number,
  batches: BatchPolicies,
): AppendMessagesResult {
  const { workspaceId, sessionId } = request;
  let session = sql.getSession.get(workspaceId, sessionId);
  if (!session && request.createSession) {
    ensureWorkspace(sql, workspaceId, now);
    sql.insertSession.run(workspaceId, sessionId, now);
    session = sql.getSession.get(workspaceId, sessionId);
  }
  if (!session) throw new NotFoundError('session', sessionId);
  const members = readMembers(sql, workspaceId, sessionId);
  const peerObserveMe = new Map<string, boolean>();
  for (const peerId of new Set([...members.map((m) => m.peerId), ...request.messages.map((m) => m.peerId)])) {
    const peer = sql.getPeer.get(workspaceId, peerId);
    if (peer) peerObserveMe.set(peerId, peer.observe_me === 1);
  }
  const planned = plan({
    workspaceId,
    sessionId,
    settings: resolveSettings(
      readWorkspaceSettings(sql, workspaceId),
      JSON.parse(session.settings) as SettingsOverride,
    ),
    messageCount: session.message_count,
    members,
    peerObserveMe,
  });
  for (const peerId of planned.newPeers) sql.insertPeer.run(workspaceId, peerId, now);
  for (const peerId of planned.joins) sql.upsertMember.run(workspaceId, sessionId, peerId, null, 0, now);
  // One upsert per work unit the call feeds, counting all its new tasks: the unit rows first, then
  // the messages and their tasks (a unit without a head gets its first new task as the head).
  const rows = appendRows(planned);
  const units = new Map<
    string,
    { key: WorkUnitKey; id: number; needsHead: boolean; head: number; leased: boolean }
  >();
  for (const { unitKey, key, tasks } of rows.units) {
    const row = sql.enqueueUnit.get(
      unitKey,
      key.taskType,
      key.workspaceId,
      key.sessionId,
      key.observerId,
      key.senderId,
      tasks,
    );
    if (!row) throw new Error('work unit upsert returned nothing');
    units.set(unitKey, {
      key,
      id: row.id,
      needsHead: row.head_task_id === null,
      head: row.head_task_id ?? 0,
      leased: row.lease_owner !== null,
    });
  }
  const messageIds = planned.messages.map(
    (message) =>
      sql.insertMessage.run(
        workspaceId,
        sessionId,
        message.seq,
        message.peerId,
        message.content,
        now,
        messageMetadataColumn(message.metadata),
      ).lastInsertRowid,
  );
  const messages = appendedMessages(workspaceId, sessionId, planned.messages, messageIds, now);
  const watch = request.notifyWhenDerived
    ? insertWatch(sql, request, messageIds.map(String), rows.tasks.length, now)
    : null;
  for (const { task, unitKey, message } of rows.tasks) {
    const unit = units.get(unitKey);
    if (!unit) throw new Error('a task of no upserted work unit');
    const taskId = Number(
      sql.insertTask.run(
        unit.id,
        Number(messageIds[message]),
        JSON.stringify(task.payload),
        task.tokens,
        now,
        watch,
      ).lastInsertRowid,
    );
    if (unit.needsHead) {
      sql.setUnitHead.run(taskId, unit.id);
      unit.needsHead = false;
      unit.head = taskId;
    }
  }
  if (watch !== null) for (const unit of units.values()) sql.markWatching.run(unit.id);
  // A batched unit not leased waits for its batch to fill (a leased one is gated at its release).
  gateBatches(
    sql,
    batches,
    [...units.values()]
      .filter((u) => !u.leased)
      .map((u) => ({ id: u.id, task_type: u.key.taskType, head_task_id: u.head })),
  );
  const last = planned.messages.at(-1);
  if (last) sql.setMessageCount.run(last.seq, workspaceId, sessionId);
  return { messages, enqueuedTasks: rows.tasks.length, watchId: watch === null ? null : String(watch) };
}

/** A `notifyWhenDerived` call's watch; a call that made no task is derived at once. */
function insertWatch(
  sql: Statements,
  { workspaceId, sessionId }: AppendMessagesRequest,
  messageIds: readonly string[],
  tasks: number,
  now: number,
): number {
  const watch = newWatch(workspaceId, sessionId, messageIds, tasks, now);
  const { id } = sql.insertWatch.get(sqliteValues(watch.values)) ?? {};
  if (id === undefined) throw new Error('watch insert returned nothing');
  const event = watch.eventOf(id);
  if (event) recordEvent(sql, event, now);
  return id;
}
