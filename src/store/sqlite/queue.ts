/**
 * The queue's state machine in the embedded store (see `../store.ts` for the contract). Every
 * function runs inside the caller's transaction; SQLite's write lock (`BEGIN IMMEDIATE`) makes each
 * transaction the only writer, across processes too.
 */
import { type Counters, zeroCounters } from '../../domain/counters.ts';
import type { Message } from '../../domain/model.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import {
  type Head,
  type HeadAfterReport,
  headAfterReport,
  headColumns,
  keyOf,
  leaseHeld,
  messageOf,
  messagesOfTask,
  releaseReason,
  taskRecordOf,
  type UnitRow,
} from '../rows.ts';
import {
  type Attempt,
  type ClaimedUnit,
  type ClaimRequest,
  interruptedError,
  type RecoveryRequest,
  type ReportResult,
  type TaskRecord,
  type UnitReport,
} from '../store.ts';
import type { JoinedMessage, Statements, TaskRowData } from './statements.ts';

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
 * Frees units whose lease expired, or every unit `owner` leased (a restarted process): the task
 * that was running goes back to pending and runs again, one crash interruption counted, or is
 * failed on its `maxInterruptions`-th; the unit's exact head is written, since a leased unit only
 * keeps a lower bound of it.
 */
export function recoverLeases(
  sql: Statements,
  now: number,
  request: RecoveryRequest,
  /** Whose leases to recover whatever their expiry (a restarted process), or only expired ones. */
  owner: string | null,
): number {
  const units = sql.leasesToRecover.all(now, owner);
  for (const { id, head_task_id } of units) {
    let head = head_task_id === null ? undefined : sql.firstUnfinished.get(id, head_task_id);
    const delta = zeroCounters();
    if (head?.state === 'running') {
      delta.running = -1;
      if (head.interruptions + 1 >= request.maxInterruptions) {
        sql.failInterruptedTask.run(interruptedError(head.interruptions + 1), now, head.id);
        delta.completed = 1;
        delta.failed = 1;
        head = sql.firstUnfinished.get(id, head.id + 1);
      } else if (sql.interruptTask.get(head.id)) {
        delta.pending = 1;
      }
    }
    sql.releaseUnit.get({ ...delta, ...headColumns(head), unitId: id });
  }
  return units.length;
}

export function claimReady(sql: Statements, request: ClaimRequest, now: number): ClaimedUnit[] {
  const claimed: ClaimedUnit[] = [];
  if (request.max <= 0) return claimed;
  for (const { id, head_task_id, interruptions } of sql.readyUnits.all(now, request.max)) {
    // A head whose run was cut short by a crash is claimed alone: its start is committed before it
    // runs, so a further crash is pinned on it and not on a task run later in the same claim.
    const prefetch = interruptions > 0 ? 1 : request.prefetch;
    const rest = prefetch > 1 ? sql.tasksAfter.all(id, head_task_id, prefetch - 1) : [];
    const claimedThrough = rest.at(-1)?.id ?? head_task_id;
    const unit = sql.leaseUnit.get(request.owner, now + request.leaseMs, claimedThrough, id);
    const head = sql.startTask.get(now, head_task_id);
    if (!unit || !head) throw new Error(`work unit ${id} changed under its claim`);
    claimed.push({
      lease: { unitId: id, token: unit.lease_token },
      key: keyOf(unit),
      tasks: [head, ...rest].map((task) => taskRecord(sql, task, unit)),
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
export function applyReport(sql: Statements, report: UnitReport, owner: string, now: number): ReportResult {
  const { unitId } = report.lease;
  const unit = sql.getUnitLease.get(unitId);
  if (!unit || !leaseHeld(unit, report.lease, owner, now)) return { kind: 'lease-lost' };
  const delta: Counters = zeroCounters();
  let storedRunning = unit.running === 1;
  let last: Attempt | undefined;
  /** Failed attempts of the last task put back: a head that failed before waits for a retry. */
  let lastFailures = 0;
  for (const attempt of report.attempts) {
    const from = storedRunning ? 'running' : 'pending';
    const { outcome } = attempt;
    let changes: number;
    if (outcome.kind === 'succeeded') {
      changes = sql.succeedTask.run({ now, id: attempt.taskId, unitId, expected: from }).changes;
    } else if (outcome.kind === 'failed') {
      changes = sql.failTask.run({
        error: outcome.error,
        now,
        id: attempt.taskId,
        unitId,
        expected: from,
      }).changes;
    } else {
      const putBack = sql.requeueTask.get({
        failed: outcome.kind === 'retry' ? 1 : 0,
        error: outcome.kind === 'retry' ? outcome.error : null,
        runAt: outcome.kind === 'retry' ? now + outcome.delayMs : 0,
        id: attempt.taskId,
        unitId,
        expected: from,
      });
      changes = putBack ? 1 : 0;
      lastFailures = putBack?.failures ?? 0;
    }
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
    row = sql.updateUnitCounters.get({ ...delta, unitId });
  } else {
    if (storedRunning) throw new Error(`work unit ${unitId} released with its task still running`);
    const head = findHead(sql, unitId, headAfterReport(last, unit.head_task_id, now), lastFailures);
    result = { kind: 'released', reason: releaseReason(head, now) };
    row = sql.releaseUnit.get({ ...delta, ...headColumns(head), unitId });
  }
  if (!row) throw new Error(`work unit ${unitId} vanished while settling`);
  return result;
}

/** The head a `HeadAfterReport` points at; a task put back has `failures` failed attempts. */
function findHead(
  sql: Statements,
  unitId: number,
  where: HeadAfterReport,
  failures: number,
): Head | undefined {
  switch (where.kind) {
    case 'task':
      return { id: where.id, run_at: where.runAt, failures };
    case 'from':
      return sql.firstUnfinished.get(unitId, where.id);
    case 'none':
      return undefined;
  }
}
