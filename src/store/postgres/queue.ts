/**
 * The queue's state machine on PostgreSQL after a claim (see `../store.ts` for the contract):
 * reports, lease renewal and recovery; claims are `claims.ts`, the events these changes cause
 * `outbox.ts`. Every function runs inside the caller's transaction. Units are locked row by row
 * (`FOR UPDATE`), and a report re-reads its unit's lease under the lock, so a stale or expired
 * lease writes nothing.
 */
import type { Counters } from '../../domain/counters.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import { taskFailed } from '../../domain/webhook-events.ts';
import {
  type BatchPolicies,
  type HeadAfterReport,
  planRecovery,
  planReport,
  type TaskWrite,
} from '../queue-plan.ts';
import {
  type Head,
  headColumns,
  type KeyColumns,
  keyOf,
  releaseReason,
  type TaskRowOf,
  type UnitRow,
} from '../rows.ts';
import type { Lease, RecoveryRequest, ReportResult, UnitReport, WorkerRequest } from '../store.ts';
import { watchIdsOf } from '../webhook-sql.ts';
import { claimableAt } from './claims.ts';
import { type Db, one } from './connection.ts';
import { recordDrained, recordEvent, settleWatches } from './outbox.ts';

/** What finishing a task returns of it: its watch (`notifyWhenDerived`), if any. */
export interface FinishedTask {
  watch_id: string | null;
}

/** A task row as PostgreSQL returns it (the payload is parsed JSON). */
export type TaskRowData = TaskRowOf<TaskPayload>;

/** The first unfinished task at or after a lower bound of the head. */
const firstUnfinished = (db: Db, unitId: number, from: number) =>
  one<Head>(
    db,
    `SELECT id, run_at, failures, created_at FROM tasks WHERE unit_id = $1 AND id >= $2 AND finished_at IS NULL
     ORDER BY id LIMIT 1`,
    [unitId, from],
  );

/** Ends a lease, applies counter deltas and records the unit's exact head for the claim order. */
const releaseUnit = (db: Db, unitId: number, delta: Counters, head: Head | undefined, at?: number) => {
  const { headId, availableAt, headRetrying } = headColumns(head, at);
  return one<UnitRow>(
    db,
    `UPDATE work_units SET pending = pending + $2, running = running + $3, completed = completed + $4,
       failed = failed + $5, head_task_id = $6, available_at = $7, retrying = $8,
       lease_owner = NULL, lease_expires_at = NULL, claimed_through = NULL, version = version + 1
     WHERE id = $1 RETURNING *`,
    [unitId, delta.pending, delta.running, delta.completed, delta.failed, headId, availableAt, headRetrying],
  );
};

/**
 * Frees units whose lease expired, or every unit `owner` leased (a restarted process), as
 * `planRecovery` says (rules and head as in the SQLite store).
 */
export async function recoverLeases(
  db: Db,
  now: number,
  request: RecoveryRequest,
  /** Whose leases to recover whatever their expiry (a restarted process), or only expired ones. */
  owner: string | null,
  batches: BatchPolicies,
): Promise<number> {
  const units = await db.query<{ id: number; head_task_id: number | null } & KeyColumns>(
    `SELECT id, head_task_id, task_type, workspace_id, session_id, observer_id, sender_id FROM work_units
     WHERE lease_owner IS NOT NULL AND (lease_expires_at < $1 OR lease_owner = $2)
     ORDER BY id FOR UPDATE SKIP LOCKED`,
    [now, owner],
  );
  for (const unit of units.rows) {
    const { id, head_task_id, task_type } = unit;
    const running =
      head_task_id === null
        ? []
        : (
            await db.query<{ id: number; interruptions: number }>(
              `SELECT id, interruptions FROM tasks WHERE unit_id = $1 AND id >= $2 AND state = 'running'
               ORDER BY id`,
              [id, head_task_id],
            )
          ).rows;
    const plan = planRecovery(running, head_task_id, request.maxInterruptions);
    const failed = plan.writes.filter((w) => w.op === 'fail-interrupted');
    const interrupted = plan.writes.filter((w) => w.op === 'interrupt');
    const changed = await db.query<FinishedTask>(
      `UPDATE tasks t SET interruptions = t.interruptions + 1,
         state = CASE WHEN w.error IS NULL THEN 'pending' ELSE 'failed' END,
         started_at = CASE WHEN w.error IS NULL THEN NULL ELSE t.started_at END,
         last_error = coalesce(w.error, t.last_error),
         finished_at = CASE WHEN w.error IS NULL THEN NULL ELSE $3::bigint END
       FROM unnest($1::bigint[], $2::text[]) AS w(id, error)
       WHERE t.id = ANY($1::bigint[]) AND t.id = w.id AND t.state = 'running'
       RETURNING CASE WHEN w.error IS NULL THEN NULL ELSE t.watch_id END AS watch_id`,
      [
        [...failed.map((w) => w.id), ...interrupted.map((w) => w.id)],
        [...failed.map((w) => w.error), ...interrupted.map(() => null)],
        now,
      ],
    );
    if (changed.rowCount !== plan.writes.length)
      throw new Error(`work unit ${id} changed under its recovery`);
    const head = plan.head.kind === 'from' ? await firstUnfinished(db, id, plan.head.id) : undefined;
    const at = (await claimableAt(db, batches, [{ id, task_type, head }])).get(id);
    await releaseUnit(db, id, plan.delta, head, at);
    if (!head) await recordDrained(db, [keyOf(unit)], now);
    await settleWatches(db, watchIdsOf(changed.rows), now);
  }
  return units.rows.length;
}

/** A released unit's head: known from the report, or the first unfinished task from `lookupFrom`. */
interface Release {
  head: Head | undefined;
  readonly lookupFrom?: number;
}

interface UnitChange {
  readonly unitId: number;
  readonly delta: Counters;
  /** Set when the report releases the unit. */
  readonly release?: Release;
}

function releaseOf(where: HeadAfterReport): Release {
  switch (where.kind) {
    case 'task':
      // Its failures and creation time are known once the task is put back (below).
      return { head: { id: where.id, run_at: where.runAt, failures: 0, created_at: 0 } };
    case 'from':
      return { head: undefined, lookupFrom: where.id };
    case 'none':
      return { head: undefined };
  }
}

/**
 * The reported units, locked: the statement that opens a settle (`Opening`: no parameters, so the
 * ids are written into it; each is checked to be an integer).
 */
export function lockReported(reports: readonly UnitReport[]): string[] {
  if (reports.length === 0) return [];
  const ids = reports.map(({ lease }) => {
    if (!Number.isSafeInteger(lease.unitId))
      throw new Error(`work unit id ${lease.unitId} is not an integer`);
    return lease.unitId;
  });
  return [`SELECT * FROM work_units WHERE id = ANY('{${ids.join(',')}}'::bigint[]) ORDER BY id FOR UPDATE`];
}

/**
 * Whether a lease has expired: the statement that opens a settle, so that a settle scans for
 * leases to recover (`recoverLeases`) only when there is one.
 */
export const leaseExpired = (now: string): string =>
  `SELECT EXISTS (SELECT 1 FROM work_units WHERE lease_owner IS NOT NULL AND lease_expires_at < ${now}) AS expired`;

/**
 * Applies unit reports, all units at once, as `planReport` says: a fixed number of statements
 * however many units moved; each task update names the state it expects and the transaction fails
 * when a report does not fit. `locked` is the reported units as `lockReported` read them.
 */
export async function applyReports(
  db: Db,
  reports: readonly UnitReport[],
  locked: readonly UnitRow[],
  owner: string,
  now: number,
  batches: BatchPolicies,
): Promise<ReportResult[]> {
  if (reports.length === 0) return [];
  const units = new Map(locked.map((u) => [u.id, u]));
  const finished: (TaskWrite & { op: 'finish' } & { unitId: number })[] = [];
  const putBack: (TaskWrite & { op: 'put-back' } & { unitId: number })[] = [];
  const starts: { id: number; unitId: number }[] = [];
  const changes: UnitChange[] = [];
  /** Per report: lost, or the unit change it makes (kept or released, settled at the end). */
  const outcomes = reports.map((report): UnitChange | { readonly kind: 'lease-lost' } => {
    const plan = planReport(units.get(report.lease.unitId), report, owner, now);
    if (plan.kind === 'lease-lost') return plan;
    const { unitId, delta } = plan;
    for (const write of plan.writes) {
      if (write.op === 'finish') finished.push({ ...write, unitId });
      else if (write.op === 'put-back') putBack.push({ ...write, unitId });
      else starts.push({ id: write.id, unitId });
    }
    const change: UnitChange =
      plan.release === null ? { unitId, delta } : { unitId, delta, release: releaseOf(plan.release) };
    changes.push(change);
    return change;
  });

  let finishedWatches: number[] = [];
  if (finished.length > 0) {
    const done = await db.query<FinishedTask>(
      `UPDATE tasks t SET state = a.state, failures = t.failures + a.failed,
         last_error = coalesce(a.error, t.last_error), started_at = coalesce(t.started_at, $1), finished_at = $1,
         runs = t.runs + (CASE WHEN t.state = 'pending' THEN 1 ELSE 0 END)
       FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::integer[], $6::text[], $7::text[])
         AS a(id, unit_id, state, failed, error, expected)
       WHERE t.id = ANY($2::bigint[]) AND t.id = a.id AND t.unit_id = a.unit_id AND t.state = a.expected
       RETURNING t.watch_id`,
      [
        now,
        finished.map((f) => f.id),
        finished.map((f) => f.unitId),
        finished.map((f) => f.state),
        finished.map((f) => (f.state === 'failed' ? 1 : 0)),
        finished.map((f) => f.error),
        finished.map((f) => f.expected),
      ],
    );
    if (done.rowCount !== finished.length)
      throw new Error(`a reported task is not ${finished[0]?.expected} in its work unit`);
    finishedWatches = watchIdsOf(done.rows);
  }
  if (putBack.length > 0) {
    const requeued = await db.query<{ id: number; failures: number; created_at: number }>(
      `UPDATE tasks t SET failures = t.failures + a.failed, last_error = coalesce(a.error, t.last_error),
         run_at = a.run_at, started_at = NULL, runs = t.runs + (CASE WHEN t.state = 'pending' THEN 1 ELSE 0 END),
         state = 'pending'
       FROM unnest($1::bigint[], $2::bigint[], $3::integer[], $4::text[], $5::bigint[], $6::text[])
         AS a(id, unit_id, failed, error, run_at, expected)
       WHERE t.id = ANY($1::bigint[]) AND t.id = a.id AND t.unit_id = a.unit_id AND t.state = a.expected
       RETURNING t.id, t.failures, t.created_at`,
      [
        putBack.map((p) => p.id),
        putBack.map((p) => p.unitId),
        putBack.map((p) => p.failed),
        putBack.map((p) => p.error),
        putBack.map((p) => p.runAt),
        putBack.map((p) => p.expected),
      ],
    );
    if (requeued.rowCount !== putBack.length)
      throw new Error('a task put back is not in the state its report says');
    const byId = new Map(requeued.rows.map((r) => [r.id, r]));
    for (const { release } of changes) {
      const row = release?.head && byId.get(release.head.id);
      if (release?.head && row)
        release.head = { ...release.head, failures: row.failures, created_at: row.created_at };
    }
  }
  if (starts.length > 0) {
    const started = await db.query(
      `UPDATE tasks t SET state = 'running', runs = t.runs + 1, started_at = $1
       FROM unnest($2::bigint[], $3::bigint[]) AS s(id, unit_id)
       WHERE t.id = ANY($2::bigint[]) AND t.id = s.id AND t.unit_id = s.unit_id AND t.state = 'pending'`,
      [now, starts.map((x) => x.id), starts.map((x) => x.unitId)],
    );
    if (started.rowCount !== starts.length) throw new Error('a task reported as running is not pending');
  }
  const lookups = changes.filter((c) => c.release?.lookupFrom !== undefined);
  if (lookups.length > 0) {
    const found = await db.query<{
      unit_id: number;
      id: number | null;
      run_at: number;
      failures: number;
      created_at: number;
    }>(
      `SELECT l.unit_id, h.id, h.run_at, h.failures, h.created_at
       FROM unnest($1::bigint[], $2::bigint[]) AS l(unit_id, from_id)
       LEFT JOIN LATERAL (SELECT id, run_at, failures, created_at FROM tasks t
                          WHERE t.unit_id = l.unit_id AND t.id >= l.from_id AND t.finished_at IS NULL
                          ORDER BY id LIMIT 1) h ON true`,
      [lookups.map((c) => c.unitId), lookups.map((c) => c.release?.lookupFrom)],
    );
    const byUnit = new Map(found.rows.map((r) => [r.unit_id, r]));
    for (const change of lookups) {
      const row = byUnit.get(change.unitId);
      if (change.release && row && row.id !== null)
        change.release.head = {
          id: row.id,
          run_at: row.run_at,
          failures: row.failures,
          created_at: row.created_at,
        };
    }
  }
  const released = changes.flatMap((c) =>
    c.release
      ? [{ id: c.unitId, task_type: units.get(c.unitId)?.task_type ?? '', head: c.release.head }]
      : [],
  );
  const claimable = await claimableAt(db, batches, released);
  if (changes.length > 0) {
    const heads = changes.map((c) => headColumns(c.release?.head, claimable.get(c.unitId)));
    await db.query(
      `UPDATE work_units u SET pending = u.pending + d.dp, running = u.running + d.dr,
         completed = u.completed + d.dc, failed = u.failed + d.df, version = u.version + 1,
         head_task_id = CASE WHEN d.release THEN d.head_id ELSE u.head_task_id END,
         available_at = CASE WHEN d.release THEN d.available_at ELSE u.available_at END,
         retrying = CASE WHEN d.release THEN d.retrying ELSE u.retrying END,
         lease_owner = CASE WHEN d.release THEN NULL ELSE u.lease_owner END,
         lease_expires_at = CASE WHEN d.release THEN NULL ELSE u.lease_expires_at END,
         claimed_through = CASE WHEN d.release THEN NULL ELSE u.claimed_through END
       FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[], $5::integer[], $6::boolean[],
                   $7::bigint[], $8::bigint[], $9::integer[])
         AS d(id, dp, dr, dc, df, release, head_id, available_at, retrying)
       WHERE u.id = ANY($1::bigint[]) AND u.id = d.id`,
      [
        changes.map((c) => c.unitId),
        changes.map((c) => c.delta.pending),
        changes.map((c) => c.delta.running),
        changes.map((c) => c.delta.completed),
        changes.map((c) => c.delta.failed),
        changes.map((c) => c.release !== undefined),
        heads.map((h) => h.headId),
        heads.map((h) => h.availableAt),
        heads.map((h) => h.headRetrying),
      ],
    );
  }
  // Webhook events, in this transaction: tasks failed for good, units drained (and sessions idle).
  for (const f of finished) {
    const unit = units.get(f.unitId);
    if (f.state === 'failed' && unit)
      await recordEvent(db, taskFailed(keyOf(unit), f.id, f.error ?? '', now), now);
  }
  await settleWatches(db, finishedWatches, now);
  await recordDrained(
    db,
    changes.flatMap((c) => {
      const unit = units.get(c.unitId);
      return c.release && !c.release.head && unit ? [keyOf(unit)] : [];
    }),
    now,
  );
  // Released units: why, now that their heads are known.
  return outcomes.map((outcome): ReportResult => {
    if ('kind' in outcome) return outcome;
    if (!outcome.release) return { kind: 'kept' };
    const { head } = outcome.release;
    return { kind: 'released', reason: releaseReason(head, claimable.get(outcome.unitId) ?? 0, now) };
  });
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
