/**
 * Inside the queue (docs/api.md), the application service: pages the store's lists and runs
 * the admin changes, on filters the API validated with the shared schemas (`unitFilterInput`,
 * `retryFailedTasksInput`). Every change goes through the store, which announces it like any
 * other, so status counts and subscribers follow.
 */
import type { TaskType } from '../domain/work-unit-key.ts';
import type { BatchPolicies } from '../store/queue-plan.ts';
import type {
  CancelResult,
  CounterFilter,
  FailedTask,
  Page,
  Store,
  UnitFilter,
  WorkUnitInfo,
} from '../store/store.ts';
import { type WaitingFor, waitingFor } from './waiting-for.ts';

/** When a running task must have started to be stuck now, per task type (`Store.countStuckTasks`). */
export const stuckSince = (
  stuckAfterMs: Readonly<Partial<Record<TaskType, number>>>,
  now: number,
): Partial<Record<TaskType, number>> =>
  Object.fromEntries(Object.entries(stuckAfterMs).map(([type, ms]) => [type, now - ms]));

/** A work unit as the API shows it: what the store knows, and why it waits. */
export interface WorkUnitView extends WorkUnitInfo {
  readonly waitingFor: WaitingFor | null;
  /** Its running task has run longer than its type's stuck time. */
  readonly stuck: boolean;
}

/** One page of a list, and whether another follows. */
export interface PageOf<T> {
  readonly items: readonly T[];
  readonly hasNextPage: boolean;
}

export interface QueueService {
  /** Work units matching the filter, by id after `page.afterId`; idle ones only with `includeIdle`. */
  workUnits(
    filter: UnitFilter,
    page: Page & { readonly includeIdle?: boolean },
  ): Promise<PageOf<WorkUnitView>>;
  /** How many units `workUnits` lists in all, counted up to `WORK_UNIT_COUNT_LIMIT`. */
  countWorkUnits(
    filter: UnitFilter,
    options: { readonly includeIdle?: boolean },
  ): Promise<{ readonly count: number; readonly exact: boolean }>;
  /** Tasks of matching units that failed for good, by id after `page.afterId`. */
  failedTasks(filter: UnitFilter, page: Page): Promise<PageOf<FailedTask>>;
  /** Puts failed tasks back in line (only `taskIds` when given); returns how many. */
  retryFailedTasks(filter: UnitFilter, taskIds?: readonly number[]): Promise<number>;
  /** Cancels the pending tasks of matching units, except what workers hold. */
  cancelPendingTasks(filter: UnitFilter): Promise<CancelResult>;
  /** Ids of the workspaces that have work, by id, at most `WORKSPACE_LIST_LIMIT`. */
  workspaces(): Promise<string[]>;
  /** Running tasks past their type's stuck time in the units `filter` matches (0 with none set). */
  stuckTasks(filter: CounterFilter): Promise<number>;
  /** A session's watermark over the units the filter matches (`Store.derivedThroughSeq`). */
  derivedThroughSeq(filter: CounterFilter & { readonly sessionId: string }): Promise<number | null>;
}

/** Units counted at most by `countWorkUnits`: a bounded read, whatever the queue holds. */
export const WORK_UNIT_COUNT_LIMIT = 10_000;

/** Workspaces listed at most (the dashboard's picker). */
export const WORKSPACE_LIST_LIMIT = 200;

export function createQueueService(options: {
  readonly store: Store;
  /** The store's batched task types (to say how full a filling batch is). @default none */
  readonly batches?: BatchPolicies | undefined;
  /** Per task type, when a running task counts as stuck. @default none */
  readonly stuckAfterMs?: Readonly<Partial<Record<TaskType, number>>> | undefined;
}): QueueService {
  const { store, batches = {}, stuckAfterMs = {} } = options;
  /** Asks for one row more than the page, to tell whether another page follows. */
  const paged = async <T>(page: Page, list: (page: Page) => Promise<T[]>): Promise<PageOf<T>> => {
    const rows = await list({ afterId: page.afterId, limit: page.limit + 1 });
    return { items: rows.slice(0, page.limit), hasNextPage: rows.length > page.limit };
  };
  return {
    async workUnits(filter, page) {
      const [units, rateWaits] = await Promise.all([
        paged(page, (p) => store.listWorkUnits(filter, { ...p, includeIdle: page.includeIdle === true })),
        store.rateLimits.waits(),
      ]);
      const now = Date.now();
      return {
        ...units,
        items: units.items.map((unit): WorkUnitView => {
          const type = unit.key.taskType;
          const stuckAfter = stuckAfterMs[type];
          return {
            ...unit,
            waitingFor: waitingFor(unit, now, batches[type], rateWaits.get(type) ?? 0),
            stuck:
              unit.running !== null && stuckAfter !== undefined && now - unit.running.startedAt >= stuckAfter,
          };
        }),
      };
    },
    async countWorkUnits(filter, options) {
      const n = await store.countWorkUnits(filter, {
        includeIdle: options.includeIdle === true,
        upTo: WORK_UNIT_COUNT_LIMIT + 1,
      });
      return { count: Math.min(n, WORK_UNIT_COUNT_LIMIT), exact: n <= WORK_UNIT_COUNT_LIMIT };
    },
    failedTasks: (filter, page) => paged(page, (p) => store.listFailedTasks(filter, p)),
    retryFailedTasks: (filter, taskIds) => store.retryFailedTasks(filter, taskIds),
    workspaces: () => store.listWorkspaces(WORKSPACE_LIST_LIMIT),
    cancelPendingTasks: (filter) => store.cancelPendingTasks(filter),
    derivedThroughSeq: (filter) => store.derivedThroughSeq(filter),
    async stuckTasks(filter) {
      if (Object.keys(stuckAfterMs).length === 0) return 0;
      let total = 0;
      for (const n of (await store.countStuckTasks(stuckSince(stuckAfterMs, Date.now()), filter)).values())
        total += n;
      return total;
    },
  };
}
