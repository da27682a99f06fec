/**
 * Task counters: the one home of the types the store writes and the status layer reads, so neither
 * imports the other.
 */
import type { WorkUnitKey } from './work-unit-key.ts';

/** Task counters of one work unit, as the store keeps them. */
export interface Counters {
  /** Not finished and not running (includes tasks waiting for a retry). */
  pending: number;
  /** Running in a worker right now. */
  running: number;
  /** Finished: succeeded or failed for good. */
  completed: number;
  /** The part of `completed` that failed for good. */
  failed: number;
  /** The part of `pending` that failed before and waits to run again (a retry). */
  retrying: number;
}

export const zeroCounters = (): Counters => ({
  pending: 0,
  running: 0,
  completed: 0,
  failed: 0,
  retrying: 0,
});

export function addCounters(target: Counters, delta: Counters, sign: 1 | -1 = 1): void {
  target.pending += sign * delta.pending;
  target.running += sign * delta.running;
  target.completed += sign * delta.completed;
  target.failed += sign * delta.failed;
  target.retrying += sign * delta.retrying;
}

/** Whether every counter is zero (a delta that changes nothing). */
export const isZero = (c: Counters): boolean =>
  c.pending === 0 && c.running === 0 && c.completed === 0 && c.failed === 0 && c.retrying === 0;

/** Absolute counters of one work unit after a committed change. */
export interface UnitCounters {
  readonly unitId: number;
  readonly key: WorkUnitKey;
  readonly counters: Readonly<Counters>;
  /** Grows by at least one with every change of this unit's counters. */
  readonly version: number;
}
