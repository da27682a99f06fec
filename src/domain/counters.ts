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

/** How one work unit's counters moved in one committed transaction. */
export interface UnitDelta {
  readonly unitId: number;
  readonly key: WorkUnitKey;
  /** New counters minus old ones. */
  readonly delta: Readonly<Counters>;
}

/**
 * Names one committed transaction, so that a read of the store can tell whether it saw it: a
 * commit sequence number on SQLite, a transaction id (xid8) on PostgreSQL. Opaque elsewhere.
 */
export type CommitStamp = string;

/** The counter changes of one committed transaction (a part of them, when sent in pieces). */
export interface UnitChanges {
  readonly tx: CommitStamp;
  readonly units: readonly UnitDelta[];
}

/** What one read of the store saw: whether a committed transaction's changes are in it. */
export interface ReadSnapshot {
  includes(tx: CommitStamp): boolean;
}

/** Summed counters of the units a filter matches, as one read of the store saw them. */
export interface CountersSnapshot {
  readonly snapshot: ReadSnapshot;
  readonly total: Counters;
  /** Per session, ordered by session id (only when asked for). */
  readonly sessions: readonly (readonly [sessionId: string, counters: Counters])[] | null;
}
