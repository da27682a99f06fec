/**
 * Workspaces, peers, sessions, members and messages on PostgreSQL. Every function runs inside the
 * caller's transaction. `appendMessages` locks the session row first, so concurrent calls into one
 * session take sequence numbers one after the other.
 */

import type { AttributesUpdate, Peer, Session, SessionPeer, Workspace } from '../../domain/model.ts';
import { mergeOverrides, resolveSettings, type SettingsOverride } from '../../domain/settings.ts';
import type { MessagePlan, SessionSnapshot } from '../../domain/task-generation.ts';
import type { TaskType } from '../../domain/work-unit-key.ts';
import { NotFoundError } from '../../errors.ts';
import { appendedMessages, appendRows } from '../append-rows.ts';
import { attributesOf, messageMetadataColumn, updateColumns } from '../attributes.ts';
import type { BatchPolicies } from '../queue-plan.ts';
import type { Head, UnitRow } from '../rows.ts';
import type { AppendMessagesRequest, AppendMessagesResult } from '../store.ts';
import { insertWatchSql, newWatch } from '../webhook-sql.ts';
import { claimableAt } from './claims.ts';
import type { Db } from './connection.ts';
import { recordEvent } from './outbox.ts';

/** Creates the workspace when missing; whether it did. */
export async function ensureWorkspace(db: Db, id: string, now: number): Promise<boolean> {
  const inserted = await db.query(
    'INSERT INTO workspaces (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING',
    [id, now],
  );
  return (inserted.rowCount ?? 0) > 0;
}

type AttributeTable = 'workspaces' | 'peers' | 'sessions';

/** Replaces the given attributes of a row (the key: `id`, or `workspace_id` and `id`); none given, no write. */
export async function setAttributes(
  db: Db,
  table: AttributeTable,
  key: readonly string[],
  update: AttributesUpdate | undefined,
): Promise<void> {
  const columns = updateColumns(update);
  if (!columns) return;
  const { metadata, configuration } = columns;
  const where = key.length === 1 ? 'id = $3' : 'workspace_id = $3 AND id = $4';
  await db.query(
    `UPDATE ${table} SET metadata = coalesce($1::jsonb, metadata),
       configuration = coalesce($2::jsonb, configuration) WHERE ${where}`,
    [metadata, configuration, ...key],
  );
}

export async function readWorkspace(db: Db, id: string): Promise<Workspace | null> {
  const row = (
    await db.query<{
      settings: SettingsOverride;
      created_at: string;
      metadata: unknown;
      configuration: unknown;
    }>('SELECT settings, created_at, metadata, configuration FROM workspaces WHERE id = $1', [id])
  ).rows[0];
  return row ? { id, settings: row.settings, ...attributesOf(row) } : null;
}

export async function readPeer(db: Db, workspaceId: string, id: string): Promise<Peer | null> {
  const row = (
    await db.query<{ observe_me: boolean; created_at: string; metadata: unknown; configuration: unknown }>(
      'SELECT observe_me, created_at, metadata, configuration FROM peers WHERE workspace_id = $1 AND id = $2',
      [workspaceId, id],
    )
  ).rows[0];
  return row ? { workspaceId, id, observeMe: row.observe_me, ...attributesOf(row) } : null;
}

export async function ensurePeers(db: Db, workspaceId: string, peerIds: readonly string[], now: number) {
  if (peerIds.length === 0) return;
  await db.query(
    `INSERT INTO peers (workspace_id, id, created_at) SELECT $1, unnest($2::text[]), $3
     ON CONFLICT DO NOTHING`,
    [workspaceId, [...peerIds], now],
  );
}

export async function readWorkspaceSettings(db: Db, id: string): Promise<SettingsOverride | undefined> {
  const row = (
    await db.query<{ settings: SettingsOverride }>('SELECT settings FROM workspaces WHERE id = $1', [id])
  ).rows[0];
  return row?.settings;
}

export async function setWorkspaceSettings(
  db: Db,
  id: string,
  update: SettingsOverride,
): Promise<SettingsOverride> {
  const merged = mergeOverrides((await readWorkspaceSettings(db, id)) ?? {}, update);
  await db.query('UPDATE workspaces SET settings = $2 WHERE id = $1', [id, JSON.stringify(merged)]);
  return merged;
}

export async function readMembers(db: Db, workspaceId: string, sessionId: string): Promise<SessionPeer[]> {
  const rows = await db.query<{ peer_id: string; observe_me: boolean | null; observe_others: boolean }>(
    `SELECT peer_id, observe_me, observe_others FROM session_peers
     WHERE workspace_id = $1 AND session_id = $2 ORDER BY peer_id COLLATE "C"`,
    [workspaceId, sessionId],
  );
  return rows.rows.map((row) => ({
    peerId: row.peer_id,
    observeMe: row.observe_me,
    observeOthers: row.observe_others,
  }));
}

export async function readSession(db: Db, workspaceId: string, id: string): Promise<Session | null> {
  const row = (
    await db.query<{
      settings: SettingsOverride;
      message_count: number;
      created_at: string;
      metadata: unknown;
      configuration: unknown;
    }>(
      `SELECT settings, message_count, created_at, metadata, configuration FROM sessions
       WHERE workspace_id = $1 AND id = $2`,
      [workspaceId, id],
    )
  ).rows[0];
  if (!row) return null;
  return {
    workspaceId,
    id,
    peers: await readMembers(db, workspaceId, id),
    settings: row.settings,
    messageCount: row.message_count,
    ...attributesOf(row),
  };
}

export async function writeMembers(
  db: Db,
  workspaceId: string,
  sessionId: string,
  current: readonly SessionPeer[],
  next: readonly SessionPeer[],
  now: number,
): Promise<void> {
  const keep = new Set(next.map((m) => m.peerId));
  const leaving = current.filter((m) => !keep.has(m.peerId)).map((m) => m.peerId);
  if (leaving.length > 0) {
    await db.query(
      'DELETE FROM session_peers WHERE workspace_id = $1 AND session_id = $2 AND peer_id = ANY($3::text[])',
      [workspaceId, sessionId, leaving],
    );
  }
  if (next.length === 0) return;
  await db.query(
    `INSERT INTO session_peers (workspace_id, session_id, peer_id, observe_me, observe_others, joined_at)
     SELECT $1, $2, m.peer_id, m.observe_me, m.observe_others, $6
     FROM unnest($3::text[], $4::boolean[], $5::boolean[]) AS m(peer_id, observe_me, observe_others)
     ON CONFLICT (workspace_id, session_id, peer_id)
     DO UPDATE SET observe_me = excluded.observe_me, observe_others = excluded.observe_others`,
    [
      workspaceId,
      sessionId,
      next.map((m) => m.peerId),
      next.map((m) => m.observeMe),
      next.map((m) => m.observeOthers),
      now,
    ],
  );
}

/** Appends the planned messages and their tasks. */
export async function appendMessages(
  db: Db,
  request: AppendMessagesRequest,
  plan: (snapshot: SessionSnapshot) => MessagePlan,
  now: number,
  batches: BatchPolicies,
): Promise<AppendMessagesResult> {
  const { workspaceId, sessionId } = request;
  const lockSession = async () =>
    (
      await db.query<{ settings: SettingsOverride; message_count: number }>(
        'SELECT settings, message_count FROM sessions WHERE workspace_id = $1 AND id = $2 FOR UPDATE',
        [workspaceId, sessionId],
      )
    ).rows[0];
  let session = await lockSession();
  if (!session && request.createSession) {
    await ensureWorkspace(db, workspaceId, now);
    await db.query(
      'INSERT INTO sessions (workspace_id, id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
      [workspaceId, sessionId, now],
    );
    session = await lockSession();
  }
  if (!session) throw new NotFoundError('session', sessionId);
  const members = await readMembers(db, workspaceId, sessionId);
  const named = [...new Set([...members.map((m) => m.peerId), ...request.messages.map((m) => m.peerId)])];
  const peers = await db.query<{ id: string; observe_me: boolean }>(
    'SELECT id, observe_me FROM peers WHERE workspace_id = $1 AND id = ANY($2::text[])',
    [workspaceId, named],
  );
  const planned = plan({
    workspaceId,
    sessionId,
    settings: resolveSettings(await readWorkspaceSettings(db, workspaceId), session.settings),
    messageCount: session.message_count,
    members,
    peerObserveMe: new Map(peers.rows.map((p) => [p.id, p.observe_me])),
  });
  await ensurePeers(db, workspaceId, planned.newPeers, now);
  if (planned.joins.length > 0) {
    await db.query(
      `INSERT INTO session_peers (workspace_id, session_id, peer_id, observe_me, observe_others, joined_at)
       SELECT $1, $2, unnest($3::text[]), NULL, false, $4 ON CONFLICT DO NOTHING`,
      [workspaceId, sessionId, [...planned.joins], now],
    );
  }
  const inserted = await db.query<{ id: number; seq: number }>(
    `INSERT INTO messages (workspace_id, session_id, seq, peer_id, content, created_at, metadata)
     SELECT $1, $2, m.seq, m.peer_id, m.content, $6, m.metadata
     FROM unnest($3::integer[], $4::text[], $5::text[], $7::jsonb[]) AS m(seq, peer_id, content, metadata)
     ORDER BY m.seq RETURNING id, seq`,
    [
      workspaceId,
      sessionId,
      planned.messages.map((m) => m.seq),
      planned.messages.map((m) => m.peerId),
      planned.messages.map((m) => m.content),
      now,
      planned.messages.map((m) => messageMetadataColumn(m.metadata)),
    ],
  );
  const idBySeq = new Map(inserted.rows.map((r) => [r.seq, r.id]));
  const messageIds = planned.messages.map((m) => idBySeq.get(m.seq)!);
  const messages = appendedMessages(workspaceId, sessionId, planned.messages, messageIds, now);
  const { units, tasks } = appendRows(planned);
  const watch = request.notifyWhenDerived
    ? await insertWatch(
        db,
        request,
        messages.map((m) => m.id),
        tasks.length,
        now,
      )
    : null;
  const unitIds = new Map<string, number>();
  if (units.length > 0) {
    // One upsert for every unit of the call, in key order (a stable lock order across calls).
    const upserted = await db.query<{ id: number; unit_key: string }>(
      `INSERT INTO work_units (unit_key, task_type, workspace_id, session_id, observer_id, sender_id)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
       ON CONFLICT (unit_key) DO UPDATE SET version = work_units.version
       RETURNING id, unit_key`,
      [
        units.map((u) => u.unitKey),
        units.map((u) => u.key.taskType),
        units.map((u) => u.key.workspaceId),
        units.map((u) => u.key.sessionId),
        units.map((u) => u.key.observerId),
        units.map((u) => u.key.senderId),
      ],
    );
    for (const row of upserted.rows) unitIds.set(row.unit_key, row.id);
  }
  const taskUnits = tasks.map(({ unitKey }) => unitIds.get(unitKey)!);
  const insertedTasks = await db.query<{ id: number; unit_id: number }>(
    `INSERT INTO tasks (unit_id, message_id, state, payload, tokens, created_at, watch_id)
     SELECT t.unit_id, t.message_id, 'pending', t.payload, t.tokens, $5, $6
     FROM unnest($1::bigint[], $2::bigint[], $3::jsonb[], $4::integer[])
       WITH ORDINALITY AS t(unit_id, message_id, payload, tokens, n)
     ORDER BY t.n RETURNING id, unit_id`,
    [
      taskUnits,
      tasks.map((t) => messageIds[t.message]),
      tasks.map(({ task }) => JSON.stringify(task.payload)),
      tasks.map(({ task }) => task.tokens),
      now,
      watch,
    ],
  );
  const added = new Map<number, { n: number; first: number }>();
  for (const { id, unit_id } of insertedTasks.rows) {
    const entry = added.get(unit_id);
    if (entry) {
      entry.n++;
      entry.first = Math.min(entry.first, id);
    } else added.set(unit_id, { n: 1, first: id });
  }
  // Counters and versions of the units that grew; a unit that had no head gets its first new task.
  const grown = await db.query<UnitRow>(
    `UPDATE work_units u SET pending = u.pending + c.n, version = u.version + 1,
       head_task_id = coalesce(u.head_task_id, c.first),
       available_at = CASE WHEN u.head_task_id IS NULL THEN 0 ELSE u.available_at END
     FROM unnest($1::bigint[], $2::integer[], $3::bigint[]) AS c(unit_id, n, first)
     WHERE u.id = ANY($1::bigint[]) AND u.id = c.unit_id RETURNING u.*`,
    [[...added.keys()], [...added.values()].map((v) => v.n), [...added.values()].map((v) => v.first)],
  );
  await gateBatches(db, batches, grown.rows);
  const last = planned.messages.at(-1);
  if (last) {
    await db.query('UPDATE sessions SET message_count = $3 WHERE workspace_id = $1 AND id = $2', [
      workspaceId,
      sessionId,
      last.seq,
    ]);
  }
  return { messages, enqueuedTasks: tasks.length, watchId: watch === null ? null : String(watch) };
}

/** A `notifyWhenDerived` call's watch; a call that made no task is derived at once. */
async function insertWatch(
  db: Db,
  { workspaceId, sessionId }: AppendMessagesRequest,
  messageIds: readonly string[],
  tasks: number,
  now: number,
): Promise<number> {
  const watch = newWatch(workspaceId, sessionId, messageIds, tasks, now);
  const row = await db.query<{ id: number }>(
    insertWatchSql((n) => `$${n}`),
    watch.values,
  );
  const id = Number(row.rows[0]?.id);
  const event = watch.eventOf(id);
  if (event) await recordEvent(db, event, now);
  return id;
}

/**
 * Sets the claim time of units that just got tasks, where a batch is waiting to fill (a leased
 * unit is gated at its release instead).
 */
async function gateBatches(db: Db, batches: BatchPolicies, units: readonly UnitRow[]): Promise<void> {
  const gated = units.filter(
    (u) => batches[u.task_type as TaskType] && u.lease_owner === null && u.head_task_id !== null,
  );
  if (gated.length === 0) return;
  const heads = await db.query<Head & { unit_id: number }>(
    'SELECT id, unit_id, run_at, failures, created_at FROM tasks WHERE id = ANY($1::bigint[])',
    [gated.map((u) => u.head_task_id)],
  );
  const headOf = new Map(heads.rows.map((h) => [h.unit_id, h]));
  const at = await claimableAt(
    db,
    batches,
    gated.map((u) => ({ id: u.id, task_type: u.task_type, head: headOf.get(u.id) })),
  );
  await db.query(
    `UPDATE work_units u SET available_at = a.at FROM unnest($1::bigint[], $2::bigint[]) AS a(id, at)
     WHERE u.id = ANY($1::bigint[]) AND u.id = a.id AND u.lease_owner IS NULL`,
    [[...at.keys()], [...at.values()]],
  );
}
