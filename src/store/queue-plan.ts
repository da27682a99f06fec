/**
 * The queue's state machine, once, as pure functions: what a unit report or a lease recovery does
 * to a unit's tasks and counters, and where the unit's head is afterwards. The stores execute these
 * plans: SQLite row by row (`sqlite/queue.ts`), PostgreSQL for many units in a few statements
 * (`postgres/queue.ts`). Nothing here reads or writes storage.
 *
 * ## What the store holds of a leased unit
 * Its `running` counter is the number of tasks the store holds as running: the first `running`
 * unfinished tasks from its head (1 for a unit running task after task; a whole batch for a batched
 * unit, whose tasks are started together at the claim). A report's attempts come in task order: the
 * first `running` of them end tasks the store holds as running, every later one a task that started
 * and ended between two reports (the store still holds it as pending). Each task write names the
 * state it expects, so an executor refuses a report that does not fit what is stored.
 *
 * ## Heads
 * After a release the head is the first task put back (retry: with its retry time; requeue: at
 * once), or else the first unfinished task after the last finished one, or else the stored lower
 * bound (a release with no attempts). Tasks finish strictly in id order, so in a recovery a task is
 * failed for its crash interruptions only while no earlier task of the unit was put back.
 */
import { type Counters, zeroCounters } from '../domain/counters.ts';
import { TASK_TYPES, type TaskType } from '../domain/work-unit-key.ts';
import { interruptedError, type Lease, type UnitReport } from './store.ts';

/** The state a task write expects to find. */
export type StoredState = 'running' | 'pending';

export type TaskWrite =
  /** The task succeeded or failed for good. */
  | {
      readonly op: 'finish';
      readonly id: number;
      readonly state: 'succeeded' | 'failed';
      readonly error: string | null;
      readonly expected: StoredState;
    }
  /** Back to pending: to run at `runAt` (0: at once), one failure counted when `failed`. */
  | {
      readonly op: 'put-back';
      readonly id: number;
      readonly failed: 0 | 1;
      readonly error: string | null;
      readonly runAt: number;
      readonly expected: StoredState;
    }
  /** A pending task the worker started after its last report. */
  | { readonly op: 'start'; readonly id: number };

/** Where a released unit's head is (see "Heads"). */
export type HeadAfterReport =
  | { readonly kind: 'task'; readonly id: number; readonly runAt: number }
  | { readonly kind: 'from'; readonly id: number }
  | { readonly kind: 'none' };

/** What an executor needs of a locked unit row to plan its report. */
export interface LeasedUnit {
  readonly lease_owner: string | null;
  readonly lease_token: number;
  readonly lease_expires_at: number | null;
  readonly running: number;
  readonly head_task_id: number | null;
}

export type ReportPlan =
  | { readonly kind: 'lease-lost' }
  | {
      readonly kind: 'apply';
      readonly unitId: number;
      readonly writes: readonly TaskWrite[];
      readonly delta: Counters;
      /** Set when the report releases the unit (it names nothing running). */
      readonly release: HeadAfterReport | null;
    };

/** Whether a unit row still holds `owner`'s lease `lease` at `now` (fencing: else nothing is written). */
export function leaseHeld(unit: LeasedUnit | undefined, lease: Lease, owner: string, now: number): boolean {
  return (
    unit !== undefined &&
    unit.lease_owner === owner &&
    unit.lease_token === lease.token &&
    (unit.lease_expires_at ?? 0) >= now
  );
}

/** Plans one unit report against its locked unit row (`undefined`: the row is gone). */
export function planReport(
  unit: LeasedUnit | undefined,
  report: UnitReport,
  owner: string,
  now: number,
): ReportPlan {
  const { unitId } = report.lease;
  if (!unit || !leaseHeld(unit, report.lease, owner, now)) return { kind: 'lease-lost' };
  const writes: TaskWrite[] = [];
  const delta = zeroCounters();
  let storedRunning = unit.running;
  let firstPutBack: HeadAfterReport | undefined;
  for (const { taskId: id, outcome } of report.attempts) {
    const expected: StoredState = storedRunning > 0 ? 'running' : 'pending';
    if (storedRunning > 0) {
      storedRunning -= 1;
      delta.running -= 1;
    } else delta.pending -= 1;
    if (outcome.kind === 'succeeded' || outcome.kind === 'failed') {
      const failed = outcome.kind === 'failed';
      writes.push({ op: 'finish', id, state: outcome.kind, error: failed ? outcome.error : null, expected });
      delta.completed += 1;
      if (failed) delta.failed += 1;
    } else {
      const retry = outcome.kind === 'retry';
      const runAt = retry ? now + outcome.delayMs : 0;
      writes.push({
        op: 'put-back',
        id,
        failed: retry ? 1 : 0,
        error: retry ? outcome.error : null,
        runAt,
        expected,
      });
      delta.pending += 1;
      firstPutBack ??= { kind: 'task', id, runAt };
    }
  }
  if (report.running !== null) {
    // Still running (stored so), or started since the last report.
    if (storedRunning === 0) {
      writes.push({ op: 'start', id: report.running });
      delta.pending -= 1;
      delta.running += 1;
    }
    return { kind: 'apply', unitId, writes, delta, release: null };
  }
  if (storedRunning > 0) throw new Error(`work unit ${unitId} released with its task still running`);
  const last = report.attempts.at(-1);
  const release: HeadAfterReport =
    firstPutBack ??
    (last
      ? { kind: 'from', id: last.taskId + 1 }
      : unit.head_task_id === null
        ? { kind: 'none' }
        : { kind: 'from', id: unit.head_task_id });
  return { kind: 'apply', unitId, writes, delta, release };
}

/** A task a recovered unit's store held as running. */
export interface InterruptedTask {
  readonly id: number;
  readonly interruptions: number;
}

export interface RecoveryPlan {
  /** In task order: each running task is failed for good or put back to pending. */
  readonly writes: readonly (
    | { readonly op: 'fail-interrupted'; readonly id: number; readonly error: string }
    | { readonly op: 'interrupt'; readonly id: number }
  )[];
  readonly delta: Counters;
  /** Where to look for the head: from the first task put back, or after the failed ones. */
  readonly head: Exclude<HeadAfterReport, { kind: 'task' }>;
}

/**
 * Plans the recovery of a unit whose lease expired or whose owner restarted: its running tasks
 * (`running`, in order, the prefix from its head) were interrupted by a crash. Each counts one more
 * interruption and runs again, unless that was its `maxInterruptions`-th and no earlier task was put
 * back: then it is failed (see "Heads").
 */
export function planRecovery(
  running: readonly InterruptedTask[],
  storedHead: number | null,
  maxInterruptions: number,
): RecoveryPlan {
  const writes: RecoveryPlan['writes'][number][] = [];
  const delta = zeroCounters();
  let head: { readonly kind: 'from'; readonly id: number } | undefined;
  for (const task of running) {
    delta.running -= 1;
    const times = task.interruptions + 1;
    if (head === undefined && times >= maxInterruptions) {
      writes.push({ op: 'fail-interrupted', id: task.id, error: interruptedError(times) });
      delta.completed += 1;
      delta.failed += 1;
    } else {
      writes.push({ op: 'interrupt', id: task.id });
      delta.pending += 1;
      head ??= { kind: 'from', id: task.id };
    }
  }
  const lastFailed = running.at(-1);
  return {
    writes,
    delta,
    head:
      head ??
      (lastFailed
        ? { kind: 'from', id: lastFailed.id + 1 }
        : storedHead === null
          ? { kind: 'none' }
          : { kind: 'from', id: storedHead }),
  };
}

/**
 * A task type's batching (docs/deriver.md, "Batches"): a unit of that type is handed to its handler
 * as one batch of its first tasks once they reach `maxTasks` or `maxTokens`, or once its oldest
 * pending task is `maxWaitMs` old; a batch holds at most `maxTasks` tasks and, past its first task,
 * at most `maxTokens` tokens.
 */
export interface BatchPolicy {
  readonly maxTasks: number;
  readonly maxTokens: number;
  readonly maxWaitMs: number;
}

export type BatchPolicies = Readonly<Partial<Record<TaskType, BatchPolicy>>>;

/** A unit's head as a release or an append sees it. */
export interface HeadTask {
  readonly run_at: number;
  /** Failed attempts so far: a head that failed waits for its retry only, not for its batch. */
  readonly failures: number;
  readonly created_at: number;
}

/** The first `maxTasks` unfinished tasks of a unit from its head: how many, and their tokens. */
export interface BatchWindow {
  readonly count: number;
  readonly tokens: number;
}

/**
 * When a unit whose head is `head` may be claimed: the head's own time (a retry's), and for a
 * batched type not before its batch is full or its oldest task (the head) is `maxWaitMs` old.
 */
export function availableAt(
  head: HeadTask,
  policy: BatchPolicy | undefined,
  window: BatchWindow | undefined,
): number {
  if (!policy || !window || head.failures > 0) return head.run_at;
  const full = window.count >= policy.maxTasks || window.tokens >= policy.maxTokens;
  return full ? head.run_at : Math.max(head.run_at, head.created_at + policy.maxWaitMs);
}

/**
 * How many of a unit's first unfinished tasks (their tokens, in order) one batch takes: the head
 * always, then while the batch stays within `maxTasks` tasks and `maxTokens` tokens.
 */
export function batchSize(policy: BatchPolicy, tokens: readonly number[]): number {
  let total = tokens[0] ?? 0;
  let size = Math.min(1, tokens.length);
  while (size < Math.min(policy.maxTasks, tokens.length)) {
    const next = tokens[size] ?? 0;
    if (total + next > policy.maxTokens) break;
    total += next;
    size++;
  }
  return size;
}

/**
 * The two scans of a claim lane: units whose wait is over (`due`: a retry's backoff or a batch's
 * fill time passed, `available_at` in (0, now]) and units ready since they got their head (`now`:
 * `available_at` 0), each oldest head first and at most the lane's budget; the lane takes the
 * oldest heads of the two. Each scan reads an index holding only such units, so units still
 * waiting (a batch filling for half an hour, a retry backing off) cost a claim nothing however
 * many there are.
 */
export const READINESS = ['due', 'now'] as const;
export type Readiness = (typeof READINESS)[number];

/** One pass of a claim: units of `types`, at most `max`, taken as batches when `batch` is set. */
export interface ClaimLane {
  readonly types: readonly TaskType[];
  readonly max: number;
  readonly batch: BatchPolicy | null;
}

/**
 * How a claim of `max` units is made: one lane for the task types with no batch and no limit of
 * their own, oldest head first across them, and one lane per batched type or type with a limit
 * (`maxByType`: this process's free slots for it; 0 claims none). Each lane takes at most what the
 * claim has left; an executor stops when nothing is left. The lane that goes first turns with each
 * claim (`turn`: a counter of the caller's claims), so a backlog of one lane never starves another.
 */
export function claimLanes(
  max: number,
  maxByType: Readonly<Partial<Record<TaskType, number>>> | undefined,
  batches: BatchPolicies,
  turn = 0,
): ClaimLane[] {
  const plain = TASK_TYPES.filter((type) => maxByType?.[type] === undefined && !batches[type]);
  const lanes: ClaimLane[] = plain.length > 0 ? [{ types: plain, max, batch: null }] : [];
  for (const type of TASK_TYPES) {
    if (plain.includes(type)) continue;
    const limit = Math.min(max, maxByType?.[type] ?? max);
    if (limit > 0) lanes.push({ types: [type], max: limit, batch: batches[type] ?? null });
  }
  const first = lanes.length > 0 ? turn % lanes.length : 0;
  return [...lanes.slice(first), ...lanes.slice(0, first)];
}
