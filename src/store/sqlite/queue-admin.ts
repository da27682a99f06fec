/**
 * Inside the queue (docs/api.md) in the embedded store: what the units hold, failed tasks, and
 * the two admin changes. Both changes keep the queue's rule that a unit's tasks finish in id order
 * from its head:
 * - a retried task is deleted and written again as a new pending task at the end of its unit (the
 *   unit's counters move it from failed to pending; the total stays);
 * - cancelling fails a unit's pending tasks from its head on; in a leased unit only those after
 *   the last task its claim handed over (`claimed_through`): the worker holds the others and runs
 *   them. A release then looks for the first *unfinished* task, which skips the cancelled ones.
 * Every function runs inside the caller's transaction.
 */
import { zeroCounters } from '../../domain/counters.ts';
import type { TaskPayload } from '../../domain/task-generation.ts';
import { failedTaskOf, workUnitInfoOf } from '../rows.ts';
import {
  CANCELLED_ERROR,
  type CancelResult,
  type FailedTask,
  type Page,
  type UnitFilter,
  type WorkUnitInfo,
} from '../store.ts';
import { watchIdsOf } from '../webhook-sql.ts';
import { settleWatches } from './queue.ts';
import type { Statements, UnitFilterParams } from './statements.ts';

const paramsOf = (filter: UnitFilter): UnitFilterParams => ({
  workspaceId: filter.workspaceId,
  sessionId: filter.sessionId ?? null,
  observerId: filter.observerId ?? null,
  senderId: filter.senderId ?? null,
  taskType: filter.taskType ?? null,
});

export function listWorkUnits(
  sql: Statements,
  filter: UnitFilter,
  page: Page & { readonly includeIdle: boolean },
): WorkUnitInfo[] {
  return sql.listWorkUnits
    .all({
      ...paramsOf(filter),
      includeIdle: page.includeIdle ? 1 : 0,
      afterId: page.afterId ?? 0,
      limit: page.limit,
    })
    .map(workUnitInfoOf);
}

export function countWorkUnits(
  sql: Statements,
  filter: UnitFilter,
  options: { readonly includeIdle: boolean; readonly upTo: number },
): number {
  const row = sql.countWorkUnits.get({
    ...paramsOf(filter),
    includeIdle: options.includeIdle ? 1 : 0,
    upTo: options.upTo,
  });
  return row?.n ?? 0;
}

export function listFailedTasks(sql: Statements, filter: UnitFilter, page: Page): FailedTask[] {
  return sql.listFailedTasks
    .all({ ...paramsOf(filter), afterId: page.afterId ?? 0, limit: page.limit })
    .map((row) => failedTaskOf(row, JSON.parse(row.payload) as TaskPayload));
}

export function retryFailed(
  sql: Statements,
  filter: UnitFilter,
  taskIds: readonly number[] | undefined,
  now: number,
): number {
  const only = taskIds ? new Set(taskIds) : null;
  let retried = 0;
  for (const unit of sql.filteredUnits.all(paramsOf(filter))) {
    if (unit.failed === 0) continue;
    const tasks = sql.failedTasksOf.all(unit.id).filter((t) => !only || only.has(t.id));
    if (tasks.length === 0) continue;
    let first: number | null = null;
    for (const task of tasks) {
      sql.deleteTask.run(task.id);
      const { id } =
        sql.insertRetriedTask.get(
          unit.id,
          task.message_id,
          task.payload,
          task.tokens,
          task.last_error,
          now,
          task.watch_id,
        ) ?? {};
      first ??= id ?? null;
    }
    // A task of a watch not derived yet keeps it waiting: its unit looks again when it finishes.
    if (tasks.some((task) => task.watch_id !== null)) sql.markWatching.run(unit.id);
    const n = tasks.length;
    sql.adjustUnit.get({
      ...zeroCounters(),
      pending: n,
      completed: -n,
      failed: -n,
      unitId: unit.id,
      // A unit with nothing left to do gets its first retried task as its head.
      headId: first,
      keepHead: unit.head_task_id === null ? 0 : 1,
    });
    retried += n;
  }
  return retried;
}

export function cancelPending(sql: Statements, filter: UnitFilter, now: number): CancelResult {
  let cancelled = 0;
  let leftWithWorkers = 0;
  for (const unit of sql.filteredUnits.all(paramsOf(filter))) {
    if (unit.pending === 0 || unit.head_task_id === null) continue;
    const leased = unit.lease_owner !== null;
    // A leased unit whose claim predates the record of what it handed over keeps everything.
    const through = leased ? (unit.claimed_through ?? Number.MAX_SAFE_INTEGER) : unit.head_task_id - 1;
    const finished = sql.cancelPending.all(CANCELLED_ERROR, now, unit.id, through);
    settleWatches(sql, watchIdsOf(finished), now);
    const n = finished.length;
    if (leased) leftWithWorkers += sql.countPendingThrough.get(unit.id, unit.head_task_id, through)?.n ?? 0;
    if (n === 0) continue;
    sql.adjustUnit.get({
      ...zeroCounters(),
      pending: -n,
      completed: n,
      failed: n,
      unitId: unit.id,
      // An unleased unit had every pending task cancelled: nothing is left to run.
      headId: null,
      keepHead: leased ? 1 : 0,
    });
    cancelled += n;
  }
  return { cancelled, leftWithWorkers };
}
