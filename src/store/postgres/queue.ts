/**
 * The queue's state machine on PostgreSQL (see `../store.ts` for the contract). Every function
 * runs inside the caller's transaction. Units are locked row by row (`FOR UPDATE`); claims skip
 * units another transaction holds (`SKIP LOCKED`), so two processes never claim the same unit, and
 * a report re-reads its unit's lease under the lock, so a stale or expired lease writes nothing.
 */
import { type Counters, type UnitCounters, zeroCounters } from '../../domain/counters.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import type { TaskType } from '../../domain/work-unit-key.ts';
import { keyOf, type UnitRow, unitCounters } from '../rows.ts';
import type {
  ClaimedUnit,
  ClaimRequest,
  Lease,
  ReportResult,
  TaskRecord,
  UnitReport,
  WorkerRequest,
} from '../store.ts';
import type { Db } from './connection.ts';

export interface TaskRowData {
  id: number;
  unit_id: number;
  message_id: number | null;
  state: string;
  payload: TaskPayload;
  runs: number;
  failures: number;
  last_error: string | null;
  created_at: number;
}

const TASK = 'id, unit_id, message_id, state, payload, runs, failures, last_error, created_at';

const taskRecord = (row: TaskRowData, unit: UnitRow): TaskRecord => ({
  id: row.id,
  unitId: row.unit_id,
  type: unit.task_type as TaskType,
  key: keyOf(unit),
  messageId: row.message_id === null ? null : String(row.message_id),
  payload: row.payload,
  runs: row.runs,
  failures: row.failures,
  createdAt: row.created_at,
});

async function one<R>(db: Db, text: string, values: unknown[]): Promise<R | undefined> {
  return (await db.query(text, values)).rows[0] as R | undefined;
}

/** The first unfinished task at or after a lower bound of the head. */
const firstUnfinished = (db: Db, unitId: number, from: number) =>
  one<{ id: number; run_at: number; state: string }>(
    db,
    `SELECT id, run_at, state FROM tasks WHERE unit_id = $1 AND id >= $2 AND finished_at IS NULL
     ORDER BY id LIMIT 1`,
    [unitId, from],
  );

/** Ends a lease, applies counter deltas and records the unit's exact head for the claim order. */
const releaseUnit = (
  db: Db,
  unitId: number,
  delta: Counters,
  head: { id: number; run_at: number } | undefined,
) =>
  one<UnitRow>(
    db,
    `UPDATE work_units SET pending = pending + $2, running = running + $3, completed = completed + $4,
       failed = failed + $5, head_task_id = $6, available_at = $7,
       lease_owner = NULL, lease_expires_at = NULL, version = version + 1
     WHERE id = $1 RETURNING *`,
    [
      unitId,
      delta.pending,
      delta.running,
      delta.completed,
      delta.failed,
      head?.id ?? null,
      head?.run_at ?? 0,
    ],
  );

/** Frees units whose lease expired; their running task goes back to pending and runs again. */
export async function recoverExpiredLeases(db: Db, now: number, changed: UnitCounters[]): Promise<void> {
  const expired = await db.query<{ id: number; head_task_id: number | null }>(
    `SELECT id, head_task_id FROM work_units WHERE lease_owner IS NOT NULL AND lease_expires_at < $1
     ORDER BY id FOR UPDATE SKIP LOCKED`,
    [now],
  );
  for (const { id, head_task_id } of expired.rows) {
    const head = head_task_id === null ? undefined : await firstUnfinished(db, id, head_task_id);
    let requeued = 0;
    if (head?.state === 'running') {
      requeued = (
        await db.query(
          `UPDATE tasks SET state = 'pending', started_at = NULL WHERE id = $1 AND state = 'running'`,
          [head.id],
        )
      ).rowCount as number;
    }
    const delta = { ...zeroCounters(), pending: requeued, running: -requeued };
    const row = await releaseUnit(db, id, delta, head);
    if (row) changed.push(unitCounters(row));
  }
}

export async function claimReady(db: Db, request: ClaimRequest, now: number, changed: UnitCounters[]) {
  const claimed: ClaimedUnit[] = [];
  if (request.max <= 0) return claimed;
  const ready = await db.query<{ id: number; head_task_id: number }>(
    `SELECT id, head_task_id FROM work_units
     WHERE head_task_id IS NOT NULL AND lease_owner IS NULL AND available_at <= $1
     ORDER BY head_task_id LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [now, request.max],
  );
  for (const { id, head_task_id } of ready.rows) {
    const unit = await one<UnitRow>(
      db,
      `UPDATE work_units SET lease_owner = $2, lease_token = lease_token + 1, lease_expires_at = $3,
         pending = pending - 1, running = running + 1, version = version + 1
       WHERE id = $1 RETURNING *`,
      [id, request.owner, now + request.leaseMs],
    );
    const tasks = await db.query<TaskRowData & { started: boolean }>(
      `WITH started AS (
         UPDATE tasks SET state = 'running', runs = runs + 1, started_at = $3 WHERE id = $2 RETURNING ${TASK}
       )
       SELECT * FROM (SELECT ${TASK} FROM started
         UNION ALL
         (SELECT ${TASK} FROM tasks WHERE unit_id = $1 AND id > $2 ORDER BY id LIMIT $4)) t ORDER BY id`,
      [id, head_task_id, now, Math.max(0, request.prefetch - 1)],
    );
    if (!unit || tasks.rows[0]?.id !== head_task_id)
      throw new Error(`work unit ${id} changed under its claim`);
    changed.push(unitCounters(unit));
    claimed.push({
      lease: { unitId: id, token: unit.lease_token },
      key: keyOf(unit),
      tasks: tasks.rows.map((task) => taskRecord(task, unit)),
    });
  }
  return claimed;
}

/**
 * Applies one unit report; the same rules as the SQLite store (see there): the unit's `running`
 * counter tells whether the store holds the first reported attempt as running, every later one is
 * still pending in the store; each task update names the state it expects.
 */
export async function applyReport(
  db: Db,
  report: UnitReport,
  owner: string,
  now: number,
  changed: UnitCounters[],
): Promise<ReportResult> {
  const { unitId, token } = report.lease;
  const unit = await one<UnitRow>(db, 'SELECT * FROM work_units WHERE id = $1 FOR UPDATE', [unitId]);
  if (
    !unit ||
    unit.lease_owner !== owner ||
    unit.lease_token !== token ||
    (unit.lease_expires_at ?? 0) < now
  ) {
    return { kind: 'lease-lost' };
  }
  const delta = zeroCounters();
  let storedRunning = unit.running === 1;
  let head: { id: number; run_at: number } | undefined;
  let lastFinished: number | undefined;
  // Finished attempts (all but maybe the last: a retry or requeue ends a report) in one statement.
  const attempts = report.attempts;
  const putBack = attempts.at(-1)?.outcome.kind === 'retry' || attempts.at(-1)?.outcome.kind === 'requeue';
  const finished = putBack ? attempts.slice(0, -1) : attempts;
  if (finished.length > 0) {
    const expected = finished.map((_, i) => (i === 0 && storedRunning ? 'running' : 'pending'));
    const done = await db.query(
      `UPDATE tasks t SET state = a.state, failures = t.failures + a.failed,
         last_error = coalesce(a.error, t.last_error), started_at = coalesce(t.started_at, $1), finished_at = $1,
         runs = t.runs + (CASE WHEN t.state = 'pending' THEN 1 ELSE 0 END)
       FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[], $6::text[])
         AS a(id, state, failed, error, expected)
       WHERE t.id = a.id AND t.unit_id = $7 AND t.state = a.expected`,
      [
        now,
        finished.map((f) => f.taskId),
        finished.map((f) => f.outcome.kind),
        finished.map((f) => (f.outcome.kind === 'failed' ? 1 : 0)),
        finished.map((f) => (f.outcome.kind === 'failed' ? f.outcome.error : null)),
        expected,
        unitId,
      ],
    );
    if (done.rowCount !== finished.length) {
      throw new Error(`task ${finished[0]?.taskId} is not ${expected[0]} in work unit ${unitId}`);
    }
    delta[storedRunning ? 'running' : 'pending'] -= 1;
    delta.pending -= finished.length - 1;
    delta.completed += finished.length;
    delta.failed += finished.filter((f) => f.outcome.kind === 'failed').length;
    storedRunning = false;
    lastFinished = finished.at(-1)?.taskId;
  }
  const last = attempts.at(-1);
  if (putBack && last && (last.outcome.kind === 'retry' || last.outcome.kind === 'requeue')) {
    const from = storedRunning ? 'running' : 'pending';
    const runAt = last.outcome.kind === 'retry' ? now + last.outcome.delayMs : 0;
    const requeued = await db.query(
      `UPDATE tasks SET failures = failures + $1, last_error = coalesce($2, last_error), run_at = $3,
         started_at = NULL, runs = runs + (CASE WHEN state = 'pending' THEN 1 ELSE 0 END), state = 'pending'
       WHERE id = $4 AND unit_id = $5 AND state = $6`,
      [
        last.outcome.kind === 'retry' ? 1 : 0,
        last.outcome.kind === 'retry' ? last.outcome.error : null,
        runAt,
        last.taskId,
        unitId,
        from,
      ],
    );
    if (requeued.rowCount !== 1) throw new Error(`task ${last.taskId} is not ${from} in work unit ${unitId}`);
    if (storedRunning) {
      delta.running -= 1;
      delta.pending += 1;
    }
    storedRunning = false;
    head = { id: last.taskId, run_at: runAt };
    lastFinished = undefined;
  }
  let row: UnitRow | undefined;
  let result: ReportResult = { kind: 'kept' };
  if (report.running !== null) {
    if (!storedRunning) {
      const started = await db.query(
        `UPDATE tasks SET state = 'running', runs = runs + 1, started_at = $1
         WHERE id = $2 AND unit_id = $3 AND state = 'pending'`,
        [now, report.running, unitId],
      );
      if (started.rowCount !== 1)
        throw new Error(`task ${report.running} is not pending in work unit ${unitId}`);
      delta.pending -= 1;
      delta.running += 1;
    }
    row = await one<UnitRow>(
      db,
      `UPDATE work_units SET pending = pending + $2, running = running + $3, completed = completed + $4,
         failed = failed + $5, version = version + 1
       WHERE id = $1 RETURNING *`,
      [unitId, delta.pending, delta.running, delta.completed, delta.failed],
    );
  } else {
    if (storedRunning) throw new Error(`work unit ${unitId} released with its task still running`);
    if (!head) {
      head =
        lastFinished !== undefined
          ? await one(db, 'SELECT id, run_at FROM tasks WHERE unit_id = $1 AND id > $2 ORDER BY id LIMIT 1', [
              unitId,
              lastFinished,
            ])
          : unit.head_task_id === null
            ? undefined
            : await firstUnfinished(db, unitId, unit.head_task_id);
    }
    result = { kind: 'released', reason: !head ? 'drained' : head.run_at > now ? 'waiting' : 'yielded' };
    row = await releaseUnit(db, unitId, delta, head);
  }
  if (!row) throw new Error(`work unit ${unitId} vanished while settling`);
  changed.push(unitCounters(row));
  return result;
}

/** Extends the leases still held; returns those that were lost. */
export async function renewLeases(
  db: Db,
  { owner, leaseMs, leases }: WorkerRequest & { readonly leases: readonly Lease[] },
  now: number,
): Promise<Lease[]> {
  if (leases.length === 0) return [];
  const renewed = await db.query<{ id: number }>(
    `UPDATE work_units u SET lease_expires_at = $1
     FROM unnest($2::bigint[], $3::bigint[]) AS l(id, token)
     WHERE u.id = l.id AND u.lease_token = l.token AND u.lease_owner = $4 AND u.lease_expires_at >= $5
     RETURNING u.id`,
    [now + leaseMs, leases.map((l) => l.unitId), leases.map((l) => l.token), owner, now],
  );
  const kept = new Set(renewed.rows.map((r) => r.id));
  return leases.filter((lease) => !kept.has(lease.unitId));
}
