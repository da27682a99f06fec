/**
 * What an attempt's end means for each task of the call, a pure function of the call and what the
 * handler gave back: the scheduler reports these to the store (`TaskOutcome`). What the end means
 * for the scheduler itself (a refusal, a rate limit, a success ending a pause) it decides from the
 * same error (`scheduler.ts`).
 */
import {
  HandlerRefusedError,
  LeaseLostError,
  PermanentTaskError,
  RateLimitedError,
  ShutdownError,
  toError,
} from '../errors.ts';
import type { TaskOutcome, TaskRecord } from '../store/store.ts';
import { type BatchResult, type ResolvedSchedulerOptions, retryDelay } from './options.ts';

export type RetryPolicy = Pick<
  ResolvedSchedulerOptions,
  'maxAttempts' | 'retryBaseMs' | 'retryMaxMs' | 'random'
>;

/**
 * The outcome of each task of a call (`error` null when the handler resolved with `result`): the
 * handler's error applies to all of them (each by its own attempts), except `PermanentTaskError`,
 * which fails a batch's first task only; a batch result finishes its first `completed` and puts the
 * rest back. Tasks a provider's rate limit, a refusal, a lost lease or shutdown stopped go back.
 */
export function outcomesOf(
  tasks: readonly TaskRecord[],
  batch: boolean,
  error: unknown,
  result: unknown,
  policy: RetryPolicy,
): TaskOutcome[] {
  if (error instanceof RateLimitedError) return tasks.map(() => ({ kind: 'requeue' }));
  // "Never" is about one input: a batch's first task fails for good, the rest go back in line.
  if (error instanceof PermanentTaskError && tasks.length > 1)
    return tasks.map((task, i) => (i === 0 ? outcomeOf(task, error, policy) : { kind: 'requeue' }));
  if (error === null && (tasks.length > 1 || batch)) {
    const completed = completedOf(result, tasks.length);
    if (typeof completed === 'string')
      return tasks.map((task) => outcomeOf(task, new Error(completed), policy));
    return tasks.map((task, i) => (i < completed ? outcomeOf(task, null, policy) : { kind: 'requeue' }));
  }
  return tasks.map((task) => outcomeOf(task, error, policy));
}

function outcomeOf(task: TaskRecord, error: unknown, policy: RetryPolicy): TaskOutcome {
  if (error === null) return { kind: 'succeeded' };
  if (
    error instanceof ShutdownError ||
    error instanceof LeaseLostError ||
    error instanceof HandlerRefusedError
  )
    return { kind: 'requeue' };
  const message = toError(error).message;
  const attempts = task.failures + 1;
  if (error instanceof PermanentTaskError || attempts >= policy.maxAttempts)
    return { kind: 'failed', error: message };
  const delay = retryDelay(attempts, policy.retryBaseMs, policy.retryMaxMs, policy.random);
  return { kind: 'retry', error: message, delayMs: delay };
}

/**
 * How many of a batch of `size` tasks a handler's result finished: all without a count, else the
 * count; a sentence when the count makes no sense (it fails the attempt, so it is seen).
 */
function completedOf(result: unknown, size: number): number | string {
  const completed = (result as Partial<BatchResult> | undefined)?.completed;
  if (result === undefined || result === null || completed === undefined) return size;
  if (!Number.isInteger(completed) || completed < 0 || completed > size)
    return `the handler reported completed: ${String(completed)} for a batch of ${size} tasks (expected a whole number from 0 to ${size})`;
  if (completed === 0) return `the handler finished none of its batch of ${size} tasks (completed: 0)`;
  return completed;
}
