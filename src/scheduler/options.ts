import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { toInputIssues } from '../domain/inputs.ts';
import { TASK_TYPES, type TaskType } from '../domain/work-unit-key.ts';
import { InvalidInputError } from '../errors.ts';
import type { RateLimit } from '../store/rate-limits.ts';
import type { Store, TaskRecord } from '../store/store.ts';

/** What a handler gets for one attempt of one task, or of one batch of a unit's tasks. */
export interface TaskContext {
  /**
   * The task (a batch's first): its type, its work unit's workspace, session, observer and sender
   * (`task.key`), the messages it covers with their content (`task.messages`) and a summary's range
   * (`task.summary`).
   */
  readonly task: TaskRecord;
  /**
   * Every task of this call, in order: `[task]`, or a batched type's batch (docs/deriver.md,
   * "Batches"): consecutive tasks of one work unit, handed over together.
   */
  readonly tasks: readonly TaskRecord[];
  /** The call is a batched type's batch (`tasks` may still hold one task). */
  readonly batch: boolean;
  /** 1 for the first attempt; grows with every failed attempt (a batch: its first task's). */
  readonly attempt: number;
  /**
   * Aborted when the attempt outlives `timeoutMs` (reason `TaskTimeoutError`), when this process
   * lost the unit's lease (`LeaseLostError`) or at shutdown past the deadline (`ShutdownError`).
   * A handler must stop its work when it fires: the unit moves on without waiting for it.
   */
  readonly signal: AbortSignal;
}

/**
 * What a batch handler may resolve with: how many of the batch's first tasks it finished (the rest
 * go back in line, no failure counted). Resolving with nothing finishes every task.
 */
export interface BatchResult {
  readonly completed: number;
}

/**
 * Does one task, or one batch. Resolve on success (a batch: optionally with how many of its first
 * tasks were done, `BatchResult`); throw to fail the attempt (every task of a batch; retried with
 * backoff), throw `PermanentTaskError` to fail it at once, or `RateLimitedError` to come back later
 * without counting a failure (the task type pauses on every instance).
 */
export type TaskHandler = (
  context: TaskContext,
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler written `async () => {...}` returns Promise<void>
) => Promise<BatchResult | undefined | void> | BatchResult | undefined | void;

export interface SchedulerOptions {
  readonly store: Store;
  /**
   * One handler per task type (`representation`, `summary`). A missing one is refused here, when
   * the scheduler is created, unless `concurrency` is 0 (an API-only process runs no task).
   */
  readonly handlers: Readonly<Record<TaskType, TaskHandler>>;
  /** Work units processed at once by this process. @default 8 */
  readonly concurrency?: number;
  /** Tasks a unit may run in one claim before it yields to other units (fairness). @default 20 */
  readonly claimBudget?: number;
  /** Lease length; a claim not renewed for this long is taken to be dead. @default 30000 */
  readonly leaseMs?: number;
  /** How often leases are renewed. @default leaseMs / 3 */
  readonly heartbeatMs?: number;
  /** Fallback poll for work from other processes and expired leases. @default 1000 */
  readonly pollMs?: number;
  /** Attempts before a task fails for good. @default 5 */
  readonly maxAttempts?: number;
  /**
   * Crash interruptions before a task fails for good: an attempt cut short by the death of the
   * process running it does not count as an attempt (the task must run again), but a task whose
   * run is interrupted this many times is failed, so one that kills its process cannot loop. @default 3
   */
  readonly maxInterruptions?: number;
  /** First retry delay; doubles with each failed attempt, with jitter. @default 1000 */
  readonly retryBaseMs?: number;
  /** Longest retry delay. @default 60000 */
  readonly retryMaxMs?: number;
  /** Time one attempt may take. @default 60000 */
  readonly timeoutMs?: number;
  /** How long `stop()` lets running tasks finish before aborting them. @default 10000 */
  readonly shutdownDeadlineMs?: number;
  /**
   * Identifies this process's leases. A process started with the identity of one that died takes
   * its leases back at once (`start()`), rather than waiting for them to expire; two processes
   * running at once must not share one. @default `${hostname}:${pid}:${random}`
   */
  readonly workerId?: string;
  /** Random source in [0, 1) for jitter. @default Math.random */
  readonly random?: () => number;
  /**
   * Per task type: units of it this process runs at once at most (beside `concurrency`), and its
   * rate limit (docs/deriver.md, "Rate limits"; shared by every process on PostgreSQL).
   * Batching is the store's (`batches`), since it decides when a unit may be claimed. @default none
   */
  readonly taskTypes?: Readonly<Partial<Record<TaskType, TaskTypeLimits>>>;
}

/** What a process allows one task type (`SchedulerOptions.taskTypes`). */
export interface TaskTypeLimits {
  /** Units of this type run at once by this process, at most. @default `concurrency` */
  readonly concurrency?: number | undefined;
  /** Handler calls and input tokens started per interval, by every process sharing the store. */
  readonly rateLimit?: RateLimit | undefined;
  /** A task of this type running longer than this is stuck: `task:stuck` fires once per attempt. */
  readonly stuckAfterMs?: number | undefined;
}

const positiveInt = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .int({ error: `${what} must be a whole number` })
    .min(1, { error: `${what} must be at least 1` });

const positive = (what: string) =>
  z.number({ error: `${what} must be a number` }).positive({ error: `${what} must be more than 0` });

export const rateLimitSchema = z
  .object({
    requests: positive('requests').optional(),
    tokens: positive('tokens').optional(),
    intervalMs: positiveInt('intervalMs'),
  })
  .strict()
  .refine((limit) => limit.requests !== undefined || limit.tokens !== undefined, {
    error: 'a rate limit needs requests, tokens or both',
  });

const taskTypeLimitsSchema = z
  .object({
    concurrency: positiveInt('concurrency').optional(),
    rateLimit: rateLimitSchema.optional(),
    stuckAfterMs: positiveInt('stuckAfterMs').optional(),
  })
  .strict();

const optionsSchema = z.object({
  concurrency: z.number().int().min(0, { error: 'concurrency must be 0 or more' }).default(8),
  claimBudget: positiveInt('claimBudget').default(20),
  leaseMs: positiveInt('leaseMs').default(30_000),
  heartbeatMs: positiveInt('heartbeatMs').optional(),
  pollMs: positiveInt('pollMs').default(1_000),
  maxAttempts: positiveInt('maxAttempts').default(5),
  maxInterruptions: positiveInt('maxInterruptions').default(3),
  retryBaseMs: z.number().min(0).default(1_000),
  retryMaxMs: z.number().min(0).default(60_000),
  timeoutMs: positiveInt('timeoutMs').default(60_000),
  shutdownDeadlineMs: z.number().min(0).default(10_000),
  workerId: z.string().min(1).optional(),
  taskTypes: z
    .partialRecord(z.enum(TASK_TYPES as [TaskType, ...TaskType[]]), taskTypeLimitsSchema)
    .default({}),
});

export type ResolvedSchedulerOptions = Required<Omit<SchedulerOptions, 'heartbeatMs' | 'workerId'>> & {
  readonly heartbeatMs: number;
  readonly workerId: string;
};

/** Applies defaults in one place and rejects bad values with a message naming the option. */
export function resolveSchedulerOptions(options: SchedulerOptions): ResolvedSchedulerOptions {
  const { store, handlers, random, ...rest } = options;
  const parsed = optionsSchema.safeParse(rest);
  if (!parsed.success) throw new InvalidInputError(toInputIssues(parsed.error));
  const o = parsed.data;
  const missing =
    o.concurrency > 0 ? TASK_TYPES.filter((type) => typeof handlers?.[type] !== 'function') : [];
  if (missing.length > 0) {
    throw new InvalidInputError(
      missing.map((type) => ({
        path: ['handlers', type],
        message: `no handler for task type "${type}": give one handler per task type (${TASK_TYPES.join(', ')})`,
      })),
    );
  }
  return {
    ...o,
    store,
    handlers,
    random: random ?? Math.random,
    heartbeatMs: o.heartbeatMs ?? Math.max(1, Math.floor(o.leaseMs / 3)),
    workerId: o.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
  };
}

/**
 * Delay before retry number `failures` (1 = after the first failure): exponential from `baseMs`,
 * capped at `maxMs`, with "equal jitter" (half fixed, half random) so retries of many tasks spread out.
 */
export function retryDelay(failures: number, baseMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
