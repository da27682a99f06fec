/**
 * The queue's state machine in the embedded store (see `../store.ts` for the contract). Every
 * function runs inside the caller's transaction; SQLite's write lock (`BEGIN IMMEDIATE`) makes each
 * transaction the only writer, across processes too.
 */
import type { Message } from '../../domain/model.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import { queueEmpty, sessionIdle, taskFailed, type WebhookEvent } from '../../domain/webhook-events.ts';
import { TASK_TYPES, type TaskType, type WorkUnitKey } from '../../domain/work-unit-key.ts';
import {
  availableAt,
  type BatchPolicies,
  batchSize,
  claimLanes,
  type HeadAfterReport,
  planRecovery,
  planReport,
  READINESS,
  type TaskWrite,
} from '../queue-plan.ts';
import {
  type Head,
  headColumns,
  keyOf,
  messageOf,
  messagesOfTask,
  releaseReason,
  taskRecordOf,
  type UnitRow,
} from '../rows.ts';
import type {
  ClaimedUnit,
  ClaimRequest,
  RecoveryRequest,
  ReportResult,
  TaskRecord,
  UnitReport,
} from '../store.ts';
import { insertEventValues, sqliteValues, watchEvent, watchIdsOf } from '../webhook-sql.ts';
import type { FinishedTask, JoinedMessage, ReadyUnit, Statements, TaskRowData } from './statements.ts';

function taskRecord(sql: Statements, row: TaskRowData & Partial<JoinedMessage>, unit: UnitRow): TaskRecord {
  const payload = JSON.parse(row.payload) as TaskPayload;
  const covered = messagesOfTask(row.message_id, unit, payload);
  let messages: Message[] = [];
  if (covered.kind === 'message' && row.m_content != null) {
    // Joined to the row (a representation task's message is in its own session).
    const joined = {
      id: covered.id,
      peer_id: row.m_peer_id ?? '',
      seq: row.m_seq ?? 0,
      content: row.m_content,
      created_at: row.m_created_at ?? 0,
      metadata: row.m_metadata ?? null,
    };
    messages = [messageOf(joined, unit.workspace_id, unit.session_id)];
  } else if (covered.kind === 'message') {
    const message = sql.getMessage.get(covered.id);
    if (message) messages = [messageOf(message, message.workspace_id, message.session_id)];
  } else if (covered.kind === 'range') {
    messages = sql.messagesInRange
      .all(covered.workspaceId, covered.sessionId, covered.fromSeq, covered.toSeq)
      .map((m) => messageOf(m, covered.workspaceId, covered.sessionId));
  }
  return taskRecordOf(row, unit, payload, messages);
}

/**
 * Frees units whose lease expired, or every unit `owner` leased (a restarted process), as
 * `planRecovery` says; the unit's exact head is written, since a leased unit only keeps a lower
 * bound of it.
 */
export function recoverLeases(
  sql: Statements,
  now: number,
  request: RecoveryRequest,
  /** Whose leases to recover whatever their expiry (a restarted process), or only expired ones. */
  owner: string | null,
  batches: BatchPolicies,
): number {
  const units = sql.leasesToRecover.all(now, owner);
  const finished: (FinishedTask | undefined)[] = [];
  for (const unit of units) {
    const { id, head_task_id, task_type } = unit;
    const running = head_task_id === null ? [] : sql.runningTasks.all(id, head_task_id);
    const plan = planRecovery(running, head_task_id, request.maxInterruptions);
    for (const write of plan.writes) {
      if (write.op === 'fail-interrupted') {
        const task = sql.failInterruptedTask.get(write.error, now, write.id);
        if (!task) throw new Error(`task ${write.id} is not running in work unit ${id}`);
        finished.push(task);
        recordEvent(sql, taskFailed(keyOf(unit), write.id, write.error, now), now);
      } else if (sql.interruptTask.run(write.id).changes !== 1)
        throw new Error(`task ${write.id} is not running in work unit ${id}`);
    }
    const head = findHead(sql, id, plan.head);
    const at = claimableAt(sql, batches, { id, task_type }, head);
    sql.releaseUnit.get({ ...plan.delta, ...headColumns(head, at), unitId: id });
    if (!head) recordDrained(sql, keyOf(unit), now);
  }
  settleWatches(sql, watchIdsOf(finished), now);
  return units.length;
}

/**
 * Claims up to `request.max` ready units, oldest head first within each lane (`claimLanes`). A
 * unit's head starts; a batched unit's whole batch starts. A head whose run was cut short by a
 * crash is claimed alone: its start is committed before it runs, so a further crash is pinned on it
 * and not on a task run later in the same claim.
 */
export function claimReady(
  sql: Statements,
  request: ClaimRequest,
  now: number,
  batches: BatchPolicies,
  /** This store's claims so far: which lane goes first (`claimLanes`). */
  turn = 0,
): ClaimedUnit[] {
  const claimed: ClaimedUnit[] = [];
  for (const lane of claimLanes(request.max, request.maxByType, batches, turn)) {
    const max = Math.min(lane.max, request.max - claimed.length);
    if (max <= 0) break;
    const all = lane.types.length === TASK_TYPES.length;
    const types = JSON.stringify(lane.types);
    const ready = READINESS.flatMap((readiness): ReadyUnit[] =>
      readiness === 'due'
        ? all
          ? sql.readyDueAll.all(now, max)
          : sql.readyDue.all(now, types, max)
        : all
          ? sql.readyNowAll.all(max)
          : sql.readyNow.all(types, max),
    )
      .sort((a, b) => a.head_task_id - b.head_task_id)
      .slice(0, max);
    for (const { id, head_task_id, interruptions } of ready) {
      let started: (TaskRowData & Partial<JoinedMessage>)[];
      let rest: (TaskRowData & Partial<JoinedMessage>)[] = [];
      if (lane.batch && interruptions === 0) {
        const window = sql.batchTasks.all(id, head_task_id, lane.batch.maxTasks);
        const size = batchSize(
          lane.batch,
          window.map((t) => t.tokens),
        );
        started = window.slice(0, size).map((t) => startTask(sql, now, t.id, id));
      } else {
        started = [startTask(sql, now, head_task_id, id)];
        const prefetch = interruptions > 0 || lane.batch ? 1 : request.prefetch;
        rest = prefetch > 1 ? sql.tasksAfter.all(id, head_task_id, prefetch - 1) : [];
      }
      const tasks = [...started, ...rest];
      const claimedThrough = tasks.at(-1)?.id ?? head_task_id;
      const unit = sql.leaseUnit.get(
        request.owner,
        now + request.leaseMs,
        claimedThrough,
        started.length,
        started.length,
        id,
      );
      if (!unit) throw new Error(`work unit ${id} changed under its claim`);
      claimed.push({
        lease: { unitId: id, token: unit.lease_token },
        key: keyOf(unit),
        tasks: tasks.map((task) => taskRecord(sql, task, unit)),
        batch: lane.batch !== null,
      });
    }
  }
  return claimed;
}

function startTask(sql: Statements, now: number, taskId: number, unitId: number) {
  const task = sql.startTask.get(now, taskId);
  if (!task) throw new Error(`work unit ${unitId} changed under its claim`);
  return task;
}

/** When a unit whose head is `head` may be claimed (`availableAt`: retries, batches filling). */
function claimableAt(
  sql: Statements,
  batches: BatchPolicies,
  unit: { readonly id: number; readonly task_type: string },
  head: Head | undefined,
): number {
  if (!head) return 0;
  const policy = batches[unit.task_type as TaskType];
  const window =
    policy && head.failures === 0 ? sql.batchTasks.all(unit.id, head.id, policy.maxTasks) : undefined;
  return availableAt(
    head,
    policy,
    window && { count: window.length, tokens: window.reduce((sum, t) => sum + t.tokens, 0) },
  );
}

/** Sets the claim time of units that just got tasks, where a batch is waiting to fill. */
export function gateBatches(
  sql: Statements,
  batches: BatchPolicies,
  units: readonly { readonly id: number; readonly task_type: string; readonly head_task_id: number }[],
): void {
  for (const unit of units) {
    if (!batches[unit.task_type as TaskType]) continue;
    const head = sql.firstUnfinished.get(unit.id, unit.head_task_id);
    sql.setAvailableAt.run(claimableAt(sql, batches, unit, head), unit.id);
  }
}

/** Applies one unit report as `planReport` says; a write that does not fit aborts the transaction. */
export function applyReport(
  sql: Statements,
  report: UnitReport,
  owner: string,
  now: number,
  batches: BatchPolicies,
): ReportResult {
  const { unitId } = report.lease;
  const unit = sql.getUnitLease.get(unitId);
  const plan = planReport(unit, report, owner, now);
  if (plan.kind === 'lease-lost') return plan;
  /** The first task put back (its failed attempts: a head that failed before waits for a retry). */
  let firstPutBack: PutBack | undefined;
  const finished: number[] = [];
  // A busy unit reports many successes at once (the pipeline ran them): one statement for all.
  const succeeded = plan.writes.filter(
    (w): w is Extract<TaskWrite, { op: 'finish' }> => w.op === 'finish' && w.state === 'succeeded',
  );
  if (succeeded.length > 1) {
    const tasks = JSON.stringify(succeeded.map((w) => [w.id, w.expected]));
    if (sql.succeedTasks.run({ tasks, unitId, now }).changes !== succeeded.length)
      throw new Error(`tasks ${tasks} are not all in the states expected in work unit ${unitId}`);
    for (const write of succeeded) finished.push(write.id);
  }
  for (const write of plan.writes) {
    let changes: number;
    if (write.op === 'finish' && succeeded.length > 1 && write.state === 'succeeded') continue;
    if (write.op === 'finish') {
      const change = { now, id: write.id, unitId, expected: write.expected };
      changes =
        write.state === 'succeeded'
          ? sql.succeedTask.run(change).changes
          : sql.failTask.run({ ...change, error: write.error ?? '' }).changes;
      finished.push(write.id);
    } else if (write.op === 'put-back') {
      const { id, failed, error, runAt, expected } = write;
      const putBack = sql.requeueTask.get({ id, unitId, failed, error, runAt, expected });
      changes = putBack ? 1 : 0;
      firstPutBack ??= putBack;
    } else {
      changes = sql.markRunning.get(now, write.id, unitId) ? 1 : 0;
    }
    if (changes !== 1) {
      const expected = write.op === 'start' ? 'pending' : write.expected;
      throw new Error(`task ${write.id} is not ${expected} in work unit ${unitId}`);
    }
    if (write.op === 'finish' && write.state === 'failed' && unit)
      recordEvent(sql, taskFailed(keyOf(unit), write.id, write.error ?? '', now), now);
  }
  if (unit?.watching && finished.length > 0)
    settleWatches(sql, watchIdsOf(sql.watchesOfTasks.all(JSON.stringify(finished))), now);
  if (plan.release === null) {
    if (!sql.updateUnitCounters.get({ ...plan.delta, unitId }))
      throw new Error(`work unit ${unitId} vanished while settling`);
    return { kind: 'kept' };
  }
  const head = findHead(sql, unitId, plan.release, firstPutBack);
  const at = claimableAt(sql, batches, { id: unitId, task_type: unit?.task_type ?? '' }, head);
  if (!sql.releaseUnit.get({ ...plan.delta, ...headColumns(head, at), unitId }))
    throw new Error(`work unit ${unitId} vanished while settling`);
  if (!head && unit) recordDrained(sql, keyOf(unit), now);
  return { kind: 'released', reason: releaseReason(head, at, now) };
}

/**
 * Writes a webhook event to the outbox, in the caller's transaction (docs/webhooks.md); returns the
 * deliveries made (0 without endpoints for it: one indexed statement).
 */
export function recordEvent(sql: Statements, event: WebhookEvent, now: number): number {
  return sql.insertWebhookEvent.run(sqliteValues(insertEventValues(event, now))).changes;
}

/**
 * Watches (`notifyWhenDerived` calls) whose last task this transaction finished: each marked
 * derived once, with its `messages.derived` event.
 */
export function settleWatches(sql: Statements, watchIds: readonly number[], now: number): void {
  if (watchIds.length === 0) return;
  for (const watch of sql.settleWatches.all(sqliteValues([now, JSON.stringify(watchIds)]))) {
    const outcomes = sql.watchOutcomes.get(sqliteValues([watch.id]));
    recordEvent(sql, watchEvent(watch, outcomes, now), now);
  }
}

/** A unit drained: `queue.empty`, and `session.idle` when its session has nothing open left. */
function recordDrained(sql: Statements, key: WorkUnitKey, now: number): void {
  recordEvent(sql, queueEmpty(key, now), now);
  const idle = sessionIdle(key.workspaceId, key.sessionId, now);
  sql.insertSessionIdleEvent.run(sqliteValues([...insertEventValues(idle, now), key.sessionId]));
}

/** What putting a task back returns of it. */
type PutBack = Pick<Head, 'failures' | 'created_at'>;

/** The head a `HeadAfterReport` points at (a task put back: `putBack` is what that returned). */
function findHead(
  sql: Statements,
  unitId: number,
  where: HeadAfterReport,
  putBack?: PutBack,
): Head | undefined {
  switch (where.kind) {
    case 'task':
      return {
        id: where.id,
        run_at: where.runAt,
        failures: putBack?.failures ?? 0,
        created_at: putBack?.created_at ?? 0,
      };
    case 'from':
      return sql.firstUnfinished.get(unitId, where.id);
    case 'none':
      return undefined;
  }
}
