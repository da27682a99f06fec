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
}

/** The public shape of a status (SPEC section 3); field names keep Honcho's wording. */
export interface StatusCounts {
  readonly totalWorkUnits: number;
  readonly completedWorkUnits: number;
  readonly inProgressWorkUnits: number;
  readonly pendingWorkUnits: number;
  readonly failedWorkUnits: number;
}

export interface SessionStatusCounts extends StatusCounts {
  readonly sessionId: string;
}

export const zeroCounters = (): Counters => ({ pending: 0, running: 0, completed: 0, failed: 0 });

export function toStatusCounts(c: Counters): StatusCounts {
  return {
    totalWorkUnits: c.pending + c.running + c.completed,
    completedWorkUnits: c.completed,
    inProgressWorkUnits: c.running,
    pendingWorkUnits: c.pending,
    failedWorkUnits: c.failed,
  };
}

export function addCounters(target: Counters, delta: Counters, sign: 1 | -1 = 1): void {
  target.pending += sign * delta.pending;
  target.running += sign * delta.running;
  target.completed += sign * delta.completed;
  target.failed += sign * delta.failed;
}

export function isIdle(c: StatusCounts): boolean {
  return c.pendingWorkUnits === 0 && c.inProgressWorkUnits === 0;
}

export function sameStatusCounts(a: StatusCounts, b: StatusCounts): boolean {
  return (
    a.totalWorkUnits === b.totalWorkUnits &&
    a.completedWorkUnits === b.completedWorkUnits &&
    a.inProgressWorkUnits === b.inProgressWorkUnits &&
    a.pendingWorkUnits === b.pendingWorkUnits &&
    a.failedWorkUnits === b.failedWorkUnits
  );
}
