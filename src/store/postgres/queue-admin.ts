/**
 * Inside the queue (docs/api.md) on PostgreSQL: the same rules as the SQLite store's
 * `queue-admin.ts` (a retried task is written again at the end of its unit; cancelling spares what
 * a worker's claim holds). The admin changes lock the units they touch (`FOR UPDATE`), as reports
 * do, so they never interleave with a worker's report on the same unit.
 */
import { type Counters, zeroCounters } from '../../domain/counters.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import {
  type FailedTaskRow,
  failedTaskOf,
  type UnitRow,
  type WorkUnitInfoRow,
  workUnitInfoOf,
  workUnitInsightColumns,
} from '../rows.ts';
import {
  CANCELLED_ERROR,
  type CancelResult,
  type FailedTask,
  type Page,
  type UnitFilter,
  type WorkUnitInfo,
} from '../store.ts';
import { watchIdsOf } from '../webhook-sql.ts';
import type { Db } from './connection.ts';
import { settleWatches } from './outbox.ts';

/** `UnitFilter` on `work_units u`, with its parameters at $1 to $5. */
const UNIT_FILTER = `u.workspace_id = $1
  AND ($2::text IS NULL OR u.session_id = $2)
  AND ($3::text IS NULL OR u.observer_id = $3)
  AND ($4::text IS NULL OR u.sender_id = $4)
  AND ($5::text IS NULL OR u.task_type = $5)`;

const paramsOf = (filter: UnitFilter): unknown[] => [
  filter.workspaceId,
  filter.sessionId ?? null,
  filter.observerId ?? null,
  filter.senderId ?? null,
  filter.taskType ?? null,
];

export async function listWorkUnits(
  db: Db,
  filter: UnitFilter,
  page: Page & { readonly includeIdle: boolean },
): Promise<WorkUnitInfo[]> {
  const rows = await db.query<WorkUnitInfoRow>(
    `SELECT u.*, ${workUnitInsightColumns('json_build_array')}
     FROM work_units u
     WHERE ${UNIT_FILTER} AND ($6 OR u.pending + u.running > 0) AND u.id > $7
     ORDER BY u.id LIMIT $8`,
    [...paramsOf(filter), page.includeIdle, page.afterId ?? 0, page.limit],
  );
  return rows.rows.map(workUnitInfoOf);
}

export async function countWorkUnits(
  db: Db,
  filter: UnitFilter,
  options: { readonly includeIdle: boolean; readonly upTo: number },
): Promise<number> {
  const rows = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (
       SELECT 1 FROM work_units u WHERE ${UNIT_FILTER} AND ($6 OR u.pending + u.running > 0) LIMIT $7) x`,
    [...paramsOf(filter), options.includeIdle, options.upTo],
  );
  return rows.rows[0]?.n ?? 0;
}

export async function listFailedTasks(db: Db, filter: UnitFilter, page: Page): Promise<FailedTask[]> {
  const rows = await db.query<FailedTaskRow<TaskPayload>>(
    `SELECT t.id, t.message_id, t.payload, t.runs, t.last_error, t.created_at, t.finished_at,
       u.task_type, u.workspace_id, u.session_id, u.observer_id, u.sender_id
     FROM work_units u JOIN tasks t ON t.unit_id = u.id
     WHERE ${UNIT_FILTER} AND t.last_error IS NOT NULL AND t.state = 'failed' AND t.id > $6
     ORDER BY t.id LIMIT $7`,
    [...paramsOf(filter), page.afterId ?? 0, page.limit],
  );
  return rows.rows.map((row) => failedTaskOf(row, row.payload));
}

/** Locks the units `filter` reaches that `having` is true of, in id order (no deadlock between two calls). */
async function lockUnits(db: Db, filter: UnitFilter, having: string): Promise<UnitRow[]> {
  const rows = await db.query<UnitRow>(
    `SELECT u.* FROM work_units u WHERE ${UNIT_FILTER} AND ${having} ORDER BY u.id FOR UPDATE`,
    paramsOf(filter),
  );
  return rows.rows;
}

/** Applies counter deltas per unit; a unit in `newHeads` gets that head (and no retry wait). */
async function adjustUnits(
  db: Db,
  deltas: ReadonlyMap<number, Counters>,
  newHeads: ReadonlyMap<number, number | null>,
): Promise<void> {
  if (deltas.size === 0) return;
  const ids = [...deltas.keys()];
  await db.query(
    `UPDATE work_units u SET pending = u.pending + d.dp, completed = u.completed + d.dc,
       failed = u.failed + d.df, version = u.version + 1,
       head_task_id = CASE WHEN d.set_head THEN d.head_id ELSE u.head_task_id END,
       available_at = CASE WHEN d.set_head THEN 0 ELSE u.available_at END,
       retrying = CASE WHEN d.set_head THEN 0 ELSE u.retrying END
     FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[], $5::boolean[], $6::bigint[])
       AS d(id, dp, dc, df, set_head, head_id)
     WHERE u.id = d.id`,
    [
      ids,
      ids.map((id) => deltas.get(id)?.pending ?? 0),
      ids.map((id) => deltas.get(id)?.completed ?? 0),
      ids.map((id) => deltas.get(id)?.failed ?? 0),
      ids.map((id) => newHeads.has(id)),
      ids.map((id) => newHeads.get(id) ?? null),
    ],
  );
}

export async function retryFailed(
  db: Db,
  filter: UnitFilter,
  taskIds: readonly number[] | undefined,
  now: number,
): Promise<number> {
  const units = await lockUnits(db, filter, 'u.failed > 0');
  if (units.length === 0) return 0;
  const moved = await db.query<{ unit_id: number; n: number; first: number }>(
    `WITH picked AS (
       DELETE FROM tasks t WHERE t.unit_id = ANY($1::bigint[]) AND t.last_error IS NOT NULL
         AND t.state = 'failed' AND ($2::bigint[] IS NULL OR t.id = ANY($2::bigint[]))
       RETURNING t.id, t.unit_id, t.message_id, t.payload, t.tokens, t.last_error, t.watch_id
     ), inserted AS (
       INSERT INTO tasks (unit_id, message_id, state, payload, tokens, last_error, created_at, watch_id)
       SELECT unit_id, message_id, 'pending', payload, tokens, last_error, $3, watch_id FROM picked ORDER BY id
       RETURNING id, unit_id
     )
     SELECT unit_id, count(*)::int AS n, min(id) AS first FROM inserted GROUP BY unit_id`,
    [units.map((u) => u.id), taskIds ? [...taskIds] : null, now],
  );
  const byId = new Map(units.map((u) => [u.id, u]));
  const deltas = new Map<number, Counters>();
  const newHeads = new Map<number, number | null>();
  for (const { unit_id, n, first } of moved.rows) {
    deltas.set(unit_id, { ...zeroCounters(), pending: n, completed: -n, failed: -n });
    // A unit with nothing left to do gets its first retried task as its head.
    if (byId.get(unit_id)?.head_task_id === null) newHeads.set(unit_id, first);
  }
  await adjustUnits(db, deltas, newHeads);
  return moved.rows.reduce((sum, r) => sum + r.n, 0);
}

export async function cancelPending(db: Db, filter: UnitFilter, now: number): Promise<CancelResult> {
  const units = await lockUnits(db, filter, 'u.pending > 0 AND u.head_task_id IS NOT NULL');
  if (units.length === 0) return { cancelled: 0, leftWithWorkers: 0 };
  // What a leased unit's worker holds ends at claimed_through (everything, when not recorded).
  const through = units.map((u) =>
    u.lease_owner === null ? (u.head_task_id ?? 1) - 1 : (u.claimed_through ?? Number.MAX_SAFE_INTEGER),
  );
  const result = await db.query<{ unit_id: number; cancelled: number; held: number; watches: string[] }>(
    `WITH bounds AS (
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS b(unit_id, head, through)
     ), cancelled AS (
       UPDATE tasks t SET state = 'failed', last_error = $4, finished_at = $5
       FROM bounds b WHERE t.unit_id = b.unit_id AND t.id > b.through AND t.state = 'pending'
       RETURNING t.unit_id, t.watch_id
     )
     SELECT b.unit_id,
       (SELECT count(*)::int FROM cancelled c WHERE c.unit_id = b.unit_id) AS cancelled,
       (SELECT coalesce(array_agg(DISTINCT c.watch_id), '{}') FROM cancelled c
          WHERE c.unit_id = b.unit_id AND c.watch_id IS NOT NULL) AS watches,
       (SELECT count(*)::int FROM tasks t WHERE t.unit_id = b.unit_id AND t.id >= b.head
          AND t.id <= b.through AND t.state = 'pending') AS held
     FROM bounds b`,
    [units.map((u) => u.id), units.map((u) => u.head_task_id), through, CANCELLED_ERROR, now],
  );
  const deltas = new Map<number, Counters>();
  const newHeads = new Map<number, number | null>();
  let cancelled = 0;
  let leftWithWorkers = 0;
  const leased = new Set(units.filter((u) => u.lease_owner !== null).map((u) => u.id));
  for (const row of result.rows) {
    cancelled += row.cancelled;
    if (leased.has(row.unit_id)) leftWithWorkers += row.held;
    if (row.cancelled === 0) continue;
    deltas.set(row.unit_id, {
      ...zeroCounters(),
      pending: -row.cancelled,
      completed: row.cancelled,
      failed: row.cancelled,
    });
    // An unleased unit had every pending task cancelled: nothing is left to run.
    if (!leased.has(row.unit_id)) newHeads.set(row.unit_id, null);
  }
  await adjustUnits(db, deltas, newHeads);
  await settleWatches(
    db,
    watchIdsOf(result.rows.flatMap((r) => r.watches.map((id) => ({ watch_id: id })))),
    now,
  );
  return { cancelled, leftWithWorkers };
}
