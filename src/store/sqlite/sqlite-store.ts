/**
 * The embedded store: one SQLite file (see `../store.ts` for the contract and the task/lease state
 * machine). The parts, one idea each: `connection.ts` (file, pragmas, migrations, transactions),
 * `statements.ts` (every SQL statement, prepared once), `domain-writes.ts` (workspaces, peers,
 * sessions, messages), `queue.ts` (claims, leases, reports), `queue-admin.ts` (inspection, retry and cancel), and `../rows.ts` (row mapping shared
 * with the PostgreSQL store, which mirrors this layout).
 */

import type Database from 'better-sqlite3';
import type { Counters } from '../../domain/counters.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import { eventsColumn } from '../../domain/webhook-events.ts';
import { TASK_TYPES, type TaskType } from '../../domain/work-unit-key.ts';
import { TypedEmitter } from '../../util/typed-emitter.ts';
import { updateColumns } from '../attributes.ts';
import { counterQuery, LIVE_COUNTS_SQL, stuckTasksQuery } from '../counter-sql.ts';
import type { BatchPolicies } from '../queue-plan.ts';
import { createLocalRateLimits } from '../rate-limits.ts';
import { countersOf, keyOf, messageIdsOf, messageOf, sumOf, taskRowOf, watermarkSql } from '../rows.ts';
import type {
  ClaimedUnit,
  ClaimRequest,
  Lease,
  SettleRequest,
  SettleResponse,
  Store,
  StoreEvents,
  TaskState,
  WorkerRequest,
} from '../store.ts';
import {
  type DueRow,
  dueDeliveriesSql,
  type EndpointRow,
  endpointInfoOf,
  endpointOf,
  insertEndpointSql,
  insertEventSql,
  insertEventValues,
  listEndpointsSql,
  pickDue,
  sqliteParam,
  sqliteValues,
} from '../webhook-sql.ts';
import { openSqlite } from './connection.ts';
import {
  appendMessages,
  ensureWorkspace,
  mergedSettings,
  readPeer,
  readSession,
  readWorkspace,
  writeSession,
} from './domain-writes.ts';
import { createGroupCommit } from './group-commit.ts';
import { applyReport, claimReady, recoverLeases } from './queue.ts';
import { cancelPending, countWorkUnits, listFailedTasks, listWorkUnits, retryFailed } from './queue-admin.ts';

export interface SqliteStoreOptions {
  /** Database file; created with its folder when missing. `:memory:` for a private database. */
  readonly path: string;
  /** Milliseconds since the epoch. @default Date.now */
  readonly clock?: () => number;
  /** How long a write waits for another process's lock. @default 5000 */
  readonly busyTimeoutMs?: number;
  /** Task types whose units are handed over in batches (docs/deriver.md, "Batches"). @default none */
  readonly batches?: BatchPolicies;
}

export function createSqliteStore(options: SqliteStoreOptions): Store {
  const clock = options.clock ?? Date.now;
  const batches = options.batches ?? {};
  const events = new TypedEmitter<StoreEvents>();
  const { db, sql, durable, bookkeeping, snapshot } = openSqlite(
    options.path,
    options.busyTimeoutMs ?? 5000,
    (changes) => events.emit('units:changed', changes),
  );
  /** Claims made: which claim lane goes first in the next (`claimLanes`). */
  let claims = 0;
  const messages = createGroupCommit({ db, durable });
  /** Statements of the counter aggregates, prepared once per shape of filter. */
  const aggregates = new Map<string, Database.Statement>();
  const prepared = (text: string) => {
    let statement = aggregates.get(text);
    if (!statement) {
      statement = db.prepare(text);
      aggregates.set(text, statement);
    }
    return statement;
  };

  const store: Store = {
    events,
    rateLimits: createLocalRateLimits(clock),

    async upsertWorkspace(id, settings, attributes) {
      return durable(() => {
        const created = ensureWorkspace(sql, id, clock());
        if (settings)
          sql.setWorkspaceSettings.run(mergedSettings(sql.getWorkspace.get(id)?.settings, settings), id);
        const columns = updateColumns(attributes);
        if (columns) sql.setWorkspaceAttributes.run(columns.metadata, columns.configuration, id);
        const workspace = readWorkspace(sql, id);
        if (!workspace) throw new Error(`workspace ${id} vanished inside its transaction`);
        return { ...workspace, created };
      });
    },

    async getWorkspace(id) {
      return readWorkspace(sql, id);
    },

    async upsertPeer(workspaceId, id, observeMe, attributes) {
      return durable(() => {
        const now = clock();
        ensureWorkspace(sql, workspaceId, now);
        const created = sql.insertPeer.run(workspaceId, id, now).changes > 0;
        if (observeMe !== undefined) sql.setPeerObserveMe.run(observeMe ? 1 : 0, workspaceId, id);
        const columns = updateColumns(attributes);
        if (columns) sql.setPeerAttributes.run(columns.metadata, columns.configuration, workspaceId, id);
        const peer = readPeer(sql, workspaceId, id);
        if (!peer) throw new Error(`peer ${id} vanished inside its transaction`);
        return { ...peer, created };
      });
    },

    async getPeer(workspaceId, id) {
      return readPeer(sql, workspaceId, id);
    },

    async upsertSession(request, peerIds, planMembers) {
      return durable(() => writeSession(sql, request, peerIds, planMembers, clock()));
    },

    async getSession(workspaceId, id) {
      return readSession(sql, workspaceId, id);
    },

    async appendMessages(request, plan) {
      // Concurrent calls share one fsync (see group-commit.ts); each is still all or nothing.
      const result = await messages.run(() => appendMessages(sql, request, plan, clock(), batches));
      if (result.enqueuedTasks > 0) events.emit('tasks:enqueued', { count: result.enqueuedTasks });
      return result;
    },

    async listMessages(workspaceId, sessionId, options = {}) {
      return sql.listMessages
        .all(workspaceId, sessionId, options.afterSeq ?? 0, options.limit ?? 100)
        .map((row) => messageOf(row, workspaceId, sessionId));
    },

    async claim(request: ClaimRequest) {
      return (await store.settle({ ...request, reports: [] })).claimed;
    },

    async settle(request: SettleRequest): Promise<SettleResponse> {
      return bookkeeping(() => {
        const now = clock();
        const results = request.reports.map((report) =>
          applyReport(sql, report, request.owner, now, batches),
        );
        let claimed: ClaimedUnit[] = [];
        if (request.max > 0) {
          recoverLeases(sql, now, request, null, batches);
          claimed = claimReady(sql, request, now, batches, claims++);
        }
        return { results, claimed };
      });
    },

    async recoverLeases(request) {
      return bookkeeping(() => recoverLeases(sql, clock(), request, request.owner, batches));
    },

    async renewLeases({ owner, leaseMs, leases }: WorkerRequest & { leases: readonly Lease[] }) {
      return bookkeeping(() => {
        const now = clock();
        return leases.filter(
          (lease) => sql.renewLease.run(now + leaseMs, lease.unitId, owner, lease.token, now).changes === 0,
        );
      });
    },

    async sumCounters(filter, { sessions }) {
      const query = counterQuery(filter, () => '?');
      const seen = snapshot(); // reads are synchronous: the statement below sees exactly these
      if (!sessions) {
        const total = countersOf(prepared(query.total).get(...query.values) as Counters);
        return { snapshot: seen, total, sessions: null };
      }
      const rows = prepared(query.bySession).all(...query.values) as (Counters & { session_id: string })[];
      return {
        snapshot: seen,
        total: sumOf(rows),
        sessions: rows.map((row) => [row.session_id, countersOf(row)] as const),
      };
    },

    async liveCountsByTaskType() {
      const rows = prepared(LIVE_COUNTS_SQL).all() as (Counters & { task_type: TaskType })[];
      return new Map(rows.map((row) => [row.task_type, countersOf(row)]));
    },

    async listWorkUnits(filter, page) {
      return listWorkUnits(sql, filter, page);
    },

    async countWorkUnits(filter, options) {
      return countWorkUnits(sql, filter, options);
    },

    async listFailedTasks(filter, page) {
      return listFailedTasks(sql, filter, page);
    },

    async retryFailedTasks(filter, taskIds) {
      const retried = durable(() => retryFailed(sql, filter, taskIds, clock()));
      if (retried > 0) events.emit('tasks:enqueued', { count: retried });
      return retried;
    },

    async cancelPendingTasks(filter) {
      return durable(() => cancelPending(sql, filter, clock()));
    },

    async listMessageTasks(request) {
      const ids = messageIdsOf(request.messageIds);
      const messages = sql.messagesById
        .all(request.workspaceId, JSON.stringify(ids))
        .map((m) => ({ id: String(m.id), sessionId: m.session_id, seq: m.seq }));
      const types = JSON.stringify(request.taskTypes ?? TASK_TYPES);
      const tasks = sql.tasksOfMessages
        .all({
          ids: JSON.stringify(messages.map((m) => Number(m.id))),
          observer: request.observerId ?? null,
          types,
        })
        .map((t) => ({
          messageId: String(t.message_id),
          state: t.state as TaskState,
          failures: t.failures,
          key: keyOf(t),
        }));
      return { messages, tasks };
    },

    async derivedThroughSeq(filter) {
      const query = counterQuery(filter, () => '?');
      const text = watermarkSql('sqlite', query.unitWhere, 's.workspace_id = ? AND s.id = ?');
      const row = prepared(text).get(...query.values, filter.workspaceId, filter.sessionId) as
        | { seq: number | null }
        | undefined;
      return row?.seq ?? null;
    },

    async countStuckTasks(startedBefore, filter) {
      const { text, filterValues } = stuckTasksQuery(filter, () => '?');
      const counts = new Map<TaskType, number>();
      for (const [type, before] of Object.entries(startedBefore) as [TaskType, number][]) {
        const row = prepared(text).get(type, before, ...filterValues) as { n: number } | undefined;
        counts.set(type, Number(row?.n ?? 0));
      }
      return counts;
    },

    async createWebhook(input) {
      return durable(() => {
        const row = prepared(insertEndpointSql(sqliteParam)).get(
          sqliteValues([
            input.workspaceId,
            input.url,
            eventsColumn(input.events),
            input.secret,
            clock(),
            input.maxPerWorkspace,
          ]),
        ) as EndpointRow | undefined;
        return row ? endpointOf(row) : null;
      });
    },

    async listWebhooks(workspaceId) {
      return (
        prepared(listEndpointsSql(() => '?')).all(workspaceId) as Parameters<typeof endpointInfoOf>[0][]
      ).map(endpointInfoOf);
    },

    async removeWebhook(workspaceId, id) {
      return durable(
        () =>
          db.prepare('DELETE FROM webhook_endpoints WHERE workspace_id = ? AND id = ?').run(workspaceId, id)
            .changes > 0,
      );
    },

    async enqueueWebhookEvent(event, endpointId) {
      const made = durable(() => {
        const now = clock();
        return prepared(insertEventSql(sqliteParam)).run(
          sqliteValues(insertEventValues(event, now, endpointId ?? null)),
        ).changes;
      });
      if (made > 0) events.emit('webhooks:enqueued', { count: made });
      return made;
    },

    async claimWebhookDeliveries({ max, leaseMs, busyEndpoints }) {
      return bookkeeping(() => {
        const now = clock();
        const rows = prepared(dueDeliveriesSql(sqliteParam, '')).all(
          sqliteValues([now, max * 4 + busyEndpoints.length]),
        ) as DueRow[];
        const picked = pickDue(rows, busyEndpoints, max);
        const lease = prepared('UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?');
        for (const delivery of picked) lease.run(now + leaseMs, delivery.id);
        return picked;
      });
    },

    async settleWebhookDelivery(id, outcome) {
      bookkeeping(() => {
        const now = clock();
        if (outcome.ok) {
          prepared(
            `UPDATE webhook_deliveries SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,
               lease_until = NULL WHERE id = ?`,
          ).run(now, id);
        } else {
          prepared(
            `UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = ?, lease_until = NULL,
               next_attempt_at = coalesce(?, next_attempt_at), state = CASE WHEN ? IS NULL THEN 'failed' ELSE state END
             WHERE id = ?`,
          ).run(outcome.error, outcome.retryAt, outcome.retryAt, id);
        }
      });
    },

    async pendingWebhookDeliveries() {
      const row = prepared("SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending'").get() as
        | { n: number }
        | undefined;
      return Number(row?.n ?? 0);
    },

    async oldestPendingAt() {
      return sql.oldestPending.get()?.oldest ?? null;
    },

    async listWorkspaces(limit) {
      return sql.workspacesWithWork.all(limit).map((row) => row.id);
    },

    async pruneFinished(finishedBefore, limit) {
      return bookkeeping(() => {
        const outbox = sql.pruneOutbox.map(
          (statement) => statement.run(sqliteValues([finishedBefore, limit])).changes,
        );
        return sql.pruneFinished.run(finishedBefore, limit).changes + outbox.reduce((a, b) => a + b, 0);
      });
    },

    async listTasks(filter = {}) {
      const rows = filter.state ? sql.listTasksByState.all(filter.state) : sql.listTasks.all();
      return rows.map((row) => taskRowOf(row, row, JSON.parse(row.payload) as TaskPayload));
    },

    async probe() {
      durable(() => sql.probe.run(clock()));
    },

    async close() {
      events.removeAllListeners();
      if (db.open) db.close();
    },
  };
  return store;
}
