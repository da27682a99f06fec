/**
 * The aggregate both stores answer a status with: the counters of the units a filter matches,
 * summed (and grouped by session for a breakdown). The filter's fields combine with AND; naming a
 * peer leaves summary units out by itself (their observer and sender are NULL). Each shape of
 * filter gets its own statement text, so each is planned on its index (migrations
 * `work_units_by_session`, `work_units_by_observer`, `work_units_by_sender`).
 */
import type { CounterFilter } from './store.ts';

const SUMS =
  'coalesce(sum(pending), 0) AS pending, coalesce(sum(running), 0) AS running, ' +
  'coalesce(sum(completed), 0) AS completed, coalesce(sum(failed), 0) AS failed, ' +
  'coalesce(sum(retrying), 0) AS retrying';

export interface CounterQuery {
  /** `SELECT <sums> FROM work_units WHERE ...` (one row). */
  readonly total: string;
  /** `SELECT session_id, <sums> ... GROUP BY session_id ORDER BY session_id`. */
  readonly bySession: string;
  /** The filter as a condition on `work_units u` (the same placeholders). */
  readonly unitWhere: string;
  /** The values of the placeholders, in order. */
  readonly values: readonly string[];
}

/** Where the counters are: Deriver Live's own `work_units`, or an attached Honcho's (`src/honcho/`). */
export interface CounterSource {
  readonly table: string;
  /** A condition for filters naming no observer (rows that hold an observer's share are left out). */
  readonly withoutObserver?: string;
  /**
   * A statement for a whole workspace's sums (a filter naming nothing else) kept apart from the
   * units', given the placeholder of the workspace (an attached Honcho's totals).
   */
  readonly workspaceTotal?: (workspace: string) => string;
}

const OWN_UNITS: CounterSource = { table: 'work_units' };

/** The statements for `filter`; `placeholder(n)` writes the store's n-th (1-based) parameter. */
export function counterQuery(
  filter: CounterFilter,
  placeholder: (n: number) => string,
  source: CounterSource = OWN_UNITS,
): CounterQuery {
  const values: string[] = [filter.workspaceId];
  const where = [`workspace_id = ${placeholder(1)}`];
  if (filter.observerId === undefined && source.withoutObserver) where.push(source.withoutObserver);
  for (const [column, value] of [
    ['session_id', filter.sessionId],
    ['observer_id', filter.observerId],
    ['sender_id', filter.senderId],
  ] as const) {
    if (value === undefined) continue;
    values.push(value);
    where.push(`${column} = ${placeholder(values.length)}`);
  }
  const from = `FROM ${source.table} WHERE ${where.join(' AND ')}`;
  const wholeWorkspace = values.length === 1 && source.workspaceTotal;
  return {
    total: wholeWorkspace ? wholeWorkspace(placeholder(1)) : `SELECT ${SUMS} ${from}`,
    bySession: `SELECT session_id, ${SUMS} ${from} GROUP BY session_id ORDER BY session_id`,
    unitWhere: where.map((condition) => `u.${condition}`).join(' AND '),
    values,
  };
}

/**
 * The stuck-task count of one task type (`Store.countStuckTasks`): running tasks started before a
 * time. A running task is always one of its leased unit's claimed tasks (its head through
 * `claimed_through`, or everything after the head when that is not recorded), so the leased units
 * of the type are read (`work_units_leased`: as many as the workers' concurrency), not an index of
 * tasks by state, which every task's start and finish would have to update. Values: the type, the
 * time, then the filter's.
 */
export function stuckTasksQuery(
  filter: CounterFilter | undefined,
  placeholder: (n: number) => string,
): { readonly text: string; readonly filterValues: readonly string[] } {
  const scoped = filter ? counterQuery(filter, (n) => placeholder(n + 2)) : null;
  return {
    text: `SELECT count(*) AS n FROM work_units u JOIN tasks t ON t.unit_id = u.id
        AND t.id >= u.head_task_id AND (u.claimed_through IS NULL OR t.id <= u.claimed_through)
      WHERE u.lease_owner IS NOT NULL AND u.task_type = ${placeholder(1)}
        AND t.state = 'running' AND t.started_at < ${placeholder(2)}${scoped ? ` AND ${scoped.unitWhere}` : ''}`,
    filterValues: scoped?.values ?? [],
  };
}

/** Pending, retrying and running per task type, over the units with work left (head set). */
export const LIVE_COUNTS_SQL =
  'SELECT task_type, coalesce(sum(pending), 0) AS pending, coalesce(sum(running), 0) AS running, ' +
  'coalesce(sum(retrying), 0) AS retrying FROM work_units WHERE head_task_id IS NOT NULL GROUP BY task_type';
