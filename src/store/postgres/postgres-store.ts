/**
 * The PostgreSQL store: the same contract as the embedded one (see `../store.ts` for the task and
 * lease state machine), for many processes on one database. `pg` with a pool; numbered migrations
 * applied once under an advisory lock; claims with `FOR UPDATE SKIP LOCKED`; leases, heartbeats and
 * fencing tokens on the unit rows; per-unit counters and versions written in the same transaction
 * as the tasks they count. "Now" is the database's clock, shared by every process.
 *
 * Durability: every transaction commits with PostgreSQL's defaults (`synchronous_commit = on`), so
 * whatever a caller is told is stored survives a crash of the database server too.
 *
 * A lost connection makes the operation fail with `StoreUnavailableError` (nothing of it is
 * written); the pool opens fresh connections for the next operations, so the store recovers by
 * itself when the database is back.
 */
import type { Counters } from '../../domain/counters.ts';
import type { Peer, Upserted, Workspace } from '../../domain/model.ts';
import { mergeOverrides } from '../../domain/settings.ts';
import { eventsColumn } from '../../domain/webhook-events.ts';
import { TASK_TYPES, type TaskType } from '../../domain/work-unit-key.ts';
import { TypedEmitter } from '../../util/typed-emitter.ts';
import { counterQuery, LIVE_COUNTS_SQL, stuckTasksQuery } from '../counter-sql.ts';
import type { BatchPolicies } from '../queue-plan.ts';
import {
  countersOf,
  type KeyColumns,
  keyOf,
  type MessageRow,
  messageIdsOf,
  messageOf,
  OLDEST_PENDING_SQL,
  taskRowOf,
  type UnitRow,
  WORKSPACES_WITH_WORK_SQL,
  watermarkSql,
} from '../rows.ts';
import type { Store, StoreEvents, TaskState } from '../store.ts';
import {
  type DueRow,
  dueDeliveriesSql,
  type EndpointRow,
  endpointInfoOf,
  endpointOf,
  insertEndpointSql,
  listEndpointsSql,
  pickDue,
  pruneOutboxSql,
} from '../webhook-sql.ts';
import { claimReady } from './claims.ts';
import { connect } from './connection.ts';
import {
  appendMessages,
  ensurePeers,
  ensureWorkspace,
  readMembers,
  readPeer,
  readSession,
  readWorkspace,
  setAttributes,
  setWorkspaceSettings,
  writeMembers,
} from './domain-writes.ts';
import { recordEvent } from './outbox.ts';
import {
  applyReports,
  leaseExpired,
  lockReported,
  recoverLeases,
  renewLeases,
  type TaskRowData,
} from './queue.ts';
import { cancelPending, countWorkUnits, listFailedTasks, listWorkUnits, retryFailed } from './queue-admin.ts';
import { createPostgresRateLimits } from './rate-limits.ts';
import { sumCountersPg } from './sum-counters.ts';

export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database` */
  readonly connectionString: string;
  /** Schema holding the tables (created when missing). @default public */
  readonly schema?: string;
  /** Milliseconds since the epoch. @default the database's clock */
  readonly clock?: () => number;
  /** Connections in the pool. @default 10 */
  readonly poolSize?: number;
  /** Task types whose units are handed over in batches (docs/deriver.md, "Batches"). @default none */
  readonly batches?: BatchPolicies;
}

export async function createPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const batches = options.batches ?? {};
  const connection = await connect(options);
  const { transaction } = connection;
  /** Claims made: which claim lane goes first in the next (`claimLanes`). */
  let claims = 0;
  // Counter changes are sent by the database itself (migration 004): no `units:changed` here.
  const events = new TypedEmitter<StoreEvents>();

  const store: Store = {
    events,
    rateLimits: createPostgresRateLimits(transaction),

    upsertWorkspace: (id, settings, attributes) =>
      transaction(async (db, now): Promise<Upserted<Workspace>> => {
        const created = await ensureWorkspace(db, id, now);
        if (settings) await setWorkspaceSettings(db, id, settings);
        await setAttributes(db, 'workspaces', [id], attributes);
        const workspace = await readWorkspace(db, id);
        if (!workspace) throw new Error(`workspace ${id} vanished inside its transaction`);
        return { ...workspace, created };
      }),

    getWorkspace: (id) => transaction((db) => readWorkspace(db, id)),

    upsertPeer: (workspaceId, id, observeMe, attributes) =>
      transaction(async (db, now): Promise<Upserted<Peer>> => {
        await ensureWorkspace(db, workspaceId, now);
        // xmax = 0 only on a row this statement inserted.
        const row = await db.query<{ created: boolean }>(
          `INSERT INTO peers (workspace_id, id, observe_me, created_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (workspace_id, id) DO UPDATE SET observe_me = coalesce($5, peers.observe_me)
           RETURNING (xmax = 0) AS created`,
          [workspaceId, id, observeMe !== false, now, observeMe ?? null],
        );
        await setAttributes(db, 'peers', [workspaceId, id], attributes);
        const peer = await readPeer(db, workspaceId, id);
        if (!peer) throw new Error(`peer ${id} vanished inside its transaction`);
        return { ...peer, created: row.rows[0]?.created === true };
      }),

    getPeer: (workspaceId, id) => transaction((db) => readPeer(db, workspaceId, id)),

    upsertSession: (request, peerIds, planMembers) =>
      transaction(async (db, now) => {
        const { workspaceId, id } = request;
        await ensureWorkspace(db, workspaceId, now);
        const inserted = await db.query(
          'INSERT INTO sessions (workspace_id, id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
          [workspaceId, id, now],
        );
        // Members change one session at a time: lock its row.
        const session = await db.query<{ settings: Record<string, unknown> }>(
          'SELECT settings FROM sessions WHERE workspace_id = $1 AND id = $2 FOR UPDATE',
          [workspaceId, id],
        );
        if (request.settings) {
          const merged = mergeOverrides(session.rows[0]?.settings ?? {}, request.settings);
          await db.query('UPDATE sessions SET settings = $3 WHERE workspace_id = $1 AND id = $2', [
            workspaceId,
            id,
            JSON.stringify(merged),
          ]);
        }
        await setAttributes(db, 'sessions', [workspaceId, id], request.attributes);
        await ensurePeers(db, workspaceId, peerIds, now);
        const current = await readMembers(db, workspaceId, id);
        await writeMembers(db, workspaceId, id, current, planMembers(current), now);
        const stored = await readSession(db, workspaceId, id);
        if (!stored) throw new Error(`session ${id} vanished inside its transaction`);
        return { ...stored, created: (inserted.rowCount ?? 0) > 0 };
      }),

    getSession: (workspaceId, id) => transaction((db) => readSession(db, workspaceId, id)),

    async appendMessages(request, plan) {
      const result = await transaction((db, now) => appendMessages(db, request, plan, now, batches));
      if (result.enqueuedTasks > 0) events.emit('tasks:enqueued', { count: result.enqueuedTasks });
      return result;
    },

    async listMessages(workspaceId, sessionId, options = {}) {
      const rows = await connection.query<MessageRow>(
        `SELECT id, peer_id, seq, content, created_at, metadata FROM messages
         WHERE workspace_id = $1 AND session_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
        [workspaceId, sessionId, options.afterSeq ?? 0, options.limit ?? 100],
      );
      return rows.map((row) => messageOf(row, workspaceId, sessionId));
    },

    async claim(request) {
      return (await store.settle({ ...request, reports: [] })).claimed;
    },

    // One round trip opens a settle: BEGIN, the clock, whether a lease expired, the reported units
    // locked. Expired leases are recovered by the claims that could take their units, as in SQLite.
    settle: (request) =>
      transaction(
        async (db, now, [expired, locked]) => {
          const units = (locked ?? []) as UnitRow[];
          const results = await applyReports(db, request.reports, units, request.owner, now, batches);
          if (request.max <= 0) return { results, claimed: [] };
          if (expired?.[0]?.expired) await recoverLeases(db, now, request, null, batches);
          return { results, claimed: await claimReady(db, request, now, batches, claims++) };
        },
        (now) => [leaseExpired(now), ...lockReported(request.reports)],
      ),

    recoverLeases: (request) =>
      transaction((db, now) => recoverLeases(db, now, request, request.owner, batches)),

    renewLeases: (request) => transaction((db, now) => renewLeases(db, request, now)),

    sumCounters: (filter, { sessions }) =>
      sumCountersPg((text, values) => connection.query(text, [...values]), filter, sessions),

    async liveCountsByTaskType() {
      const rows = await connection.query<Counters & { task_type: TaskType }>(LIVE_COUNTS_SQL);
      return new Map(rows.map((row) => [row.task_type, countersOf(row)]));
    },

    listWorkUnits: (filter, page) => transaction((db) => listWorkUnits(db, filter, page)),
    countWorkUnits: (filter, options) => transaction((db) => countWorkUnits(db, filter, options)),

    listFailedTasks: (filter, page) => transaction((db) => listFailedTasks(db, filter, page)),

    async retryFailedTasks(filter, taskIds) {
      const retried = await transaction((db, now) => retryFailed(db, filter, taskIds, now));
      if (retried > 0) events.emit('tasks:enqueued', { count: retried });
      return retried;
    },

    cancelPendingTasks: (filter) => transaction((db, now) => cancelPending(db, filter, now)),

    async listMessageTasks(request) {
      const ids = messageIdsOf(request.messageIds);
      const messages = await connection.query<{ id: number; session_id: string; seq: number }>(
        'SELECT id, session_id, seq FROM messages WHERE workspace_id = $1 AND id = ANY($2::bigint[])',
        [request.workspaceId, ids],
      );
      const tasks = await connection.query<
        KeyColumns & { message_id: number; state: string; failures: number }
      >(
        `SELECT t.message_id, t.state, t.failures, u.task_type, u.workspace_id, u.session_id, u.observer_id, u.sender_id
         FROM tasks t JOIN work_units u ON u.id = t.unit_id
         WHERE t.message_id = ANY($1::bigint[]) AND ($2::text IS NULL OR u.observer_id = $2)
           AND u.task_type = ANY($3::text[])
         ORDER BY t.id`,
        [messages.map((m) => m.id), request.observerId ?? null, request.taskTypes ?? TASK_TYPES],
      );
      return {
        messages: messages.map((m) => ({ id: String(m.id), sessionId: m.session_id, seq: m.seq })),
        tasks: tasks.map((t) => ({
          messageId: String(t.message_id),
          state: t.state as TaskState,
          failures: t.failures,
          key: keyOf(t),
        })),
      };
    },

    async derivedThroughSeq(filter) {
      const query = counterQuery(filter, (n) => `$${n}`);
      const n = query.values.length;
      const text = watermarkSql(
        'postgres',
        query.unitWhere,
        `s.workspace_id = $${n + 1} AND s.id = $${n + 2}`,
      );
      const rows = await connection.query<{ seq: number | null }>(text, [
        ...query.values,
        filter.workspaceId,
        filter.sessionId,
      ]);
      return rows[0]?.seq ?? null;
    },

    async countStuckTasks(startedBefore, filter) {
      const { text, filterValues } = stuckTasksQuery(filter, (n) => `$${n}`);
      const counts = new Map<TaskType, number>();
      for (const [type, before] of Object.entries(startedBefore) as [TaskType, number][]) {
        const rows = await connection.query<{ n: number }>(text, [type, before, ...filterValues]);
        counts.set(type, Number(rows[0]?.n ?? 0));
      }
      return counts;
    },

    createWebhook: (input) =>
      transaction(async (db, now) => {
        // One registration per workspace at a time, so the cap holds under concurrent calls.
        await db.query("SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints:' || $1))", [
          input.workspaceId,
        ]);
        const { rows } = await db.query<EndpointRow>(
          insertEndpointSql(
            (n) => `$${n}`,
            (n, type) => `$${n}::${type}`,
          ),
          [
            input.workspaceId,
            input.url,
            eventsColumn(input.events),
            input.secret,
            now,
            input.maxPerWorkspace,
          ],
        );
        return rows[0] ? endpointOf(rows[0]) : null;
      }),

    async listWebhooks(workspaceId) {
      const rows = await connection.query<Parameters<typeof endpointInfoOf>[0]>(
        listEndpointsSql((n) => `$${n}`),
        [workspaceId],
      );
      return rows.map(endpointInfoOf);
    },

    removeWebhook: (workspaceId, id) =>
      transaction(async (db) => {
        const removed = await db.query('DELETE FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2', [
          workspaceId,
          id,
        ]);
        return (removed.rowCount ?? 0) > 0;
      }),

    async enqueueWebhookEvent(event, endpointId) {
      const made = await transaction(async (db, now) => recordEvent(db, event, now, endpointId ?? null));
      if (made > 0) events.emit('webhooks:enqueued', { count: made });
      return made;
    },

    claimWebhookDeliveries: ({ max, leaseMs, busyEndpoints }) =>
      transaction(async (db, now) => {
        const due = await db.query<DueRow>(
          dueDeliveriesSql((n) => `$${n}`, ' FOR UPDATE OF d SKIP LOCKED'),
          [now, max * 4 + busyEndpoints.length],
        );
        const picked = pickDue(due.rows, busyEndpoints, max);
        if (picked.length > 0) {
          await db.query('UPDATE webhook_deliveries SET lease_until = $1 WHERE id = ANY($2::bigint[])', [
            now + leaseMs,
            picked.map((d) => d.id),
          ]);
        }
        return picked;
      }),

    settleWebhookDelivery: (id, outcome) =>
      transaction(async (db, now) => {
        if (outcome.ok) {
          await db.query(
            `UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $1, attempts = attempts + 1,
               lease_until = NULL WHERE id = $2`,
            [now, id],
          );
        } else {
          await db.query(
            `UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $1, lease_until = NULL,
               next_attempt_at = coalesce($2::bigint, next_attempt_at),
               state = CASE WHEN $2::bigint IS NULL THEN 'failed' ELSE state END
             WHERE id = $3`,
            [outcome.error, outcome.retryAt, id],
          );
        }
      }),

    async pendingWebhookDeliveries() {
      const rows = await connection.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM webhook_deliveries WHERE state = 'pending'",
      );
      return Number(rows[0]?.n ?? 0);
    },

    async oldestPendingAt() {
      const rows = await connection.query<{ oldest: number | null }>(OLDEST_PENDING_SQL);
      return rows[0]?.oldest ?? null;
    },

    async listWorkspaces(limit) {
      const rows = await connection.query<{ id: string }>(WORKSPACES_WITH_WORK_SQL('$1'), [limit]);
      return rows.map((row) => row.id);
    },

    async pruneFinished(finishedBefore, limit) {
      const rows = await connection.query<{ n: number }>(
        `WITH gone AS (
           DELETE FROM tasks WHERE id IN (
             SELECT id FROM tasks WHERE finished_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [finishedBefore, limit],
      );
      let pruned = rows[0]?.n ?? 0;
      for (const text of pruneOutboxSql((n) => `$${n}`, ' FOR UPDATE SKIP LOCKED')) {
        const gone = await connection.query(
          `WITH gone AS (${text} RETURNING 1) SELECT count(*)::int AS n FROM gone`,
          [finishedBefore, limit],
        );
        pruned += (gone[0] as { n: number } | undefined)?.n ?? 0;
      }
      return pruned;
    },

    async listTasks(filter = {}) {
      const rows = await connection.query<TaskRowData & UnitRow & { task_id: number }>(
        `SELECT t.id AS task_id, t.unit_id, t.message_id, t.state, t.payload, t.runs, t.failures, t.last_error,
           t.created_at, u.*
         FROM tasks t JOIN work_units u ON u.id = t.unit_id
         WHERE $1::text IS NULL OR t.state = $1 ORDER BY t.id`,
        [filter.state ?? null],
      );
      return rows.map((row) => taskRowOf({ ...row, id: row.task_id }, row, row.payload));
    },

    async probe() {
      await transaction(async (db, now) => {
        await db.query(
          `INSERT INTO store_probe (id, probed_at) VALUES (1, $1)
           ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at`,
          [now],
        );
      });
    },

    async close() {
      events.removeAllListeners();
      await connection.close();
    },
  };
  return store;
}
