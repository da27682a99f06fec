/**
 * Holds per task type: until when nothing of a type is claimed or started in this process, and the
 * admission of each call of a rate-limited type.
 *
 * ## Protocol
 * A type is held until a time (this process's clock), set by a provider's 429 here
 * (`rateLimited`, which tells the other processes through the store too), by another process's
 * (`readHolds`, polled), or by this process's rate limit (a call that must wait). A hold only
 * lengthens, and when one is set the scheduler is asked to look for work again when it ends
 * (`wakeAt`). A call of a type with a rate limit, or held now, waits for `admitted`: past the hold,
 * then a take from the limit the store shares, again and again until it gets one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { TASK_TYPES, type TaskType } from '../domain/work-unit-key.ts';
import type { RateLimitedError } from '../errors.ts';
import type { RateLimits } from '../store/rate-limits.ts';
import type { ResolvedSchedulerOptions } from './options.ts';

export interface TypeHolds {
  /** Whether a call of `type` must ask `admitted` first: it has a rate limit, or it is held now. */
  needsAdmission(type: TaskType): boolean;
  /** Resolves when a call of `type` with `tokens` tokens may start (or rejects when `signal` aborts). */
  admitted(type: TaskType, tokens: number, signal: AbortSignal): Promise<void>;
  /** A provider said "too many requests": hold the type here now, and everywhere through the store. */
  rateLimited(type: TaskType, error: RateLimitedError): void;
  /** Learns the holds other processes set (their providers' pauses, shared paced calls). */
  readHolds(): Promise<void>;
  /**
   * Units of each type that may be claimed now, given how many of each run here: none of a held
   * type, a capped type's free slots; `undefined` when nothing limits any type.
   */
  claimable(running: (type: TaskType) => number): Partial<Record<TaskType, number>> | undefined;
}

export function createTypeHolds(input: {
  readonly rateLimits: RateLimits;
  readonly taskTypes: ResolvedSchedulerOptions['taskTypes'];
  /** A hold ends at `at`: look for work again then. */
  readonly wakeAt: (at: number) => void;
  /** A provider's 429 held a type here (the scheduler's `type:rate-limited`). */
  readonly onRateLimited: (type: TaskType, until: number, error: string) => void;
  readonly reportError: (error: unknown, operation: string) => void;
}): TypeHolds {
  const { rateLimits, taskTypes, wakeAt, reportError } = input;
  const heldUntil = new Map<TaskType, number>();
  const hold = (type: TaskType, until: number): void => {
    if ((heldUntil.get(type) ?? 0) >= until) return;
    heldUntil.set(type, until);
    wakeAt(until);
  };
  return {
    needsAdmission: (type) =>
      taskTypes[type]?.rateLimit !== undefined || (heldUntil.get(type) ?? 0) > Date.now(),
    async admitted(type, tokens, signal) {
      const limit = taskTypes[type]?.rateLimit;
      for (;;) {
        let waitMs = (heldUntil.get(type) ?? 0) - Date.now();
        if (waitMs <= 0) {
          if (!limit) return;
          try {
            const admission = await rateLimits.take(type, limit, tokens);
            if (admission.ok) return;
            waitMs = admission.waitMs;
            hold(type, Date.now() + waitMs);
          } catch (error) {
            reportError(error, 'rateLimits.take');
            waitMs = 1_000;
          }
        }
        await sleep(Math.max(1, waitMs), undefined, { signal });
      }
    },
    rateLimited(type, error) {
      const waitMs = error.retryAfterMs;
      const until = Date.now() + waitMs;
      if ((heldUntil.get(type) ?? 0) < until) {
        input.onRateLimited(type, until, error.message);
        hold(type, until);
      }
      rateLimits.pause(type, waitMs).catch((e: unknown) => reportError(e, 'rateLimits.pause'));
    },
    async readHolds() {
      try {
        const now = Date.now();
        for (const [type, waitMs] of await rateLimits.waits()) hold(type, now + waitMs);
      } catch (error) {
        reportError(error, 'rateLimits.waits');
      }
    },
    claimable(running) {
      let byType: Partial<Record<TaskType, number>> | undefined;
      const now = Date.now();
      for (const type of TASK_TYPES) {
        const cap = taskTypes[type]?.concurrency;
        let max: number | undefined;
        if ((heldUntil.get(type) ?? 0) > now) max = 0;
        else if (cap !== undefined) max = Math.max(0, cap - running(type));
        if (max !== undefined) byType = { ...byType, [type]: max };
      }
      return byType;
    },
  };
}
