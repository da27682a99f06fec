/**
 * The embedded store: one SQLite file (see `../store.ts` for the contract and the task/lease state
 * machine). The parts, one idea each: `connection.ts` (file, pragmas, migrations, transactions),
 * `statements.ts` (every SQL statement, prepared once), `domain-writes.ts` (workspaces, peers,
 * sessions, messages), `queue.ts` (claims, leases, reports), `queue-admin.ts` (inspection, retry and cancel), and `../rows.ts` (row mapping shared
 * with the PostgreSQL store, which mirrors this layout).
 */
import type { UnitCounters } from '../../domain/counters.ts';
import type { Peer, Workspace } from '../../domain/model.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import { TypedEmitter } from '../../util/typed-emitter.ts';
import { messageOf, taskRowOf, unitCounters } from '../rows.ts';
import type {
  ClaimedUnit,
  ClaimRequest,
  Lease,
  SettleRequest,
  SettleResponse,
  Store,
  StoreEvents,
  WorkerRequest,
} from '../store.ts';
import { openSqlite } from './connection.ts';
import {
  appendMessages,
  ensureWorkspace,
  mergedSettings,
  readSession,
  readWorkspaceSettings,
  writeSession,
} from './domain-writes.ts';
import { createGroupCommit } from './group-commit.ts';
import { applyReport, claimReady, recoverLeases } from './queue.ts';
import { cancelPending, listFailedTasks, listWorkUnits, retryFailed } from './queue-admin.ts';

export interface SqliteStoreOptions {
  /** Database file; created with its folder when missing. `:memory:` for a private database. */
  readonly path: string;
  /** Milliseconds since the epoch. @default Date.now */
  readonly clock?: () => number;
  /** How long a write waits for another process's lock. @default 5000 */
  readonly busyTimeoutMs?: number;
}

export function createSqliteStore(options: SqliteStoreOptions): Store {
  const clock = options.clock ?? Date.now;
  const { db, sql, durable, bookkeeping } = openSqlite(options.path, options.busyTimeoutMs ?? 5000);
  const events = new TypedEmitter<StoreEvents>();
  const messages = createGroupCommit({ db, durable });
  const announce = (changed: UnitCounters[]): void => {
    if (changed.length > 0) events.emit('units:changed', changed);
  };

  const store: Store = {
    events,

    async upsertWorkspace(id, settings) {
      return durable(() => {
        ensureWorkspace(sql, id, clock());
        if (settings)
          sql.setWorkspaceSettings.run(mergedSettings(sql.getWorkspace.get(id)?.settings, settings), id);
        return { id, settings: readWorkspaceSettings(sql, id) ?? {} } satisfies Workspace;
      });
    },

    async upsertPeer(workspaceId, id, observeMe) {
      return durable(() => {
        const now = clock();
        ensureWorkspace(sql, workspaceId, now);
        sql.upsertPeer.run(
          workspaceId,
          id,
          observeMe === false ? 0 : 1,
          now,
          observeMe === undefined ? null : observeMe ? 1 : 0,
        );
        const row = sql.getPeer.get(workspaceId, id);
        return { workspaceId, id, observeMe: row?.observe_me === 1 } satisfies Peer;
      });
    },

    async getPeer(workspaceId, id) {
      const row = sql.getPeer.get(workspaceId, id);
      return row ? { workspaceId, id, observeMe: row.observe_me === 1 } : null;
    },

    async upsertSession(request, peerIds, planMembers) {
      return durable(() => writeSession(sql, request, peerIds, planMembers, clock()));
    },

    async getSession(workspaceId, id) {
      return readSession(sql, workspaceId, id);
    },

    async appendMessages(request, plan) {
      // Concurrent calls share one fsync (see group-commit.ts); each is still all or nothing.
      const result = await messages.run(() => appendMessages(sql, request, plan, clock()));
      announce(result.changed);
      if (result.enqueuedTasks > 0) events.emit('tasks:enqueued', { count: result.enqueuedTasks });
      return { messages: result.messages, enqueuedTasks: result.enqueuedTasks };
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
      const changed: UnitCounters[] = [];
      const response = bookkeeping(() => {
        const now = clock();
        const results = request.reports.map((report) =>
          applyReport(sql, report, request.owner, now, changed),
        );
        let claimed: ClaimedUnit[] = [];
        if (request.max > 0) {
          recoverLeases(sql, now, request, null, changed);
          claimed = claimReady(sql, request, now, changed);
        }
        return { results, claimed };
      });
      announce(changed);
      return response;
    },

    async recoverLeases(request) {
      const changed: UnitCounters[] = [];
      const recovered = bookkeeping(() => recoverLeases(sql, clock(), request, request.owner, changed));
      announce(changed);
      return recovered;
    },

    async renewLeases({ owner, leaseMs, leases }: WorkerRequest & { leases: readonly Lease[] }) {
      return bookkeeping(() => {
        const now = clock();
        return leases.filter(
          (lease) => sql.renewLease.run(now + leaseMs, lease.unitId, owner, lease.token, now).changes === 0,
        );
      });
    },

    async loadUnitCounters(unitIds) {
      const rows = unitIds ? sql.someUnits.all(JSON.stringify(unitIds)) : sql.allUnits.all();
      return rows.map(unitCounters);
    },

    async listWorkUnits(filter, page) {
      return listWorkUnits(sql, filter, page);
    },

    async listFailedTasks(filter, page) {
      return listFailedTasks(sql, filter, page);
    },

    async retryFailedTasks(filter, taskIds) {
      const changed: UnitCounters[] = [];
      const retried = durable(() => retryFailed(sql, filter, taskIds, clock(), changed));
      announce(changed);
      if (retried > 0) events.emit('tasks:enqueued', { count: retried });
      return retried;
    },

    async cancelPendingTasks(filter) {
      const changed: UnitCounters[] = [];
      const result = durable(() => cancelPending(sql, filter, clock(), changed));
      announce(changed);
      return result;
    },

    async oldestPendingAt() {
      return sql.oldestPending.get()?.oldest ?? null;
    },

    async pruneFinished(finishedBefore, limit) {
      return bookkeeping(() => sql.pruneFinished.run(finishedBefore, limit).changes);
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
