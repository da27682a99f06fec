/**
 * The embedded store: one SQLite file through better-sqlite3, WAL mode, numbered migrations.
 * See `../store.ts` for the contract and the task/lease state machine.
 *
 * Durability: writes a caller is told about (workspaces, peers, sessions, messages and their tasks)
 * commit with `synchronous = FULL`, so an acknowledged write survives a power loss. Scheduler
 * bookkeeping commits with `synchronous = NORMAL` (WAL's recommended setting): a crash of the process
 * loses nothing, a power loss may roll back the last few task transitions, which at-least-once
 * execution already covers (the task runs again).
 *
 * Several processes may open the same file: every write transaction is `BEGIN IMMEDIATE`, waiting up
 * to `busyTimeoutMs` for the lock.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { type Counters, type UnitCounters, zeroCounters } from '../../domain/counters.ts';
import type { Message, Peer, Session, SessionPeer, Workspace } from '../../domain/model.ts';
import { mergeOverrides, resolveSettings, type SettingsOverride } from '../../domain/settings.ts';
import type { MessagePlan, SessionSnapshot, TaskPayload } from '../../domain/task-generation.ts';
import { formatWorkUnitKey, type TaskType, type WorkUnitKey } from '../../domain/work-unit-key.ts';
import { NotFoundError } from '../../errors.ts';
import { TypedEmitter } from '../../util/typed-emitter.ts';
import type {
  AppendMessagesRequest,
  AppendMessagesResult,
  Attempt,
  ClaimedUnit,
  ClaimRequest,
  Lease,
  ReportResult,
  SettleRequest,
  SettleResponse,
  Store,
  StoreEvents,
  TaskRecord,
  TaskRow,
  TaskState,
  UnitReport,
  UpsertSessionRequest,
  WorkerRequest,
} from '../store.ts';
import { assertWritable, createFileGuard } from './file-guard.ts';
import { migrate } from './migrate.ts';
import { prepareStatements, type TaskRowData, type UnitRow } from './statements.ts';

export interface SqliteStoreOptions {
  /** Database file; created with its folder when missing. `:memory:` for a private database. */
  readonly path: string;
  /** Milliseconds since the epoch. @default Date.now */
  readonly clock?: () => number;
  /** How long a write waits for another process's lock. @default 5000 */
  readonly busyTimeoutMs?: number;
}

/** SQLite's quick integrity check (pages and indexes, not constraints); throws when it fails. */
function checkIntegrity(db: Database.Database, path: string): void {
  const result = db.pragma('quick_check(1)', { simple: true });
  if (result !== 'ok') {
    throw new Error(
      `the database file ${path} failed SQLite's integrity check (${String(result)}); restore it from a backup`,
    );
  }
}

export function createSqliteStore(options: SqliteStoreOptions): Store {
  const clock = options.clock ?? Date.now;
  if (options.path !== ':memory:') {
    mkdirSync(dirname(options.path), { recursive: true });
    assertWritable(options.path);
  }
  const db = new Database(options.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  try {
    checkIntegrity(db, options.path);
    migrate(db);
  } catch (error) {
    db.close();
    throw error;
  }
  const guard = createFileGuard(options.path);
  const sql = prepareStatements(db);
  const events = new TypedEmitter<StoreEvents>();

  /** Runs `fn` in an IMMEDIATE transaction, fsynced at commit (acknowledged writes). */
  function durable<T>(fn: () => T): T {
    return guard.write(() => {
      db.pragma('synchronous = FULL');
      try {
        return db.transaction(fn).immediate();
      } finally {
        db.pragma('synchronous = NORMAL');
      }
    });
  }
  const bookkeeping = <T>(fn: () => T): T => guard.write(() => db.transaction(fn).immediate());

  const announce = (changed: UnitCounters[]): void => {
    if (changed.length > 0) events.emit('units:changed', changed);
  };

  // ---- domain -------------------------------------------------------------------------------

  function ensureWorkspace(id: string, now: number): void {
    sql.insertWorkspace.run(id, now);
  }

  function readMembers(workspaceId: string, sessionId: string): SessionPeer[] {
    return sql.listMembers.all(workspaceId, sessionId).map((row) => ({
      peerId: row.peer_id,
      observeMe: row.observe_me === null ? null : row.observe_me === 1,
      observeOthers: row.observe_others === 1,
    }));
  }

  function readSession(workspaceId: string, id: string): Session | null {
    const row = sql.getSession.get(workspaceId, id);
    if (!row) return null;
    return {
      workspaceId,
      id,
      peers: readMembers(workspaceId, id),
      settings: JSON.parse(row.settings) as SettingsOverride,
      messageCount: row.message_count,
    };
  }

  /** Stored settings JSON with an update applied (see `mergeOverrides`), as JSON. */
  const mergedSettings = (current: string | undefined, update: SettingsOverride): string =>
    JSON.stringify(mergeOverrides(current ? (JSON.parse(current) as SettingsOverride) : {}, update));

  function readWorkspaceSettings(id: string): SettingsOverride | undefined {
    const row = sql.getWorkspace.get(id);
    return row ? (JSON.parse(row.settings) as SettingsOverride) : undefined;
  }

  // ---- queue --------------------------------------------------------------------------------

  const keyOf = (row: UnitRow): WorkUnitKey => ({
    taskType: row.task_type as TaskType,
    workspaceId: row.workspace_id,
    sessionId: row.session_id,
    observerId: row.observer_id,
    senderId: row.sender_id,
  });

  const unitCounters = (row: UnitRow): UnitCounters => ({
    unitId: row.id,
    key: keyOf(row),
    counters: { pending: row.pending, running: row.running, completed: row.completed, failed: row.failed },
    version: row.version,
  });

  const taskRecord = (row: TaskRowData, unit: UnitRow): TaskRecord => ({
    id: row.id,
    unitId: row.unit_id,
    type: unit.task_type as TaskType,
    key: keyOf(unit),
    messageId: row.message_id === null ? null : String(row.message_id),
    payload: JSON.parse(row.payload) as TaskPayload,
    runs: row.runs,
    failures: row.failures,
    createdAt: row.created_at,
  });

  /**
   * Frees units whose lease expired: the task that was running goes back to pending (it runs again)
   * and the unit's exact head is written, since a leased unit only keeps a lower bound of it.
   */
  function recoverExpiredLeases(now: number, changed: UnitCounters[]): void {
    for (const { id, head_task_id } of sql.expiredLeases.all(now)) {
      const head = head_task_id === null ? undefined : sql.firstUnfinished.get(id, head_task_id);
      const requeued =
        head?.state === 'running'
          ? sql.requeueTask.run(0, null, head.run_at, head.id, id, 'running').changes
          : 0;
      const row = sql.releaseUnit.get(requeued, -requeued, 0, 0, head?.id ?? null, head?.run_at ?? 0, id);
      if (row) changed.push(unitCounters(row));
    }
  }

  function claimReady(request: ClaimRequest, now: number, changed: UnitCounters[]): ClaimedUnit[] {
    const claimed: ClaimedUnit[] = [];
    if (request.max <= 0) return claimed;
    for (const { id, head_task_id } of sql.readyUnits.all(now, request.max)) {
      const unit = sql.leaseUnit.get(request.owner, now + request.leaseMs, id);
      const head = sql.startTask.get(now, head_task_id);
      if (!unit || !head) throw new Error(`work unit ${id} changed under its claim`);
      const rest = request.prefetch > 1 ? sql.tasksAfter.all(id, head_task_id, request.prefetch - 1) : [];
      changed.push(unitCounters(unit));
      claimed.push({
        lease: { unitId: id, token: unit.lease_token },
        key: keyOf(unit),
        tasks: [head, ...rest].map((task) => taskRecord(task, unit)),
      });
    }
    return claimed;
  }

  /**
   * Applies one unit report. The unit's `running` counter (0 or 1: one task at a time) tells
   * whether the store holds the first reported attempt as running; every later one was started and
   * ended between two reports, so the store still holds it as pending. Each task update names the
   * state it expects, so a report that does not fit the stored state aborts the transaction.
   */
  function applyReport(
    report: UnitReport,
    owner: string,
    now: number,
    changed: UnitCounters[],
  ): ReportResult {
    const { unitId, token } = report.lease;
    const unit = sql.getUnitLease.get(unitId);
    if (
      !unit ||
      unit.lease_owner !== owner ||
      unit.lease_token !== token ||
      (unit.lease_expires_at ?? 0) < now
    ) {
      return { kind: 'lease-lost' };
    }
    const delta: Counters = zeroCounters();
    let storedRunning = unit.running === 1;
    let last: Attempt | undefined;
    for (const attempt of report.attempts) {
      const from = storedRunning ? 'running' : 'pending';
      const { outcome } = attempt;
      const changes =
        outcome.kind === 'succeeded' || outcome.kind === 'failed'
          ? sql.finishTask.run(
              outcome.kind,
              outcome.kind === 'failed' ? 1 : 0,
              outcome.kind === 'failed' ? outcome.error : null,
              now,
              now,
              attempt.taskId,
              unitId,
              from,
            ).changes
          : sql.requeueTask.run(
              outcome.kind === 'retry' ? 1 : 0,
              outcome.kind === 'retry' ? outcome.error : null,
              outcome.kind === 'retry' ? now + outcome.delayMs : 0,
              attempt.taskId,
              unitId,
              from,
            ).changes;
      if (changes !== 1) throw new Error(`task ${attempt.taskId} is not ${from} in work unit ${unitId}`);
      if (storedRunning) delta.running -= 1;
      else delta.pending -= 1;
      storedRunning = false;
      if (outcome.kind === 'succeeded') delta.completed += 1;
      else if (outcome.kind === 'failed') {
        delta.completed += 1;
        delta.failed += 1;
      } else delta.pending += 1;
      last = attempt;
    }
    let row: UnitRow | undefined;
    let result: ReportResult = { kind: 'kept' };
    if (report.running !== null) {
      if (!storedRunning) {
        if (!sql.markRunning.get(now, report.running, unitId)) {
          throw new Error(`task ${report.running} is not pending in work unit ${unitId}`);
        }
        delta.pending -= 1;
        delta.running += 1;
      }
      row = sql.updateUnitCounters.get(delta.pending, delta.running, delta.completed, delta.failed, unitId);
    } else {
      if (storedRunning) throw new Error(`work unit ${unitId} released with its task still running`);
      // The exact head: the retried task itself, or the first task after the last finished one.
      const head =
        last && (last.outcome.kind === 'retry' || last.outcome.kind === 'requeue')
          ? { id: last.taskId, run_at: last.outcome.kind === 'retry' ? now + last.outcome.delayMs : 0 }
          : last
            ? sql.nextHead.get(unitId, last.taskId)
            : unit.head_task_id === null
              ? undefined
              : sql.firstUnfinished.get(unitId, unit.head_task_id);
      result = { kind: 'released', reason: !head ? 'drained' : head.run_at > now ? 'waiting' : 'yielded' };
      row = sql.releaseUnit.get(
        delta.pending,
        delta.running,
        delta.completed,
        delta.failed,
        head?.id ?? null,
        head?.run_at ?? 0,
        unitId,
      );
    }
    if (!row) throw new Error(`work unit ${unitId} vanished while settling`);
    changed.push(unitCounters(row));
    return result;
  }

  const store: Store = {
    events,

    async upsertWorkspace(id, settings) {
      return durable(() => {
        ensureWorkspace(id, clock());
        if (settings)
          sql.setWorkspaceSettings.run(mergedSettings(sql.getWorkspace.get(id)?.settings, settings), id);
        return { id, settings: readWorkspaceSettings(id) ?? {} } satisfies Workspace;
      });
    },

    async upsertPeer(workspaceId, id, observeMe) {
      return durable(() => {
        const now = clock();
        ensureWorkspace(workspaceId, now);
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

    async upsertSession(request: UpsertSessionRequest, peerIds, planMembers) {
      return durable(() => {
        const now = clock();
        const { workspaceId, id } = request;
        ensureWorkspace(workspaceId, now);
        sql.insertSession.run(workspaceId, id, now);
        if (request.settings) {
          const current = sql.getSession.get(workspaceId, id)?.settings;
          sql.setSessionSettings.run(mergedSettings(current, request.settings), workspaceId, id);
        }
        for (const peerId of peerIds) sql.insertPeer.run(workspaceId, peerId, now);
        const current = readMembers(workspaceId, id);
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
        const session = readSession(workspaceId, id);
        if (!session) throw new Error(`session ${id} vanished inside its transaction`);
        return session;
      });
    },

    async getSession(workspaceId, id) {
      return readSession(workspaceId, id);
    },

    async appendMessages(request: AppendMessagesRequest, plan: (snapshot: SessionSnapshot) => MessagePlan) {
      const changedIds = new Set<number>();
      const result = durable((): AppendMessagesResult & { changed: UnitCounters[] } => {
        const now = clock();
        const { workspaceId, sessionId } = request;
        const session = sql.getSession.get(workspaceId, sessionId);
        if (!session) throw new NotFoundError('session', sessionId);
        const members = readMembers(workspaceId, sessionId);
        const peerObserveMe = new Map<string, boolean>();
        for (const peerId of new Set([
          ...members.map((m) => m.peerId),
          ...request.messages.map((m) => m.peerId),
        ])) {
          const peer = sql.getPeer.get(workspaceId, peerId);
          if (peer) peerObserveMe.set(peerId, peer.observe_me === 1);
        }
        const planned = plan({
          workspaceId,
          sessionId,
          settings: resolveSettings(
            readWorkspaceSettings(workspaceId),
            JSON.parse(session.settings) as SettingsOverride,
          ),
          messageCount: session.message_count,
          members,
          peerObserveMe,
        });
        for (const peerId of planned.newPeers) sql.insertPeer.run(workspaceId, peerId, now);
        for (const peerId of planned.joins)
          sql.upsertMember.run(workspaceId, sessionId, peerId, null, 0, now);
        const messages: Message[] = [];
        let enqueuedTasks = 0;
        for (const message of planned.messages) {
          const messageId = Number(
            sql.insertMessage.run(workspaceId, sessionId, message.seq, message.peerId, message.content, now)
              .lastInsertRowid,
          );
          messages.push({
            id: String(messageId),
            workspaceId,
            sessionId,
            peerId: message.peerId,
            seq: message.seq,
            content: message.content,
            createdAt: now,
          });
          for (const task of message.tasks) {
            const { key } = task;
            const unit = sql.enqueueUnit.get(
              formatWorkUnitKey(key),
              key.taskType,
              key.workspaceId,
              key.sessionId,
              key.observerId,
              key.senderId,
            );
            if (!unit) throw new Error('work unit upsert returned nothing');
            const taskId = Number(
              sql.insertTask.run(unit.id, messageId, JSON.stringify(task.payload), now).lastInsertRowid,
            );
            if (unit.head_task_id === null) sql.setUnitHead.run(taskId, unit.id);
            changedIds.add(unit.id);
            enqueuedTasks++;
          }
        }
        const last = planned.messages.at(-1);
        if (last) sql.setMessageCount.run(last.seq, workspaceId, sessionId);
        const changed: UnitCounters[] = [];
        for (const unitId of changedIds) {
          const row = sql.getUnit.get(unitId);
          if (row) changed.push(unitCounters(row));
        }
        return { messages, enqueuedTasks, changed };
      });
      announce(result.changed);
      if (result.enqueuedTasks > 0) events.emit('tasks:enqueued', { count: result.enqueuedTasks });
      return { messages: result.messages, enqueuedTasks: result.enqueuedTasks };
    },

    async listMessages(workspaceId, sessionId, options = {}) {
      return sql.listMessages
        .all(workspaceId, sessionId, options.afterSeq ?? 0, options.limit ?? 100)
        .map((row) => ({
          id: String(row.id),
          workspaceId,
          sessionId,
          peerId: row.peer_id,
          seq: row.seq,
          content: row.content,
          createdAt: row.created_at,
        }));
    },

    async claim(request: ClaimRequest) {
      return (await store.settle({ ...request, reports: [] })).claimed;
    },

    async settle(request: SettleRequest): Promise<SettleResponse> {
      const changed: UnitCounters[] = [];
      const response = bookkeeping(() => {
        const now = clock();
        const results = request.reports.map((report) => applyReport(report, request.owner, now, changed));
        let claimed: ClaimedUnit[] = [];
        if (request.max > 0) {
          recoverExpiredLeases(now, changed);
          claimed = claimReady(request, now, changed);
        }
        return { results, claimed };
      });
      announce(changed);
      return response;
    },

    async renewLeases({ owner, leaseMs, leases }: WorkerRequest & { leases: readonly Lease[] }) {
      return bookkeeping(() => {
        const now = clock();
        return leases.filter(
          (lease) => sql.renewLease.run(now + leaseMs, lease.unitId, owner, lease.token, now).changes === 0,
        );
      });
    },

    async loadUnitCounters() {
      return sql.allUnits.all().map(unitCounters);
    },

    async pruneFinished(finishedBefore) {
      return bookkeeping(() => sql.pruneFinished.run(finishedBefore).changes);
    },

    async listTasks(filter = {}) {
      const rows = filter.state ? sql.listTasksByState.all(filter.state) : sql.listTasks.all();
      return rows.map(
        (row): TaskRow => ({
          id: row.id,
          key: keyOf(row),
          state: row.state as TaskState,
          runs: row.runs,
          failures: row.failures,
          lastError: row.last_error,
          payload: JSON.parse(row.payload) as TaskPayload,
          messageId: row.message_id === null ? null : String(row.message_id),
        }),
      );
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
